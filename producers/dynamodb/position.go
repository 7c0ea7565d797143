package dynamodb

import (
	"context"
	"encoding/binary"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/streams"
)

// A DynamoDB stream has no single position: each shard has its own
// sequence numbers. For the cut-over check the source's position is a time
// instead: "every change made before T is published and acknowledged". A
// shard vouches for a time when a GetRecords that started then came back
// empty (the shard's tip) after everything before it was acknowledged. The
// source's position is the earliest such time over the shards being read,
// less a margin for records that reach the stream a moment after the write.

// tipMargin allows for a write that becomes visible in its stream a little
// after it was acknowledged to the writer.
const tipMargin = 2 * time.Second

// tips tracks, per table and shard being read, the start of the last
// GetRecords that found the shard's tip with everything before it stored.
type tips struct {
	mu     sync.Mutex
	shards map[string]map[string]time.Time // table → shard → tip time (zero: not yet)
}

// table returns a table's shards; tp.mu is held.
func (tp *tips) table(table string) map[string]time.Time {
	if tp.shards == nil {
		tp.shards = map[string]map[string]time.Time{}
	}
	if tp.shards[table] == nil {
		tp.shards[table] = map[string]time.Time{}
	}
	return tp.shards[table]
}

// start notes a shard whose reading begins.
func (tp *tips) start(table, shard string) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.table(table)[shard] = time.Time{}
}

// pending notes a shard that waits for its parent: until it is read to
// its tip, its records are not all published.
func (tp *tips) pending(table, shard string) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if m := tp.table(table); m[shard].IsZero() {
		m[shard] = time.Time{} // absent (or not at its tip yet): it holds the position back
	}
}

func (tp *tips) end(table, shard string) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	delete(tp.shards[table], shard)
}

func (tp *tips) reached(table, shard string, at time.Time) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if m := tp.shards[table]; m != nil {
		if _, ok := m[shard]; ok && at.After(m[shard]) {
			m[shard] = at
		}
	}
}

// position is the earliest tip over all shards being read of the given
// tables; ok is false while some shard has not reached its tip yet.
func (tp *tips) position(tables []string) (time.Time, bool) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	var low time.Time
	for _, t := range tables {
		m := tp.shards[t]
		if len(m) == 0 {
			return time.Time{}, false // the table's shards are not listed yet
		}
		for _, at := range m {
			if at.IsZero() {
				return time.Time{}, false
			}
			if low.IsZero() || at.Before(low) {
				low = at
			}
		}
	}
	return low, !low.IsZero()
}

func timePosition(t time.Time) streams.Position {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, uint64(t.UnixMicro()))
	return streams.Position{Pos: b, Text: "every change before " + t.UTC().Format(time.RFC3339Nano), CommitTimeUs: t.UnixMicro(), SavedAtUs: time.Now().UnixMicro()}
}

// CurrentPosition is now: the cut-over check waits until every change made
// before this moment is published.
func (p *producer) CurrentPosition(context.Context) (streams.Position, error) {
	return timePosition(time.Now()), nil
}

// savePositions records the source's position in KV whenever it advances.
func (p *producer) savePositions(ctx context.Context) {
	var names []string
	for _, t := range p.tables {
		names = append(names, t.name)
	}
	var saved time.Time
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		at, ok := p.tips.position(names)
		if !ok {
			continue
		}
		at = at.Add(-tipMargin)
		if !at.After(saved) {
			continue
		}
		if err := p.env.State.PutJSON(ctx, streams.PositionKey(p.cfg.Name), timePosition(at)); err != nil {
			if ctx.Err() == nil {
				p.log.Warn("saving the source position", "err", err)
			}
			continue
		}
		saved = at
	}
}
