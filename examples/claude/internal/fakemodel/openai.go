package fakemodel

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// OpenAI Chat Completions: POST /v1/chat/completions, as Ollama, vLLM and
// LM Studio serve it. Streams are SSE chunks ending with "data: [DONE]".

type openaiRequest struct {
	Model         string          `json:"model"`
	Messages      []openaiMessage `json:"messages"`
	Tools         []openaiTool    `json:"tools"`
	Stream        bool            `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

type openaiMessage struct {
	Role       string           `json:"role"`
	Content    json.RawMessage  `json:"content,omitempty"` // a string, parts, or null
	ToolCalls  []openaiToolCall `json:"tool_calls,omitempty"`
	ToolCallID string           `json:"tool_call_id,omitempty"`
}

type openaiToolCall struct {
	Index    *int   `json:"index,omitempty"` // stream deltas only
	ID       string `json:"id,omitempty"`
	Type     string `json:"type,omitempty"`
	Function struct {
		Name      string `json:"name,omitempty"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type openaiTool struct {
	Type     string `json:"type"`
	Function struct {
		Name       string `json:"name"`
		Parameters struct {
			Type string `json:"type"`
		} `json:"parameters"`
	} `json:"function"`
}

func (s *Server) openai(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, kind, format string, args ...any) {
		msg := s.problem("openai: "+format, args...)
		writeJSON(w, status, map[string]any{"error": map[string]any{"message": msg, "type": kind, "param": nil, "code": nil}})
	}
	if got, want := r.Header.Get("Authorization"), "Bearer "+s.cfg.OpenAIKey; got != want {
		fail(http.StatusUnauthorized, "invalid_request_error", "authorization %q, want %q", got, want)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		fail(http.StatusBadRequest, "invalid_request_error", "read body: %v", err)
		return
	}
	var in openaiRequest
	if err := json.Unmarshal(body, &in); err != nil {
		fail(http.StatusBadRequest, "invalid_request_error", "decode body: %v", err)
		return
	}
	req, err := in.normalize()
	if err != nil {
		fail(http.StatusBadRequest, "invalid_request_error", "%v", err)
		return
	}
	req.Wire, req.Model, req.Stream = WireOpenAI, in.Model, in.Stream
	req = s.answer(req, "call_")

	id, created := s.newID("chatcmpl-"), time.Now().Unix()
	promptTokens, completionTokens := countTokens(req), len(strings.Fields(req.Reply.Text))+4*len(req.Reply.Calls)
	usage := map[string]int{"prompt_tokens": promptTokens, "completion_tokens": completionTokens, "total_tokens": promptTokens + completionTokens}
	finish := "stop"
	var calls []openaiToolCall
	for _, c := range req.Reply.Calls {
		args, _ := json.Marshal(c.Input)
		var tc openaiToolCall
		tc.ID, tc.Type, tc.Function.Name, tc.Function.Arguments = c.ID, "function", c.Name, string(args)
		calls = append(calls, tc)
		finish = "tool_calls"
	}
	if !req.Stream {
		msg := map[string]any{"role": "assistant", "content": nil, "refusal": nil}
		if req.Reply.Text != "" {
			msg["content"] = req.Reply.Text
		}
		if len(calls) > 0 {
			msg["tool_calls"] = calls
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"id": id, "object": "chat.completion", "created": created, "model": in.Model,
			"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": finish, "logprobs": nil}},
			"usage":   usage,
		})
		return
	}

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(v any) bool {
		data, _ := json.Marshal(v)
		fmt.Fprintf(w, "data: %s\n\n", data)
		return rc.Flush() == nil
	}
	chunk := func(delta map[string]any, finishReason any) map[string]any {
		return map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created, "model": in.Model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finishReason, "logprobs": nil}},
		}
	}
	if !send(chunk(map[string]any{"role": "assistant", "content": ""}, nil)) {
		return
	}
	for _, piece := range chunks(req.Reply.Text) {
		if !send(chunk(map[string]any{"content": piece}, nil)) {
			return
		}
	}
	for i, c := range calls {
		first := map[string]any{"index": i, "id": c.ID, "type": "function", "function": map[string]any{"name": c.Function.Name, "arguments": ""}}
		if !send(chunk(map[string]any{"tool_calls": []any{first}}, nil)) {
			return
		}
		for _, piece := range halves(c.Function.Arguments) {
			if !send(chunk(map[string]any{"tool_calls": []any{map[string]any{"index": i, "function": map[string]any{"arguments": piece}}}}, nil)) {
				return
			}
		}
	}
	if !send(chunk(map[string]any{}, finish)) {
		return
	}
	if in.StreamOptions != nil && in.StreamOptions.IncludeUsage {
		if !send(map[string]any{"id": id, "object": "chat.completion.chunk", "created": created, "model": in.Model,
			"choices": []any{}, "usage": usage}) {
			return
		}
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	_ = rc.Flush()
}

// normalize checks the request the way the API does and converts it.
func (in openaiRequest) normalize() (Request, error) {
	var req Request
	if in.Model == "" {
		return req, errors.New("model: required")
	}
	for _, t := range in.Tools {
		if t.Type != "function" || t.Function.Name == "" || t.Function.Parameters.Type != "object" {
			return req, fmt.Errorf("tools: %q must be a function with object parameters", t.Function.Name)
		}
		req.Tools = append(req.Tools, t.Function.Name)
	}
	for i, m := range in.Messages {
		text, err := openaiText(m.Content)
		if err != nil {
			return req, fmt.Errorf("messages[%d].content: %w", i, err)
		}
		switch m.Role {
		case "system", "developer":
			req.System = strings.TrimSpace(req.System + "\n" + text)
		case "user":
			req.Messages = append(req.Messages, Message{Role: "user", Text: text})
		case "assistant":
			msg := Message{Role: "assistant", Text: text}
			for _, tc := range m.ToolCalls {
				var input map[string]any
				if err := json.Unmarshal([]byte(tc.Function.Arguments), &input); err != nil {
					return req, fmt.Errorf("messages[%d].tool_calls: arguments: %w", i, err)
				}
				msg.Calls = append(msg.Calls, Call{ID: tc.ID, Name: tc.Function.Name, Input: input})
			}
			req.Messages = append(req.Messages, msg)
		case "tool":
			if m.ToolCallID == "" {
				return req, fmt.Errorf("messages[%d]: tool message without tool_call_id", i)
			}
			res := Result{CallID: m.ToolCallID, Content: text}
			// Consecutive tool messages answer one assistant message.
			if n := len(req.Messages); n > 0 && req.Messages[n-1].Role == "tool" {
				req.Messages[n-1].Results = append(req.Messages[n-1].Results, res)
			} else {
				req.Messages = append(req.Messages, Message{Role: "tool", Results: []Result{res}})
			}
		default:
			return req, fmt.Errorf("messages[%d].role: %q", i, m.Role)
		}
	}
	if len(req.Messages) == 0 {
		return req, errors.New("messages: none besides the system prompt")
	}
	if err := checkToolPairing(req.Messages); err != nil {
		return req, err
	}
	return req, nil
}

// openaiText reads content that is a string, text parts, or null.
func openaiText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", err
	}
	var texts []string
	for _, p := range parts {
		if p.Type != "text" {
			return "", fmt.Errorf("part type %q where text was expected", p.Type)
		}
		texts = append(texts, p.Text)
	}
	return strings.Join(texts, "\n"), nil
}
