package oracle

import (
	"fmt"
	"strings"
)

// stmtOp is the kind of a redo statement.
type stmtOp int

const (
	opInsert stmtOp = iota + 1
	opUpdate
	opDelete
)

// assign is one "column = value" of a statement.
type assign struct {
	Col string
	Val literal
}

// redoStmt is a parsed SQL_REDO statement. For an insert, Set holds the
// row; for an update, Set the new values and Where the old ones (every
// column under ALL COLUMNS supplemental logging, otherwise the key and the
// changed columns); for a delete, Where the old row. ROWID conditions are
// dropped: they name the physical row, which a target does not have.
type redoStmt struct {
	Op    stmtOp
	Owner string
	Table string
	Set   []assign
	Where []assign
}

// parseRedo parses an INSERT, UPDATE or DELETE as LogMiner writes it in
// SQL_REDO:
//
//	insert into "HR"."T"("ID","NAME") values ('1','O''Hara');
//	update "HR"."T" set "NAME" = 'x', "D" = NULL where "ID" = '1' and "D" IS NULL and ROWID = 'AAA...';
//	delete from "HR"."T" where "ID" = '1' and "NAME" = 'x';
//
// Values may be quoted strings (a doubled single quote stands for one), NULL, unquoted numbers,
// or function calls whose arguments are quoted strings (TO_DATE,
// TO_TIMESTAMP, TO_TIMESTAMP_TZ, HEXTORAW, UNISTR, TO_YMINTERVAL,
// TO_DSINTERVAL, EMPTY_CLOB(), EMPTY_BLOB()).
func parseRedo(sql string) (*redoStmt, error) {
	p := &parser{s: sql}
	st, err := p.statement()
	if err != nil {
		snip := sql
		if len(snip) > 200 {
			snip = snip[:200] + "..."
		}
		return nil, fmt.Errorf("parsing SQL_REDO at offset %d: %v (statement: %s)", p.i, err, snip)
	}
	return st, nil
}

type parser struct {
	s string
	i int
}

func (p *parser) ws() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\n' || p.s[p.i] == '\t' || p.s[p.i] == '\r') {
		p.i++
	}
}

// keyword consumes a case-insensitive word when it is next.
func (p *parser) keyword(w string) bool {
	p.ws()
	if len(p.s)-p.i < len(w) || !strings.EqualFold(p.s[p.i:p.i+len(w)], w) {
		return false
	}
	end := p.i + len(w)
	if end < len(p.s) && isWordByte(p.s[end]) {
		return false
	}
	p.i = end
	return true
}

func (p *parser) expectKeyword(w string) error {
	if !p.keyword(w) {
		return fmt.Errorf("expected %s", strings.ToUpper(w))
	}
	return nil
}

func (p *parser) punct(c byte) bool {
	p.ws()
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *parser) expect(c byte) error {
	if !p.punct(c) {
		return fmt.Errorf("expected %q", c)
	}
	return nil
}

func isWordByte(c byte) bool {
	return c == '_' || c == '$' || c == '#' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// ident reads a "quoted" or bare identifier.
func (p *parser) ident() (string, error) {
	p.ws()
	if p.i >= len(p.s) {
		return "", fmt.Errorf("expected an identifier, got the end")
	}
	if p.s[p.i] == '"' {
		var b strings.Builder
		p.i++
		for p.i < len(p.s) {
			c := p.s[p.i]
			p.i++
			if c == '"' {
				if p.i < len(p.s) && p.s[p.i] == '"' {
					b.WriteByte('"')
					p.i++
					continue
				}
				return b.String(), nil
			}
			b.WriteByte(c)
		}
		return "", fmt.Errorf("unterminated quoted identifier")
	}
	start := p.i
	for p.i < len(p.s) && isWordByte(p.s[p.i]) {
		p.i++
	}
	if start == p.i {
		return "", fmt.Errorf("expected an identifier")
	}
	return strings.ToUpper(p.s[start:p.i]), nil
}

// qualified reads "OWNER"."TABLE".
func (p *parser) qualified(st *redoStmt) error {
	a, err := p.ident()
	if err != nil {
		return err
	}
	if p.punct('.') {
		b, err := p.ident()
		if err != nil {
			return err
		}
		st.Owner, st.Table = a, b
		return nil
	}
	st.Table = a
	return nil
}

// str reads a quoted string; a doubled single quote stands for one.
func (p *parser) str() (string, error) {
	p.ws()
	if p.i >= len(p.s) || p.s[p.i] != '\'' {
		return "", fmt.Errorf("expected a quoted string")
	}
	p.i++
	// Most strings hold no quote: take them as a slice of the statement.
	if j := strings.IndexByte(p.s[p.i:], '\''); j >= 0 && (p.i+j+1 >= len(p.s) || p.s[p.i+j+1] != '\'') {
		out := p.s[p.i : p.i+j]
		p.i += j + 1
		return out, nil
	}
	var b strings.Builder
	for p.i < len(p.s) {
		c := p.s[p.i]
		p.i++
		if c == '\'' {
			if p.i < len(p.s) && p.s[p.i] == '\'' {
				b.WriteByte('\'')
				p.i++
				continue
			}
			return b.String(), nil
		}
		b.WriteByte(c)
	}
	return "", fmt.Errorf("unterminated string")
}

// value reads one value.
func (p *parser) value() (literal, error) {
	p.ws()
	if p.i >= len(p.s) {
		return literal{}, fmt.Errorf("expected a value, got the end")
	}
	c := p.s[p.i]
	switch {
	case c == '\'':
		s, err := p.str()
		return literal{Kind: litString, Text: s}, err
	case c == '-' || c == '+' || c == '.' || (c >= '0' && c <= '9'):
		start := p.i
		p.i++
		for p.i < len(p.s) && (isWordByte(p.s[p.i]) || p.s[p.i] == '.' || ((p.s[p.i] == '+' || p.s[p.i] == '-') && (p.s[p.i-1] == 'E' || p.s[p.i-1] == 'e'))) {
			p.i++
		}
		return literal{Kind: litNumber, Text: p.s[start:p.i]}, nil
	}
	name, err := p.ident()
	if err != nil {
		return literal{}, fmt.Errorf("expected a value")
	}
	if name == "NULL" {
		return literal{Kind: litNull}, nil
	}
	if !p.punct('(') {
		return literal{}, fmt.Errorf("unexpected word %s where a value belongs", name)
	}
	l := literal{Kind: litFunc, Text: name}
	if p.punct(')') {
		return l, nil
	}
	for {
		a, err := p.value()
		if err != nil {
			return literal{}, fmt.Errorf("argument of %s: %v", name, err)
		}
		if a.Kind != litString && a.Kind != litNumber {
			return literal{}, fmt.Errorf("argument of %s: expected a string", name)
		}
		l.Args = append(l.Args, a.Text)
		if p.punct(')') {
			return l, nil
		}
		if err := p.expect(','); err != nil {
			return literal{}, fmt.Errorf("arguments of %s: %v", name, err)
		}
	}
}

func (p *parser) statement() (*redoStmt, error) {
	st := &redoStmt{}
	var err error
	switch {
	case p.keyword("insert"):
		st.Op = opInsert
		err = p.insert(st)
	case p.keyword("update"):
		st.Op = opUpdate
		err = p.update(st)
	case p.keyword("delete"):
		st.Op = opDelete
		if err = p.expectKeyword("from"); err == nil {
			if err = p.qualified(st); err == nil {
				err = p.where(st)
			}
		}
	default:
		return nil, fmt.Errorf("not an INSERT, UPDATE or DELETE")
	}
	if err != nil {
		return nil, err
	}
	p.punct(';')
	p.ws()
	if p.i != len(p.s) {
		return nil, fmt.Errorf("unexpected text after the statement")
	}
	return st, nil
}

func (p *parser) insert(st *redoStmt) error {
	if err := p.expectKeyword("into"); err != nil {
		return err
	}
	if err := p.qualified(st); err != nil {
		return err
	}
	if err := p.expect('('); err != nil {
		return err
	}
	var cols []string
	for {
		c, err := p.ident()
		if err != nil {
			return err
		}
		cols = append(cols, c)
		if p.punct(')') {
			break
		}
		if err := p.expect(','); err != nil {
			return err
		}
	}
	if err := p.expectKeyword("values"); err != nil {
		return err
	}
	if err := p.expect('('); err != nil {
		return err
	}
	for i := range cols {
		if i > 0 {
			if err := p.expect(','); err != nil {
				return err
			}
		}
		v, err := p.value()
		if err != nil {
			return fmt.Errorf("value of %s: %v", cols[i], err)
		}
		st.Set = append(st.Set, assign{Col: cols[i], Val: v})
	}
	return p.expect(')')
}

func (p *parser) update(st *redoStmt) error {
	if err := p.qualified(st); err != nil {
		return err
	}
	if err := p.expectKeyword("set"); err != nil {
		return err
	}
	for {
		c, err := p.ident()
		if err != nil {
			return err
		}
		if err := p.expect('='); err != nil {
			return err
		}
		v, err := p.value()
		if err != nil {
			return fmt.Errorf("value of %s: %v", c, err)
		}
		st.Set = append(st.Set, assign{Col: c, Val: v})
		if !p.punct(',') {
			break
		}
	}
	p.ws()
	if p.i == len(p.s) || p.s[p.i] == ';' {
		return nil // no where clause (a table without supplemental logging)
	}
	return p.where(st)
}

// where reads `where c = v and c IS NULL and ROWID = '...'`.
func (p *parser) where(st *redoStmt) error {
	if err := p.expectKeyword("where"); err != nil {
		return err
	}
	for {
		c, err := p.ident()
		if err != nil {
			return err
		}
		var v literal
		if p.keyword("is") {
			if err := p.expectKeyword("null"); err != nil {
				return err
			}
			v = literal{Kind: litNull}
		} else {
			if err := p.expect('='); err != nil {
				return err
			}
			if v, err = p.value(); err != nil {
				return fmt.Errorf("value of %s: %v", c, err)
			}
		}
		if c != "ROWID" {
			st.Where = append(st.Where, assign{Col: c, Val: v})
		}
		if !p.keyword("and") {
			return nil
		}
	}
}
