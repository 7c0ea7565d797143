package appliers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

// seedBatch is how many events one seed transaction writes.
const seedBatch = 5000

// laneSeed is one lane's part of a seed.
type laneSeed struct {
	lane        Lane
	log         *slog.Logger
	interrupted bool
	// skip holds, per table and key, the newest state sequence above c0
	// the scan applied; m is the largest of them (or c0).
	skip  map[string]uint64
	m     uint64
	rows  int
	batch []Item
	work  chan []Item
	err   error
}

// seed fills the lanes of a target that hold nothing yet (watermark 0) from
// the source's state stream, then applies each lane's change stream from
// the point the compactor had reached (C0) up to the newest state the scan
// read in that lane (M), and records M as the lane's watermark in the same
// transaction as the last rows. It returns the seeded lanes' watermarks;
// none when there is no state to seed from (no state stream, nothing
// compacted yet): those lanes read the change stream from its start.
//
// The state stream is read once, in stream order and without a subject
// filter (a filter per lane would make the server search its index of a
// million subjects for every message), and each message is handed to its
// lane, whose batches are applied in parallel.
//
// Consistency (docs/replay.md): the compactor folds events in stream order
// and records C0 only after their state is stored, so every state message
// whose sequence s is at most C0 is the key's latest state as of C0. A
// message with s > C0 is newer: it is applied too (a partial update in the
// change stream might otherwise find no row), and the key's events up to s
// are skipped when the change stream (C0, M] is applied, so no key goes back
// to an older value. A key deleted after C0 and gone from the state stream
// is deleted again by that range.
func (r *Runner) seed(ctx context.Context, parts int) (map[int]uint64, error) {
	source := r.cfg.From
	stateSt, ok, err := r.conn.StateStream(ctx, source)
	if err != nil || !ok {
		return nil, err
	}
	var prog streams.Compacted
	if _, err := r.state.GetJSON(ctx, streams.CompactedKey(source), &prog); err != nil {
		return nil, err
	}
	if prog.Incomplete || prog.Seq == 0 {
		// Nothing to seed from: the change stream must hold everything,
		// which the trim check of each lane verifies.
		return nil, nil
	}
	c0 := prog.Seq
	lanes := map[int]*laneSeed{}
	for p := range parts {
		lane := Lane{Source: source, Partition: p}
		applied, err := r.target.Applied(ctx, lane)
		if err != nil {
			return nil, err
		}
		if applied > 0 {
			continue
		}
		ls := &laneSeed{lane: lane, log: r.log.With("lane", p), skip: map[string]uint64{}, m: c0}
		var prev streams.Seed
		seedKey := streams.SeedKey(r.cfg.Name, source, p)
		if ls.interrupted, err = r.state.GetJSON(ctx, seedKey, &prev); err != nil {
			return nil, err
		}
		if ls.interrupted {
			// An earlier seed stopped half way: its rows are on the target
			// at their state as of prev.Floor. Keys deleted since are no
			// longer in the state stream; delete them from the change
			// stream first.
			ls.log.Info("an earlier seed of this lane was interrupted; deleting keys deleted since", "floor", prev.Floor)
			if err := r.replayDeletes(ctx, lane, prev.Floor, c0); err != nil {
				return nil, err
			}
		} else if err := r.state.PutJSON(ctx, seedKey, streams.Seed{Floor: c0}); err != nil {
			return nil, err
		}
		lanes[p] = ls
	}
	if len(lanes) == 0 {
		return nil, nil
	}
	r.log.Info("seeding from the state stream", "stream", streams.StateStreamName(source), "compacted", c0, "lanes", len(lanes))
	start := time.Now()

	// Scan: one reader, a writer per lane.
	var wg sync.WaitGroup
	for _, ls := range lanes {
		ls.work = make(chan []Item, 2)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for items := range ls.work {
				if ls.err == nil {
					ls.err = r.applySeed(ctx, ls.log, ls.lane, items, 0)
				}
			}
		}()
	}
	scanErr := readAll(ctx, r.conn.JS, stateSt.CachedInfo().Config.Name, "", 1,
		func(msg jetstream.Msg, _ uint64) (bool, error) {
			ls := lanes[stateLane(msg.Subject())]
			if ls == nil {
				return true, nil
			}
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
					ls.skip[k] = max(ls.skip[k], s)
					ls.m = max(ls.m, s)
				} else if e.GetOp() == pb.Op_OP_DELETE && !ls.interrupted {
					continue // a key deleted by c0 is just absent
				}
				ls.batch = append(ls.batch, Item{Event: e, Seq: s})
			}
			if len(ls.batch) >= seedBatch {
				ls.rows += len(ls.batch)
				select {
				case ls.work <- ls.batch:
				case <-ctx.Done():
					return false, ctx.Err()
				}
				ls.batch = nil
			}
			return true, nil
		})
	for _, ls := range lanes {
		close(ls.work)
	}
	wg.Wait()
	if scanErr != nil {
		return nil, scanErr
	}
	for _, ls := range lanes {
		if ls.err != nil {
			return nil, ls.err
		}
	}

	// Per lane, in parallel: the change stream from c0 to m.
	out := map[int]uint64{}
	var mu sync.Mutex
	errs := make(chan error, len(lanes))
	for p, ls := range lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.finishSeed(ctx, ls, c0); err != nil {
				errs <- err
				return
			}
			mu.Lock()
			out[p] = ls.m
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	rows := 0
	for _, ls := range lanes {
		rows += ls.rows
	}
	r.log.Info("seeded from the state stream", "events", rows, "lanes", len(lanes), "took", time.Since(start).Round(time.Millisecond))
	return out, nil
}

// stateLane is the lane a state subject names (ferry.st.<src>.<lane>.…).
func stateLane(subject string) int {
	parts := strings.SplitN(subject, ".", 5)
	if len(parts) < 5 {
		return -1
	}
	n, err := strconv.Atoi(parts[3])
	if err != nil {
		return -1
	}
	return n
}

// finishSeed applies a lane's change events in (c0, m] that the seed does
// not already hold newer, with m as the lane's watermark.
func (r *Runner) finishSeed(ctx context.Context, ls *laneSeed, c0 uint64) error {
	lane, m, items := ls.lane, ls.m, ls.batch
	if m > c0 {
		err := readAll(ctx, r.conn.JS, streams.StreamName(lane.Source), streams.LaneFilter(lane.Source, lane.Partition), c0+1,
			func(msg jetstream.Msg, seq uint64) (bool, error) {
				if seq > m {
					return false, nil
				}
				b, err := streams.Decode(msg.Data())
				if err != nil {
					return false, Permanent(fmt.Errorf("message %d on %s: %w", seq, msg.Subject(), err))
				}
				for _, e := range b.Events {
					if ls.skip[e.GetTable()+"\x00"+streams.KeyToken(e.GetKey())] >= seq {
						continue
					}
					items = append(items, Item{Event: e, Seq: seq})
				}
				if len(items) >= seedBatch {
					ls.rows += len(items)
					if err := r.applySeed(ctx, ls.log, lane, items, 0); err != nil {
						return false, err
					}
					items = nil
				}
				return seq < m, nil
			})
		if err != nil {
			return err
		}
	}
	if err := r.checkTrim(ctx, lane, c0); err != nil {
		// The retention removed events of (c0, m] while the seed read
		// them (a maxAge shorter than the seed): seed again from the
		// compactor's newer progress.
		return fmt.Errorf("events after the seed point were trimmed during the seed; seeding again (%v)", err)
	}
	ls.rows += len(items)
	if err := r.applySeed(ctx, ls.log, lane, items, m); err != nil {
		return err
	}
	if err := r.state.KV.Delete(ctx, streams.SeedKey(r.cfg.Name, lane.Source, lane.Partition)); err != nil {
		ls.log.Warn("removing the seed marker", "err", err)
	}
	ls.log.Info("lane seeded from the state stream", "events", ls.rows, "watermark", m)
	return nil
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
	// No filter ("") reads the whole stream: a subject filter costs the
	// server a match per message, which on a stream of a million subjects
	// made reading it several times slower.
	var cfg jetstream.OrderedConsumerConfig
	if filter != "" {
		cfg.FilterSubjects = []string{filter}
	}
	if start > 1 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = start
	}
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("reading stream %s (%s): %w", stream, filter, err)
	}
	for ctx.Err() == nil {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return fmt.Errorf("reading stream %s (%s): %w", stream, filter, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
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
		if n == 0 {
			// Nothing came: done if nothing is pending (the last message
			// may have gone: a deleted key purged).
			info, err := cons.Info(ctx)
			if err != nil {
				return fmt.Errorf("reading stream %s (%s): %w", stream, filter, err)
			}
			if info.NumPending == 0 {
				return nil
			}
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
