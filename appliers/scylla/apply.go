package scylla

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gocql/gocql"

	"github.com/ferry-dev/ferry/appliers"
	"github.com/ferry-dev/ferry/internal/cqlcodec"
	"github.com/ferry-dev/ferry/streams/pb"
)

// batchBytes bounds the encoded events of one unlogged batch, under the
// servers' batch size warning and failure thresholds.
const batchBytes = 24 << 10

// applyGroup writes one partition's events in order. Non-counter writes go
// in unlogged batches (one partition each, so the server applies each
// batch as one mutation); a batch the server refuses for its data is
// written again event by event, to find the rows to dead-letter.
func (t *Target) applyGroup(ctx context.Context, g *group) ([]appliers.Rejected, error) {
	if g.table.counter {
		return t.applyCounters(ctx, g)
	}
	type rendered struct {
		item  appliers.Item
		stmts []stmt
	}
	var (
		rejected []appliers.Rejected
		pending  []rendered
		size     int
	)
	// again renders an event's statements at the moment of each attempt:
	// a TTL is what was left at the read minus the time since, and a
	// statement retried after a lost connection (half a minute of backoff at
	// most) with the TTL of its first attempt would make the cell outlive
	// the source's by that long.
	again := func(r rendered) []stmt {
		if st, err := t.rowStmts(g.table, r.item.Event, t.now()); err == nil {
			return st
		}
		return r.stmts // it rendered before; only its TTLs move with the time
	}
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		err := t.exec(ctx, "writing to "+g.table.keyspace+"."+g.table.name, func() error {
			var all []stmt
			for _, r := range pending {
				all = append(all, again(r)...)
			}
			return t.execStmts(ctx, all)
		})
		if err != nil && retryable(err) {
			return fmt.Errorf("target %s: writing to %s.%s: %w", t.cfg.Name, g.table.keyspace, g.table.name, err)
		}
		if err != nil {
			// Refused for its data: find the events the server refuses.
			for _, r := range pending {
				err := t.exec(ctx, "writing to "+g.table.keyspace+"."+g.table.name, func() error {
					return t.execStmts(ctx, again(r))
				})
				if err != nil && retryable(err) {
					return fmt.Errorf("target %s: writing to %s.%s: %w", t.cfg.Name, g.table.keyspace, g.table.name, err)
				}
				if err != nil {
					rejected = append(rejected, appliers.Rejected{Item: r.item, Reason: fmt.Sprintf("%s.%s: %v", g.table.keyspace, g.table.name, err)})
				}
			}
		}
		pending, size = pending[:0], 0
		return nil
	}
	for _, it := range g.items {
		stmts, err := t.rowStmts(g.table, it.Event, t.now())
		if err != nil {
			rejected = append(rejected, appliers.Rejected{Item: it, Reason: fmt.Sprintf("%s.%s: %v", g.table.keyspace, g.table.name, err)})
			continue
		}
		sz := it.Event.SizeVT()
		if len(pending) > 0 && size+sz > batchBytes {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		pending = append(pending, rendered{item: it, stmts: stmts})
		size += sz
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return rejected, nil
}

// execStmts runs statements as one unlogged batch, or as a plain statement
// when there is only one.
func (t *Target) execStmts(ctx context.Context, all []stmt) error {
	if t.execHook != nil {
		return t.execHook(all)
	}
	if len(all) == 1 {
		return t.sess.Query(all[0].q, all[0].args...).WithContext(ctx).Consistency(t.cons).Idempotent(true).Exec()
	}
	b := t.sess.NewBatch(gocql.UnloggedBatch).WithContext(ctx)
	b.SetConsistency(t.cons)
	for _, s := range all {
		b.Query(s.q, s.args...)
	}
	return t.sess.ExecuteBatch(b)
}

// counterWrite is one counter row: its key and the source's values.
type counterWrite struct {
	where []string
	keys  []any
	cols  []string
	vals  []int64
}

// applyCounters writes counter rows so that applying one twice cannot
// count twice. A counter cannot be set, only incremented, and an increment
// replayed after a crash (or a range read twice by the snapshot) would add
// again. So each event carries the source's value, and the target is
// brought to it: read the counter, add the difference. A replay reads the
// value the first application left and adds nothing. This holds as long as
// ferry is the only writer of the target counter table during the
// migration, and relies on the read seeing the previous write, which the
// default LOCAL_QUORUM (or QUORUM/ALL) gives; a write whose outcome is
// unknown (a timeout) is followed by a re-read before anything is added
// again.
func (t *Target) applyCounters(ctx context.Context, g *group) ([]appliers.Rejected, error) {
	var rejected []appliers.Rejected
	for _, it := range g.items {
		ev := it.Event
		if ev.Op == pb.Op_OP_DELETE {
			stmts, err := t.rowStmts(g.table, ev, time.Now().UnixMicro())
			if err == nil {
				err = t.exec(ctx, "deleting from "+g.table.name, func() error {
					return t.sess.Query(stmts[0].q, stmts[0].args...).WithContext(ctx).Consistency(t.cons).Exec()
				})
			}
			if err != nil && retryable(err) {
				return nil, fmt.Errorf("target %s: %w", t.cfg.Name, err)
			}
			if err != nil {
				rejected = append(rejected, appliers.Rejected{Item: it, Reason: fmt.Sprintf("%s.%s: %v", g.table.keyspace, g.table.name, err)})
			}
			continue
		}
		cw, err := t.counterRow(g.table, ev)
		if err == nil {
			err = t.exec(ctx, "updating counters of "+g.table.name, func() error { return t.setCounters(ctx, g.table, cw) })
		}
		if err != nil && retryable(err) {
			return nil, fmt.Errorf("target %s: %w", t.cfg.Name, err)
		}
		if err != nil {
			rejected = append(rejected, appliers.Rejected{Item: it, Reason: fmt.Sprintf("%s.%s: %v", g.table.keyspace, g.table.name, err)})
		}
	}
	return rejected, nil
}

func (t *Target) counterRow(tt *targetTable, ev *pb.Event) (*counterWrite, error) {
	after := ev.GetAfter()
	if after == nil {
		return nil, fmt.Errorf("a %s event without a row", ev.Op)
	}
	isKey := map[string]bool{}
	for _, n := range ev.GetKey().GetNames() {
		isKey[n] = true
	}
	cw := &counterWrite{}
	for i, n := range after.Names {
		c := t.column(ev.Table, n)
		v := after.Values[i]
		if isKey[n] {
			ph, a, err := tt.bind(c, v)
			if err != nil {
				return nil, err
			}
			cw.where = append(cw.where, quote(c)+" = "+ph)
			cw.keys = append(cw.keys, a...)
			continue
		}
		if cqlcodec.IsNull(v) {
			continue
		}
		iv, ok := v.Kind.(*pb.Value_Int)
		if !ok {
			return nil, fmt.Errorf("column %s: a %s value for a counter", c, cqlcodec.KindName(v))
		}
		cw.cols = append(cw.cols, c)
		cw.vals = append(cw.vals, iv.Int)
	}
	return cw, nil
}

// setCounters brings a counter row to the source's values.
func (t *Target) setCounters(ctx context.Context, tt *targetTable, cw *counterWrite) error {
	if len(cw.cols) == 0 {
		return nil
	}
	sel := make([]string, len(cw.cols))
	for i, c := range cw.cols {
		sel[i] = quote(c)
	}
	where := strings.Join(cw.where, " AND ")
	cells := make([]cqlcodec.Cell, len(cw.cols))
	dest := make([]any, len(cells))
	for i := range cells {
		dest[i] = &cells[i]
	}
	err := t.sess.Query("SELECT "+strings.Join(sel, ", ")+" FROM "+tt.ident+" WHERE "+where, cw.keys...).
		WithContext(ctx).Consistency(t.cons).Scan(dest...)
	if err != nil && err != gocql.ErrNotFound {
		return err
	}
	var set []string
	var args []any
	for i, c := range cw.cols {
		var cur int64
		exists := err == nil && cells[i].V != nil
		if exists {
			cur = cells[i].V.GetInt()
		}
		// A counter at 0 in the source is a cell; + 0 creates it.
		if d := cw.vals[i] - cur; d != 0 || !exists {
			set = append(set, quote(c)+" = "+quote(c)+" + ?")
			args = append(args, d)
		}
	}
	if len(set) == 0 {
		return nil // already at the source's value: a replay
	}
	args = append(args, cw.keys...)
	return t.sess.Query("UPDATE "+tt.ident+" SET "+strings.Join(set, ", ")+" WHERE "+where, args...).
		WithContext(ctx).Consistency(t.cons).Exec()
}
