package fakemodel

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// The brain understands just enough of the tutorial's conversation to play
// the model: the weather, a product ("2X5", "2×5", "2 times 5"), and a
// continuation ("and that plus 34?") that needs an earlier result, which it
// looks for in the history it was sent.

var (
	nameRE     = regexp.MustCompile(`[Tt]he user's name is ([^.;,]+)`)
	number     = `(\d+(?:\.\d+)?)`
	productRE  = regexp.MustCompile(number + `\s*(?:[xX×*]|times)\s*` + number)
	continueRE = regexp.MustCompile(`(?i)(plus|minus|times|divided by|\+|-)\s*` + number)
	operators  = map[string]string{"plus": "+", "minus": "-", "times": "*", "divided by": "/", "+": "+", "-": "-"}
)

// think decides the model's reply to req. newID names tool calls.
func think(req Request, newID func() string) Reply {
	greeting := "Hello!"
	if m := nameRE.FindStringSubmatch(req.System); m != nil {
		greeting = "Hello " + strings.TrimSpace(m[1]) + "!"
	}
	if len(req.Messages) == 0 {
		return Reply{Text: greeting + " You sent me no messages."}
	}
	last := req.Messages[len(req.Messages)-1]
	if len(last.Results) > 0 {
		return Reply{Text: greeting + " " + readResults(req.Messages, last.Results)}
	}

	prompt := last.Text
	call := func(tool string, input map[string]any) Reply {
		if !slices.Contains(req.Tools, tool) {
			return Reply{Text: fmt.Sprintf("%s I would need a %s tool for that, and I have none.", greeting, tool)}
		}
		return Reply{Calls: []Call{{ID: newID(), Name: tool, Input: input}}}
	}
	lower := strings.ToLower(prompt)
	switch {
	case strings.Contains(lower, "weather"):
		return call("get_weather", map[string]any{"location": "outside"})
	case productRE.MatchString(prompt):
		m := productRE.FindStringSubmatch(prompt)
		return call("calculator", map[string]any{"expression": m[1] + " * " + m[2]})
	case continueRE.MatchString(prompt):
		m := continueRE.FindStringSubmatch(prompt)
		prev, ok := previousResult(req.Messages[:len(req.Messages)-1])
		if !ok {
			return Reply{Text: fmt.Sprintf("%s There is no earlier result in this conversation to continue from. "+
				"Which number should I start with?", greeting)}
		}
		return call("calculator", map[string]any{"expression": prev + " " + operators[strings.ToLower(m[1])] + " " + m[2]})
	case strings.Contains(lower, "time"):
		return call("get_time", map[string]any{})
	}
	return Reply{Text: fmt.Sprintf("%s You said %q; I can see %d earlier message(s) in this conversation.",
		greeting, prompt, len(req.Messages)-1)}
}

// previousResult finds the latest successful calculator result in msgs.
func previousResult(msgs []Message) (string, bool) {
	for i := len(msgs) - 1; i >= 0; i-- {
		for _, r := range slices.Backward(msgs[i].Results) {
			if c, ok := findCall(msgs[:i], r.CallID); ok && c.Name == "calculator" && !r.IsError {
				return strings.TrimSpace(r.Content), true
			}
		}
	}
	return "", false
}

func findCall(msgs []Message, id string) (Call, bool) {
	for _, m := range slices.Backward(msgs) {
		for _, c := range m.Calls {
			if c.ID == id {
				return c, true
			}
		}
	}
	return Call{}, false
}

// readResults turns the tool results that end the conversation into prose.
func readResults(msgs []Message, results []Result) string {
	var parts []string
	for _, r := range results {
		c, _ := findCall(msgs, r.CallID)
		switch {
		case r.IsError:
			parts = append(parts, fmt.Sprintf("The %s tool failed: %s.", c.Name, r.Content))
		case c.Name == "calculator":
			parts = append(parts, fmt.Sprintf("%v = %s.", c.Input["expression"], r.Content))
		case c.Name == "get_weather":
			parts = append(parts, fmt.Sprintf("It's %s outside.", r.Content))
		case c.Name == "get_time":
			parts = append(parts, fmt.Sprintf("It is %s.", r.Content))
		default:
			parts = append(parts, fmt.Sprintf("The %s tool says %q.", c.Name, r.Content))
		}
	}
	return strings.Join(parts, " ")
}
