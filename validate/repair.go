package validate

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

// StreamRepairer repairs a target through its source's own stream: a fresh
// source read of each missing or mismatched row is published as an OP_READ
// event, and each extraneous key as an OP_DELETE, into the lane of its key.
// The target's applier then writes them like any other event, with the
// pipeline's type mapping, renames and dead-letter handling, whatever the
// target connector. Settle waits until the target's applier has
// acknowledged everything published.
//
// Order with live changes: a repair must not land in the lane before a
// change the producer publishes of an older state than the repair's read,
// nor after one of a newer state. So each lane's repairs are published with
// JetStream's per-subject optimistic concurrency: the subject's last
// sequence is noted before the fresh read, and the publish expects it
// unchanged. If the producer published anything to the subject in between
// (a change that may postdate the read), the publish is refused and the
// keys are read and published again. A change committed after the read
// that the producer publishes after the repair follows it in the lane and
// wins, as it must.
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

	stream     jetstream.Stream
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
	if r.stream, err = r.Conn.JS.Stream(ctx, streams.StreamName(r.Source)); err != nil {
		return fmt.Errorf("source %s: %w", r.Source, err)
	}
	r.partitions = n
	if r.NoApplierWait == 0 {
		r.NoApplierWait = 30 * time.Second
	}
	return nil
}

// maxConflicts bounds how often one lane's repairs are read again because
// the producer published to the lane meanwhile.
const maxConflicts = 50

// Repair reads the keys again and publishes their events lane by lane.
func (r *StreamRepairer) Repair(ctx context.Context, table string, keys []*pb.Row, fresh func(context.Context, []*pb.Row) ([]*pb.Event, error)) error {
	lanes := map[int][]*pb.Row{}
	for _, k := range keys {
		l := streams.Lane(k, r.partitions)
		lanes[l] = append(lanes[l], k)
	}
	for lane, ks := range lanes {
		if err := r.repairLane(ctx, table, lane, ks, fresh); err != nil {
			return err
		}
	}
	return nil
}

func (r *StreamRepairer) repairLane(ctx context.Context, table string, lane int, keys []*pb.Row, fresh func(context.Context, []*pb.Row) ([]*pb.Event, error)) error {
	subject := streams.EventSubject(r.Source, table, lane)
	for conflicts := 0; len(keys) > 0; conflicts++ {
		if conflicts > maxConflicts {
			return fmt.Errorf("lane %d of %s: the producer kept publishing to it while %d repairs were read; try again later", lane, table, len(keys))
		}
		last, err := r.lastSeq(ctx, subject)
		if err != nil {
			return err
		}
		events, err := fresh(ctx, keys)
		if err != nil {
			return err
		}
		done := 0
		for _, ev := range events {
			seq, dup, err := r.publish(ctx, subject, ev, last)
			if isWrongLastSeq(err) {
				break // read the rest again
			}
			if err != nil {
				return err
			}
			if !dup {
				last = seq
			}
			done++
			r.published = true
		}
		keys = keys[done:]
	}
	return nil
}

// lastSeq is the sequence of the subject's last message, 0 if none.
func (r *StreamRepairer) lastSeq(ctx context.Context, subject string) (uint64, error) {
	m, err := r.stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading the last message of %s: %w", subject, err)
	}
	return m.Sequence, nil
}

// publish sends one event expecting the subject's last sequence to be
// last. Its id is derived from the run, the table, the key and the
// operation, so a resumed run that repairs a key again is deduplicated.
func (r *StreamRepairer) publish(ctx context.Context, subject string, ev *pb.Event, last uint64) (uint64, bool, error) {
	data, err := streams.Encode(ev)
	if err != nil {
		return 0, false, err
	}
	h := sha256.Sum256([]byte(ev.Table + "\x00" + keyString(ev.Key.GetValues()) + "\x00" + ev.Op.String()))
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s:validate:%s:%s:%x", r.Source, r.Target, r.RunID, h[:12]))
	m.Header.Set("Content-Type", streams.ContentType)
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(last, 10))
	ack, err := r.Conn.JS.PublishMsg(ctx, m, jetstream.WithRetryAttempts(0))
	if err != nil {
		if isWrongLastSeq(err) {
			return 0, false, err
		}
		return 0, false, fmt.Errorf("publishing a repair to %s: %w", subject, err)
	}
	return ack.Sequence, ack.Duplicate, nil
}

func isWrongLastSeq(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Settle waits until every lane consumer of the target has acknowledged
// the stream up to its last message now.
func (r *StreamRepairer) Settle(ctx context.Context) error {
	if !r.published {
		return nil
	}
	info, err := r.stream.Info(ctx)
	if err != nil {
		return fmt.Errorf("source %s: reading stream: %w", r.Source, err)
	}
	last := info.State.LastSeq
	since := time.Now()
	for lane := range r.partitions {
		for {
			ok, err := r.laneCaughtUp(ctx, lane, last)
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				if time.Since(since) > r.NoApplierWait {
					return fmt.Errorf("no applier of target %s is consuming source %s: the repairs are in the stream; run `ferry apply --config F --target %s` (or ferry migrate) to apply them, then validate again",
						r.Target, r.Source, r.Target)
				}
				ok, err = false, nil
			}
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("target %s: waiting for lane %d: %w", r.Target, lane, err)
			}
			if ok && err == nil {
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
func (r *StreamRepairer) laneCaughtUp(ctx context.Context, lane int, seq uint64) (bool, error) {
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
	m, err := r.stream.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject(streams.LaneFilter(r.Source, lane)))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return m.Sequence > seq, nil
}
