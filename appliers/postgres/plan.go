package postgres

import (
	"fmt"
	"slices"
	"strconv"
	"unsafe"

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
	pl := planner{events: 1}
	return pl.eventOps(nil, t, e, se)
}

// planner turns a batch's events into ops. It renders values into shared
// blocks and reuses its scratch space from event to event: a snapshot batch
// holds thousands of rows, and one allocation per value and per row was
// most of the applier's own work.
type planner struct {
	// events is how many events the batch holds, which sizes the blocks:
	// a change or two should not cost a block made for thousands.
	events  int
	arena   textArena
	rows    []pgtype.Text // block that rows are carved from
	vals    []pgtype.Text
	present []bool
	cols    []int
}

// row returns a zeroed row of n values.
func (pl *planner) row(n int) []pgtype.Text {
	if n > len(pl.rows) {
		pl.rows = make([]pgtype.Text, max(n, min(1024, n*pl.events)))
	}
	r := pl.rows[:n:n]
	pl.rows = pl.rows[n:]
	return r
}

// eventOps is eventOps appending the ops to dst.
func (pl *planner) eventOps(dst []op, t *table, e *pb.Event, se schemaError) ([]op, error) {
	if len(t.pk) == 0 {
		return dst, se.errorf("table %s has no primary key, which ferry needs to apply changes idempotently", t)
	}
	switch e.GetOp() {
	case pb.Op_OP_DELETE:
		key, err := keyVals(t, e, se)
		if err != nil {
			return dst, err
		}
		return append(dst, op{table: t, kind: kindDelete, cols: t.pk, vals: key, key: keyString(key)}), nil
	case pb.Op_OP_READ, pb.Op_OP_INSERT, pb.Op_OP_UPDATE:
	default:
		return dst, rejectf("event has unknown operation %v", e.GetOp())
	}

	after := e.GetAfter()
	if after == nil {
		return dst, rejectf("%v event has no row", e.GetOp())
	}
	if len(after.GetNames()) != len(after.GetValues()) {
		return dst, rejectf("row has %d column names but %d values", len(after.GetNames()), len(after.GetValues()))
	}
	vals := resize(pl.vals, len(t.cols))
	present := resize(pl.present, len(t.cols))
	pl.vals, pl.present = vals, present
	for i, name := range after.GetNames() {
		c, ok := t.byEvent[name]
		if !ok {
			return dst, se.errorf("column %s.%s does not exist", t, name)
		}
		if t.cols[c].generated {
			continue // the target computes it
		}
		v, err := pl.encode(t.cols[c], after.GetValues()[i])
		if err != nil {
			return dst, err
		}
		vals[c], present[c] = v, true
	}
	for _, k := range t.pk {
		if !present[k] {
			return dst, se.errorf("events for %s lack primary key column %s", t, t.eventName[k])
		}
	}
	cols := pl.cols[:0]
	for c := range t.cols {
		if present[c] {
			cols = append(cols, c)
		}
	}
	pl.cols = cols
	// Most events carry every column: share the table's list then (the
	// segment compares column lists, never modifies them).
	if slices.Equal(cols, t.writable) {
		cols = t.writable
	} else {
		cols = slices.Clone(cols)
	}
	row := pl.row(len(cols))
	for i, c := range cols {
		row[i] = vals[c]
	}
	key := pl.keyString(vals, t.pk)

	k := kindUpsert
	if len(e.GetUnchanged()) > 0 {
		k = kindPartial
	}
	// An update that moved the row to a new key names the old key in
	// `before`; the row under the old key must go (or move), or it would
	// stay behind as a stale copy.
	if e.GetOp() == pb.Op_OP_UPDATE {
		if oldKey, ok, err := beforeKey(t, e); err != nil {
			return dst, err
		} else if ok && keyString(oldKey) != key {
			if k == kindUpsert {
				dst = append(dst, op{table: t, kind: kindDelete, cols: t.pk, vals: oldKey, key: keyString(oldKey)})
			} else {
				newKey := make([]pgtype.Text, len(t.pk))
				for i, c := range t.pk {
					newKey[i] = vals[c]
				}
				dst = append(dst, op{table: t, kind: kindRekey, cols: t.pk, vals: append(oldKey, newKey...)})
			}
		}
	}
	fresh := e.GetOp() == pb.Op_OP_READ || e.GetOp() == pb.Op_OP_INSERT
	return append(dst, op{table: t, kind: k, cols: cols, vals: row, key: key, fresh: fresh}), nil
}

// resize returns s with length n, zeroed, reusing its array when it can.
func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}

// encode renders v for column c into the planner's arena.
func (pl *planner) encode(c column, v *pb.Value) (pgtype.Text, error) {
	b := pl.arena.open(pl.events)
	b, null, err := appendEncoded(b, c, v)
	if err != nil || null {
		return pgtype.Text{}, err
	}
	return pgtype.Text{String: pl.arena.close(b), Valid: true}, nil
}

// keyString is keyString of the key columns of vals, in the arena.
func (pl *planner) keyString(vals []pgtype.Text, pk []int) string {
	b := pl.arena.open(pl.events)
	for _, k := range pk {
		b = appendKeyPart(b, vals[k])
	}
	return pl.arena.close(b)
}

// textArena hands out strings carved from shared blocks. A string keeps
// its whole block alive, so an arena serves one batch's plan, which is
// dropped as a whole.
type textArena struct{ buf []byte }

// arenaBlock is the largest size of a fresh block; a longer value gets a
// block of its own size by append's growth.
const arenaBlock = 64 << 10

// open returns the buffer to append one string to; close takes it back.
// events (how many the batch holds) sizes a fresh block.
func (a *textArena) open(events int) []byte {
	if cap(a.buf)-len(a.buf) < 256 {
		a.buf = make([]byte, 0, min(arenaBlock, max(events, 4)*256))
	}
	return a.buf
}

// close returns what was appended since open as a string. b must be the
// buffer open returned, appended to: when append moved it, the earlier
// strings stay in the old block and later ones go into the new one.
func (a *textArena) close(b []byte) string {
	s := b[len(a.buf):]
	a.buf = b
	if len(s) == 0 {
		return ""
	}
	return unsafe.String(&s[0], len(s))
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
	b, null, err := appendEncoded(nil, c, v)
	if err != nil || null {
		return pgtype.Text{}, err
	}
	return pgtype.Text{String: string(b), Valid: true}, nil
}

// appendEncoded appends the text form of v for column c to b; null reports
// SQL NULL (b unchanged).
func appendEncoded(b []byte, c column, v *pb.Value) (out []byte, null bool, err error) {
	if out, ok, err := appendConverted(b, c.cast, v); err != nil {
		return b, false, rejectf("column %s: %v", c.name, err)
	} else if ok {
		return out, false, nil
	}
	typ := pgcodec.Type{Name: c.cast, Delim: c.delim}
	out, null, err = pgcodec.AppendFor(b, &typ, v)
	if err != nil {
		return b, false, rejectf("column %s: %v", c.name, err)
	}
	return out, null, nil
}

// keyString is an unambiguous rendering of a key for map lookups:
// length-prefixed values, so that no two different keys collide.
func keyString(key []pgtype.Text) string {
	var b []byte
	for _, v := range key {
		b = appendKeyPart(b, v)
	}
	return string(b)
}

func appendKeyPart(b []byte, v pgtype.Text) []byte {
	if !v.Valid {
		return append(b, "N;"...)
	}
	b = strconv.AppendInt(b, int64(len(v.String)), 10)
	b = append(b, ':')
	return append(b, v.String...)
}
