package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/berth-dev/berth/app"
)

// userNames is the tutorial's get_user_name table.
var userNames = map[string]string{"1": "Maira", "2": "Mani", "3": "Mark", "4": "Ishan", "5": "Dhawal"}

const unknownUser = "Unknown User"

// memory is one conversation: every prompt heard and the last result.
// Invocations of one session may run concurrently, so it is locked.
type memory struct {
	// mu guards the fields that follow.
	mu       sync.Mutex
	prompts  []string
	last     *float64 // the last arithmetic result, nil until there is one
	restored bool     // durable state was loaded (or there is none)
}

// saved is the conversation as durable session state.
type saved struct {
	Prompts []string `json:"prompts"`
	Last    *float64 `json:"last,omitempty"`
}

// restore loads the conversation from durable session state once per
// process, so a durable session survives its sandbox. Without durability
// it does nothing.
func (m *memory) restore(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.restored {
		return nil
	}
	st, err := app.State()
	if err != nil {
		m.restored = true // not a durable runtime
		return nil
	}
	var sv saved
	ok, err := st.LoadJSON(ctx, &sv)
	if err != nil {
		return err
	}
	if ok {
		m.prompts, m.last = sv.Prompts, sv.Last
	}
	m.restored = true
	return nil
}

// persist saves the conversation when the runtime is durable.
func (m *memory) persist(ctx context.Context) error {
	st, err := app.State()
	if err != nil {
		return nil
	}
	m.mu.Lock()
	sv := saved{Prompts: append([]string(nil), m.prompts...), Last: m.last}
	m.mu.Unlock()
	return st.SaveJSON(ctx, sv)
}

// turn is what one prompt did to the conversation.
type turn struct {
	number     int
	remembered []string
	answer     string
	result     *float64 // this turn's arithmetic result, if any
}

// hear records prompt and answers it from the conversation so far.
func (m *memory) hear(prompt, name string) turn {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.prompts = append(m.prompts, prompt)
	t := turn{number: len(m.prompts), remembered: append([]string(nil), m.prompts...)}

	var parts []string
	if name != unknownUser {
		parts = append(parts, "Hello "+name+"!")
	} else {
		parts = append(parts, "Hello!")
	}
	lower := strings.ToLower(prompt)
	if strings.Contains(lower, "weather") {
		// The tutorial's weather tool always answers sunny.
		parts = append(parts, "It's sunny outside.")
	}
	calc, err := calculate(prompt, m.last)
	switch {
	case err == nil:
		value := calc.value
		m.last, t.result = &value, &value
		parts = append(parts, fmt.Sprintf("%s = %s.", calc.expr, formatNumber(value)))
	case errors.Is(err, errNoPrevious):
		parts = append(parts, "I have no previous result in this session to continue from. What number should I start with?")
	case errors.Is(err, errDivideByZero):
		parts = append(parts, "I can't divide by zero.")
	case len(parts) == 1: // nothing else to say
		parts = append(parts, fmt.Sprintf("You said %q. I remember %d earlier prompt(s) in this session.", prompt, t.number-1))
	}
	t.answer = strings.Join(parts, " ")
	return t
}

// request is the part of the payload this agent reads; every other field is
// passed through untouched.
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

// reply is the agent's answer.
type reply struct {
	SessionID     string            `json:"session_id"`
	RequestID     string            `json:"request_id"`
	UserID        string            `json:"user_id"`
	UserName      string            `json:"user_name"`
	Answer        string            `json:"answer"`
	Result        *float64          `json:"result,omitempty"`
	Turn          int               `json:"turn"`
	Remembered    []string          `json:"remembered"`
	Payload       json.RawMessage   `json:"payload"`
	CustomHeaders map[string]string `json:"custom_headers"`
	PID           int               `json:"pid"`
	// Instance is random per process: PIDs repeat across sandboxes that
	// have their own pid namespace, so it is what tells processes apart.
	Instance string `json:"instance"`
}

// instance identifies this process.
var instance = func() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

// streamEvent is one Server-Sent Event: text deltas, then the whole reply.
type streamEvent struct {
	Type  string `json:"type"` // "delta" or "done"
	Text  string `json:"text,omitempty"`
	Reply *reply `json:"reply,omitempty"`
}

// newAgent builds the tutorial agent around one conversation.
func newAgent(conv *memory, logger *slog.Logger) *app.App {
	a := app.New(app.WithLogger(logger))
	a.Entrypoint(func(ctx context.Context, payload []byte) (any, error) {
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
		if err := conv.restore(ctx); err != nil {
			return nil, fmt.Errorf("restore conversation: %w", err)
		}
		t := conv.hear(req.Prompt, name)
		if err := conv.persist(ctx); err != nil {
			return nil, fmt.Errorf("save conversation: %w", err)
		}
		// The tutorial prints the context it was given; so do we.
		rc.Logger.Info("turn", slog.String("user_name", name), slog.Int("turn", t.number),
			slog.Int("custom_headers", len(rc.CustomHeaders())))

		out := &reply{
			SessionID:     rc.SessionID,
			RequestID:     rc.RequestID,
			UserID:        req.UserID,
			UserName:      name,
			Answer:        t.answer,
			Result:        t.result,
			Turn:          t.number,
			Remembered:    t.remembered,
			Payload:       json.RawMessage(payload),
			CustomHeaders: rc.CustomHeaders(),
			PID:           os.Getpid(),
			Instance:      instance,
		}
		if !req.Stream {
			return out, nil
		}
		return app.Stream(func(send func(any) error) error {
			words := strings.SplitAfter(out.Answer, " ")
			for _, w := range words {
				if err := send(streamEvent{Type: "delta", Text: w}); err != nil {
					return err
				}
			}
			return send(streamEvent{Type: "done", Reply: out})
		}), nil
	})
	return a
}
