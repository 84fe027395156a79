package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"

	"charm.land/fantasy"
)

// The tutorial's Strands agent had three tools: a calculator, a weather tool
// that always answers "sunny", and the time. These are their Go twins.

type calculatorInput struct {
	Expression string `json:"expression" description:"An arithmetic expression, e.g. (2 + 3) * 4. Supports + - * / % and parentheses."`
}

type weatherInput struct {
	Location string `json:"location,omitempty" description:"Where to check the weather; optional."`
}

type timeInput struct {
	Timezone string `json:"timezone,omitempty" description:"An IANA time zone such as Europe/Paris; UTC when empty."`
}

// tools returns the agent's tools.
func tools() []fantasy.AgentTool {
	return []fantasy.AgentTool{
		fantasy.NewAgentTool("calculator",
			"Evaluate an arithmetic expression exactly. Use it for every calculation.",
			func(_ context.Context, in calculatorInput, _ fantasy.ToolCall) (fantasy.ToolResponse, error) {
				v, err := evaluate(in.Expression)
				if err != nil {
					return fantasy.NewTextErrorResponse(fmt.Sprintf("cannot evaluate %q: %v", in.Expression, err)), nil
				}
				return fantasy.NewTextResponse(formatNumber(v)), nil
			}),
		fantasy.NewAgentTool("get_weather",
			"Get the current weather.",
			func(context.Context, weatherInput, fantasy.ToolCall) (fantasy.ToolResponse, error) {
				return fantasy.NewTextResponse("sunny"), nil
			}),
		fantasy.NewAgentTool("get_time",
			"Get the current date and time.",
			func(_ context.Context, in timeInput, _ fantasy.ToolCall) (fantasy.ToolResponse, error) {
				loc := time.UTC
				if in.Timezone != "" {
					l, err := time.LoadLocation(in.Timezone)
					if err != nil {
						return fantasy.NewTextErrorResponse(fmt.Sprintf("unknown time zone %q", in.Timezone)), nil
					}
					loc = l
				}
				return fantasy.NewTextResponse(time.Now().In(loc).Format(time.RFC1123)), nil
			}),
	}
}

func formatNumber(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

var (
	errSyntax       = errors.New("syntax error")
	errDivideByZero = errors.New("division by zero")
)

// evaluate computes an arithmetic expression: numbers, + - * / % (also ×,
// ÷ and x between numbers), unary minus and parentheses, with the usual
// precedence.
func evaluate(expr string) (float64, error) {
	p := &parser{src: []rune(expr)}
	v, err := p.sum()
	if err != nil {
		return 0, err
	}
	p.space()
	if p.pos < len(p.src) {
		return 0, fmt.Errorf("%w: unexpected %q", errSyntax, string(p.src[p.pos:]))
	}
	return v, nil
}

// parser is a recursive-descent reader over src:
//
//	sum     = product { ("+" | "-") product }
//	product = unary { ("*" | "/" | "%") unary }
//	unary   = "-" unary | "+" unary | primary
//	primary = number | "(" sum ")"
type parser struct {
	src []rune
	pos int
}

func (p *parser) space() {
	for p.pos < len(p.src) && unicode.IsSpace(p.src[p.pos]) {
		p.pos++
	}
}

// op consumes the next rune if it is one of ops (after normalising the
// multiplication and division signs) and returns it.
func (p *parser) op(ops string) (rune, bool) {
	p.space()
	if p.pos >= len(p.src) {
		return 0, false
	}
	r := p.src[p.pos]
	switch r {
	case '×', 'x', 'X':
		r = '*'
	case '÷':
		r = '/'
	}
	if !strings.ContainsRune(ops, r) {
		return 0, false
	}
	p.pos++
	return r, true
}

func (p *parser) sum() (float64, error) {
	v, err := p.product()
	if err != nil {
		return 0, err
	}
	for {
		op, ok := p.op("+-")
		if !ok {
			return v, nil
		}
		w, err := p.product()
		if err != nil {
			return 0, err
		}
		if op == '+' {
			v += w
		} else {
			v -= w
		}
	}
}

func (p *parser) product() (float64, error) {
	v, err := p.unary()
	if err != nil {
		return 0, err
	}
	for {
		op, ok := p.op("*/%")
		if !ok {
			return v, nil
		}
		w, err := p.unary()
		if err != nil {
			return 0, err
		}
		switch {
		case op == '*':
			v *= w
		case w == 0:
			return 0, errDivideByZero
		case op == '/':
			v /= w
		default:
			v = math.Mod(v, w)
		}
	}
}

func (p *parser) unary() (float64, error) {
	if op, ok := p.op("+-"); ok {
		v, err := p.unary()
		if op == '-' {
			v = -v
		}
		return v, err
	}
	return p.primary()
}

func (p *parser) primary() (float64, error) {
	p.space()
	if p.pos >= len(p.src) {
		return 0, fmt.Errorf("%w: expression ends early", errSyntax)
	}
	if p.src[p.pos] == '(' {
		p.pos++
		v, err := p.sum()
		if err != nil {
			return 0, err
		}
		if _, ok := p.op(")"); !ok {
			return 0, fmt.Errorf("%w: missing )", errSyntax)
		}
		return v, nil
	}
	start := p.pos
	for p.pos < len(p.src) && (unicode.IsDigit(p.src[p.pos]) || p.src[p.pos] == '.' || p.src[p.pos] == ',') {
		p.pos++
	}
	if start == p.pos {
		return 0, fmt.Errorf("%w: expected a number at %q", errSyntax, string(p.src[start:]))
	}
	// Thousands separators ("1,000") are common in what models write.
	v, err := strconv.ParseFloat(strings.ReplaceAll(string(p.src[start:p.pos]), ",", ""), 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q is not a number", errSyntax, string(p.src[start:p.pos]))
	}
	return v, nil
}
