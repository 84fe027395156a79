package server

// registerControl adds the bedrock-agentcore-control routes.
func (s *Server) registerControl() {}
