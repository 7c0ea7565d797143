package appliers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

// seedBatch is how many events one seed transaction writes.
const seedBatch = 5000

// seed fills one lane of a target that holds nothing of it yet from the
// source's state stream, then applies the change stream from the point the
// compactor had reached (C0) up to the newest state it read (M), and
// records M as the lane's watermark in the same transaction as the last
// rows. It returns M, or 0 when there is no state to seed from (no state
// stream, nothing compacted yet): the lane then reads the change stream from
// its start.
//
// Consistency (docs/replay.md): the compactor folds events in stream order
// and records C0 only after their state is stored, so every state message
// whose sequence s is at most C0 is the key's latest state as of C0. A
// message with s > C0 is newer: it is applied too (a partial update in the
// change stream might otherwise find no row), and the key's events up to s
// are skipped when the change stream (C0, M] is applied, so no key goes back
// to an older value. A key deleted after C0 and gone from the state stream
// is deleted again by that range.
func (r *Runner) seed(ctx context.Context, log *slog.Logger, lane Lane) (uint64, error) {
	stateSt, ok, err := r.conn.StateStream(ctx, lane.Source)
	if err != nil || !ok {
		return 0, err
	}
	var prog streams.Compacted
	if _, err := r.state.GetJSON(ctx, streams.CompactedKey(lane.Source), &prog); err != nil {
		return 0, err
	}
	if prog.Incomplete || prog.Seq == 0 {
		// Nothing to seed from: the change stream must hold everything,
		// which the trim check of the lane verifies.
		return 0, nil
	}
	c0 := prog.Seq
	seedKey := streams.SeedKey(r.cfg.Name, lane.Source, lane.Partition)
	var prev streams.Seed
	interrupted, err := r.state.GetJSON(ctx, seedKey, &prev)
	if err != nil {
		return 0, err
	}
	if interrupted {
		// An earlier seed stopped half way: its rows are on the target at
		// their state as of prev.Floor. Keys deleted since are no longer in
		// the state stream; delete them from the change stream first.
		log.Info("an earlier seed of this lane was interrupted; deleting keys deleted since", "floor", prev.Floor)
		if err := r.replayDeletes(ctx, lane, prev.Floor, c0); err != nil {
			return 0, err
		}
	} else if err := r.state.PutJSON(ctx, seedKey, streams.Seed{Floor: c0}); err != nil {
		return 0, err
	}

	log.Info("seeding the lane from the state stream", "stream", streams.StateStreamName(lane.Source), "compacted", c0)
	start := time.Now()
	skip := map[string]uint64{} // table+key -> newest state sequence above c0
	m := c0
	var items []Item
	var rows int
	err = readAll(ctx, r.conn.JS, stateSt.CachedInfo().Config.Name, streams.StateLaneFilter(lane.Source, lane.Partition), 1,
		func(msg jetstream.Msg, _ uint64) (bool, error) {
			s, err := strconv.ParseUint(msg.Headers().Get(streams.SeqHeader), 10, 64)
			if err != nil {
				return false, Permanent(fmt.Errorf("state message %s has no valid %s header", msg.Subject(), streams.SeqHeader))
			}
			b, err := streams.Decode(msg.Data())
			if err != nil {
				return false, Permanent(fmt.Errorf("state message %s: %w", msg.Subject(), err))
			}
			for _, e := range b.Events {
				if s > c0 {
					k := e.GetTable() + "\x00" + streams.KeyToken(e.GetKey())
					skip[k] = max(skip[k], s)
					m = max(m, s)
				} else if e.GetOp() == pb.Op_OP_DELETE && !interrupted {
					continue // a key deleted by c0 is just absent
				}
				items = append(items, Item{Event: e, Seq: s})
			}
			if len(items) >= seedBatch {
				rows += len(items)
				if err := r.applySeed(ctx, log, lane, items, 0); err != nil {
					return false, err
				}
				items = items[:0]
			}
			return true, nil
		})
	if err != nil {
		return 0, err
	}
	// The change stream from c0 up to m, without what the seed already
	// holds newer.
	if m > c0 {
		err = readAll(ctx, r.conn.JS, streams.StreamName(lane.Source), streams.LaneFilter(lane.Source, lane.Partition), c0+1,
			func(msg jetstream.Msg, seq uint64) (bool, error) {
				if seq > m {
					return false, nil
				}
				b, err := streams.Decode(msg.Data())
				if err != nil {
					return false, Permanent(fmt.Errorf("message %d on %s: %w", seq, msg.Subject(), err))
				}
				for _, e := range b.Events {
					if skip[e.GetTable()+"\x00"+streams.KeyToken(e.GetKey())] >= seq {
						continue
					}
					items = append(items, Item{Event: e, Seq: seq})
				}
				if len(items) >= seedBatch {
					rows += len(items)
					if err := r.applySeed(ctx, log, lane, items, 0); err != nil {
						return false, err
					}
					items = items[:0]
				}
				return seq < m, nil
			})
		if err != nil {
			return 0, err
		}
	}
	if err := r.checkTrim(ctx, lane, c0); err != nil {
		// The retention removed events of (c0, m] while the seed read
		// them (a maxAge shorter than the seed): seed again from the
		// compactor's newer progress.
		return 0, fmt.Errorf("events after the seed point were trimmed during the seed; seeding again (%v)", err)
	}
	rows += len(items)
	if err := r.applySeed(ctx, log, lane, items, m); err != nil {
		return 0, err
	}
	if err := r.state.KV.Delete(ctx, seedKey); err != nil {
		log.Warn("removing the seed marker", "err", err)
	}
	log.Info("lane seeded from the state stream", "events", rows, "watermark", m, "took", time.Since(start).Round(time.Millisecond))
	return m, nil
}

// applySeed writes seed items; lastSeq 0 leaves the lane without a
// watermark, so that a seed cut short starts over.
func (r *Runner) applySeed(ctx context.Context, log *slog.Logger, lane Lane, items []Item, lastSeq uint64) error {
	rejected, err := retry(ctx, log, "applying a seed batch", func(ctx context.Context) ([]Rejected, error) {
		return r.target.Apply(context.WithoutCancel(ctx), lane, items, lastSeq, r.deadLetters)
	})
	if err != nil {
		return err
	}
	r.count(items, rejected)
	r.Stats.Applied.Add(int64(len(items) - len(rejected)))
	r.Stats.DeadLettered.Add(int64(len(rejected)))
	r.Stats.Batches.Add(1)
	return nil
}

// replayDeletes applies the deletes of a lane in (from, to] of the change
// stream.
func (r *Runner) replayDeletes(ctx context.Context, lane Lane, from, to uint64) error {
	if err := r.checkTrim(ctx, lane, from); err != nil {
		return err
	}
	var items []Item
	err := readAll(ctx, r.conn.JS, streams.StreamName(lane.Source), streams.LaneFilter(lane.Source, lane.Partition), from+1,
		func(msg jetstream.Msg, seq uint64) (bool, error) {
			if seq > to {
				return false, nil
			}
			b, err := streams.Decode(msg.Data())
			if err != nil {
				return false, Permanent(fmt.Errorf("message %d on %s: %w", seq, msg.Subject(), err))
			}
			for _, e := range b.Events {
				if e.GetOp() == pb.Op_OP_DELETE {
					items = append(items, Item{Event: e, Seq: seq})
				}
			}
			return seq < to, nil
		})
	if err != nil || len(items) == 0 {
		return err
	}
	return r.applySeed(ctx, r.log, lane, items, 0)
}

// checkTrim fails when the change stream lost events of the lane above
// applied: the target can no longer be brought up to date from the log.
func (r *Runner) checkTrim(ctx context.Context, lane Lane, applied uint64) error {
	var tr streams.Trim
	found, err := r.state.GetJSON(ctx, streams.TrimKey(lane.Source), &tr)
	if err != nil || !found || lane.Partition >= len(tr.LaneLast) {
		return err
	}
	if last := tr.LaneLast[lane.Partition]; applied < last {
		return Permanent(fmt.Errorf("target %s has applied lane %d of source %s up to sequence %d, but the change stream's retention removed event %d of that lane: rebuild the target from the state stream (empty its tables, then ferry apply --target %s --from-start)",
			r.cfg.Name, lane.Partition, lane.Source, applied, last, r.cfg.Name))
	}
	return nil
}

// readAll feeds fn the messages of stream matching filter from sequence
// start on, in order, until fn returns false or the stream has nothing more
// (as of the last message read).
func readAll(ctx context.Context, js jetstream.JetStream, stream, filter string, start uint64,
	fn func(m jetstream.Msg, seq uint64) (bool, error)) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}}
	if start > 1 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = start
	}
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("reading stream %s (%s): %w", stream, filter, err)
	}
	for ctx.Err() == nil {
		info, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("reading stream %s (%s): %w", stream, filter, err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			return nil
		}
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("reading stream %s (%s): %w", stream, filter, err)
		}
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("reading message metadata: %w", err)
			}
			more, err := fn(m, md.Sequence.Stream)
			if err != nil || !more {
				return err
			}
			if md.NumPending == 0 {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("reading stream %s (%s): %w", stream, filter, err)
		}
	}
	return ctx.Err()
}

// Rewind prepares a replay of a target from change-stream sequence from:
// every lane's consumer restarts at from and its watermark in the target is
// set to from-1, so that what follows is applied again. With from 1 the
// lanes hold no watermark, and the runner seeds them from the state stream
// when the source keeps one (the change stream may have been trimmed).
// Run it while no applier of the target runs; when it is interrupted, run
// it again.
func Rewind(ctx context.Context, conn *streams.Conn, cfg config.Target, target Target, from uint64) error {
	rw, ok := target.(Rewinder)
	if !ok {
		return fmt.Errorf("target %s (type %s) cannot be replayed: its connector keeps no resettable lane positions", cfg.Name, cfg.Type)
	}
	if from < 1 {
		from = 1
	}
	parts, err := conn.SourcePartitions(ctx, cfg.From)
	if err != nil {
		return err
	}
	st, err := conn.JS.Stream(ctx, streams.StreamName(cfg.From))
	if err != nil {
		return fmt.Errorf("opening stream of source %s: %w", cfg.From, err)
	}
	info := st.CachedInfo().State
	if from > info.LastSeq+1 {
		return fmt.Errorf("replay of target %s from sequence %d: stream %s ends at %d", cfg.Name, from, streams.StreamName(cfg.From), info.LastSeq)
	}
	state, err := conn.State(ctx)
	if err != nil {
		return err
	}
	if from > 1 {
		var tr streams.Trim
		if _, err := state.GetJSON(ctx, streams.TrimKey(cfg.From), &tr); err != nil {
			return err
		}
		if from < tr.Cut {
			return fmt.Errorf("replay of target %s from sequence %d: the change stream's retention removed events before %d; replay from %d or later, or use --from-start (seeds from the state stream)",
				cfg.Name, from, tr.Cut, tr.Cut)
		}
	}
	for lane := range parts {
		if _, err := conn.ResetLaneConsumer(ctx, cfg.From, cfg.Name, lane, cfg.BatchSize, from); err != nil {
			return err
		}
		if err := rw.Rewind(ctx, Lane{Source: cfg.From, Partition: lane}, from-1); err != nil {
			return fmt.Errorf("target %s: resetting the watermark of lane %d: %w", cfg.Name, lane, err)
		}
	}
	return nil
}
