package streams

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/streams/pb"
)

// The state stream of a source holds the latest row of every key: one
// subject per key and MaxMsgsPerSubject 1, so JetStream keeps only the newest
// message of each subject, like a compacted topic. The compactor (compact.go)
// folds the change stream into it in stream order; a new or rebuilt target is
// seeded from it (appliers/seed.go). docs/replay.md explains why a seed plus
// the change stream after the compactor's progress gives every key its
// latest value without any key going back to an older one.

// StateStreamName is the state stream of a source.
func StateStreamName(source string) string { return "FERRY_STATE_" + strings.ToUpper(Token(source)) }

// StateSubjects is the filter of every state message of a source.
func StateSubjects(source string) string { return "ferry.st." + Token(source) + ".>" }

// StateLaneFilter selects one lane of a source's state stream.
func StateLaneFilter(source string, lane int) string {
	return "ferry.st." + Token(source) + "." + strconv.Itoa(lane) + ".>"
}

// StateSubject is the subject of one key's state message. The key becomes
// a hash (subjects are bounded in length and alphabet); 128 bits of SHA-256
// make a collision between two keys of one table practically impossible.
func StateSubject(source, table string, lane int, key *pb.Row) string {
	return "ferry.st." + Token(source) + "." + strconv.Itoa(lane) + "." + Token(table) + "." + KeyToken(key)
}

// KeyToken is a fixed-length token of a key's values, the same for the same
// key whatever produced it (the values' canonical protobuf bytes, as Lane
// hashes them).
func KeyToken(key *pb.Row) string {
	h := sha256.New()
	hashKey(h, key)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// SeqHeader carries, on a state message, the change-stream sequence of the
// newest event folded into it.
const SeqHeader = "Ferry-Seq"

// CompactedKey holds a source's Compacted record.
func CompactedKey(source string) string { return SourceKey(source, "compacted") }

// TrimKey holds a source's Trim record.
func TrimKey(source string) string { return SourceKey(source, "trim") }

// SeedKey marks a target lane whose seed from the state stream is under way.
func SeedKey(target, source string, lane int) string {
	return Key("tgt", target, "seed", source, strconv.Itoa(lane))
}

// Compacted is how far the compactor has folded the change stream into the
// state stream: every event with a sequence up to Seq is reflected there
// (with its own sequence in SeqHeader, or by a newer event of its key).
type Compacted struct {
	Seq       uint64 `json:"seq"`
	SavedAtUs int64  `json:"savedAtUs"`
	// Incomplete is set when events were trimmed from the change stream
	// before the compactor saw them (it was turned on late): the state
	// stream then lacks keys and cannot seed a target.
	Incomplete bool `json:"incomplete,omitempty"`
}

// Trim records what the retention has removed from the change stream.
type Trim struct {
	// Cut is the first sequence kept.
	Cut uint64 `json:"cut"`
	// LaneLast[l] is the highest removed sequence of lane l (0 if none): a
	// target whose lane watermark is below it missed that event for good.
	LaneLast []uint64 `json:"laneLast"`
}

// Seed is a lane seed under way; Floor is the compactor's progress when it
// began.
type Seed struct {
	Floor uint64 `json:"floor"`
}

// EnsureStateStream creates (or updates) a source's state stream.
func (c *Conn) EnsureStateStream(ctx context.Context, source string) (jetstream.Stream, error) {
	name := StateStreamName(source)
	st, err := c.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              name,
		Description:       "ferry latest row of every key of source " + source,
		Subjects:          []string{StateSubjects(source)},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		MaxMsgsPerSubject: 1,
		Replicas:          c.cfg.Replicas,
		// No per-message TTLs and no direct gets: with them, reading the
		// stream from start to end (a seed) measured several times slower.
	})
	if err != nil {
		return nil, fmt.Errorf("creating stream %s: %w", name, err)
	}
	return st, nil
}

// StateStream opens a source's state stream; ok is false when the source
// keeps none.
func (c *Conn) StateStream(ctx context.Context, source string) (st jetstream.Stream, ok bool, err error) {
	st, err = c.JS.Stream(ctx, StateStreamName(source))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("opening stream %s: %w", StateStreamName(source), err)
	}
	return st, true, nil
}

// SeqAtTime returns the sequence of the first message of a source's change
// stream stored at or after t, or the stream's last sequence + 1 when none is.
func (c *Conn) SeqAtTime(ctx context.Context, source string, t time.Time) (uint64, error) {
	name := StreamName(source)
	cons, err := c.JS.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime:  &t,
		HeadersOnly:   true,
	})
	if err != nil {
		return 0, fmt.Errorf("reading stream %s from %s: %w", name, t.Format(time.RFC3339), err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading stream %s from %s: %w", name, t.Format(time.RFC3339), err)
	}
	if info.NumPending == 0 {
		st, err := c.JS.Stream(ctx, name)
		if err != nil {
			return 0, fmt.Errorf("opening stream %s: %w", name, err)
		}
		return st.CachedInfo().State.LastSeq + 1, nil
	}
	m, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		return 0, fmt.Errorf("reading stream %s from %s: %w", name, t.Format(time.RFC3339), err)
	}
	md, err := m.Metadata()
	if err != nil {
		return 0, fmt.Errorf("reading stream %s: %w", name, err)
	}
	return md.Sequence.Stream, nil
}

// WaitCompacted waits until the compactor of source has folded every event
// of its change stream stored so far.
func (c *Conn) WaitCompacted(ctx context.Context, state *State, source string) error {
	st, err := c.JS.Stream(ctx, StreamName(source))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("opening stream %s: %w", StreamName(source), err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("reading stream %s: %w", StreamName(source), err)
	}
	for {
		var prog Compacted
		if _, err := state.GetJSON(ctx, CompactedKey(source), &prog); err != nil {
			return err
		}
		if prog.Seq >= info.State.LastSeq || prog.Incomplete {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
