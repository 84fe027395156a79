package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/app/apptest"
	"github.com/berth-dev/berth/examples/claude/internal/fakemodel"
)

// chat is one session with the agent, checked turn by turn against what
// the fake model received.
type chat struct {
	t      *testing.T
	h      *apptest.Harness
	fake   *fakemodel.Server
	p      provider
	stream bool
}

// turnOutcome is one invocation: the reply, what streamed, and the model
// calls it caused.
type turnOutcome struct {
	reply    reply
	deltas   []string
	requests []fakemodel.Request
}

func (c *chat) ask(prompt, userID string) turnOutcome {
	t := c.t
	t.Helper()
	mark := len(c.fake.Requests())
	payload := map[string]any{"prompt": prompt, "user_id": userID}
	if c.stream {
		payload["stream"] = true
	}
	res := c.h.Invoke(payload)
	out := turnOutcome{requests: c.fake.Since(mark)}
	if res.Status != 200 {
		t.Fatalf("%q: status %d: %s", prompt, res.Status, res.Body)
	}
	if !c.stream {
		if res.ContentType != "application/json" {
			t.Fatalf("%q: content type %q", prompt, res.ContentType)
		}
		if err := res.Decode(&out.reply); err != nil {
			t.Fatal(err)
		}
	} else {
		if res.ContentType != "text/event-stream" || len(res.Events) == 0 {
			t.Fatalf("%q: %s with %d events: %s", prompt, res.ContentType, len(res.Events), res.Body)
		}
		var tools []toolUse
		for i, raw := range res.Events {
			var ev streamEvent
			if err := json.Unmarshal(raw, &ev); err != nil {
				t.Fatalf("event %d %s: %v", i, raw, err)
			}
			last := i == len(res.Events)-1
			switch {
			case ev.Type == "delta" && !last:
				out.deltas = append(out.deltas, ev.Text)
			case ev.Type == "tool" && !last && ev.Tool != nil:
				tools = append(tools, *ev.Tool)
			case ev.Type == "done" && last && ev.Reply != nil:
				out.reply = *ev.Reply
			default:
				t.Fatalf("%q: unexpected event %d of %d: %s", prompt, i+1, len(res.Events), raw)
			}
		}
		if got := strings.TrimSpace(strings.Join(out.deltas, "")); got != out.reply.Answer {
			t.Errorf("%q: deltas spell %q, the reply says %q", prompt, got, out.reply.Answer)
		}
		if len(out.deltas) < 2 {
			t.Errorf("%q: the answer arrived in %d delta(s), want it streamed in pieces", prompt, len(out.deltas))
		}
		if !reflect.DeepEqual(tools, out.reply.Tools) {
			t.Errorf("%q: tool events %+v, reply lists %+v", prompt, tools, out.reply.Tools)
		}
	}
	t.Logf("%q → %q (tools %v, %d model calls)", prompt, out.reply.Answer, toolNames(out.reply.Tools), len(out.requests))
	if out.reply.SessionID != c.h.SessionID || out.reply.RequestID == "" {
		t.Errorf("%q: session %q request %q, want session %q", prompt, out.reply.SessionID, out.reply.RequestID, c.h.SessionID)
	}
	if len(out.requests) == 0 {
		t.Fatalf("%q: the model was never called", prompt)
	}
	for i, r := range out.requests {
		if r.Wire != c.p.wire || r.Model != c.p.model || r.Stream != c.stream {
			t.Errorf("%q: model call %d went %s/%s stream=%v, want %s/%s stream=%v",
				prompt, i, r.Wire, r.Model, r.Stream, c.p.wire, c.p.model, c.stream)
		}
	}
	return out
}

func toolNames(tools []toolUse) []string {
	var names []string
	for _, tu := range tools {
		names = append(names, tu.Name)
	}
	return names
}

// TestTutorialConversation runs the tutorial's conversation against every
// provider's wire format, answered and streamed, with every session in its
// own agent process as under berth.
func TestTutorialConversation(t *testing.T) {
	fake := newFake(t)
	for _, p := range providers {
		for _, stream := range []bool{false, true} {
			name := p.name + "/json"
			if stream {
				name = p.name + "/stream"
			}
			t.Run(name, func(t *testing.T) { tutorialConversation(t, fake, p, stream) })
		}
	}
}

func tutorialConversation(t *testing.T, fake *fakemodel.Server, p provider, stream bool) {
	s1 := startAgent(t, p.env(fake))
	c1 := &chat{t: t, h: apptest.Connect(t, s1.url), fake: fake, p: p, stream: stream}
	prompts := []string{"How is the weather outside?", "what is 2×5", "and that plus 34?"}

	// 1. The weather: a tool call, and the user greeted by the name the
	// system prompt gave the model.
	weather := c1.ask(prompts[0], "1")
	name := userNames["1"]
	if weather.reply.UserName != name || !strings.Contains(weather.reply.Answer, name) {
		t.Errorf("weather answer %q for %q, want %s greeted", weather.reply.Answer, weather.reply.UserName, name)
	}
	if len(weather.reply.Tools) != 1 || weather.reply.Tools[0].Name != "get_weather" ||
		!strings.Contains(weather.reply.Answer, weather.reply.Tools[0].Output) {
		t.Errorf("weather turn used %+v and answered %q, want the weather tool's answer", weather.reply.Tools, weather.reply.Answer)
	}
	first := weather.requests[0]
	if !strings.Contains(first.System, name) || !slices.Equal(first.Tools, []string{"calculator", "get_weather", "get_time"}) {
		t.Errorf("the model got system %q and tools %q", first.System, first.Tools)
	}
	if len(weather.requests) != 2 {
		t.Errorf("weather turn made %d model calls, want 2 (tool call, then answer)", len(weather.requests))
	}

	// 2. A product, worked out by the calculator tool.
	product := c1.ask(prompts[1], "1")
	ten := fmt.Sprint(2 * 5)
	if len(product.reply.Tools) != 1 || product.reply.Tools[0].Name != "calculator" || product.reply.Tools[0].Output != ten {
		t.Fatalf("2×5 used tools %+v, want the calculator answering %s", product.reply.Tools, ten)
	}
	if !strings.Contains(product.reply.Answer, ten) {
		t.Errorf("2×5 answer %q lacks %s", product.reply.Answer, ten)
	}

	// 3. "and that plus 34?" only makes sense with the history: the model
	// must have received the earlier prompts and the calculator's 10.
	sum := c1.ask(prompts[2], "1")
	want := fmt.Sprint(2*5 + 34)
	if !strings.Contains(sum.reply.Answer, want) {
		t.Errorf("'and that plus 34?' answered %q, want %s", sum.reply.Answer, want)
	}
	if len(sum.reply.Tools) != 1 || sum.reply.Tools[0].Output != want || !strings.Contains(string(sum.reply.Tools[0].Input), ten) {
		t.Errorf("'and that plus 34?' used %+v, want the calculator adding 34 to %s", sum.reply.Tools, ten)
	}
	if got := sum.requests[0].UserPrompts(); !slices.Equal(got, prompts) {
		t.Errorf("the model saw the user prompts %q, want the whole conversation %q", got, prompts)
	}
	if sum.reply.Turn != 3 || !slices.Equal(sum.reply.Remembered, prompts) {
		t.Errorf("turn %d remembering %q, want turn 3 remembering %q", sum.reply.Turn, sum.reply.Remembered, prompts)
	}
	if sum.reply.Instance != weather.reply.Instance || sum.reply.PID != s1.cmd.Process.Pid {
		t.Errorf("session 1 answered from %s/%d and %s/%d", weather.reply.Instance, weather.reply.PID, sum.reply.Instance, sum.reply.PID)
	}

	// 4. A new session is a new process with an empty conversation.
	s2 := startAgent(t, p.env(fake))
	c2 := &chat{t: t, h: apptest.Connect(t, s2.url), fake: fake, p: p, stream: stream}
	other := c2.ask("and plus 10?", "1")
	if other.reply.Instance == sum.reply.Instance || other.reply.PID != s2.cmd.Process.Pid {
		t.Errorf("the new session was answered by instance %s, pid %d", other.reply.Instance, other.reply.PID)
	}
	if other.reply.Turn != 1 || !slices.Equal(other.reply.Remembered, []string{"and plus 10?"}) {
		t.Errorf("the new session is on turn %d remembering %q", other.reply.Turn, other.reply.Remembered)
	}
	if got := other.requests[0].UserPrompts(); len(other.requests) != 1 || !slices.Equal(got, []string{"and plus 10?"}) {
		t.Errorf("the new session sent %d model call(s), the first with prompts %q", len(other.requests), got)
	}
	for _, leaked := range []string{want, fmt.Sprint(2*5 + 34 + 10), fmt.Sprint(2*5 + 10)} {
		if strings.Contains(other.reply.Answer, leaked) {
			t.Errorf("the new session answered %q, which builds on session 1's result", other.reply.Answer)
		}
	}
	if len(other.reply.Tools) != 0 {
		t.Errorf("the new session computed something: %+v", other.reply.Tools)
	}
}

// inProcess builds the agent in this process around conv, talking to the
// fake through the Anthropic API with the given key.
func inProcess(t *testing.T, fake *fakemodel.Server, conv *conversation, key string) *apptest.Harness {
	t.Helper()
	env := map[string]string{EnvProvider: ProviderAnthropic, envAnthropicBaseURL: fake.URL, envAnthropicKey: key}
	cfg, err := configFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	model, err := cfg.languageModel(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return apptest.New(t, newAgent(conv, model, cfg, slog.New(slog.DiscardHandler)))
}

func TestPayloadAndHeadersPassThrough(t *testing.T) {
	h := inProcess(t, newFake(t), newConversation(), testAnthropicKey)
	payload := map[string]any{
		"prompt":       "hello",
		"user_id":      float64(2),
		"preferences":  map[string]any{"units": "metric", "tone": "brief"},
		"context_data": []any{"a", float64(2), true, nil},
	}
	res := h.Invoke(payload, apptest.WithCustomHeader("Tenant", "acme"), apptest.WithHeader("X-Not-Custom", "ignored"))
	var r reply
	if res.Status != 200 || res.Decode(&r) != nil {
		t.Fatalf("%d %s", res.Status, res.Body)
	}
	var echoed map[string]any
	if err := json.Unmarshal(r.Payload, &echoed); err != nil || !reflect.DeepEqual(echoed, payload) {
		t.Errorf("payload came back as %s (%v), want %v", r.Payload, err, payload)
	}
	if want := map[string]string{api.HeaderCustomPrefix + "Tenant": "acme"}; !reflect.DeepEqual(r.CustomHeaders, want) {
		t.Errorf("custom_headers %v, want %v", r.CustomHeaders, want)
	}
	if r.UserName != userNames["2"] || !strings.Contains(r.Answer, userNames["2"]) {
		t.Errorf("numeric user_id 2: user_name %q, answer %q", r.UserName, r.Answer)
	}
	if r.Model != ProviderAnthropic+"/"+DefaultAnthropicModel || r.Usage.InputTokens == 0 || r.Usage.OutputTokens == 0 {
		t.Errorf("model %q usage %+v", r.Model, r.Usage)
	}
}

func TestUnknownUserIsNotNamed(t *testing.T) {
	fake := newFake(t)
	h := inProcess(t, fake, newConversation(), testAnthropicKey)
	res := h.Invoke(map[string]any{"prompt": "hi", "user_id": "42"})
	var r reply
	if res.Status != 200 || res.Decode(&r) != nil {
		t.Fatalf("%d %s", res.Status, res.Body)
	}
	sys := fake.Requests()[0].System
	if r.UserName != unknownUser || strings.Contains(sys, "user's name is") {
		t.Errorf("user 42 is %q; system prompt %q", r.UserName, sys)
	}
}

func TestRejectsPayloadsWithoutAPrompt(t *testing.T) {
	fake := newFake(t)
	h := inProcess(t, fake, newConversation(), testAnthropicKey)
	for _, tc := range []struct {
		name    string
		payload []byte
	}{
		{"string", []byte(`"hi"`)},
		{"array", []byte(`[1]`)},
		{"null", []byte(`null`)},
		{"prompt not a string", []byte(`{"prompt": 5}`)},
		{"no prompt", []byte(`{"user_id": "1"}`)},
		{"blank prompt", []byte(`{"prompt": "  "}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if res := h.Invoke(tc.payload); res.Status != 400 || res.Error() == "" {
				t.Errorf("status %d error %q, want 400 with an error", res.Status, res.Error())
			}
		})
	}
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("bad payloads reached the model %d time(s)", n)
	}
}

// A turn the model refuses fails the invocation and leaves the
// conversation as it was, so the next turn starts clean.
func TestFailedTurnLeavesTheConversationAlone(t *testing.T) {
	fake := newFake(t)
	conv := newConversation()
	bad := inProcess(t, fake, conv, "sk-ant-wrong-key")
	res := bad.Invoke(map[string]any{"prompt": "How much is 2X5?"})
	if res.Status != 500 || !strings.Contains(res.Error(), "x-api-key") {
		t.Fatalf("with a wrong key: %d %s, want 500 carrying the API's complaint", res.Status, res.Body)
	}
	if len(fake.Problems()) != 1 {
		t.Fatalf("the fake refused %d request(s), want 1", len(fake.Problems()))
	}
	// Forget the expected refusal so the cleanup check stays meaningful.
	fake.ForgetProblems()

	good := inProcess(t, fake, conv, testAnthropicKey)
	var r reply
	if res := good.Invoke(map[string]any{"prompt": "and that plus 34?"}); res.Status != 200 || res.Decode(&r) != nil {
		t.Fatalf("%d %s", res.Status, res.Body)
	}
	if r.Turn != 1 || len(r.Tools) != 0 || len(fake.Requests()[0].Messages) != 1 {
		t.Errorf("after a failed turn: turn %d, tools %+v, %d message(s) sent", r.Turn, r.Tools, len(fake.Requests()[0].Messages))
	}
}

// Concurrent invocations of one session take turns: none is lost and the
// history the model sees stays well formed (the fake refuses otherwise).
func TestConcurrentTurnsTakeTurns(t *testing.T) {
	fake := newFake(t)
	h := inProcess(t, fake, newConversation(), testAnthropicKey)
	const n = 8
	var wg sync.WaitGroup
	turns := make(chan int, n)
	for i := range n {
		wg.Go(func() {
			res, err := h.Do(map[string]any{"prompt": fmt.Sprintf("what is %d×3", i+1)})
			var r reply
			if err != nil || res.Status != 200 || res.Decode(&r) != nil {
				t.Errorf("call %d: %v %v", i, err, res)
				return
			}
			turns <- r.Turn
		})
	}
	wg.Wait()
	close(turns)
	var got []int
	for turn := range turns {
		got = append(got, turn)
	}
	slices.Sort(got)
	for i, turn := range got {
		if turn != i+1 {
			t.Fatalf("turns %v, want 1..%d once each", got, n)
		}
	}
	last := fake.Requests()[len(fake.Requests())-1]
	if prompts := last.UserPrompts(); len(prompts) != n {
		t.Errorf("the last model call carried %d prompts, want %d", len(prompts), n)
	}
}
