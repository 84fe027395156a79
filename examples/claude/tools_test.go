package main

import (
	"context"
	"errors"
	"testing"

	"charm.land/fantasy"
)

func TestEvaluate(t *testing.T) {
	tests := []struct {
		expr string
		want float64
	}{
		{"2*5", 2 * 5},
		{"10 + 34", 10 + 34},
		{"2 × 5", 2 * 5},
		{"2X5", 2 * 5},
		{"12 ÷ 4", 12 / 4},
		{"(1 + 2) * 3", (1 + 2) * 3},
		{"1 + 2 * 3", 1 + 2*3},
		{"-3 + 1", -3 + 1},
		{"-(2 + 3)", -(2 + 3)},
		{"7 / 2", 7.0 / 2},
		{"17 % 5", 17 % 5},
		{"1,000 + 1", 1000 + 1},
		{" 0.5 * 4 ", 0.5 * 4},
	}
	for _, tc := range tests {
		got, err := evaluate(tc.expr)
		if err != nil || got != tc.want {
			t.Errorf("evaluate(%q) = %v, %v; want %v", tc.expr, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		expr string
		want error
	}{
		{"1 / 0", errDivideByZero},
		{"5 % 0", errDivideByZero},
		{"2 +", errSyntax},
		{"(2 + 3", errSyntax},
		{"2 3", errSyntax},
		{"two", errSyntax},
		{"", errSyntax},
	} {
		if _, err := evaluate(tc.expr); !errors.Is(err, tc.want) {
			t.Errorf("evaluate(%q) error %v, want %v", tc.expr, err, tc.want)
		}
	}
}

func TestTools(t *testing.T) {
	byName := map[string]fantasy.AgentTool{}
	for _, tool := range tools() {
		byName[tool.Info().Name] = tool
	}
	run := func(name, input string) fantasy.ToolResponse {
		t.Helper()
		tool, ok := byName[name]
		if !ok {
			t.Fatalf("no tool %q", name)
		}
		res, err := tool.Run(context.Background(), fantasy.ToolCall{ID: "1", Name: name, Input: input})
		if err != nil {
			t.Fatalf("%s(%s): %v", name, input, err)
		}
		return res
	}
	if res := run("calculator", `{"expression": "6 * 7"}`); res.IsError || res.Content != formatNumber(6*7) {
		t.Errorf("calculator: %+v", res)
	}
	if res := run("calculator", `{"expression": "6 /"}`); !res.IsError {
		t.Errorf("calculator on a broken expression: %+v, want an error result for the model", res)
	}
	if res := run("get_weather", `{}`); res.Content != "sunny" {
		t.Errorf("get_weather: %+v", res)
	}
	if res := run("get_time", `{"timezone": "UTC"}`); res.IsError || res.Content == "" {
		t.Errorf("get_time: %+v", res)
	}
	if res := run("get_time", `{"timezone": "Mars/Olympus"}`); !res.IsError {
		t.Errorf("get_time on an unknown zone: %+v", res)
	}
}
