// Package fakemodel is a stand-in for Claude behind the real wire formats
// of the Anthropic Messages API, Amazon Bedrock's InvokeModel and
// InvokeModelWithResponseStream (AWS event-stream framing, SigV4 checked),
// and OpenAI Chat Completions, streaming included.
//
// It has no canned answers. Each reply is worked out from the conversation
// in the request it receives: it calls the tools the request offers, reads
// their results back from the history, and finds an earlier result there
// when asked to continue from one. A test that gets the right answer has
// therefore proved that the conversation reached the model.
package fakemodel

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
)

// Config holds the credentials the server accepts.
type Config struct {
	AnthropicKey string // x-api-key for the Anthropic API
	OpenAIKey    string // bearer token for Chat Completions
	AWSAccessKey string // SigV4 credentials for Bedrock
	AWSSecretKey string
	AWSRegion    string
}

// Wire formats, as recorded in Request.Wire.
const (
	WireAnthropic = "anthropic"
	WireBedrock   = "bedrock"
	WireOpenAI    = "openai"
)

// Request is one model call as the server understood it.
type Request struct {
	Wire     string
	Model    string
	Stream   bool
	System   string
	Messages []Message
	Tools    []string // names of the tools offered
	Reply    Reply
}

// UserPrompts are the request's user text messages, oldest first.
func (r Request) UserPrompts() []string {
	var out []string
	for _, m := range r.Messages {
		if m.Role == "user" && m.Text != "" {
			out = append(out, m.Text)
		}
	}
	return out
}

// Message is one message of a conversation, whatever the wire format.
// Tool results are a message of role "tool" (Anthropic sends them as a
// user message; OpenAI as one message per result).
type Message struct {
	Role    string // user, assistant or tool
	Text    string
	Calls   []Call
	Results []Result
}

// Call is a tool call the model made.
type Call struct {
	ID    string
	Name  string
	Input map[string]any
}

// Result is a tool's answer to a call.
type Result struct {
	CallID  string
	Content string
	IsError bool
}

// Reply is what the model answers: text, or tool calls.
type Reply struct {
	Text  string
	Calls []Call
}

// Server is the fake model endpoint for all three wire formats.
type Server struct {
	// URL is the server's root, e.g. http://127.0.0.1:41234. The Anthropic
	// SDK and Bedrock take it as is; OpenAI clients want URL + "/v1".
	URL string

	cfg Config
	srv *httptest.Server

	// mu guards the fields that follow.
	mu       sync.Mutex
	requests []Request
	problems []string
	ids      int
}

// New starts a server. Close it when done.
func New(cfg Config) *Server {
	s := &Server{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/messages", s.anthropic)
	mux.HandleFunc("POST /model/{model}/invoke", s.bedrock)
	mux.HandleFunc("POST /model/{model}/invoke-with-response-stream", s.bedrock)
	mux.HandleFunc("POST /v1/chat/completions", s.openai)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.problem("unexpected request %s %s", r.Method, r.URL.Path)
		http.NotFound(w, r)
	})
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL
	return s
}

// Close shuts the server down.
func (s *Server) Close() { s.srv.Close() }

// Requests returns every model call so far, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Since returns the model calls after the first n.
func (s *Server) Since(n int) []Request {
	all := s.Requests()
	if n > len(all) {
		return nil
	}
	return all[n:]
}

// Problems lists requests the server refused, and why. A client that
// speaks the wire format correctly leaves it empty.
func (s *Server) Problems() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.problems...)
}

// ForgetProblems clears Problems, after a test has provoked one on purpose.
func (s *Server) ForgetProblems() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.problems = nil
}

func (s *Server) problem(format string, args ...any) string {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.problems = append(s.problems, msg)
	return msg
}

// answer thinks about req and records the exchange.
func (s *Server) answer(req Request, idPrefix string) Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	req.Reply = think(req, func() string {
		s.ids++
		return fmt.Sprintf("%s%04d", idPrefix, s.ids)
	})
	s.requests = append(s.requests, req)
	return req
}

// newID returns a fresh ID for a response.
func (s *Server) newID(prefix string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids++
	return fmt.Sprintf("%s%04d", prefix, s.ids)
}

// checkToolPairing enforces what the real APIs enforce: every tool call is
// answered by the very next message, and every result answers a call of
// the message before it.
func checkToolPairing(msgs []Message) error {
	for i, m := range msgs {
		if len(m.Results) > 0 {
			if i == 0 || msgs[i-1].Role != "assistant" {
				return fmt.Errorf("messages[%d]: tool results without a preceding assistant message", i)
			}
			for _, r := range m.Results {
				if !hasCall(msgs[i-1], r.CallID) {
					return fmt.Errorf("messages[%d]: result for unknown tool call %q", i, r.CallID)
				}
			}
		}
		if len(m.Calls) > 0 {
			if i+1 >= len(msgs) {
				return fmt.Errorf("messages[%d]: tool calls are the last message", i)
			}
			for _, c := range m.Calls {
				if !hasResult(msgs[i+1], c.ID) {
					return fmt.Errorf("messages[%d]: tool call %q has no result in the next message", i, c.ID)
				}
			}
		}
	}
	return nil
}

func hasCall(m Message, id string) bool {
	for _, c := range m.Calls {
		if c.ID == id {
			return true
		}
	}
	return false
}

func hasResult(m Message, id string) bool {
	for _, r := range m.Results {
		if r.CallID == id {
			return true
		}
	}
	return false
}

// writeJSON answers with a JSON body; the Stainless-generated SDKs insist
// on the content type.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// countTokens is a rough token count: words.
func countTokens(req Request) int {
	n := len(strings.Fields(req.System))
	for _, m := range req.Messages {
		n += len(strings.Fields(m.Text))
		for _, r := range m.Results {
			n += len(strings.Fields(r.Content))
		}
		n += 4 * len(m.Calls)
	}
	return n
}

// chunks splits text into word-sized pieces for streaming.
func chunks(text string) []string {
	if text == "" {
		return nil
	}
	return strings.SplitAfter(text, " ")
}

// halves splits s in two, to stream tool input as partial JSON.
func halves(s string) []string {
	if len(s) < 2 {
		return []string{s}
	}
	return []string{s[:len(s)/2], s[len(s)/2:]}
}
