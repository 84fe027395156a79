package main

import (
	"errors"
	"strconv"
	"strings"
	"unicode"
)

// The tutorial's agent had a calculator tool and a model to read the
// question. This agent has only calculate: a tiny reader for arithmetic in a
// prompt, which can continue from the previous result ("and that plus 34?").
// It knows + - × ÷ (as symbols or words), applies × and ÷ before + and -, and
// has no parentheses or negative literals.

var (
	errNoArithmetic = errors.New("no arithmetic in the prompt")
	errNoPrevious   = errors.New("no previous result to continue from")
	errDivideByZero = errors.New("division by zero")
)

type tokenKind int

const (
	tokNumber   tokenKind = iota
	tokOperator           // op holds '+', '-', '*' or '/'
	tokPrevious           // "that", "it": the previous result
)

type token struct {
	kind tokenKind
	num  float64
	op   byte
}

// operatorWords and previousWords are the words calculate understands; any
// other word is ignored.
var (
	operatorWords = map[string]byte{
		"plus": '+', "add": '+', "added": '+',
		"minus": '-', "subtract": '-', "less": '-',
		"times": '*', "x": '*', "multiplied": '*', "multiply": '*',
		"divided": '/', "over": '/',
	}
	previousWords = map[string]bool{"that": true, "it": true, "result": true}
	symbols       = map[rune]byte{'+': '+', '-': '-', '*': '*', '×': '*', '/': '/', '÷': '/'}
	printable     = map[byte]string{'+': "+", '-': "-", '*': "×", '/': "÷"}
)

func tokenize(s string) []token {
	var out []token
	rs := []rune(s)
	for i := 0; i < len(rs); {
		r := rs[i]
		switch {
		case unicode.IsDigit(r) || r == '.' && i+1 < len(rs) && unicode.IsDigit(rs[i+1]):
			j := i
			for j < len(rs) && (unicode.IsDigit(rs[j]) || rs[j] == '.') {
				j++
			}
			if n, err := strconv.ParseFloat(string(rs[i:j]), 64); err == nil {
				out = append(out, token{kind: tokNumber, num: n})
			}
			i = j
		case unicode.IsLetter(r):
			j := i
			for j < len(rs) && unicode.IsLetter(rs[j]) {
				j++
			}
			word := strings.ToLower(string(rs[i:j]))
			if op, ok := operatorWords[word]; ok {
				out = append(out, token{kind: tokOperator, op: op})
			} else if previousWords[word] {
				out = append(out, token{kind: tokPrevious})
			}
			i = j
		default:
			if op, ok := symbols[r]; ok {
				out = append(out, token{kind: tokOperator, op: op})
			}
			i++
		}
	}
	return out
}

// calculation is one evaluated expression.
type calculation struct {
	expr  string // e.g. "10 + 34"
	value float64
}

// calculate finds the arithmetic in prompt and evaluates it. prev is the last
// result in this conversation, nil if there is none. A prompt that starts
// with an operator ("and plus 10?") or says "that" continues from prev.
func calculate(prompt string, prev *float64) (calculation, error) {
	var (
		operands []float64
		ops      []byte
		// wantOperand is true while the next token must be a number.
		wantOperand = true
	)
	usePrev := func() error {
		if prev == nil {
			return errNoPrevious
		}
		operands = append(operands, *prev)
		return nil
	}
	toks := tokenize(prompt)
	if len(toks) > 0 && toks[0].kind == tokOperator {
		if err := usePrev(); err != nil {
			return calculation{}, err
		}
		wantOperand = false
	}
scan:
	for _, tok := range toks {
		switch {
		case tok.kind == tokOperator && !wantOperand:
			ops = append(ops, tok.op)
			wantOperand = true
		case tok.kind == tokOperator: // two operators in a row
			return calculation{}, errNoArithmetic
		case !wantOperand: // an operand where an operator should be: the expression has ended
			break scan
		case tok.kind == tokNumber:
			operands = append(operands, tok.num)
			wantOperand = false
		case tok.kind == tokPrevious:
			if err := usePrev(); err != nil {
				return calculation{}, err
			}
			wantOperand = false
		}
	}
	if len(ops) == 0 || wantOperand {
		return calculation{}, errNoArithmetic
	}

	// × and ÷ first, folding into terms; then + and - left to right.
	terms, termOps := []float64{operands[0]}, []byte(nil)
	for i, op := range ops {
		v := operands[i+1]
		last := len(terms) - 1
		switch op {
		case '*':
			terms[last] *= v
		case '/':
			if v == 0 {
				return calculation{}, errDivideByZero
			}
			terms[last] /= v
		default:
			terms = append(terms, v)
			termOps = append(termOps, op)
		}
	}
	value := terms[0]
	for i, op := range termOps {
		if op == '+' {
			value += terms[i+1]
		} else {
			value -= terms[i+1]
		}
	}

	var expr strings.Builder
	expr.WriteString(formatNumber(operands[0]))
	for i, op := range ops {
		expr.WriteString(" " + printable[op] + " " + formatNumber(operands[i+1]))
	}
	return calculation{expr: expr.String(), value: value}, nil
}

func formatNumber(f float64) string {
	return strconv.FormatFloat(f, 'f', -1, 64)
}
