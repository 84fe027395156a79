package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"

	"charm.land/fantasy"
	"github.com/berth-dev/berth/app"
)

// userNames is the tutorial's get_user_name table.
var userNames = map[string]string{"1": "Maira", "2": "Mani", "3": "Mark", "4": "Ishan", "5": "Dhawal"}

const unknownUser = "Unknown User"

// maxSteps bounds one turn's model calls (each tool round trip is a step).
const maxSteps = 8

// conversation is one session's memory: every message exchanged with the
// model, tool calls and results included, so a follow-up question reaches
// the model with everything said before it.
type conversation struct {
	// turn is a one-slot semaphore held for a whole turn, which reads the
	// history, talks to the model and appends to the history. Turns of one
	// session therefore run one at a time; waiting honours the caller's ctx.
	turn chan struct{}

	// The fields that follow are read and written only while holding turn.
	messages []fantasy.Message
	prompts  []string
	restored bool // durable state loaded, or the runtime is not durable
}

// savedConversation is the conversation as durable session state, for
// runtimes with `durability: state`: it then outlives the sandbox.
type savedConversation struct {
	Prompts  []string          `json:"prompts"`
	Messages []fantasy.Message `json:"messages"`
}

// restoreLocked loads a durable session's conversation once per process.
func (c *conversation) restoreLocked(ctx context.Context) error {
	if c.restored {
		return nil
	}
	st, err := app.State()
	if err != nil {
		c.restored = true // not a durable runtime
		return nil
	}
	var sv savedConversation
	ok, err := st.LoadJSON(ctx, &sv)
	if err != nil {
		return err
	}
	if ok {
		c.prompts, c.messages = sv.Prompts, sv.Messages
	}
	c.restored = true
	return nil
}

// persistLocked saves the conversation when the runtime is durable.
func (c *conversation) persistLocked(ctx context.Context) error {
	st, err := app.State()
	if err != nil {
		return nil
	}
	return st.SaveJSON(ctx, savedConversation{Prompts: c.prompts, Messages: c.messages})
}

func newConversation() *conversation {
	return &conversation{turn: make(chan struct{}, 1)}
}

// turnResult is what one prompt did.
type turnResult struct {
	number     int
	remembered []string
	answer     string
	tools      []toolUse
	usage      fantasy.Usage
}

// toolUse is one tool call the model made during a turn, with its result.
type toolUse struct {
	Name    string          `json:"name"`
	Input   json.RawMessage `json:"input"`
	Output  string          `json:"output"`
	IsError bool            `json:"is_error,omitempty"`
}

// request is the part of the payload this agent reads; every other field
// is passed through untouched.
type request struct {
	Prompt string
	UserID string
	Stream bool
}

func parseRequest(payload []byte) (request, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil || fields == nil {
		return request{}, &app.HTTPError{Status: http.StatusBadRequest, Detail: "payload must be a JSON object"}
	}
	var req request
	if raw, ok := fields["prompt"]; ok {
		if err := json.Unmarshal(raw, &req.Prompt); err != nil {
			return request{}, &app.HTTPError{Status: http.StatusBadRequest, Detail: "prompt must be a string"}
		}
	}
	if strings.TrimSpace(req.Prompt) == "" {
		return request{}, &app.HTTPError{Status: http.StatusBadRequest, Detail: `payload needs a "prompt" for the model`}
	}
	if raw, ok := fields["user_id"]; ok {
		// The tutorial sends "1"; accept 1 too.
		if err := json.Unmarshal(raw, &req.UserID); err != nil {
			req.UserID = strings.TrimSpace(string(raw))
		}
	}
	if raw, ok := fields["stream"]; ok {
		_ = json.Unmarshal(raw, &req.Stream) // anything but true means no
	}
	return req, nil
}

// reply is the agent's answer; its shape matches examples/tutorial's, so
// berth demo can check either agent.
type reply struct {
	SessionID     string            `json:"session_id"`
	RequestID     string            `json:"request_id"`
	UserID        string            `json:"user_id"`
	UserName      string            `json:"user_name"`
	Answer        string            `json:"answer"`
	Turn          int               `json:"turn"`
	Remembered    []string          `json:"remembered"`
	Tools         []toolUse         `json:"tools"`
	Model         string            `json:"model"`
	Usage         usage             `json:"usage"`
	Payload       json.RawMessage   `json:"payload"`
	CustomHeaders map[string]string `json:"custom_headers"`
	PID           int               `json:"pid"`
	// Instance is random per process: PIDs repeat across sandboxes that
	// have their own pid namespace, so it is what tells processes apart.
	Instance string `json:"instance"`
}

type usage struct {
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
}

// streamEvent is one Server-Sent Event: text deltas and tool results as the
// model produces them, then the whole reply.
type streamEvent struct {
	Type  string   `json:"type"` // "delta", "tool" or "done"
	Text  string   `json:"text,omitempty"`
	Tool  *toolUse `json:"tool,omitempty"`
	Reply *reply   `json:"reply,omitempty"`
}

// instance identifies this process.
var instance = func() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

// agent answers prompts with a model, remembering the conversation.
type agent struct {
	conv  *conversation
	model fantasy.LanguageModel
	cfg   modelConfig
}

// newAgent builds the app around one conversation and one model.
func newAgent(conv *conversation, model fantasy.LanguageModel, cfg modelConfig, logger *slog.Logger) *app.App {
	ag := &agent{conv: conv, model: model, cfg: cfg}
	a := app.New(app.WithLogger(logger))
	a.Entrypoint(ag.handle)
	return a
}

func (ag *agent) handle(ctx context.Context, payload []byte) (any, error) {
	rc := app.RequestFrom(ctx)
	req, err := parseRequest(payload)
	if err != nil {
		return nil, err
	}
	if req.UserID == "" {
		req.UserID = rc.UserID
	}
	name, ok := userNames[req.UserID]
	if !ok {
		name = unknownUser
	}
	out := &reply{
		SessionID:     rc.SessionID,
		RequestID:     rc.RequestID,
		UserID:        req.UserID,
		UserName:      name,
		Model:         ag.cfg.String(),
		Payload:       json.RawMessage(payload),
		CustomHeaders: rc.CustomHeaders(),
		PID:           os.Getpid(),
		Instance:      instance,
	}
	finish := func(t turnResult) {
		out.Answer, out.Turn, out.Remembered, out.Tools = t.answer, t.number, t.remembered, t.tools
		out.Usage = usage{InputTokens: t.usage.InputTokens, OutputTokens: t.usage.OutputTokens}
		rc.Logger.Info("turn", slog.String("user_name", name), slog.Int("turn", t.number),
			slog.Int("tools", len(t.tools)), slog.Int64("input_tokens", t.usage.InputTokens),
			slog.Int64("output_tokens", t.usage.OutputTokens))
	}
	if !req.Stream {
		t, err := ag.converse(ctx, req.Prompt, name, nil)
		if err != nil {
			return nil, err
		}
		finish(t)
		return out, nil
	}
	return app.Stream(func(send func(any) error) error {
		t, err := ag.converse(ctx, req.Prompt, name, func(ev streamEvent) error { return send(ev) })
		if err != nil {
			return err
		}
		finish(t)
		return send(streamEvent{Type: "done", Reply: out})
	}), nil
}

// systemPrompt tells the model who it is talking to.
func systemPrompt(name string) string {
	who := "The user's name is " + name + "; greet them by name."
	if name == unknownUser {
		who = "You do not know the user's name."
	}
	return "You are a helpful assistant. " + who + " Use the calculator tool for every calculation, " +
		"get_weather for the weather and get_time for the date or time. When the user refers to an " +
		"earlier result, take it from this conversation; if there is none, say so. Answer briefly."
}

// converse runs one turn: the prompt, with the conversation so far, through
// the model and its tool calls. emit, when set, receives stream events as
// they happen. A failed turn leaves the conversation as it was.
func (ag *agent) converse(ctx context.Context, prompt, name string, emit func(streamEvent) error) (turnResult, error) {
	c := ag.conv
	select {
	case c.turn <- struct{}{}:
	case <-ctx.Done():
		return turnResult{}, fmt.Errorf("wait for the previous turn: %w", ctx.Err())
	}
	defer func() { <-c.turn }()
	if err := c.restoreLocked(ctx); err != nil {
		return turnResult{}, fmt.Errorf("restore conversation: %w", err)
	}

	model := fantasy.NewAgent(ag.model,
		fantasy.WithSystemPrompt(systemPrompt(name)),
		fantasy.WithTools(tools()...),
		fantasy.WithMaxOutputTokens(ag.cfg.MaxTokens),
		fantasy.WithStopConditions(fantasy.StepCountIs(maxSteps)))
	history := slices.Clip(c.messages)
	var (
		res *fantasy.AgentResult
		err error
	)
	if emit == nil {
		res, err = model.Generate(ctx, fantasy.AgentCall{Prompt: prompt, Messages: history})
	} else {
		// fantasy reports tool results from its own goroutines.
		var (
			mu     sync.Mutex
			inputs = map[string]string{} // tool call ID → input; guarded by mu
		)
		res, err = model.Stream(ctx, fantasy.AgentStreamCall{
			Prompt:   prompt,
			Messages: history,
			OnTextDelta: func(_, text string) error {
				return emit(streamEvent{Type: "delta", Text: text})
			},
			OnToolCall: func(call fantasy.ToolCallContent) error {
				mu.Lock()
				defer mu.Unlock()
				inputs[call.ToolCallID] = call.Input
				return nil
			},
			OnToolResult: func(res fantasy.ToolResultContent) error {
				mu.Lock()
				use := toolUse{Name: res.ToolName, Input: json.RawMessage(inputs[res.ToolCallID])}
				mu.Unlock()
				use.Output, use.IsError = toolOutput(res.Result)
				return emit(streamEvent{Type: "tool", Tool: &use})
			},
		})
	}
	if err != nil {
		return turnResult{}, fmt.Errorf("ask %s: %w", ag.cfg, err)
	}

	c.prompts = append(c.prompts, prompt)
	c.messages = append(c.messages, fantasy.NewUserMessage(prompt))
	for _, step := range res.Steps {
		c.messages = append(c.messages, step.Messages...)
	}
	if err := c.persistLocked(ctx); err != nil {
		return turnResult{}, fmt.Errorf("save conversation: %w", err)
	}
	t := turnResult{
		number:     len(c.prompts),
		remembered: slices.Clone(c.prompts),
		answer:     strings.TrimSpace(res.Response.Content.Text()),
		tools:      toolUses(res.Steps),
		usage:      res.TotalUsage,
	}
	return t, nil
}

// toolUses lists the tool calls of a turn with their results.
func toolUses(steps []fantasy.StepResult) []toolUse {
	var out []toolUse
	index := map[string]int{} // tool call ID → position in out
	for _, step := range steps {
		for _, c := range step.Content {
			if call, ok := fantasy.AsContentType[fantasy.ToolCallContent](c); ok {
				index[call.ToolCallID] = len(out)
				out = append(out, toolUse{Name: call.ToolName, Input: json.RawMessage(call.Input)})
			}
			if res, ok := fantasy.AsContentType[fantasy.ToolResultContent](c); ok {
				i, ok := index[res.ToolCallID]
				if !ok {
					continue
				}
				out[i].Output, out[i].IsError = toolOutput(res.Result)
			}
		}
	}
	return out
}

// toolOutput is a tool result as text.
func toolOutput(r fantasy.ToolResultOutputContent) (text string, isError bool) {
	switch r := r.(type) {
	case fantasy.ToolResultOutputContentText:
		return r.Text, false
	case fantasy.ToolResultOutputContentError:
		return fmt.Sprint(r.Error), true
	}
	return "", false
}
