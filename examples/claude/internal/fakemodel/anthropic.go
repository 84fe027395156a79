package fakemodel

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// The Anthropic Messages API: POST /v1/messages. Bedrock's InvokeModel
// carries the same body (minus model and stream, plus anthropic_version),
// so bedrock.go reuses everything here.

type anthropicRequest struct {
	Model            string             `json:"model"`
	MaxTokens        int                `json:"max_tokens"`
	System           json.RawMessage    `json:"system"`
	Messages         []anthropicMessage `json:"messages"`
	Tools            []anthropicTool    `json:"tools"`
	Stream           bool               `json:"stream"`
	AnthropicVersion string             `json:"anthropic_version"` // Bedrock only
}

type anthropicMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"` // a string or blocks
}

type anthropicTool struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	InputSchema struct {
		Type string `json:"type"`
	} `json:"input_schema"`
}

// anthropicBlock is a content block, in requests and responses.
type anthropicBlock struct {
	Type string `json:"type"`
	// text
	Text *string `json:"text,omitempty"`
	// tool_use
	ID    string          `json:"id,omitempty"`
	Name  string          `json:"name,omitempty"`
	Input json.RawMessage `json:"input,omitempty"`
	// tool_result
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   json.RawMessage `json:"content,omitempty"` // a string or text blocks
	IsError   bool            `json:"is_error,omitempty"`
}

func (s *Server) anthropic(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, kind, format string, args ...any) {
		msg := s.problem("anthropic: "+format, args...)
		writeJSON(w, status, map[string]any{"type": "error", "error": map[string]string{"type": kind, "message": msg}})
	}
	if got := r.Header.Get("X-Api-Key"); got != s.cfg.AnthropicKey {
		fail(http.StatusUnauthorized, "authentication_error", "x-api-key %q is not the configured key", got)
		return
	}
	if r.Header.Get("Anthropic-Version") == "" {
		fail(http.StatusBadRequest, "invalid_request_error", "anthropic-version header missing")
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		fail(http.StatusBadRequest, "invalid_request_error", "read body: %v", err)
		return
	}
	var in anthropicRequest
	if err := json.Unmarshal(body, &in); err != nil {
		fail(http.StatusBadRequest, "invalid_request_error", "decode body: %v", err)
		return
	}
	if in.Model == "" || in.AnthropicVersion != "" {
		fail(http.StatusBadRequest, "invalid_request_error", "model %q, anthropic_version %q: want a model and no version", in.Model, in.AnthropicVersion)
		return
	}
	req, err := in.normalize()
	if err != nil {
		fail(http.StatusBadRequest, "invalid_request_error", "%v", err)
		return
	}
	req.Wire, req.Model, req.Stream = WireAnthropic, in.Model, in.Stream
	req = s.answer(req, "toolu_")
	msg := s.anthropicResponse(req)
	if !req.Stream {
		writeJSON(w, http.StatusOK, msg)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	for _, ev := range anthropicEvents(msg) {
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Type, ev.Data)
		if err := rc.Flush(); err != nil {
			return
		}
	}
}

// normalize checks the request the way the API does and converts it.
func (in anthropicRequest) normalize() (Request, error) {
	var req Request
	if in.MaxTokens <= 0 {
		return req, errors.New("max_tokens: must be positive")
	}
	if len(in.Messages) == 0 || in.Messages[0].Role != "user" {
		return req, errors.New("messages: must start with a user message")
	}
	if len(in.System) > 0 {
		text, err := blocksText(in.System)
		if err != nil {
			return req, fmt.Errorf("system: %w", err)
		}
		req.System = text
	}
	for _, t := range in.Tools {
		if t.Name == "" || t.InputSchema.Type != "object" {
			return req, fmt.Errorf("tools: %q needs a name and an object input_schema", t.Name)
		}
		req.Tools = append(req.Tools, t.Name)
	}
	for i, m := range in.Messages {
		if m.Role != "user" && m.Role != "assistant" {
			return req, fmt.Errorf("messages[%d].role: %q", i, m.Role)
		}
		msg, err := anthropicToMessage(m)
		if err != nil {
			return req, fmt.Errorf("messages[%d]: %w", i, err)
		}
		req.Messages = append(req.Messages, msg)
	}
	if err := checkToolPairing(req.Messages); err != nil {
		return req, err
	}
	return req, nil
}

func anthropicToMessage(m anthropicMessage) (Message, error) {
	msg := Message{Role: m.Role}
	var s string
	if json.Unmarshal(m.Content, &s) == nil {
		msg.Text = s
		return msg, nil
	}
	var blocks []anthropicBlock
	if err := json.Unmarshal(m.Content, &blocks); err != nil {
		return msg, fmt.Errorf("content: %w", err)
	}
	var texts []string
	for _, b := range blocks {
		switch b.Type {
		case "text":
			if b.Text == nil {
				return msg, errors.New("text block without text")
			}
			texts = append(texts, *b.Text)
		case "tool_use":
			if m.Role != "assistant" || b.ID == "" {
				return msg, errors.New("tool_use belongs to an assistant message and needs an id")
			}
			var input map[string]any
			if err := json.Unmarshal(b.Input, &input); err != nil {
				return msg, fmt.Errorf("tool_use input: %w", err)
			}
			msg.Calls = append(msg.Calls, Call{ID: b.ID, Name: b.Name, Input: input})
		case "tool_result":
			if m.Role != "user" {
				return msg, errors.New("tool_result belongs to a user message")
			}
			content, err := blocksText(b.Content)
			if err != nil {
				return msg, fmt.Errorf("tool_result content: %w", err)
			}
			msg.Results = append(msg.Results, Result{CallID: b.ToolUseID, Content: content, IsError: b.IsError})
		default:
			return msg, fmt.Errorf("unexpected block type %q", b.Type)
		}
	}
	msg.Text = strings.Join(texts, "\n")
	if len(msg.Results) > 0 {
		msg.Role = "tool"
	}
	return msg, nil
}

// blocksText reads content that is a string or a list of text blocks.
func blocksText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var blocks []anthropicBlock
	if err := json.Unmarshal(raw, &blocks); err != nil {
		return "", err
	}
	var texts []string
	for _, b := range blocks {
		if b.Type != "text" || b.Text == nil {
			return "", fmt.Errorf("block type %q where text was expected", b.Type)
		}
		texts = append(texts, *b.Text)
	}
	return strings.Join(texts, "\n"), nil
}

// anthropicResponseMessage is the Messages API's response body.
type anthropicResponseMessage struct {
	ID           string           `json:"id"`
	Type         string           `json:"type"`
	Role         string           `json:"role"`
	Model        string           `json:"model"`
	Content      []anthropicBlock `json:"content"`
	StopReason   string           `json:"stop_reason"`
	StopSequence *string          `json:"stop_sequence"`
	Usage        anthropicUsage   `json:"usage"`
}

type anthropicUsage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
}

func (s *Server) anthropicResponse(req Request) anthropicResponseMessage {
	msg := anthropicResponseMessage{
		ID: s.newID("msg_"), Type: "message", Role: "assistant", Model: req.Model,
		StopReason: "end_turn",
		Usage:      anthropicUsage{InputTokens: countTokens(req), OutputTokens: len(strings.Fields(req.Reply.Text)) + 4*len(req.Reply.Calls)},
	}
	if req.Reply.Text != "" {
		text := req.Reply.Text
		msg.Content = append(msg.Content, anthropicBlock{Type: "text", Text: &text})
	}
	for _, c := range req.Reply.Calls {
		input, _ := json.Marshal(c.Input)
		msg.Content = append(msg.Content, anthropicBlock{Type: "tool_use", ID: c.ID, Name: c.Name, Input: input})
		msg.StopReason = "tool_use"
	}
	return msg
}

// sseEvent is one streamed event: its type and JSON.
type sseEvent struct {
	Type string
	Data []byte
}

// anthropicEvents is msg as the Messages API streams it: message_start,
// then per block a start, deltas and a stop, then message_delta and
// message_stop.
func anthropicEvents(msg anthropicResponseMessage) []sseEvent {
	var out []sseEvent
	add := func(v map[string]any) {
		data, _ := json.Marshal(v)
		out = append(out, sseEvent{Type: v["type"].(string), Data: data})
	}
	start := msg
	start.Content = []anthropicBlock{}
	start.StopReason = ""
	start.Usage.OutputTokens = 1
	add(map[string]any{"type": "message_start", "message": map[string]any{
		"id": start.ID, "type": start.Type, "role": start.Role, "model": start.Model, "content": start.Content,
		"stop_reason": nil, "stop_sequence": nil, "usage": start.Usage,
	}})
	add(map[string]any{"type": "ping"})
	for i, b := range msg.Content {
		switch b.Type {
		case "text":
			add(map[string]any{"type": "content_block_start", "index": i, "content_block": map[string]any{"type": "text", "text": ""}})
			for _, piece := range chunks(*b.Text) {
				add(map[string]any{"type": "content_block_delta", "index": i, "delta": map[string]any{"type": "text_delta", "text": piece}})
			}
		case "tool_use":
			add(map[string]any{"type": "content_block_start", "index": i, "content_block": map[string]any{
				"type": "tool_use", "id": b.ID, "name": b.Name, "input": map[string]any{}}})
			for _, piece := range halves(string(b.Input)) {
				add(map[string]any{"type": "content_block_delta", "index": i, "delta": map[string]any{"type": "input_json_delta", "partial_json": piece}})
			}
		}
		add(map[string]any{"type": "content_block_stop", "index": i})
	}
	add(map[string]any{"type": "message_delta", "delta": map[string]any{"stop_reason": msg.StopReason, "stop_sequence": nil},
		"usage": map[string]any{"output_tokens": msg.Usage.OutputTokens}})
	add(map[string]any{"type": "message_stop"})
	return out
}
