package main

import (
	"errors"
	"testing"
)

func TestCalculate(t *testing.T) {
	ten := 10.0
	tests := []struct {
		prompt   string
		prev     *float64
		want     float64
		wantExpr string
		wantErr  error
	}{
		{prompt: "How much is 2X5?", want: 2 * 5, wantExpr: "2 × 5"},
		{prompt: "what is 2x5", want: 2 * 5, wantExpr: "2 × 5"},
		{prompt: "and that plus 34?", prev: &ten, want: ten + 34, wantExpr: "10 + 34"},
		{prompt: "And plus 10?", prev: &ten, want: ten + 10, wantExpr: "10 + 10"},
		{prompt: "And plus 10?", wantErr: errNoPrevious},
		{prompt: "and that plus 34?", wantErr: errNoPrevious},
		{prompt: "minus 4", prev: &ten, want: ten - 4, wantExpr: "10 - 4"},
		{prompt: "1 + 2 * 3", want: 1 + 2*3, wantExpr: "1 + 2 × 3"},
		{prompt: "12 / 4 - 1", want: 12.0/4 - 1, wantExpr: "12 ÷ 4 - 1"},
		{prompt: "7 divided by 2", want: 7.0 / 2, wantExpr: "7 ÷ 2"},
		{prompt: "1.5 times 4", want: 1.5 * 4, wantExpr: "1.5 × 4"},
		{prompt: "it multiplied by 3", prev: &ten, want: ten * 3, wantExpr: "10 × 3"},
		{prompt: "3 plus 4, and 99 bottles", want: 3 + 4, wantExpr: "3 + 4"},
		{prompt: "9 ÷ 0", wantErr: errDivideByZero},
		{prompt: "How is the weather outside?", wantErr: errNoArithmetic},
		{prompt: "I have 2 cats", wantErr: errNoArithmetic},
		{prompt: "what is that?", prev: &ten, wantErr: errNoArithmetic},
		{prompt: "2 plus", wantErr: errNoArithmetic},
		{prompt: "2 + * 3", wantErr: errNoArithmetic},
		{prompt: "", wantErr: errNoArithmetic},
	}
	for _, tc := range tests {
		t.Run(tc.prompt, func(t *testing.T) {
			got, err := calculate(tc.prompt, tc.prev)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("calculate(%q) error = %v, want %v", tc.prompt, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("calculate(%q): %v", tc.prompt, err)
			}
			if got.value != tc.want || got.expr != tc.wantExpr {
				t.Errorf("calculate(%q) = %s = %v, want %s = %v", tc.prompt, got.expr, got.value, tc.wantExpr, tc.want)
			}
		})
	}
}
