package producers

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/internal/metrics"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

// WorkItem is one snapshot chunk to read, as queued on a source's
// work-queue stream.
type WorkItem struct {
	Table string `json:"table"`
	Chunk int    `json:"chunk"`
}

// QueueChunks makes (or reloads) a table's chunk plan and queues its
// chunks on the source's work-queue stream. bounds computes the plan's key
// bounds when KV holds none. The plan is saved before queueing, so a crash
// in between re-queues the same chunks, whose message ids make JetStream
// drop the repeats.
func QueueChunks(ctx context.Context, env Env, source, table string, estRows int64, bounds func() ([][]string, error)) (*streams.ChunkPlan, error) {
	key := streams.PlanKey(source, table)
	var pl streams.ChunkPlan
	found, err := env.State.GetJSON(ctx, key, &pl)
	if err != nil {
		return nil, err
	}
	if found && pl.Enqueued {
		return &pl, nil
	}
	if !found {
		b, err := bounds()
		if err != nil {
			return nil, err
		}
		pl = streams.ChunkPlan{Bounds: b, EstRows: estRows}
		if err := env.State.PutJSON(ctx, key, pl); err != nil {
			return nil, err
		}
	}
	for i := range pl.Chunks() {
		data, _ := json.Marshal(WorkItem{Table: table, Chunk: i})
		id := fmt.Sprintf("%s:chunk:%s:%d", source, table, i)
		if _, err := env.Conn.JS.Publish(ctx, streams.WorkSubject(source, table), data, jetstream.WithMsgID(id)); err != nil {
			return nil, fmt.Errorf("source %s: queueing chunk %d of %s: %w", source, i, table, err)
		}
	}
	pl.Enqueued = true
	if err := env.State.PutJSON(ctx, key, pl); err != nil {
		return nil, err
	}
	env.Log.Info("planned snapshot", "source", source, "table", table, "chunks", pl.Chunks(), "estRows", pl.EstRows)
	return &pl, nil
}

// ChunkReader reads one chunk of a table and publishes its rows, returning
// how many once JetStream acknowledged them all. work is the queue message,
// for progress reports and its delivery count.
type ChunkReader func(ctx context.Context, table string, pl *streams.ChunkPlan, chunk int, work jetstream.Msg) (int64, error)

// ChunkWorker takes chunks from the work queue and reads them until the
// queue is empty or ctx ends. A chunk already recorded done in KV is only
// acknowledged; a chunk read is recorded done in KV before its work item is
// acknowledged, so a crash in between reads nothing twice.
func ChunkWorker(ctx context.Context, env Env, source string, ws jetstream.Stream, cons jetstream.Consumer, plans map[string]*streams.ChunkPlan, read ChunkReader, rows *atomic.Int64) error {
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			return fmt.Errorf("source %s: fetching snapshot work: %w", source, err)
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
				return fmt.Errorf("source %s: reading snapshot work queue: %w", source, err)
			}
			if info.State.Msgs == 0 {
				return nil // every chunk is done (acknowledged items leave the queue)
			}
			continue
		}
		var w WorkItem
		if err := json.Unmarshal(msg.Data(), &w); err != nil {
			return fmt.Errorf("source %s: bad snapshot work item %q: %w", source, msg.Data(), err)
		}
		pl := plans[w.Table]
		if pl == nil || w.Chunk >= pl.Chunks() {
			// A chunk of a table no longer configured: not ours to read.
			env.Log.Warn("dropping snapshot work item for a table not in this run", "source", source, "table", w.Table, "chunk", w.Chunk)
			_ = msg.Ack()
			continue
		}
		// A chunk in hand is finished even if asked to stop: it is short,
		// and stopping halfway would only mean reading it again.
		hctx := context.WithoutCancel(ctx)
		var done streams.ChunkDone
		found, err := env.State.GetJSON(hctx, streams.ChunkKey(source, w.Table, w.Chunk), &done)
		if err != nil {
			return err
		}
		if !found {
			n, err := read(hctx, w.Table, pl, w.Chunk, msg)
			if err != nil {
				_ = msg.Nak()
				return err
			}
			rows.Add(n)
			if err := env.State.PutJSON(hctx, streams.ChunkKey(source, w.Table, w.Chunk), streams.ChunkDone{Rows: n}); err != nil {
				return err
			}
			metrics.SnapshotChunksDone.WithLabelValues(source, w.Table).Inc()
			metrics.SnapshotRows.WithLabelValues(source, w.Table).Add(float64(n))
			metrics.EventsPublished.WithLabelValues(source, w.Table).Add(float64(n))
		}
		if err := msg.DoubleAck(hctx); err != nil {
			env.Log.Warn("acknowledging snapshot work item", "source", source, "err", err)
		}
	}
	return nil
}

// LaneBatcher groups a chunk's snapshot rows into one message per lane,
// bounded in bytes and rows, and publishes them asynchronously.
type LaneBatcher struct {
	conn          *streams.Conn
	source, table string
	// idPrefix makes message ids: "<prefix>:<lane>:<part>".
	idPrefix string
	limit    int
	lanes    []laneBuf
	futs     []jetstream.PubAckFuture
}

// laneBuf is one lane's message being built. Events are encoded as they
// are added, so what a chunk holds until its messages go out is their
// bytes, not event objects (several times larger, and work for the garbage
// collector), and the caller may reuse an event once Add returns.
type laneBuf struct {
	payload []byte
	events  int
	size    int
	part    int
}

// NewLaneBatcher batches for one chunk; idPrefix must identify the chunk
// and its read attempt, so that a chunk read again is not dropped as a
// repeat of an earlier, partial attempt.
func NewLaneBatcher(conn *streams.Conn, source, table string, partitions, maxPayload int, idPrefix string) *LaneBatcher {
	return &LaneBatcher{conn: conn, source: source, table: table, idPrefix: idPrefix,
		limit: min(maxPayload/2, 512<<10), lanes: make([]laneBuf, partitions)}
}

// Add queues an event of the given encoded size in its key's lane.
func (b *LaneBatcher) Add(ev *pb.Event, size int) error {
	lane := streams.Lane(ev.Key, len(b.lanes))
	lb := &b.lanes[lane]
	if lb.size+size > b.limit {
		if err := b.flush(lane); err != nil {
			return err
		}
	}
	if lb.payload == nil {
		// Published payloads are kept until acknowledged: each message
		// gets its own buffer, sized for what a full one holds.
		lb.payload = make([]byte, 0, min(b.limit+b.limit/16, 64<<10))
	}
	var err error
	if lb.payload, err = streams.AppendEvent(lb.payload, ev, size); err != nil {
		return err
	}
	lb.events++
	lb.size += size
	if lb.events >= 2000 {
		return b.flush(lane)
	}
	return nil
}

func (b *LaneBatcher) flush(lane int) error {
	lb := &b.lanes[lane]
	if lb.events == 0 {
		return nil
	}
	id := fmt.Sprintf("%s:%d:%d", b.idPrefix, lane, lb.part)
	f, err := b.conn.PublishAsync(streams.EventSubject(b.source, b.table, lane), id, lb.payload)
	if err != nil {
		return err
	}
	b.futs = append(b.futs, f)
	lb.payload, lb.events, lb.size = nil, 0, 0
	lb.part++
	return nil
}

// Finish publishes what is left and waits until JetStream acknowledged
// every message; it returns how many messages were sent.
func (b *LaneBatcher) Finish(ctx context.Context) (int, error) {
	for lane := range b.lanes {
		if err := b.flush(lane); err != nil {
			return 0, err
		}
	}
	return len(b.futs), streams.WaitAcks(ctx, b.futs)
}

// PlanChunks ensures the source's work-queue stream and every table's chunk
// plan (plan makes and queues one, see QueueChunks), and sets the snapshot
// progress metrics.
func PlanChunks(ctx context.Context, env Env, source string, tables []string, plan func(table string) (*streams.ChunkPlan, error)) (jetstream.Stream, map[string]*streams.ChunkPlan, error) {
	ws, err := env.Conn.EnsureWorkStream(ctx, source)
	if err != nil {
		return nil, nil, err
	}
	plans := map[string]*streams.ChunkPlan{}
	for _, name := range tables {
		pl, err := plan(name)
		if err != nil {
			return nil, nil, err
		}
		plans[name] = pl
		done, err := env.State.Keys(ctx, streams.ChunkPrefix(source, name))
		if err != nil {
			return nil, nil, err
		}
		metrics.SnapshotChunksTotal.WithLabelValues(source, name).Set(float64(pl.Chunks()))
		metrics.SnapshotChunksDone.WithLabelValues(source, name).Set(float64(len(done)))
		metrics.SnapshotRowsEstimate.WithLabelValues(source, name).Set(float64(pl.EstRows))
	}
	return ws, plans, nil
}

// RunChunks reads every queued chunk, one ChunkWorker per reader, and
// reports done=false when ctx ended first. Once the queue drained it
// confirms against KV that every chunk of every plan is recorded.
func RunChunks(ctx context.Context, env Env, source string, ws jetstream.Stream, plans map[string]*streams.ChunkPlan, readers []ChunkReader) (bool, error) {
	cons, err := ws.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       "readers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       15 * time.Second, // a dead reader's chunk is handed out again after this
		MaxAckPending: len(readers) * 4,
	})
	if err != nil {
		return false, fmt.Errorf("source %s: creating snapshot work consumer: %w", source, err)
	}
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		rows     atomic.Int64
	)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, read := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ChunkWorker(wctx, env, source, ws, cons, plans, read, &rows); err != nil {
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
		keys, err := env.State.Keys(ctx, streams.ChunkPrefix(source, name))
		if err != nil {
			return false, err
		}
		if len(keys) < pl.Chunks() {
			return false, fmt.Errorf("source %s: snapshot of %s has %d of %d chunks recorded after the work queue drained", source, name, len(keys), pl.Chunks())
		}
	}
	env.Log.Info("snapshot rows published", "source", source, "rows", rows.Load())
	return true, nil
}
