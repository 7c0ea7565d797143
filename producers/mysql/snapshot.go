package mysql

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/metrics"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

type plan = streams.ChunkPlan

// workItem is one chunk to read, as queued on the work stream.
type workItem struct {
	Table string `json:"table"`
	Chunk int    `json:"chunk"`
}

// snapshot reads every table in primary-key chunks, queued on the source's
// work-queue stream; a chunk is recorded done in KV only after JetStream
// acknowledged all its rows. Each reader holds one connection in a
// consistent-snapshot transaction. On a first start (first: KV holds no
// position) those transactions are opened under a brief global read lock,
// during which the binlog position is read and saved: every reader then
// sees exactly the data of that position, and the change stream starts
// there. After a restart the remaining chunks are read at fresh snapshots;
// the stream, still starting at the saved position, brings them up to date.
// It reports done=false when ctx ended first.
func (p *producer) snapshot(ctx context.Context, snap *streams.SnapshotState, first bool) (bool, error) {
	ws, err := p.env.Conn.EnsureWorkStream(ctx, p.cfg.Name)
	if err != nil {
		return false, err
	}
	plans := map[string]*plan{}
	for _, name := range p.order {
		pl, err := p.ensurePlan(ctx, p.tables[name])
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
		metrics.SnapshotRowsEstimate.WithLabelValues(p.cfg.Name, name).Set(float64(pl.EstRows))
	}
	conns := make([]*client.Conn, p.cfg.SnapshotWorkers)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range conns {
		if conns[i], err = p.connect(ctx); err != nil {
			return false, err
		}
	}
	if err := p.openSnapshots(ctx, conns, snap, first); err != nil {
		return false, err
	}
	cons, err := ws.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       "readers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       15 * time.Second, // a dead reader's chunk is handed out again after this
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
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.snapshotWorker(wctx, c, ws, cons, plans, &rows); err != nil {
				errOnce.Do(func() { firstErr = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return false, firstErr
	}
	if ctx.Err() != nil {
		return false, nil
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

const startSnapshot = "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"

// openSnapshots starts each reader's consistent-snapshot transaction. On a
// first start it does so under FLUSH TABLES WITH READ LOCK and saves the
// binlog position of that moment (or defaultGTIDSet, when set) as the
// change stream's start.
func (p *producer) openSnapshots(ctx context.Context, conns []*client.Conn, snap *streams.SnapshotState, first bool) error {
	if !first {
		for _, c := range conns {
			if _, err := c.Execute(startSnapshot); err != nil {
				return fmt.Errorf("source %s: starting a snapshot transaction: %w", p.cfg.Name, err)
			}
		}
		return p.env.State.PutJSON(ctx, streams.SnapshotKey(p.cfg.Name), snap)
	}
	locked := true
	if _, err := p.query("FLUSH TABLES WITH READ LOCK"); err != nil {
		// Without RELOAD: the position is read first, and the readers'
		// snapshots are a little newer; the change stream replays the
		// difference, so the target still converges (ferry check warns).
		p.log.Warn("cannot take the global read lock; the snapshot is read slightly after its recorded position and the change stream replays the difference", "err", err)
		locked = false
	}
	pos, err := p.currentPosition()
	if err == nil {
		for _, c := range conns {
			if _, err = c.Execute(startSnapshot); err != nil {
				err = fmt.Errorf("source %s: starting a snapshot transaction: %w", p.cfg.Name, err)
				break
			}
		}
	}
	if locked {
		if _, uerr := p.query("UNLOCK TABLES"); uerr != nil && err == nil {
			err = uerr
		}
	}
	if err != nil {
		return err
	}
	snap.Consistent = pos.text()
	p.log.Info("snapshot consistent with binlog position", "position", pos.text(), "file", pos.File, "offset", pos.Offset)
	if p.cfg.HasCDC() {
		start := pos
		if p.cfg.DefaultGTIDSet != "" {
			if start, err = p.firstPosition(); err != nil {
				return err
			}
		}
		if err := p.savePosition(ctx, start, 0); err != nil {
			return err
		}
	}
	return p.env.State.PutJSON(ctx, streams.SnapshotKey(p.cfg.Name), snap)
}

// ensurePlan makes (or reloads) a table's chunk plan and queues its chunks.
func (p *producer) ensurePlan(ctx context.Context, t *table) (*plan, error) {
	key := streams.PlanKey(p.cfg.Name, t.Name)
	var pl plan
	found, err := p.env.State.GetJSON(ctx, key, &pl)
	if err != nil {
		return nil, err
	}
	if found && pl.Enqueued {
		return &pl, nil
	}
	if !found {
		bounds, err := p.chunkBounds(t)
		if err != nil {
			return nil, err
		}
		pl = plan{Bounds: bounds, EstRows: t.EstRows}
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
	p.log.Info("planned snapshot", "table", t.Name, "chunks", pl.Chunks(), "estRows", pl.EstRows)
	return &pl, nil
}

func (t *table) keyList() string {
	parts := make([]string, len(t.Key))
	for i, k := range t.Key {
		parts[i] = quoteIdent(t.Columns[k].Name)
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func (t *table) keyParams() string {
	if len(t.Key) == 1 {
		return "?"
	}
	return "(" + strings.TrimSuffix(strings.Repeat("?, ", len(t.Key)), ", ") + ")"
}

// chunkBounds walks the primary key, taking every ChunkRows-th key as a
// chunk's upper bound. Bounds are kept typed (see encodeBound), so that they
// compare as the key columns do.
func (p *producer) chunkBounds(t *table) ([][]string, error) {
	keys := strings.Trim(t.keyList(), "()")
	var bounds [][]string
	var last []string
	for {
		q := "SELECT " + keys + " FROM " + t.Ident
		var args []any
		if last != nil {
			q += " WHERE " + t.keyList() + " > " + t.keyParams()
			for _, b := range last {
				args = append(args, decodeBound(b))
			}
		}
		q += fmt.Sprintf(" ORDER BY %s LIMIT 1 OFFSET %d", keys, p.cfg.ChunkRows-1)
		p.mu.Lock()
		stmt, err := p.meta.Prepare(q)
		var r *gomysql.Result
		if err == nil {
			r, err = stmt.Execute(args...)
			_ = stmt.Close()
		}
		p.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("source %s: planning chunks of %s: %w", p.cfg.Name, t.Name, err)
		}
		if r.RowNumber() == 0 {
			return bounds, nil
		}
		vals := make([]string, len(t.Key))
		for i := range vals {
			vals[i] = encodeBound(r.Values[0][i])
		}
		bounds = append(bounds, vals)
		last = vals
	}
}

// encodeBound keeps a key value with its type: integers as numbers, so that
// a BIGINT UNSIGNED compares exactly; everything else as its bytes (hex),
// bound back as a string in the connection's character set.
func encodeBound(v gomysql.FieldValue) string {
	switch v.Type {
	case gomysql.FieldValueTypeSigned:
		return "i:" + strconv.FormatInt(v.AsInt64(), 10)
	case gomysql.FieldValueTypeUnsigned:
		return "u:" + strconv.FormatUint(v.AsUint64(), 10)
	case gomysql.FieldValueTypeFloat:
		return "f:" + strconv.FormatFloat(v.AsFloat64(), 'g', -1, 64)
	}
	return "x:" + hex.EncodeToString(v.AsString())
}

func decodeBound(s string) any {
	kind, val, _ := strings.Cut(s, ":")
	switch kind {
	case "i":
		n, _ := strconv.ParseInt(val, 10, 64)
		return n
	case "u":
		n, _ := strconv.ParseUint(val, 10, 64)
		return n
	case "f":
		f, _ := strconv.ParseFloat(val, 64)
		return f
	}
	b, _ := hex.DecodeString(val)
	return b
}

func (p *producer) snapshotWorker(ctx context.Context, conn *client.Conn, ws jetstream.Stream, cons jetstream.Consumer, plans map[string]*plan, rows *atomic.Int64) error {
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
		hctx := context.WithoutCancel(ctx)
		var done streams.ChunkDone
		found, err := p.env.State.GetJSON(hctx, streams.ChunkKey(p.cfg.Name, w.Table, w.Chunk), &done)
		if err != nil {
			return err
		}
		if !found {
			n, err := p.readChunk(hctx, conn, t, pl, w.Chunk, msg)
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

type laneBuf struct {
	events []*pb.Event
	size   int
	part   int
}

// readChunk reads one chunk in the reader's snapshot transaction, over the
// binary protocol (FLOAT and DOUBLE arrive as their exact bits), publishes
// its rows grouped by lane and waits until JetStream acknowledged them.
func (p *producer) readChunk(ctx context.Context, conn *client.Conn, t *table, pl *plan, chunk int, work jetstream.Msg) (int64, error) {
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = quoteIdent(c.Name)
	}
	q := "SELECT " + strings.Join(cols, ", ") + " FROM " + t.Ident
	var where []string
	var args []any
	if chunk > 0 {
		where = append(where, t.keyList()+" > "+t.keyParams())
		for _, v := range pl.Bounds[chunk-1] {
			args = append(args, decodeBound(v))
		}
	}
	if chunk < len(pl.Bounds) {
		where = append(where, t.keyList()+" <= "+t.keyParams())
		for _, v := range pl.Bounds[chunk] {
			args = append(args, decodeBound(v))
		}
	}
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	var attempt uint64
	if md, err := work.Metadata(); err == nil {
		attempt = md.NumDelivered
	}
	lanes := make([]laneBuf, p.cfg.Partitions)
	var futs []jetstream.PubAckFuture
	var n int64
	lastProgress := time.Now()
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
		lb.events, lb.size = lb.events[:0:0], 0
		lb.part++
		return nil
	}
	limit := min(p.maxPayload/2, 512<<10)
	raw := make([]any, len(t.Columns))
	all := make([]int, len(t.Columns))
	for i := range all {
		all[i] = i
	}
	stmt, err := conn.Prepare(q)
	if err != nil {
		return 0, fmt.Errorf("source %s: reading chunk %d of %s: %w", p.cfg.Name, chunk, t.Name, err)
	}
	defer stmt.Close()
	var res gomysql.Result
	err = stmt.ExecuteSelectStreaming(&res, func(row []gomysql.FieldValue) error {
		for i := range row {
			raw[i] = row[i].Value()
		}
		after, err := p.row(t, all, raw, false)
		if err != nil {
			return err
		}
		ev := &pb.Event{Source: p.cfg.Name, Table: t.Name, Op: pb.Op_OP_READ, Key: keyOf(t, after), After: after}
		size := ev.SizeVT()
		if size+64 > p.maxPayload {
			return fmt.Errorf("source %s: row %s (%s) is %d bytes encoded, above the NATS server's max_payload of %d; raise max_payload (nats.maxPayload for the embedded server)",
				p.cfg.Name, t.Name, keyString(ev.Key), size, p.maxPayload)
		}
		lane := streams.Lane(ev.Key, p.cfg.Partitions)
		lb := &lanes[lane]
		if lb.size+size > limit {
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
		if len(lb.events) >= 2000 {
			if err := flush(lane); err != nil {
				return err
			}
		}
		if time.Since(lastProgress) > 5*time.Second {
			_ = work.InProgress()
			lastProgress = time.Now()
		}
		return nil
	}, nil, args...)
	if err != nil {
		var me *gomysql.MyError
		if errors.As(err, &me) {
			return 0, fmt.Errorf("source %s: reading chunk %d of %s: %w", p.cfg.Name, chunk, t.Name, err)
		}
		return 0, err
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
