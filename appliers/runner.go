package appliers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/metrics"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

// ErrPermanent marks an error that retrying cannot fix (a missing table or
// column, a type the target cannot take); the runner stops on it.
var ErrPermanent = errors.New("permanent")

// Permanent wraps err so that the runner stops rather than retries.
func Permanent(err error) error { return fmt.Errorf("%w: %w", ErrPermanent, err) }

// batchBytes bounds the messages one lane applies in one transaction.
const batchBytes = 1 << 20

// Stats counts what a runner did; safe for concurrent reads.
type Stats struct {
	Applied      atomic.Int64 // events written
	DeadLettered atomic.Int64 // events sent to the dead-letter stream
	Batches      atomic.Int64
}

// Runner feeds one target from its source's stream: one durable pull
// consumer per lane, each lane applied in stream order by its own goroutine.
// Lanes are the unit several applier processes could share; one process runs
// them all here.
type Runner struct {
	cfg    config.Target
	conn   *streams.Conn
	target Target
	log    *slog.Logger
	Stats  Stats
	state  *streams.State // positions, the compactor's progress, trims

	mu        sync.Mutex
	consumers []jetstream.Consumer
	limit     *rate.Limiter
}

// NewRunner prepares a runner; Run starts it.
func NewRunner(cfg config.Target, conn *streams.Conn, target Target, log *slog.Logger) *Runner {
	return &Runner{cfg: cfg, conn: conn, target: target, log: log.With("target", cfg.Name, "source", cfg.From),
		limit: config.Limiter(cfg.WriteRowsPerSecond)}
}

// Run applies events until ctx ends, then finishes the batch in hand and
// returns nil. It returns an error when a lane hits a permanent error.
func (r *Runner) Run(ctx context.Context) error {
	parts, err := r.waitStream(ctx)
	if err != nil || parts == 0 {
		return err
	}
	// NATS may be restarting: these calls are retried like the writes.
	if _, err := retry(ctx, r.log, "creating the dead-letter stream", func(ctx context.Context) (jetstream.Stream, error) {
		return r.conn.EnsureDLQ(ctx)
	}); err != nil {
		return err
	}
	if r.state, err = retry(ctx, r.log, "opening the state bucket", r.conn.State); err != nil {
		return err
	}
	if su, ok := r.target.(StateUser); ok {
		su.UseState(r.state)
	}
	cons := make([]jetstream.Consumer, parts)
	for lane := range parts {
		c, err := retry(ctx, r.log, "creating the lane's consumer", func(ctx context.Context) (jetstream.Consumer, error) {
			return r.conn.EnsureLaneConsumer(ctx, r.cfg.From, r.cfg.Name, lane, r.cfg.BatchSize)
		})
		if err != nil {
			return err
		}
		cons[lane] = c
	}
	if ctx.Err() != nil {
		return nil
	}
	r.mu.Lock()
	r.consumers = cons
	r.mu.Unlock()
	// Lanes that hold nothing yet start from the state stream when the
	// source keeps one (the change stream may have been trimmed), not from
	// the first event.
	seeded, err := retry(ctx, r.log, "seeding from the state stream", func(ctx context.Context) (map[int]uint64, error) {
		return r.seed(ctx, parts)
	})
	if ctx.Err() != nil {
		// Stopped while seeding: the lanes keep no watermark and are
		// seeded again on the next start.
		return nil
	}
	if err != nil {
		return err
	}
	for lane, m := range seeded {
		if cons[lane], err = retry(ctx, r.log, "moving the lane's consumer past the seed", func(ctx context.Context) (jetstream.Consumer, error) {
			return r.conn.ResetLaneConsumer(ctx, r.cfg.From, r.cfg.Name, lane, r.cfg.BatchSize, m+1)
		}); err != nil {
			return err
		}
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.watchPending(ctx)
	}()
	for lane, c := range cons {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.superviseLane(ctx, Lane{Source: r.cfg.From, Partition: lane}, c); err != nil {
				cancel(err)
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// waitStream waits for the source's stream, which the producer creates.
func (r *Runner) waitStream(ctx context.Context) (int, error) {
	logged := false
	for {
		n, err := r.conn.SourcePartitions(ctx, r.cfg.From)
		if err == nil {
			return n, nil
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			if ctx.Err() != nil {
				return 0, nil
			}
			// NATS unreachable or restarting: an applier is a service and
			// waits for it, saying so.
			r.log.Warn("reading the source's stream failed; retrying", "err", err)
		} else if !logged {
			r.log.Info("waiting for the source's stream to be created by its producer", "stream", streams.StreamName(r.cfg.From))
			logged = true
		}
		select {
		case <-ctx.Done():
			return 0, nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// superviseLane runs a lane until ctx ends or the lane fails permanently.
// A lane that fails otherwise (NATS restarting while its consumer is being
// reset, the stream lookup at its start, its consumer lost) starts again
// after a pause, with its consumer set right after what the target holds:
// an applier is a service and rides out what the producers ride out,
// rather than exit and take the healthy lanes down with it.
func (r *Runner) superviseLane(ctx context.Context, lane Lane, cons jetstream.Consumer) error {
	log := r.log.With("lane", lane.Partition)
	wait := 200 * time.Millisecond
	for {
		started := time.Now()
		err := r.runLane(ctx, lane, cons)
		if err == nil || errors.Is(err, ErrPermanent) || ctx.Err() != nil {
			return err
		}
		if time.Since(started) > time.Minute {
			wait = 200 * time.Millisecond // it ran well for a while: a new trouble
		}
		log.Warn("lane failed; starting it again", "err", err, "in", wait)
		metrics.LaneRestarts.WithLabelValues(r.cfg.Name, r.cfg.From).Inc()
		sleepCtx(ctx, wait)
		wait = min(wait*2, 10*time.Second)
		c, err := retry(ctx, log, "restarting the lane's consumer", func(ctx context.Context) (jetstream.Consumer, error) {
			applied, err := r.target.Applied(ctx, lane)
			if err != nil {
				return nil, err
			}
			return r.conn.ResetLaneConsumer(ctx, lane.Source, r.cfg.Name, lane.Partition, r.cfg.BatchSize, applied+1)
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		cons = c
		r.mu.Lock()
		r.consumers[lane.Partition] = cons
		r.mu.Unlock()
	}
}

func (r *Runner) runLane(ctx context.Context, lane Lane, cons jetstream.Consumer) error {
	log := r.log.With("lane", lane.Partition)
	applied, err := retry(ctx, log, "reading the lane's applied sequence", func(ctx context.Context) (uint64, error) {
		return r.target.Applied(ctx, lane)
	})
	if err != nil || ctx.Err() != nil {
		return err
	}
	// Deliveries are numbered by the consumer; a gap means messages the
	// server counts as delivered never arrived (a connection lost during a
	// fetch), and acknowledging later ones (AckAll) would acknowledge them
	// too. So a gap restarts the lane's consumer right after what the
	// target holds. NATS may be restarting: these calls are retried.
	nextDelivery, err := retry(ctx, log, "checking the lane's stream", func(ctx context.Context) (uint64, error) {
		if err := r.checkWatermark(ctx, lane, applied); err != nil {
			return 0, err
		}
		if err := r.checkTrim(ctx, lane, applied); err != nil {
			return 0, err
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return 0, fmt.Errorf("reading consumer of lane %d: %w", lane.Partition, err)
		}
		return info.Delivered.Consumer + 1, nil
	})
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return err
	}
	maxBytes := batchBytes
	for ctx.Err() == nil {
		// Snapshot messages hold many rows each: a byte budget, not only a
		// message count, keeps a batch (and memory) bounded.
		// Wait for the first message only: a request for a whole batch
		// would hold a trickle of changes until the batch filled or the
		// wait ended, which is latency. What has arrived by then is
		// fetched after it, with a short wait (below).
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second), jetstream.FetchMaxBytes(maxBytes))
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("fetching from stream", "err", err)
			sleepCtx(ctx, time.Second)
			continue
		}
		var msgs []jetstream.Msg
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		if err := batch.Error(); errors.Is(err, jetstream.ErrMaxBytesExceeded) && len(msgs) == 0 {
			// One message is larger than the budget: take it alone.
			maxBytes = int(r.conn.NC.MaxPayload()) + 64<<10
			continue
		}
		maxBytes = batchBytes
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && len(msgs) == 0 && ctx.Err() == nil {
			if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
				// Waiting would wait forever: the lane is started again
				// with a new consumer.
				return fmt.Errorf("fetching for lane %d: %w", lane.Partition, err)
			}
			log.Warn("fetching from stream", "err", err)
			sleepCtx(ctx, time.Second)
			continue
		}
		if len(msgs) == 0 {
			continue
		}
		if r.cfg.BatchSize > 1 {
			msgs = r.fillBatch(cons, msgs, maxBytes)
		}
		if gap := deliveryGap(msgs, nextDelivery); gap {
			log.Warn("messages delivered to this lane never arrived; restarting its consumer after the target's applied sequence", "applied", applied)
			if cons, err = retry(ctx, log, "restarting the lane's consumer", func(ctx context.Context) (jetstream.Consumer, error) {
				return r.conn.ResetLaneConsumer(ctx, lane.Source, r.cfg.Name, lane.Partition, r.cfg.BatchSize, applied+1)
			}); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			r.mu.Lock()
			r.consumers[lane.Partition] = cons
			r.mu.Unlock()
			nextDelivery = 1
			continue
		}
		nextDelivery += uint64(len(msgs))
		next, err := r.applyBatch(ctx, log, lane, msgs, applied)
		if err != nil {
			if ctx.Err() != nil {
				// Stopping while the target fails: the batch stays
				// unacknowledged and is applied after the restart.
				return nil
			}
			return err
		}
		applied = next
	}
	return nil
}

func (r *Runner) applyBatch(ctx context.Context, log *slog.Logger, lane Lane, msgs []jetstream.Msg, applied uint64) (uint64, error) {
	var items []Item
	last := applied
	if md, err := msgs[0].Metadata(); err == nil && md.Sequence.Stream > applied+1 {
		// Other lanes' events lie between, or the retention removed some of
		// this lane's: the trim record tells.
		if _, err := retry(ctx, log, "reading the trim record", func(ctx context.Context) (bool, error) {
			return true, r.checkTrim(ctx, lane, applied)
		}); err != nil {
			return applied, err
		}
	}
	for _, m := range msgs {
		md, err := m.Metadata()
		if err != nil {
			return applied, fmt.Errorf("reading message metadata: %w", err)
		}
		seq := md.Sequence.Stream
		if seq <= applied {
			continue // a redelivery of what the target already holds
		}
		b, err := streams.Decode(m.Data())
		if err != nil {
			return applied, Permanent(fmt.Errorf("message %d on %s: %w", seq, m.Subject(), err))
		}
		for _, e := range b.Events {
			items = append(items, Item{Event: e, Seq: seq})
		}
		last = seq
	}
	if last > applied {
		if err := config.WaitRows(ctx, r.limit, len(items)); err != nil {
			return applied, err
		}
		start := time.Now()
		// Retrying stops when ctx ends, but an attempt under way runs to its
		// end (commit or rollback) and the batch is then acknowledged, so
		// what was fetched is applied once.
		rejected, err := retry(ctx, log, "applying a batch", func(ctx context.Context) ([]Rejected, error) {
			rj, err := r.target.Apply(context.WithoutCancel(ctx), lane, items, last, r.deadLetters)
			if err != nil {
				metrics.ApplyErrors.WithLabelValues(r.cfg.Name, r.cfg.From).Inc()
			}
			return rj, err
		})
		if err != nil {
			return applied, err
		}
		metrics.BatchSeconds.WithLabelValues(r.cfg.Name, r.cfg.From).Observe(time.Since(start).Seconds())
		r.count(items, rejected)
		r.Stats.Applied.Add(int64(len(items) - len(rejected)))
		r.Stats.DeadLettered.Add(int64(len(rejected)))
		r.Stats.Batches.Add(1)
	}
	// AckAll: acknowledging the last message acknowledges the batch.
	if err := msgs[len(msgs)-1].Ack(); err != nil {
		log.Warn("acknowledging batch (it will be redelivered and skipped)", "err", err)
	}
	return last, nil
}

// fillBatch adds to a batch what the lane holds already, waiting at most
// fillWait, within the batch's size and byte budget. A failed fill leaves
// the batch as it is: its messages are applied, the rest come next time.
func (r *Runner) fillBatch(cons jetstream.Consumer, msgs []jetstream.Msg, maxBytes int) []jetstream.Msg {
	used := 0
	for _, m := range msgs {
		used += len(m.Data())
	}
	if used >= maxBytes {
		return msgs
	}
	more, err := cons.Fetch(r.cfg.BatchSize-len(msgs), jetstream.FetchMaxWait(fillWait), jetstream.FetchMaxBytes(maxBytes-used))
	if err != nil {
		return msgs
	}
	for m := range more.Messages() {
		msgs = append(msgs, m)
	}
	return msgs
}

// fillWait is how long a batch waits for more of what is already on its
// way; it bounds the latency batching adds.
const fillWait = 20 * time.Millisecond

// deliveryGap reports whether msgs do not continue the consumer's delivery
// numbering at next without holes.
func deliveryGap(msgs []jetstream.Msg, next uint64) bool {
	for _, m := range msgs {
		md, err := m.Metadata()
		if err != nil || md.Sequence.Consumer != next {
			return true
		}
		next++
	}
	return false
}

// checkWatermark refuses a lane whose applied sequence lies beyond the
// stream's end: the stream was recreated, and the old watermark would skip
// every new message up to it.
func (r *Runner) checkWatermark(ctx context.Context, lane Lane, applied uint64) error {
	st, err := r.conn.JS.Stream(ctx, streams.StreamName(lane.Source))
	if err != nil {
		return fmt.Errorf("opening stream of source %s: %w", lane.Source, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("reading stream of source %s: %w", lane.Source, err)
	}
	if applied > info.State.LastSeq {
		return Permanent(fmt.Errorf("target %s has applied lane %d of source %s up to sequence %d, but stream %s ends at %d: the stream was recreated. Start the target over: empty its tables and delete its rows in ferry_state.applied (WHERE target = '%s')",
			r.cfg.Name, lane.Partition, lane.Source, applied, streams.StreamName(lane.Source), info.State.LastSeq, r.cfg.Name))
	}
	return nil
}

// count updates the applied, dead-letter and lag metrics for a committed
// batch.
func (r *Runner) count(items []Item, rejected []Rejected) {
	bad := make(map[*pb.Event]bool, len(rejected))
	for _, rj := range rejected {
		bad[rj.Item.Event] = true
		metrics.DeadLettered.WithLabelValues(r.cfg.Name, rj.Item.Event.GetTable()).Inc()
	}
	perTable := map[string]int{}
	var newest int64
	for _, it := range items {
		if bad[it.Event] {
			continue
		}
		perTable[it.Event.GetTable()]++
		newest = max(newest, it.Event.GetCommitTimeUs())
	}
	for t, n := range perTable {
		metrics.EventsApplied.WithLabelValues(r.cfg.Name, r.cfg.From, t).Add(float64(n))
	}
	if newest > 0 {
		metrics.TargetLag.WithLabelValues(r.cfg.Name, r.cfg.From).Set(time.Since(time.UnixMicro(newest)).Seconds())
	}
}

// watchPending keeps the pending gauge current; with nothing pending the
// target has applied everything, so its lag is 0.
func (r *Runner) watchPending(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		if n, err := r.Pending(ctx); err == nil {
			metrics.ConsumerPending.WithLabelValues(r.cfg.Name, r.cfg.From).Set(float64(n))
			if n == 0 {
				metrics.TargetLag.WithLabelValues(r.cfg.Name, r.cfg.From).Set(0)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// deadLetters stores rejected events; the target calls it before it
// commits the batch, and the ids are deterministic, so a batch retried
// after a crash stores each dead letter once and none is lost.
func (r *Runner) deadLetters(ctx context.Context, rejected []Rejected) error {
	for _, rj := range rejected {
		if err := r.deadLetter(ctx, rj); err != nil {
			return err
		}
	}
	return nil
}

// deadLetter stores one rejected event with its reason.
func (r *Runner) deadLetter(ctx context.Context, rj Rejected) error {
	e := rj.Item.Event
	data, err := streams.Encode(e)
	if err != nil {
		return err
	}
	m := nats.NewMsg(streams.DLQSubject(r.cfg.Name, e.GetTable()))
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s:%d:%d:%s", r.cfg.Name, rj.Item.Seq, e.GetTxIndex(), keyText(e)))
	m.Header.Set("Content-Type", streams.ContentType)
	m.Header.Set("Ferry-Target", r.cfg.Name)
	m.Header.Set("Ferry-Source", r.cfg.From)
	m.Header.Set("Ferry-Table", e.GetTable())
	m.Header.Set("Ferry-Key", keyText(e))
	m.Header.Set("Ferry-Stream-Seq", strconv.FormatUint(rj.Item.Seq, 10))
	m.Header.Set("Ferry-Reason", rj.Reason)
	if _, err := r.conn.JS.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("writing dead letter for %s %s: %w", e.GetTable(), keyText(e), err)
	}
	r.log.Error("row rejected by target, sent to dead-letter stream "+streams.DLQStream,
		"table", e.GetTable(), "key", keyText(e), "reason", rj.Reason)
	return nil
}

// keyText renders an event's key as col=value pairs for messages.
func keyText(e *pb.Event) string { return streams.KeyText(e.GetKey()) }

// retry runs fn until it succeeds, fails permanently, or ctx ends, backing
// off between attempts: a target or NATS that is briefly away must not stop
// a migration.
func retry[T any](ctx context.Context, log *slog.Logger, what string, fn func(context.Context) (T, error)) (T, error) {
	wait := 200 * time.Millisecond
	for {
		v, err := fn(ctx)
		if err == nil || errors.Is(err, ErrPermanent) {
			return v, err
		}
		if ctx.Err() != nil {
			return v, ctx.Err()
		}
		log.Warn(what+" failed; retrying", "err", err, "in", wait)
		sleepCtx(ctx, wait)
		wait = min(wait*2, 10*time.Second)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Pending reports how many messages of the source's stream this target has
// not yet applied, summed over lanes (delivered-but-unacknowledged included).
func (r *Runner) Pending(ctx context.Context) (uint64, error) {
	r.mu.Lock()
	cons := r.consumers
	r.mu.Unlock()
	if cons == nil {
		return 0, errors.New("not started")
	}
	var n uint64
	for _, c := range cons {
		info, err := c.Info(ctx)
		if err != nil {
			return 0, err
		}
		n += info.NumPending + uint64(info.NumAckPending)
	}
	return n, nil
}

// Name is the target's name.
func (r *Runner) Name() string { return r.cfg.Name }

// Ping checks the target's connection, for health checks.
func (r *Runner) Ping(ctx context.Context) error { return r.target.Ping(ctx) }
