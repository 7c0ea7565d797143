package scylla

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/gocql/gocql"

	"github.com/ferry-dev/ferry/appliers"
	"github.com/ferry-dev/ferry/internal/cqlcodec"
	"github.com/ferry-dev/ferry/streams/pb"
)

// targetTable is a target table as the schema describes it.
type targetTable struct {
	keyspace, name string
	ident          string
	// types holds each column's type as result metadata gives it (the
	// driver's schema metadata cannot parse every Cassandra 2.x type).
	types   map[string]gocql.TypeInfo
	counter bool
}

// targetName maps a source table (as events name it, keyspace.table) to
// the target's keyspace and table: Target.Tables by the full or the bare
// name first (a value without a keyspace is in the target keyspace), else
// the source table's own name in the target keyspace.
func (t *Target) targetName(src string) (string, string) {
	bare := src[strings.LastIndexByte(src, '.')+1:]
	name := bare
	if to, ok := t.cfg.Tables[src]; ok {
		name = to
	} else if to, ok := t.cfg.Tables[bare]; ok {
		name = to
	}
	if ks, tb, ok := strings.Cut(name, "."); ok {
		return ks, tb
	}
	return t.cfg.CQLKeyspace, name
}

// column maps a source column to the target's, by Target.Renames.
func (t *Target) column(srcTable, col string) string {
	bare := srcTable[strings.LastIndexByte(srcTable, '.')+1:]
	for _, r := range t.cfg.Renames {
		if r.From == col && (r.Table == "" || r.Table == srcTable || r.Table == bare) {
			return r.To
		}
	}
	return col
}

// table returns the target table an event's table maps to; a table that
// does not exist is a permanent error naming it.
func (t *Target) table(src string) (*targetTable, error) {
	t.mu.Lock()
	tt, ok := t.tables[src]
	t.mu.Unlock()
	if ok {
		return tt, nil
	}
	ksName, name := t.targetName(src)
	tt = &targetTable{keyspace: ksName, name: name, ident: quote(ksName) + "." + quote(name), types: map[string]gocql.TypeInfo{}}
	// The table's existence, columns and types come from SELECT *: the
	// result metadata is exact. The driver's schema metadata is read from
	// the schema tables in separate queries and was seen (Cassandra 2.1
	// under load) to hold a table with no columns, or to lack a table that
	// existed, cached for the session's life, so every retry failed alike.
	iter := t.sess.Query("SELECT * FROM " + tt.ident + " LIMIT 1").Consistency(t.cons).Iter()
	cols := iter.Columns()
	if err := iter.Close(); err != nil {
		var rerr gocql.RequestError
		if errors.As(err, &rerr) && rerr.Code() == gocql.ErrCodeInvalid {
			// The server's answer for a keyspace or table it does not have.
			return nil, appliers.Permanent(fmt.Errorf("target %s: table %s.%s does not exist (it receives source table %s); create it first (%v)", t.cfg.Name, ksName, name, src, err))
		}
		return nil, fmt.Errorf("target %s: reading the column types of %s.%s: %w", t.cfg.Name, ksName, name, err)
	}
	for _, c := range cols {
		tt.types[c.Name] = c.TypeInfo
		if c.TypeInfo.Type() == gocql.TypeCounter {
			tt.counter = true
		}
	}
	t.mu.Lock()
	t.tables[src] = tt
	t.mu.Unlock()
	return tt, nil
}

// group is one partition's events, in stream order.
type group struct {
	table *targetTable
	items []appliers.Item
}

// group splits items by target partition, keeping each partition's order.
func (t *Target) group(_ context.Context, items []appliers.Item) ([]*group, []appliers.Rejected, error) {
	var (
		out      []*group
		byKey    = map[string]*group{}
		rejected []appliers.Rejected
		buf      []byte
	)
	for _, it := range items {
		ev := it.Event
		tt, err := t.table(ev.Table)
		if err != nil {
			return nil, nil, err
		}
		if err := t.checkColumns(tt, ev); err != nil {
			return nil, nil, err
		}
		key := ev.GetKey()
		if key == nil || len(key.Values) == 0 {
			rejected = append(rejected, appliers.Rejected{Item: it, Reason: "event has no key"})
			continue
		}
		n := int(ev.PartitionKeyCount)
		if n == 0 || n > len(key.Values) {
			n = len(key.Values)
		}
		buf = append(buf[:0], ev.Table...)
		buf = append(buf, 0)
		for _, v := range key.Values[:n] {
			b, _ := v.MarshalVT()
			buf = append(buf, b...)
			buf = append(buf, 0)
		}
		g := byKey[string(buf)]
		if g == nil {
			g = &group{table: tt}
			byKey[string(buf)] = g
			out = append(out, g)
		}
		g.items = append(g.items, it)
	}
	return out, rejected, nil
}

// checkColumns fails permanently when the target table lacks a column the
// event writes: every row would fail the same way.
func (t *Target) checkColumns(tt *targetTable, ev *pb.Event) error {
	check := func(r *pb.Row) error {
		for _, n := range r.GetNames() {
			to := t.column(ev.Table, n)
			if _, ok := tt.types[to]; !ok {
				from := ""
				if to != n {
					from = fmt.Sprintf(" (renamed from %s)", n)
				}
				return appliers.Permanent(fmt.Errorf("target %s: table %s.%s has no column %s%s, which source table %s has", t.cfg.Name, tt.keyspace, tt.name, to, from, ev.Table))
			}
		}
		return nil
	}
	if err := check(ev.GetKey()); err != nil {
		return err
	}
	return check(ev.GetAfter())
}

// bind renders the bind marker of a column and its values. A tuple column
// is written as a tuple literal of markers, (?, ?, ?), one per member: the
// driver cannot bind a whole tuple to one marker of a prepared statement.
func (tt *targetTable) bind(col string, v *pb.Value) (string, []any, error) {
	tup, ok := tt.types[col].(gocql.TupleTypeInfo)
	if !ok {
		return "?", []any{cqlcodec.Bound{V: v, Col: col}}, nil
	}
	if cqlcodec.IsNull(v) {
		return "null", nil, nil
	}
	elems, err := cqlcodec.TupleMembers(tup, v)
	if err != nil {
		return "", nil, fmt.Errorf("column %s: %w", col, err)
	}
	args := make([]any, len(tup.Elems))
	for i := range tup.Elems {
		var e *pb.Value
		if i < len(elems) {
			e = elems[i]
		}
		args[i] = cqlcodec.Bound{V: e, Col: fmt.Sprintf("%s[%d]", col, i)}
	}
	return "(" + strings.TrimSuffix(strings.Repeat("?, ", len(args)), ", ") + ")", args, nil
}

// stmt is one CQL statement and its bind values.
type stmt struct {
	q    string
	args []any
}

// rowStmts renders the writes of one non-counter event. Cells are written
// in groups of equal writetime and TTL, one INSERT per group, since one
// statement has one USING TIMESTAMP/TTL.
func (t *Target) rowStmts(tt *targetTable, ev *pb.Event, now int64) ([]stmt, error) {
	key := ev.GetKey()
	if ev.Op == pb.Op_OP_DELETE {
		var where []string
		var args []any
		for i, n := range key.Names {
			if cqlcodec.IsNull(key.Values[i]) {
				continue
			}
			c := t.column(ev.Table, n)
			ph, a, err := tt.bind(c, key.Values[i])
			if err != nil {
				return nil, err
			}
			where = append(where, quote(c)+" = "+ph)
			args = append(args, a...)
		}
		q := "DELETE FROM " + tt.ident
		if ev.CommitTimeUs > 0 {
			q += " USING TIMESTAMP " + fmt.Sprint(ev.CommitTimeUs)
		}
		return []stmt{{q: q + " WHERE " + strings.Join(where, " AND "), args: args}}, nil
	}
	after := ev.GetAfter()
	if after == nil {
		return nil, fmt.Errorf("a %s event without a row", ev.Op)
	}
	isKey := make(map[string]bool, len(key.GetNames()))
	for _, n := range key.GetNames() {
		isKey[n] = true
	}
	unchanged := make(map[string]bool, len(ev.Unchanged))
	for _, n := range ev.Unchanged {
		unchanged[n] = true
	}
	var keyCols, keyPH []string
	var keyArgs []any
	type cellGroup struct {
		wt   int64
		ttl  int32
		cols []string
		phs  []string
		args []any
	}
	var groups []*cellGroup
	find := func(wt int64, ttl int32) *cellGroup {
		for _, g := range groups {
			if g.wt == wt && g.ttl == ttl {
				return g
			}
		}
		g := &cellGroup{wt: wt, ttl: ttl}
		groups = append(groups, g)
		return g
	}
	hasMeta := len(after.Meta) == len(after.Values)
	for i, n := range after.Names {
		v := after.Values[i]
		c := t.column(ev.Table, n)
		if isKey[n] {
			// A static-only row has no clustering values: it is written
			// by its partition key alone.
			if !cqlcodec.IsNull(v) {
				ph, a, err := tt.bind(c, v)
				if err != nil {
					return nil, err
				}
				keyCols, keyPH = append(keyCols, quote(c)), append(keyPH, ph)
				keyArgs = append(keyArgs, a...)
			}
			continue
		}
		if unchanged[n] {
			continue
		}
		// A snapshot row's NULL is no cell at all: writing it would only
		// add a tombstone.
		if ev.Op == pb.Op_OP_READ && cqlcodec.IsNull(v) {
			continue
		}
		var wt int64
		var ttl int32
		if hasMeta {
			wt, ttl = after.Meta[i].WritetimeUs, after.Meta[i].TtlSeconds
			if ttl > 0 && ev.CommitTimeUs > 0 {
				// The TTL is what was left when the row was read: take off
				// the time since, so that the cell expires when it would
				// have in the source, also when a batch is applied again.
				ttl -= int32((now - ev.CommitTimeUs) / 1e6)
				if ttl <= 0 {
					continue // expired meanwhile, as in the source
				}
			}
		}
		ph, a, err := tt.bind(c, v)
		if err != nil {
			return nil, err
		}
		g := find(wt, ttl)
		g.cols, g.phs = append(g.cols, quote(c)), append(g.phs, ph)
		g.args = append(g.args, a...)
	}
	if len(groups) == 0 {
		groups = append(groups, &cellGroup{})
	}
	out := make([]stmt, 0, len(groups))
	staticOnly := len(keyCols) < len(key.GetNames())
	for _, g := range groups {
		var using []string
		var usingArgs []any
		if g.wt != 0 {
			using, usingArgs = append(using, "TIMESTAMP ?"), append(usingArgs, g.wt)
		}
		if g.ttl > 0 {
			using, usingArgs = append(using, "TTL ?"), append(usingArgs, int(g.ttl))
		}
		usingClause := ""
		if len(using) > 0 {
			usingClause = " USING " + strings.Join(using, " AND ")
		}
		if staticOnly {
			// A partition's static row without clustering rows: INSERT
			// wants the whole primary key, UPDATE takes the partition key.
			if len(g.cols) == 0 {
				continue
			}
			set := make([]string, len(g.cols))
			for i := range g.cols {
				set[i] = g.cols[i] + " = " + g.phs[i]
			}
			where := make([]string, len(keyCols))
			for i := range keyCols {
				where[i] = keyCols[i] + " = " + keyPH[i]
			}
			args := append(append(usingArgs, g.args...), keyArgs...)
			out = append(out, stmt{q: "UPDATE " + tt.ident + usingClause + " SET " + strings.Join(set, ", ") + " WHERE " + strings.Join(where, " AND "), args: args})
			continue
		}
		cols := append(append([]string{}, keyCols...), g.cols...)
		phs := append(append([]string{}, keyPH...), g.phs...)
		args := append(append(append([]any{}, keyArgs...), g.args...), usingArgs...)
		q := "INSERT INTO " + tt.ident + " (" + strings.Join(cols, ", ") + ") VALUES (" + strings.Join(phs, ", ") + ")" + usingClause
		out = append(out, stmt{q: q, args: args})
	}
	return out, nil
}
