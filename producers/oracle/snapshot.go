package oracle

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/metrics"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

// workItem is one chunk to read, as queued on the work stream.
type workItem struct {
	Table string `json:"table"`
	Chunk int    `json:"chunk"`
}

// snapshot reads every table AS OF scn in primary-key chunks. As for every
// ferry source, chunks are queued on the source's work-queue stream, any
// producer process of the source may read them, and a chunk is recorded as
// done in KV only after JetStream acknowledged all its rows. It reports
// done=false when ctx ended first.
func (p *producer) snapshot(ctx context.Context, scn uint64) (bool, error) {
	ws, err := p.env.Conn.EnsureWorkStream(ctx, p.cfg.Name)
	if err != nil {
		return false, err
	}
	plans := map[string]*streams.ChunkPlan{}
	for _, name := range p.order {
		pl, err := p.ensurePlan(ctx, p.tables[name], scn)
		if err != nil {
			return false, err
		}
		plans[name] = pl
		done, err := p.env.State.Keys(ctx, streams.ChunkPrefix(p.cfg.Name, name))
		if err != nil {
			return false, err
		}
		metrics.SnapshotChunksTotal.WithLabelValues(p.cfg.Name, name).Set(float64(pl.Chunks()))
		metrics.SnapshotChunksDone.WithLabelValues(p.cfg.Name, name).Set(float64(len(done)))
	}
	cons, err := ws.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       "readers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       15 * time.Second,
		MaxAckPending: p.cfg.SnapshotWorkers * 4,
	})
	if err != nil {
		return false, fmt.Errorf("source %s: creating snapshot work consumer: %w", p.cfg.Name, err)
	}
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		rows     atomic.Int64
	)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range p.cfg.SnapshotWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.chunkReader(wctx, ws, cons, plans, scn, &rows); err != nil {
				errOnce.Do(func() { firstErr = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if firstErr != nil || ctx.Err() != nil {
		return false, firstErr
	}
	for name, pl := range plans {
		keys, err := p.env.State.Keys(ctx, streams.ChunkPrefix(p.cfg.Name, name))
		if err != nil {
			return false, err
		}
		if len(keys) < pl.Chunks() {
			return false, fmt.Errorf("source %s: snapshot of %s has %d of %d chunks recorded after the work queue drained", p.cfg.Name, name, len(keys), pl.Chunks())
		}
	}
	p.log.Info("snapshot rows published", "rows", rows.Load())
	return true, nil
}

// ensurePlan makes (or reloads) a table's chunk plan and queues its chunks;
// the plan is saved before queueing, so a crash in between queues the same
// chunks again and their message ids make JetStream drop the repeats.
func (p *producer) ensurePlan(ctx context.Context, t *table, scn uint64) (*streams.ChunkPlan, error) {
	key := streams.PlanKey(p.cfg.Name, t.Name)
	var pl streams.ChunkPlan
	found, err := p.env.State.GetJSON(ctx, key, &pl)
	if err != nil {
		return nil, err
	}
	if found && pl.Enqueued {
		return &pl, nil
	}
	if !found {
		q, args := boundsQuery(t, scn, p.cfg.ChunkRows)
		err := p.q.Query(ctx, q, args, func(v []any) error {
			b := make([]string, len(v))
			for i, x := range v {
				s, ok := x.(string)
				if !ok {
					return fmt.Errorf("key column %s is NULL", t.Columns[t.Key[i]].Name)
				}
				b[i] = s
			}
			pl.Bounds = append(pl.Bounds, b)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("source %s: planning chunks of %s as of SCN %d: %w", p.cfg.Name, t.Name, scn, flashbackHint(err))
		}
		pl.EstRows = int64(len(pl.Bounds)+1) * int64(p.cfg.ChunkRows)
		if err := p.env.State.PutJSON(ctx, key, pl); err != nil {
			return nil, err
		}
	}
	for i := range pl.Chunks() {
		data, _ := json.Marshal(workItem{Table: t.Name, Chunk: i})
		id := fmt.Sprintf("%s:chunk:%s:%d", p.cfg.Name, t.Name, i)
		if _, err := p.env.Conn.JS.Publish(ctx, streams.WorkSubject(p.cfg.Name, t.Name), data, jetstream.WithMsgID(id)); err != nil {
			return nil, fmt.Errorf("source %s: queueing chunk %d of %s: %w", p.cfg.Name, i, t.Name, err)
		}
	}
	pl.Enqueued = true
	if err := p.env.State.PutJSON(ctx, key, pl); err != nil {
		return nil, err
	}
	p.log.Info("planned snapshot", "table", t.Name, "chunks", pl.Chunks())
	return &pl, nil
}

// flashbackHint adds what to do about the errors of a read in the past.
func flashbackHint(err error) error {
	msg := err.Error()
	if strings.Contains(msg, "ORA-01555") || strings.Contains(msg, "ORA-08180") || strings.Contains(msg, "ORA-08181") {
		return fmt.Errorf("%w (the undo for that SCN is gone: raise UNDO_RETENTION, e.g. ALTER SYSTEM SET UNDO_RETENTION = 86400;, and start the pipeline over)", err)
	}
	return err
}

// boundsQuery takes every chunkRows-th primary key, in key order, as of the
// snapshot SCN: the upper bounds of the chunks, in one index scan.
func boundsQuery(t *table, scn uint64, chunkRows int) (string, []any) {
	keys := make([]string, len(t.Key))
	texts := make([]string, len(t.Key))
	for i, k := range t.Key {
		keys[i] = quoteIdent(t.Columns[k].Name)
		texts[i] = t.Columns[k].selectExpr()
	}
	inner := "SELECT " + strings.Join(keys, ", ") + ", ROW_NUMBER() OVER (ORDER BY " + strings.Join(keys, ", ") + ") AS FERRY_RN FROM " + t.ident() + " AS OF SCN TO_NUMBER(:1)"
	q := "SELECT " + strings.Join(texts, ", ") + " FROM (" + inner + ") WHERE MOD(FERRY_RN, :2) = 0 ORDER BY FERRY_RN"
	return q, []any{strconv.FormatUint(scn, 10), chunkRows}
}

// chunkQuery reads chunk i of a plan: keys in (Bounds[i-1], Bounds[i]].
// Oracle has no row-value comparison, so a composite bound is spelled out:
// (a > :x) OR (a = :x AND b > :y).
func chunkQuery(t *table, pl *streams.ChunkPlan, chunk int, scn uint64) (string, []any) {
	sel := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		sel[i] = c.selectExpr()
	}
	args := []any{strconv.FormatUint(scn, 10)}
	bind := func(c column, v string) string {
		args = append(args, v)
		return c.bindExpr(fmt.Sprintf(":%d", len(args)))
	}
	// cmp spells out key > bound (op ">", last ">") or key <= bound (op
	// "<", last "<="): (a op x) OR (a = x AND b op y) ... with the last
	// column compared by last.
	cmp := func(bound []string, op, last string) string {
		var ors []string
		for i := range t.Key {
			var ands []string
			for j := 0; j <= i; j++ {
				c := t.Columns[t.Key[j]]
				o := "="
				switch {
				case j == i && i == len(t.Key)-1:
					o = last
				case j == i:
					o = op
				}
				ands = append(ands, quoteIdent(c.Name)+" "+o+" "+bind(c, bound[j]))
			}
			ors = append(ors, "("+strings.Join(ands, " AND ")+")")
		}
		return "(" + strings.Join(ors, " OR ") + ")"
	}
	var where []string
	if chunk > 0 {
		where = append(where, cmp(pl.Bounds[chunk-1], ">", ">"))
	}
	if chunk < len(pl.Bounds) {
		where = append(where, cmp(pl.Bounds[chunk], "<", "<="))
	}
	q := "SELECT " + strings.Join(sel, ", ") + " FROM " + t.ident() + " AS OF SCN TO_NUMBER(:1)"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	return q, args
}

func (p *producer) chunkReader(ctx context.Context, ws jetstream.Stream, cons jetstream.Consumer, plans map[string]*streams.ChunkPlan, scn uint64, rows *atomic.Int64) error {
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			return fmt.Errorf("source %s: fetching snapshot work: %w", p.cfg.Name, err)
		}
		var msg jetstream.Msg
		for m := range batch.Messages() {
			msg = m
		}
		if msg == nil {
			info, err := ws.Info(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("source %s: reading snapshot work queue: %w", p.cfg.Name, err)
			}
			if info.State.Msgs == 0 {
				return nil
			}
			continue
		}
		var w workItem
		if err := json.Unmarshal(msg.Data(), &w); err != nil {
			return fmt.Errorf("source %s: bad snapshot work item %q: %w", p.cfg.Name, msg.Data(), err)
		}
		t, pl := p.tables[w.Table], plans[w.Table]
		if t == nil || pl == nil || w.Chunk >= pl.Chunks() {
			p.log.Warn("dropping snapshot work item for a table not in this run", "table", w.Table, "chunk", w.Chunk)
			_ = msg.Ack()
			continue
		}
		// A chunk in hand is finished even when asked to stop.
		hctx := context.WithoutCancel(ctx)
		var done streams.ChunkDone
		found, err := p.env.State.GetJSON(hctx, streams.ChunkKey(p.cfg.Name, w.Table, w.Chunk), &done)
		if err != nil {
			return err
		}
		if !found {
			n, err := p.readChunk(hctx, t, pl, w.Chunk, scn, msg)
			if err != nil {
				_ = msg.Nak()
				return err
			}
			rows.Add(n)
			if err := p.env.State.PutJSON(hctx, streams.ChunkKey(p.cfg.Name, w.Table, w.Chunk), streams.ChunkDone{Rows: n}); err != nil {
				return err
			}
			metrics.SnapshotChunksDone.WithLabelValues(p.cfg.Name, w.Table).Inc()
			metrics.SnapshotRows.WithLabelValues(p.cfg.Name, w.Table).Add(float64(n))
			metrics.EventsPublished.WithLabelValues(p.cfg.Name, w.Table).Add(float64(n))
		}
		if err := msg.DoubleAck(hctx); err != nil {
			p.log.Warn("acknowledging snapshot work item", "err", err)
		}
	}
	return nil
}

// readChunk reads one chunk AS OF the snapshot SCN and publishes its rows
// in messages per lane, then waits for every acknowledgement. Every read
// sees the same SCN, so a chunk read again gives the same rows; the
// delivery attempt is in the message ids all the same, as a row may have
// been published twice in different message splits.
func (p *producer) readChunk(ctx context.Context, t *table, pl *streams.ChunkPlan, chunk int, scn uint64, work jetstream.Msg) (int64, error) {
	var attempt uint64
	if md, err := work.Metadata(); err == nil {
		attempt = md.NumDelivered
	}
	type laneBuf struct {
		events []*pb.Event
		size   int
		part   int
	}
	lanes := make([]laneBuf, p.cfg.Partitions)
	var futs []jetstream.PubAckFuture
	flush := func(lane int) error {
		lb := &lanes[lane]
		if len(lb.events) == 0 {
			return nil
		}
		data, err := streams.Encode(lb.events...)
		if err != nil {
			return err
		}
		id := fmt.Sprintf("%s:snap:%s:%d:%d:%d:%d", p.cfg.Name, t.Name, chunk, attempt, lane, lb.part)
		f, err := p.env.Conn.PublishAsync(streams.EventSubject(p.cfg.Name, t.Name, lane), id, data)
		if err != nil {
			return err
		}
		futs = append(futs, f)
		lb.events, lb.size = nil, 0
		lb.part++
		return nil
	}
	limit := min(p.maxPayload/2, 512<<10)
	var n int64
	lastProgress := time.Now()
	q, args := chunkQuery(t, pl, chunk, scn)
	err := p.q.Query(ctx, q, args, func(v []any) error {
		ev, err := rowEvent(t, v)
		if err != nil {
			return err
		}
		ev.Source = p.cfg.Name
		size := ev.SizeVT()
		if size+64 > p.maxPayload {
			return fmt.Errorf("row %s (%s) is %d bytes encoded, above the NATS server's max_payload of %d; raise max_payload (nats.maxPayload for the embedded server)", t.Name, streams.KeyText(ev.GetKey()), size, p.maxPayload)
		}
		lane := streams.Lane(ev.Key, p.cfg.Partitions)
		lb := &lanes[lane]
		if lb.size+size > limit || len(lb.events) >= 2000 {
			if err := flush(lane); err != nil {
				return err
			}
		}
		lb.events = append(lb.events, ev)
		lb.size += size
		n++
		if n%256 == 0 {
			if err := config.WaitRows(ctx, p.limit, 256); err != nil {
				return err
			}
		}
		if time.Since(lastProgress) > 5*time.Second {
			_ = work.InProgress()
			lastProgress = time.Now()
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("source %s: reading chunk %d of %s: %w", p.cfg.Name, chunk, t.Name, flashbackHint(err))
	}
	for lane := range lanes {
		if err := flush(lane); err != nil {
			return 0, err
		}
	}
	if err := streams.WaitAcks(ctx, futs); err != nil {
		return 0, fmt.Errorf("source %s: chunk %d of %s: %w", p.cfg.Name, chunk, t.Name, err)
	}
	return n, nil
}

// rowEvent builds a snapshot read event from a row of selectExpr values.
func rowEvent(t *table, v []any) (*pb.Event, error) {
	if len(v) != len(t.Columns) {
		return nil, fmt.Errorf("%s: read %d values for %d columns", t.Name, len(v), len(t.Columns))
	}
	after := &pb.Row{Names: make([]string, len(t.Columns)), Values: make([]*pb.Value, len(t.Columns))}
	for i, c := range t.Columns {
		val, err := convert(c, driverLiteral(v[i]))
		if err != nil {
			return nil, fmt.Errorf("%s.%s (%s): %w", t.Name, c.Name, c.Type, err)
		}
		after.Names[i], after.Values[i] = c.Name, val
	}
	key := &pb.Row{}
	for _, k := range t.Key {
		key.Names = append(key.Names, after.Names[k])
		key.Values = append(key.Values, after.Values[k])
	}
	return &pb.Event{Table: t.Name, Op: pb.Op_OP_READ, Key: key, After: after}, nil
}
