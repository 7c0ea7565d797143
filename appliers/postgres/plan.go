package postgres

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ferry-dev/ferry/appliers"
	"github.com/ferry-dev/ferry/internal/pgcodec"
	"github.com/ferry-dev/ferry/streams/pb"
)

// kind is what a segment does to its rows.
type kind uint8

const (
	// kindUpsert writes full rows (READ, INSERT, UPDATE without unchanged
	// columns).
	kindUpsert kind = iota
	// kindPartial updates only the sent columns of an UPDATE whose event
	// lists unchanged columns (PostgreSQL's unchanged TOAST values): the
	// stored values of those must survive.
	kindPartial
	// kindDelete deletes by primary key.
	kindDelete
	// kindRekey moves a row to a new primary key (a partial UPDATE that
	// changed the key), before the partial update on the new key.
	kindRekey
)

func (k kind) String() string {
	switch k {
	case kindUpsert:
		return "upsert"
	case kindPartial:
		return "partial update"
	case kindDelete:
		return "delete"
	case kindRekey:
		return "key change"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// op is one write derived from one event.
type op struct {
	table *table
	kind  kind
	// cols are column indexes of table, in table order: the written columns
	// (upsert, partial; key columns included) or the key (delete, rekey).
	cols []int
	// vals line up with cols; for rekey, the old key then the new key.
	vals []pgtype.Text
	// key identifies the row (its primary key in text) for deduplication.
	key string
	// fresh marks a row the source created (a snapshot read or an insert),
	// which the target most likely does not hold yet.
	fresh bool
}

// segment is a run of consecutive ops of one table, kind and column set,
// written by one statement.
type segment struct {
	table *table
	kind  kind
	cols  []int
	rows  [][]pgtype.Text // nil entries were superseded
	index map[string]int  // key -> position in rows
	live  int
	// fresh: every row is a snapshot read or an insert.
	fresh bool
}

// add appends o. A row whose key the segment already holds supersedes the
// earlier one for upserts and same-columns partial updates (the later row
// carries the complete newer state of the same columns), and is a no-op for
// deletes. A superseding row takes the later position, which keeps the
// statement's rows in the order the source last wrote them.
func (s *segment) add(o op) {
	if s.kind == kindRekey {
		// Key changes are never merged: a chain a->b, b->c in one statement
		// would see only the original rows and stop at b.
		s.rows = append(s.rows, o.vals)
		s.live++
		return
	}
	if i, ok := s.index[o.key]; ok {
		if s.kind == kindDelete {
			return
		}
		s.rows[i] = nil
		s.live--
	}
	s.index[o.key] = len(s.rows)
	s.rows = append(s.rows, o.vals)
	s.live++
}

// accepts reports whether o can join s.
func (s *segment) accepts(o op) bool {
	return s.kind != kindRekey && s.table == o.table && s.kind == o.kind && slices.Equal(s.cols, o.cols)
}

func newSegment(o op) *segment {
	return &segment{table: o.table, kind: o.kind, cols: o.cols, index: map[string]int{}, fresh: true}
}

// segmentOps groups ops, kept in order, into segments. Only consecutive ops
// are grouped, so every key's writes stay in lane order and writes to
// different tables stay in source order (foreign keys).
func segmentOps(ops []op) []*segment {
	var segs []*segment
	for _, o := range ops {
		if n := len(segs); n > 0 && segs[n-1].accepts(o) {
			segs[n-1].add(o)
			segs[n-1].fresh = segs[n-1].fresh && o.fresh
			continue
		}
		s := newSegment(o)
		s.add(o)
		s.fresh = o.fresh
		segs = append(segs, s)
	}
	return segs
}

// sql returns the segment's statement, "" when there is nothing to do.
func (s *segment) sql(d dialect) string {
	switch s.kind {
	case kindUpsert:
		return upsertSQL(d, s.table, s.cols)
	case kindPartial:
		return partialSQL(s.table, s.cols)
	case kindDelete:
		return deleteSQL(s.table)
	case kindRekey:
		return rekeySQL(s.table)
	}
	return ""
}

// maxStatementRows caps the rows of one statement. A segment can be large
// (a batch of snapshot messages holds many rows each); beyond this size it
// is written in several executions of the same prepared statement, which
// keeps each execution's parameter arrays and memory bounded.
const maxStatementRows = 5000

// argChunks returns the statement parameters for the live rows, in chunks of
// at most maxRows rows: per chunk, one text[] per parameter.
func (s *segment) argChunks(maxRows int) [][]any {
	live := make([][]pgtype.Text, 0, s.live)
	for _, r := range s.rows {
		if r != nil {
			live = append(live, r)
		}
	}
	var chunks [][]any
	for len(live) > 0 {
		n := min(len(live), maxRows)
		chunk := live[:n]
		live = live[n:]
		args := make([]any, len(chunk[0]))
		for j := range args {
			col := make(pgtype.FlatArray[pgtype.Text], n)
			for i, r := range chunk {
				col[i] = r[j]
			}
			args[j] = col
		}
		chunks = append(chunks, args)
	}
	return chunks
}

// rejectError is an event ferry cannot write for its own content (a value
// that has no PostgreSQL text form, a malformed event). It becomes a
// Rejected rather than stopping the lane.
type rejectError struct{ msg string }

func (e *rejectError) Error() string { return e.msg }

func rejectf(format string, args ...any) error {
	return &rejectError{msg: fmt.Sprintf(format, args...)}
}

// schemaError builds a permanent error for a mismatch between the events and
// the target's schema, which no retry can fix.
type schemaError struct{ target, source string }

func (s schemaError) errorf(format string, args ...any) error {
	return appliers.Permanent(fmt.Errorf("target %s: %s (events from source %s)", s.target, fmt.Sprintf(format, args...), s.source))
}

// eventOps turns one event into the writes that apply it to t: one op, or
// two when an UPDATE changed the primary key. Errors are rejectErrors (the
// event's own fault) or permanent schema errors.
func eventOps(t *table, e *pb.Event, se schemaError) ([]op, error) {
	if len(t.pk) == 0 {
		return nil, se.errorf("table %s has no primary key, which ferry needs to apply changes idempotently", t)
	}
	switch e.GetOp() {
	case pb.Op_OP_DELETE:
		key, err := keyVals(t, e, se)
		if err != nil {
			return nil, err
		}
		return []op{{table: t, kind: kindDelete, cols: t.pk, vals: key, key: keyString(key)}}, nil
	case pb.Op_OP_READ, pb.Op_OP_INSERT, pb.Op_OP_UPDATE:
	default:
		return nil, rejectf("event has unknown operation %v", e.GetOp())
	}

	after := e.GetAfter()
	if after == nil {
		return nil, rejectf("%v event has no row", e.GetOp())
	}
	if len(after.GetNames()) != len(after.GetValues()) {
		return nil, rejectf("row has %d column names but %d values", len(after.GetNames()), len(after.GetValues()))
	}
	vals := make([]pgtype.Text, len(t.cols))
	present := make([]bool, len(t.cols))
	for i, name := range after.GetNames() {
		c, ok := t.byEvent[name]
		if !ok {
			return nil, se.errorf("column %s.%s does not exist", t, name)
		}
		if t.cols[c].generated {
			continue // the target computes it
		}
		v, err := encode(t.cols[c], after.GetValues()[i])
		if err != nil {
			return nil, err
		}
		vals[c], present[c] = v, true
	}
	for _, k := range t.pk {
		if !present[k] {
			return nil, se.errorf("events for %s lack primary key column %s", t, t.eventName[k])
		}
	}
	cols := make([]int, 0, len(after.GetNames()))
	for c := range t.cols {
		if present[c] {
			cols = append(cols, c)
		}
	}
	row := make([]pgtype.Text, len(cols))
	for i, c := range cols {
		row[i] = vals[c]
	}
	newKey := make([]pgtype.Text, len(t.pk))
	for i, k := range t.pk {
		newKey[i] = vals[k]
	}
	key := keyString(newKey)

	k := kindUpsert
	if len(e.GetUnchanged()) > 0 {
		k = kindPartial
	}
	var ops []op
	// An update that moved the row to a new key names the old key in
	// `before`; the row under the old key must go (or move), or it would
	// stay behind as a stale copy.
	if e.GetOp() == pb.Op_OP_UPDATE {
		if oldKey, ok, err := beforeKey(t, e); err != nil {
			return nil, err
		} else if ok && keyString(oldKey) != key {
			if k == kindUpsert {
				ops = append(ops, op{table: t, kind: kindDelete, cols: t.pk, vals: oldKey, key: keyString(oldKey)})
			} else {
				ops = append(ops, op{table: t, kind: kindRekey, cols: t.pk, vals: append(oldKey, newKey...)})
			}
		}
	}
	fresh := e.GetOp() == pb.Op_OP_READ || e.GetOp() == pb.Op_OP_INSERT
	return append(ops, op{table: t, kind: k, cols: cols, vals: row, key: key, fresh: fresh}), nil
}

// keyVals returns the primary key of a delete: each key column from the
// event's key, else from its before row.
func keyVals(t *table, e *pb.Event, se schemaError) ([]pgtype.Text, error) {
	out := make([]pgtype.Text, len(t.pk))
	for i, k := range t.pk {
		name := t.eventName[k]
		v, ok := lookup(e.GetKey(), name)
		if !ok {
			v, ok = lookup(e.GetBefore(), name)
		}
		if !ok {
			return nil, se.errorf("delete events for %s lack primary key column %s", t, name)
		}
		tv, err := encode(t.cols[k], v)
		if err != nil {
			return nil, err
		}
		if !tv.Valid {
			return nil, rejectf("delete with NULL in primary key column %s", name)
		}
		out[i] = tv
	}
	return out, nil
}

// beforeKey returns the old primary key of an update when `before` holds
// every key column.
func beforeKey(t *table, e *pb.Event) ([]pgtype.Text, bool, error) {
	b := e.GetBefore()
	if b == nil {
		return nil, false, nil
	}
	out := make([]pgtype.Text, len(t.pk))
	for i, k := range t.pk {
		v, ok := lookup(b, t.eventName[k])
		if !ok {
			return nil, false, nil
		}
		tv, err := encode(t.cols[k], v)
		if err != nil {
			return nil, false, err
		}
		out[i] = tv
	}
	return out, true, nil
}

func lookup(r *pb.Row, name string) (*pb.Value, bool) {
	if r == nil {
		return nil, false
	}
	vals := r.GetValues()
	for i, n := range r.GetNames() {
		if n == name && i < len(vals) {
			return vals[i], true
		}
	}
	return nil, false
}

func encode(c column, v *pb.Value) (pgtype.Text, error) {
	if text, ok, err := convertFor(c.cast, v); err != nil {
		return pgtype.Text{}, rejectf("column %s: %v", c.name, err)
	} else if ok {
		return pgtype.Text{String: text, Valid: true}, nil
	}
	text, null, err := pgcodec.EncodeFor(&pgcodec.Type{Name: c.cast, Delim: c.delim}, v)
	if err != nil {
		return pgtype.Text{}, rejectf("column %s: %v", c.name, err)
	}
	if null {
		return pgtype.Text{}, nil
	}
	return pgtype.Text{String: text, Valid: true}, nil
}

// keyString is an unambiguous rendering of a key for map lookups:
// length-prefixed values, so that no two different keys collide.
func keyString(key []pgtype.Text) string {
	var b strings.Builder
	for _, v := range key {
		if !v.Valid {
			b.WriteString("N;")
			continue
		}
		b.WriteString(strconv.Itoa(len(v.String)))
		b.WriteByte(':')
		b.WriteString(v.String)
	}
	return b.String()
}
