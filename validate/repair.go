package validate

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

// StreamRepairer repairs a target through its source's own stream: a fresh
// source read of each missing or mismatched row is published as an OP_READ
// event, and each extraneous key as an OP_DELETE, into the lane of its key.
// The target's applier then writes them like any other event: in order with
// the live changes of the same key (a change made after the fresh read
// follows it in the lane), with the pipeline's type mapping, renames and
// dead-letter handling, whatever the target connector. Settle waits until
// the target's applier has acknowledged everything published.
//
// The other targets of the source receive the same events; they carry the
// source's current rows, so applying them is harmless.
type StreamRepairer struct {
	Conn           *streams.Conn
	Source, Target string
	RunID          string
	Log            *slog.Logger
	// NoApplierWait is how long Settle waits for the target's applier to
	// appear before it says none is running.
	NoApplierWait time.Duration

	partitions int
	published  bool
}

// SetRunID names the run in message ids: a run that is resumed publishes
// under the same ids (JetStream drops the repeats), the next run anew.
func (r *StreamRepairer) SetRunID(id string) { r.RunID = id }

// Open checks that the source's stream exists and reads its lane count.
func (r *StreamRepairer) Open(ctx context.Context) error {
	n, err := r.Conn.SourcePartitions(ctx, r.Source)
	if err != nil {
		return fmt.Errorf("--repair publishes into the stream of source %s, which cannot be read (has the pipeline run?): %w", r.Source, err)
	}
	r.partitions = n
	if r.NoApplierWait == 0 {
		r.NoApplierWait = 30 * time.Second
	}
	return nil
}

// Repair publishes the events, one per message, and waits for JetStream's
// acknowledgements. Message ids are derived from the run, the table, the
// key and the operation, so a resumed run that repairs a key again is
// deduplicated.
func (r *StreamRepairer) Repair(ctx context.Context, events []*pb.Event) error {
	futs := make([]jetstream.PubAckFuture, 0, len(events))
	for _, ev := range events {
		data, err := streams.Encode(ev)
		if err != nil {
			return err
		}
		lane := streams.Lane(ev.Key, r.partitions)
		h := sha256.Sum256([]byte(ev.Table + "\x00" + keyString(ev.Key.GetValues()) + "\x00" + ev.Op.String()))
		id := fmt.Sprintf("%s:validate:%s:%s:%x", r.Source, r.Target, r.RunID, h[:12])
		f, err := r.Conn.PublishAsync(streams.EventSubject(r.Source, ev.Table, lane), id, data)
		if err != nil {
			return err
		}
		futs = append(futs, f)
	}
	if err := streams.WaitAcks(ctx, futs); err != nil {
		return err
	}
	r.published = r.published || len(events) > 0
	return nil
}

// Settle waits until every lane consumer of the target has acknowledged
// the stream up to its last message now.
func (r *StreamRepairer) Settle(ctx context.Context) error {
	if !r.published {
		return nil
	}
	st, err := r.Conn.JS.Stream(ctx, streams.StreamName(r.Source))
	if err != nil {
		return fmt.Errorf("source %s: %w", r.Source, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("source %s: reading stream: %w", r.Source, err)
	}
	last := info.State.LastSeq
	since := time.Now()
	for lane := range r.partitions {
		for {
			ok, err := r.laneCaughtUp(ctx, st, lane, last)
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				if time.Since(since) > r.NoApplierWait {
					return fmt.Errorf("no applier of target %s is consuming source %s: the repairs are in the stream; run `ferry apply --config F --target %s` (or ferry migrate) to apply them, then validate again",
						r.Target, r.Source, r.Target)
				}
				ok, err = false, nil
			}
			if err != nil {
				return fmt.Errorf("target %s: waiting for lane %d: %w", r.Target, lane, err)
			}
			if ok {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("target %s has not applied the repairs yet (is its applier running?): %w", r.Target, ctx.Err())
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// laneCaughtUp reports whether the target's consumer of a lane has
// acknowledged every message of the lane up to seq.
func (r *StreamRepairer) laneCaughtUp(ctx context.Context, st jetstream.Stream, lane int, seq uint64) (bool, error) {
	c, err := r.Conn.JS.Consumer(ctx, streams.StreamName(r.Source), streams.ConsumerName(r.Target, lane))
	if err != nil {
		return false, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return false, err
	}
	if info.AckFloor.Stream >= seq || (info.NumPending == 0 && info.NumAckPending == 0) {
		return true, nil
	}
	m, err := st.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject(streams.LaneFilter(r.Source, lane)))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return m.Sequence > seq, nil
}
