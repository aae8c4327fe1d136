// Package calicopolicy is a small model of Calico's policy evaluation, for
// checking generated policies packet by packet without a Calico dataplane:
// a parser for the selector language (also used to validate selectors users
// give the controller) and an evaluator of GlobalNetworkPolicies and
// GlobalNetworkSets (order, selectors on host endpoints or pods, pre-DNAT,
// rule matching, end-of-tier deny). It models the features this product
// generates, not all of Calico.
package calicopolicy

import (
	"fmt"
	"strings"
	"unicode"
)

// Selector is a parsed Calico selector.
type Selector struct {
	src  string
	eval func(map[string]string) bool
}

// Matches reports whether labels satisfy the selector.
func (s Selector) Matches(labels map[string]string) bool { return s.eval(labels) }

func (s Selector) String() string { return s.src }

// ValidateSelector parses a selector and reports why it is not one. The
// supported language is Calico's: all(), has(k), !has(k), k == 'v', k != 'v',
// k in {'a','b'}, k not in {...}, k contains|starts with|ends with 'v', !,
// &&, || and parentheses; an empty selector means all().
func ValidateSelector(s string) error {
	_, err := ParseSelector(s)
	return err
}

// ParseSelector parses a Calico selector.
func ParseSelector(s string) (Selector, error) {
	p := &parser{in: s}
	if strings.TrimSpace(s) == "" {
		return Selector{src: s, eval: func(map[string]string) bool { return true }}, nil
	}
	f, err := p.or()
	if err == nil {
		p.skip()
		if p.pos < len(p.in) {
			err = p.errorf("unexpected %q", p.in[p.pos:])
		}
	}
	if err != nil {
		return Selector{}, err
	}
	return Selector{src: s, eval: f}, nil
}

type pred = func(map[string]string) bool

type parser struct {
	in  string
	pos int
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("selector %q at %d: %s", p.in, p.pos, fmt.Sprintf(format, args...))
}

func (p *parser) skip() {
	for p.pos < len(p.in) && unicode.IsSpace(rune(p.in[p.pos])) {
		p.pos++
	}
}

func (p *parser) accept(tok string) bool {
	p.skip()
	if strings.HasPrefix(p.in[p.pos:], tok) {
		p.pos += len(tok)
		return true
	}
	return false
}

// acceptWord accepts a keyword followed by a non-identifier character.
func (p *parser) acceptWord(word string) bool {
	p.skip()
	rest := p.in[p.pos:]
	if strings.HasPrefix(rest, word) && (len(rest) == len(word) || !isKeyChar(rune(rest[len(word)]))) {
		p.pos += len(word)
		return true
	}
	return false
}

func (p *parser) or() (pred, error) {
	left, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.accept("||") {
		right, err := p.and()
		if err != nil {
			return nil, err
		}
		l := left
		left = func(m map[string]string) bool { return l(m) || right(m) }
	}
	return left, nil
}

func (p *parser) and() (pred, error) {
	left, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.accept("&&") {
		right, err := p.unary()
		if err != nil {
			return nil, err
		}
		l := left
		left = func(m map[string]string) bool { return l(m) && right(m) }
	}
	return left, nil
}

func (p *parser) unary() (pred, error) {
	if p.accept("!") {
		inner, err := p.unary()
		if err != nil {
			return nil, err
		}
		return func(m map[string]string) bool { return !inner(m) }, nil
	}
	if p.accept("(") {
		inner, err := p.or()
		if err != nil {
			return nil, err
		}
		if !p.accept(")") {
			return nil, p.errorf("missing )")
		}
		return inner, nil
	}
	if p.acceptWord("all") {
		if !p.accept("(") || !p.accept(")") {
			return nil, p.errorf("all needs ()")
		}
		return func(map[string]string) bool { return true }, nil
	}
	if p.acceptWord("has") {
		if !p.accept("(") {
			return nil, p.errorf("has needs (")
		}
		key, err := p.key()
		if err != nil {
			return nil, err
		}
		if !p.accept(")") {
			return nil, p.errorf("missing )")
		}
		return func(m map[string]string) bool { _, ok := m[key]; return ok }, nil
	}
	key, err := p.key()
	if err != nil {
		return nil, err
	}
	switch {
	case p.accept("=="):
		v, err := p.str()
		return func(m map[string]string) bool { got, ok := m[key]; return ok && got == v }, err
	case p.accept("!="):
		v, err := p.str()
		return func(m map[string]string) bool { got, ok := m[key]; return !ok || got != v }, err
	case p.acceptWord("not"):
		if !p.acceptWord("in") {
			return nil, p.errorf("expected in after not")
		}
		set, err := p.set()
		return func(m map[string]string) bool { got, ok := m[key]; return !ok || !set[got] }, err
	case p.acceptWord("in"):
		set, err := p.set()
		return func(m map[string]string) bool { got, ok := m[key]; return ok && set[got] }, err
	case p.acceptWord("contains"):
		v, err := p.str()
		return func(m map[string]string) bool { got, ok := m[key]; return ok && strings.Contains(got, v) }, err
	case p.acceptWord("starts"):
		if !p.acceptWord("with") {
			return nil, p.errorf("expected with")
		}
		v, err := p.str()
		return func(m map[string]string) bool { got, ok := m[key]; return ok && strings.HasPrefix(got, v) }, err
	case p.acceptWord("ends"):
		if !p.acceptWord("with") {
			return nil, p.errorf("expected with")
		}
		v, err := p.str()
		return func(m map[string]string) bool { got, ok := m[key]; return ok && strings.HasSuffix(got, v) }, err
	}
	return nil, p.errorf("expected an operator after %q", key)
}

func isKeyChar(r rune) bool {
	return r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("_./-", r))
}

func (p *parser) key() (string, error) {
	p.skip()
	start := p.pos
	for p.pos < len(p.in) && isKeyChar(rune(p.in[p.pos])) {
		p.pos++
	}
	if start == p.pos {
		return "", p.errorf("expected a label key")
	}
	return p.in[start:p.pos], nil
}

func (p *parser) str() (string, error) {
	p.skip()
	if p.pos >= len(p.in) || (p.in[p.pos] != '\'' && p.in[p.pos] != '"') {
		return "", p.errorf("expected a quoted string")
	}
	quote := p.in[p.pos]
	end := strings.IndexByte(p.in[p.pos+1:], quote)
	if end < 0 {
		return "", p.errorf("unterminated string")
	}
	v := p.in[p.pos+1 : p.pos+1+end]
	p.pos += end + 2
	return v, nil
}

func (p *parser) set() (map[string]bool, error) {
	if !p.accept("{") {
		return nil, p.errorf("expected {")
	}
	set := map[string]bool{}
	if p.accept("}") {
		return set, nil
	}
	for {
		v, err := p.str()
		if err != nil {
			return nil, err
		}
		set[v] = true
		if p.accept("}") {
			return set, nil
		}
		if !p.accept(",") {
			return nil, p.errorf("expected , or }")
		}
	}
}
