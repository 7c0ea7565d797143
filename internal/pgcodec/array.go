package pgcodec

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/ferry-dev/ferry/streams/pb"
)

// maxDims is PostgreSQL's MAXDIM: arrays have at most 6 dimensions.
const maxDims = 6

// arrayLit is a parsed array literal before its elements are decoded.
type arrayLit struct {
	dims  []int32
	lbs   []int32 // nil when the literal had no "[lb:ub]=" decoration
	elems []arrayElem
}

type arrayElem struct {
	text string
	null bool
}

// isArraySpace is PostgreSQL's array_isspace: the bytes array_in trims
// around unquoted elements, and so the bytes array_out quotes.
func isArraySpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '\v', '\f':
		return true
	}
	return false
}

// parseArrayLiteral parses an array literal as array_in does: an optional
// dimension decoration "[lb:ub][lb:ub]=", then nested braces; elements are
// double-quoted (backslash escapes any byte) or bare (backslash escapes too,
// surrounding whitespace trimmed, the bare word NULL in any case is SQL
// NULL). Sub-arrays must be rectangular. delim separates elements.
func parseArrayLiteral(s string, delim byte) (*arrayLit, error) {
	p := arrayParser{s: s, delim: delim, leaf: -1}
	p.skipSpace()
	var decoLB, decoUB []int64
	for p.peek() == '[' {
		if len(decoLB) == maxDims {
			return nil, fmt.Errorf("more than %d dimensions", maxDims)
		}
		p.i++
		lb, ub := int64(1), int64(0)
		n, err := p.readInt()
		if err != nil {
			return nil, err
		}
		if p.peek() == ':' {
			p.i++
			lb = n
			if n, err = p.readInt(); err != nil {
				return nil, err
			}
		}
		ub = n
		if p.peek() != ']' {
			return nil, errors.New(`missing "]" in array dimensions`)
		}
		p.i++
		if ub < lb {
			return nil, errors.New("upper bound cannot be less than lower bound")
		}
		decoLB = append(decoLB, lb)
		decoUB = append(decoUB, ub)
		p.skipSpace()
	}
	if decoLB != nil {
		if p.peek() != '=' {
			return nil, errors.New(`missing "=" after array dimensions`)
		}
		p.i++
		p.skipSpace()
	}
	if p.peek() != '{' {
		return nil, errors.New(`array value must start with "{" or dimension information`)
	}
	if err := p.parseLevel(0); err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.i != len(p.s) {
		return nil, errors.New("junk after closing right brace")
	}
	lit := &arrayLit{elems: p.elems}
	if p.leaf >= 0 {
		lit.dims = make([]int32, p.leaf+1)
		for k := range lit.dims {
			lit.dims[k] = int32(p.dims[k])
		}
	}
	if decoLB != nil {
		if len(decoLB) != len(lit.dims) {
			return nil, errors.New("specified array dimensions do not match array contents")
		}
		lit.lbs = make([]int32, len(decoLB))
		for k := range decoLB {
			if decoUB[k]-decoLB[k]+1 != int64(lit.dims[k]) {
				return nil, errors.New("specified array dimensions do not match array contents")
			}
			lit.lbs[k] = int32(decoLB[k])
		}
	}
	return lit, nil
}

type arrayParser struct {
	s     string
	i     int
	delim byte
	// leaf is the nesting level elements sit at (ndims-1), -1 until known.
	leaf int
	// dims[k] is the length of every level-k sub-array, 0 until one closed.
	dims  [maxDims]int
	elems []arrayElem
	buf   []byte
}

func (p *arrayParser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *arrayParser) skipSpace() {
	for p.i < len(p.s) && isArraySpace(p.s[p.i]) {
		p.i++
	}
}

// readInt reads an optionally signed int32 dimension bound.
func (p *arrayParser) readInt() (int64, error) {
	p.skipSpace()
	start := p.i
	if c := p.peek(); c == '-' || c == '+' {
		p.i++
	}
	digits := p.i
	for p.i < len(p.s) && isDigit(p.s[p.i]) {
		p.i++
	}
	if p.i == digits || p.i-digits > 10 {
		return 0, errors.New("invalid array dimension bound")
	}
	var n int64
	for _, c := range []byte(p.s[digits:p.i]) {
		n = n*10 + int64(c-'0')
	}
	if p.s[start] == '-' {
		n = -n
	}
	if n < math.MinInt32 || n > math.MaxInt32 {
		return 0, errors.New("array bound out of range")
	}
	p.skipSpace()
	return n, nil
}

// parseLevel parses one brace-enclosed level starting at '{'.
func (p *arrayParser) parseLevel(level int) error {
	if level >= maxDims {
		return fmt.Errorf("more than %d dimensions", maxDims)
	}
	p.i++ // '{'
	p.skipSpace()
	if p.peek() == '}' {
		// Only a whole array may be empty: PostgreSQL rejects "{{}}".
		if level != 0 {
			return errors.New(`unexpected "}": empty sub-array`)
		}
		p.i++
		return nil
	}
	n := 0
	for {
		p.skipSpace()
		if p.peek() == '{' {
			if p.leaf >= 0 && p.leaf <= level {
				return errors.New(`unexpected "{": sub-array where an element belongs`)
			}
			if err := p.parseLevel(level + 1); err != nil {
				return err
			}
		} else {
			if p.leaf >= 0 && p.leaf != level {
				return errors.New("element where a sub-array belongs")
			}
			p.leaf = level
			if err := p.parseElem(); err != nil {
				return err
			}
		}
		n++
		p.skipSpace()
		switch c := p.peek(); {
		case c == p.delim:
			p.i++
			continue
		case c == '}':
			p.i++
			if p.dims[level] == 0 {
				p.dims[level] = n
			} else if p.dims[level] != n {
				return errors.New("multidimensional arrays must have sub-arrays with matching dimensions")
			}
			return nil
		case p.i >= len(p.s):
			return errors.New("unexpected end of input")
		default:
			return fmt.Errorf("unexpected %q character", c)
		}
	}
}

// parseElem reads one element up to (not including) the next delimiter or
// closing brace.
func (p *arrayParser) parseElem() error {
	p.buf = p.buf[:0]
	if p.peek() == '"' {
		p.i++
		for {
			if p.i >= len(p.s) {
				return errors.New("unterminated quoted element")
			}
			c := p.s[p.i]
			p.i++
			switch c {
			case '\\':
				if p.i >= len(p.s) {
					return errors.New("unexpected end of input after backslash")
				}
				p.buf = append(p.buf, p.s[p.i])
				p.i++
				continue
			case '"':
				p.elems = append(p.elems, arrayElem{text: string(p.buf)})
				return nil
			}
			p.buf = append(p.buf, c)
		}
	}
	// keep is the length up to the last byte that is not trimmable
	// whitespace; escaped bytes are never trimmed.
	keep, escaped := 0, false
	for {
		if p.i >= len(p.s) {
			return errors.New("unexpected end of input")
		}
		c := p.s[p.i]
		switch {
		case c == '\\':
			p.i++
			if p.i >= len(p.s) {
				return errors.New("unexpected end of input after backslash")
			}
			p.buf = append(p.buf, p.s[p.i])
			p.i++
			keep, escaped = len(p.buf), true
			continue
		case c == p.delim || c == '}':
			if keep == 0 && !escaped {
				return fmt.Errorf("unexpected %q character: empty element", c)
			}
			text := string(p.buf[:keep])
			p.elems = append(p.elems, arrayElem{text: text, null: !escaped && strings.EqualFold(text, "NULL")})
			return nil
		case c == '{' || c == '"':
			return fmt.Errorf("unexpected %q character in unquoted element", c)
		}
		p.buf = append(p.buf, c)
		p.i++
		if !isArraySpace(c) {
			keep = len(p.buf)
		}
	}
}

// decodeArray decodes an array literal of type t, each element with
// Decode(t.Elem).
func decodeArray(t *Type, text string) (*pb.Value, error) {
	lit, err := parseArrayLiteral(text, t.delim())
	if err != nil {
		return nil, err
	}
	arr := &pb.Array{Dims: lit.dims}
	for _, lb := range lit.lbs {
		if lb != 1 {
			arr.LowerBounds = lit.lbs
			break
		}
	}
	arr.Elements = make([]*pb.Value, len(lit.elems))
	for i, e := range lit.elems {
		if e.null {
			arr.Elements[i] = nullValue()
			continue
		}
		v, err := decode(t.Elem, e.text)
		if err != nil {
			return nil, fmt.Errorf("element %d (%s %s): %w", i+1, t.Elem.label(), quoteTrunc(e.text), err)
		}
		arr.Elements[i] = v
	}
	return &pb.Value{Kind: &pb.Value_Array{Array: arr}}, nil
}

// appendArray appends a as an array literal the way array_out prints it:
// "[lb:ub]..." decoration only when a lower bound is not 1, elements quoted
// only when they must be.
func appendArray(b []byte, a *pb.Array, delim byte) ([]byte, error) {
	if a == nil {
		return nil, errors.New("array kind with nil array")
	}
	if len(a.Dims) == 0 {
		if len(a.Elements) != 0 || len(a.LowerBounds) != 0 {
			return nil, fmt.Errorf("array without dimensions has %d elements and %d lower bounds", len(a.Elements), len(a.LowerBounds))
		}
		return append(b, "{}"...), nil
	}
	if len(a.Dims) > maxDims {
		return nil, fmt.Errorf("%d dimensions, PostgreSQL allows %d", len(a.Dims), maxDims)
	}
	if len(a.LowerBounds) != 0 && len(a.LowerBounds) != len(a.Dims) {
		return nil, fmt.Errorf("%d lower bounds for %d dimensions", len(a.LowerBounds), len(a.Dims))
	}
	n := int64(1)
	for _, d := range a.Dims {
		if d < 1 {
			return nil, fmt.Errorf("dimension length %d (dimensions %v)", d, a.Dims)
		}
		n *= int64(d)
		if n > int64(len(a.Elements)) {
			break
		}
	}
	if n != int64(len(a.Elements)) {
		return nil, fmt.Errorf("dimensions %v do not match %d elements", a.Dims, len(a.Elements))
	}
	decorate := false
	for _, lb := range a.LowerBounds {
		decorate = decorate || lb != 1
	}
	if decorate {
		for k, d := range a.Dims {
			lb := int64(a.LowerBounds[k])
			ub := lb + int64(d) - 1
			if ub > math.MaxInt32 {
				return nil, fmt.Errorf("upper bound %d of dimension %d out of range", ub, k+1)
			}
			b = append(b, '[')
			b = appendPadded(b, lb, 0)
			b = append(b, ':')
			b = appendPadded(b, ub, 0)
			b = append(b, ']')
		}
		b = append(b, '=')
	}
	w := arrayWriter{a: a, delim: delim}
	b, err := w.level(b, 0)
	return b, err
}

type arrayWriter struct {
	a       *pb.Array
	delim   byte
	next    int
	scratch []byte
}

func (w *arrayWriter) level(b []byte, k int) ([]byte, error) {
	b = append(b, '{')
	for i := int32(0); i < w.a.Dims[k]; i++ {
		if i > 0 {
			b = append(b, w.delim)
		}
		if k+1 < len(w.a.Dims) {
			var err error
			if b, err = w.level(b, k+1); err != nil {
				return nil, err
			}
			continue
		}
		e := w.a.Elements[w.next]
		w.next++
		if isNull(e) {
			b = append(b, "NULL"...)
			continue
		}
		if _, ok := e.Kind.(*pb.Value_Array); ok {
			return nil, fmt.Errorf("element %d is itself an array; use dims for nesting", w.next)
		}
		var err error
		w.scratch, err = appendValue(w.scratch[:0], e, w.delim)
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", w.next, err)
		}
		b = appendArrayElem(b, w.scratch, w.delim)
	}
	return append(b, '}'), nil
}

// appendArrayElem appends one element's text, quoted and escaped when
// array_in would otherwise read it differently: empty, the word NULL,
// or holding quotes, backslashes, braces, the delimiter or whitespace.
func appendArrayElem(b, text []byte, delim byte) []byte {
	quote := len(text) == 0 || (len(text) == 4 && strings.EqualFold(string(text), "NULL"))
	for _, c := range text {
		if c == '"' || c == '\\' || c == '{' || c == '}' || c == delim || isArraySpace(c) {
			quote = true
			break
		}
	}
	if !quote {
		return append(b, text...)
	}
	b = append(b, '"')
	for _, c := range text {
		if c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, c)
	}
	return append(b, '"')
}
