package dynamodb

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/dynamo"
	"github.com/ferry-dev/ferry/internal/metrics"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

// segment is one Scan segment of one table.
type segment struct {
	t   *table
	seg int
}

// maxScanWorkers bounds the Scan calls in flight in one process.
const maxScanWorkers = 64

// snapshot scans every table in ScanSegments parallel segments. A segment
// is recorded done in KV (a chunk key, so `ferry status` shows progress)
// only after JetStream acknowledged all its items; a restart scans only
// the segments not recorded (and not in skipSegments). It reports
// done=false when ctx ended first.
func (p *producer) snapshot(ctx context.Context) (bool, error) {
	segs := p.dc.ScanSegments
	skip := map[int]bool{}
	for _, s := range p.dc.SkipSegments {
		skip[s] = true
	}
	var todo []segment
	for _, t := range p.tables {
		// The plan only tells `ferry status` how many chunks there are.
		if err := p.env.State.PutJSON(ctx, streams.PlanKey(p.cfg.Name, t.name), streams.ChunkPlan{
			Bounds: make([][]string, segs-1), EstRows: t.desc.ItemCount, Enqueued: true,
		}); err != nil {
			return false, err
		}
		keys, err := p.env.State.Keys(ctx, streams.ChunkPrefix(p.cfg.Name, t.name))
		if err != nil {
			return false, err
		}
		done := map[string]bool{}
		for _, k := range keys {
			done[k] = true
		}
		for s := range segs {
			if skip[s] {
				continue
			}
			if done[streams.ChunkKey(p.cfg.Name, t.name, s)] {
				continue
			}
			todo = append(todo, segment{t, s})
		}
		metrics.SnapshotChunksTotal.WithLabelValues(p.cfg.Name, t.name).Set(float64(segs))
		metrics.SnapshotChunksDone.WithLabelValues(p.cfg.Name, t.name).Set(float64(segs - len(todo)))
		metrics.SnapshotRowsEstimate.WithLabelValues(p.cfg.Name, t.name).Set(float64(t.desc.ItemCount))
	}
	p.log.Info("scanning", "tables", len(p.tables), "segments", segs, "toScan", len(todo), "skipped", len(skip))
	limits := map[string]*rate.Limiter{}
	for _, t := range p.tables {
		limits[t.name] = p.capacityLimiter(t)
	}
	rowLimit := config.Limiter(p.cfg.ReadRowsPerSecond)

	work := make(chan segment)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		items    atomic.Int64
	)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range min(len(todo), p.cfg.SnapshotWorkers, maxScanWorkers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range work {
				n, err := p.scanSegment(wctx, s, limits[s.t.name], rowLimit)
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				items.Add(n)
			}
		}()
	}
feed:
	for _, s := range todo {
		select {
		case work <- s:
		case <-wctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return false, firstErr
	}
	if ctx.Err() != nil {
		return false, nil
	}
	p.log.Info("snapshot items published", "items", items.Load())
	return true, nil
}

// capacityLimiter caps a table's Scan in read capacity units per second:
// readThroughput, or readThroughputPercent of it (or of the table's
// provisioned read capacity). nil: no cap.
func (p *producer) capacityLimiter(t *table) *rate.Limiter {
	units := float64(p.dc.ReadThroughput)
	if units == 0 {
		units = float64(t.desc.ReadUnits)
		if p.dc.ReadThroughputPercent == 0 {
			units = 0 // provisioned capacity alone is no cap: DynamoDB enforces it
		}
	}
	if p.dc.ReadThroughputPercent > 0 {
		units *= p.dc.ReadThroughputPercent
	}
	if units <= 0 {
		return nil
	}
	// A Scan page costs up to 1 MB / 4 KB = 256 units (eventually
	// consistent: half); the burst must let one page through.
	return rate.NewLimiter(rate.Limit(units), max(int(units), 256))
}

// scanSegment scans one segment and publishes its items, then records it.
// A segment cut short (ctx ended) is not recorded and is scanned again.
func (p *producer) scanSegment(ctx context.Context, s segment, capLimit *rate.Limiter, rowLimit *rate.Limiter) (int64, error) {
	t := s.t
	lanes := make([]laneBuf, p.cfg.Partitions)
	var futs []jetstream.PubAckFuture
	limit := min(p.maxPayload/2, 512<<10)
	flush := func(lane int) error {
		lb := &lanes[lane]
		if len(lb.events) == 0 {
			return nil
		}
		data, err := streams.Encode(lb.events...)
		if err != nil {
			return err
		}
		id := fmt.Sprintf("%s:snap:%s:%d:%d:%d:%d", p.cfg.Name, t.name, s.seg, p.run, lane, lb.part)
		f, err := p.env.Conn.PublishAsync(streams.EventSubject(p.cfg.Name, t.name, lane), id, data)
		if err != nil {
			return err
		}
		futs = append(futs, f)
		lb.events, lb.size = lb.events[:0:0], 0
		lb.part++
		return nil
	}
	// drain publishes what the lanes hold and waits until JetStream has
	// everything; stopped means ctx ended first.
	messages := 0
	drain := func() (stopped bool, err error) {
		for lane := range lanes {
			if err := flush(lane); err != nil {
				return false, err
			}
		}
		if err := streams.WaitAcks(ctx, futs); err != nil {
			if ctx.Err() != nil {
				return true, nil
			}
			return false, fmt.Errorf("source %s: segment %d of %s: %w", p.cfg.Name, s.seg, t.name, err)
		}
		messages += len(futs)
		futs = futs[:0]
		return ctx.Err() != nil, nil
	}
	start, n, err := p.loadProgress(ctx, s)
	if err != nil {
		return 0, err
	}
	if start != nil {
		p.log.Info("resuming segment after its saved key", "table", t.name, "segment", s.seg, "items", n)
	}
	for {
		out, err := p.db.Scan(ctx, &dynamodb.ScanInput{
			TableName:              aws.String(t.name),
			Segment:                aws.Int32(int32(s.seg)),
			TotalSegments:          aws.Int32(int32(p.dc.ScanSegments)),
			ConsistentRead:         aws.Bool(p.dc.ConsistentRead),
			ExclusiveStartKey:      start,
			ReturnConsumedCapacity: types.ReturnConsumedCapacityTotal,
		})
		if err != nil {
			if ctx.Err() != nil {
				return 0, nil
			}
			if dynamo.IsNotFound(err) {
				return 0, fmt.Errorf("source %s: table %s disappeared during the scan (segment %d)", p.cfg.Name, t.name, s.seg)
			}
			return 0, fmt.Errorf("source %s: scanning segment %d of table %s: %w", p.cfg.Name, s.seg, t.name, err)
		}
		pageBytes := 0
		for _, item := range out.Items {
			ev, err := p.itemEvent(t, pb.Op_OP_READ, item)
			if err != nil {
				return 0, err
			}
			size := ev.SizeVT()
			pageBytes += size
			if size+1024 > p.maxPayload {
				return 0, fmt.Errorf("source %s: item %s of %s is %d bytes encoded, above the NATS server's max_payload of %d; raise max_payload (nats.maxPayload for the embedded server)",
					p.cfg.Name, keyText(t.keyNames, item), t.name, size, p.maxPayload)
			}
			lane := streams.Lane(ev.Key, p.cfg.Partitions)
			lb := &lanes[lane]
			if lb.size+size > limit || len(lb.events) >= 2000 {
				if err := flush(lane); err != nil {
					return 0, err
				}
			}
			lb.events = append(lb.events, ev)
			lb.size += size
			n++
		}
		if err := config.WaitRows(ctx, rowLimit, len(out.Items)); err != nil {
			return 0, nil
		}
		if capLimit != nil {
			units := float64(pageBytes) / 4096
			if !p.dc.ConsistentRead {
				units /= 2
			}
			if cc := out.ConsumedCapacity; cc != nil && cc.CapacityUnits != nil {
				units = *cc.CapacityUnits
			}
			if err := capLimit.WaitN(ctx, max(1, min(int(units+0.999), capLimit.Burst()))); err != nil {
				return 0, nil
			}
		}
		metrics.SnapshotRows.WithLabelValues(p.cfg.Name, t.name).Add(float64(len(out.Items)))
		if len(out.LastEvaluatedKey) == 0 {
			break
		}
		start = out.LastEvaluatedKey
		// Page by page, once JetStream has every item so far, the segment's
		// position is saved: a restart goes on from there, and at most one
		// page of messages is held in memory.
		if stopped, err := drain(); stopped || err != nil {
			return 0, err
		}
		if err := p.saveProgress(ctx, s, start, n); err != nil {
			if ctx.Err() != nil {
				return 0, nil
			}
			return 0, err
		}
	}
	if stopped, err := drain(); stopped || err != nil {
		return 0, err
	}
	if err := p.env.State.PutJSON(ctx, streams.ChunkKey(p.cfg.Name, t.name, s.seg), streams.ChunkDone{Rows: n}); err != nil {
		return 0, err
	}
	metrics.SnapshotChunksDone.WithLabelValues(p.cfg.Name, t.name).Inc()
	metrics.EventsPublished.WithLabelValues(p.cfg.Name, t.name).Add(float64(n))
	p.log.Info("segment scanned", "table", t.name, "segment", s.seg, "items", n, "messages", messages)
	return n, nil
}

// segmentProgress is a segment's position within its scan: the key to
// continue after (a pb.Row of the key attributes, protobuf-encoded) and the
// items published before it.
type segmentProgress struct {
	After []byte `json:"after"`
	Items int64  `json:"items"`
}

func (p *producer) progressKey(s segment) string {
	return streams.SourceKey(p.cfg.Name, "segment", s.t.name, fmt.Sprint(s.seg))
}

func (p *producer) saveProgress(ctx context.Context, s segment, after map[string]types.AttributeValue, items int64) error {
	row, err := dynamo.ToRow(after)
	if err != nil {
		return fmt.Errorf("source %s: table %s segment %d: saving its position: %w", p.cfg.Name, s.t.name, s.seg, err)
	}
	b, err := row.MarshalVT()
	if err != nil {
		return err
	}
	return p.env.State.PutJSON(ctx, p.progressKey(s), segmentProgress{After: b, Items: items})
}

func (p *producer) loadProgress(ctx context.Context, s segment) (map[string]types.AttributeValue, int64, error) {
	var sp segmentProgress
	found, err := p.env.State.GetJSON(ctx, p.progressKey(s), &sp)
	if err != nil || !found || len(sp.After) == 0 {
		return nil, 0, err
	}
	row := &pb.Row{}
	if err := row.UnmarshalVT(sp.After); err != nil {
		return nil, 0, fmt.Errorf("source %s: reading the saved position of segment %d of %s: %w", p.cfg.Name, s.seg, s.t.name, err)
	}
	item, err := dynamo.FromRow(row, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("source %s: reading the saved position of segment %d of %s: %w", p.cfg.Name, s.seg, s.t.name, err)
	}
	return item, sp.Items, nil
}

type laneBuf struct {
	events []*pb.Event
	size   int
	part   int
}

// itemEvent builds an event from a whole item.
func (p *producer) itemEvent(t *table, op pb.Op, item dynamo.Item) (*pb.Event, error) {
	key, err := dynamo.KeyRow(item, t.keyNames)
	if err != nil {
		return nil, fmt.Errorf("source %s: table %s: %w", p.cfg.Name, t.name, err)
	}
	row, err := dynamo.ToRow(item)
	if err != nil {
		return nil, fmt.Errorf("source %s: table %s item %s: %w", p.cfg.Name, t.name, keyText(t.keyNames, item), err)
	}
	return &pb.Event{Source: p.cfg.Name, Table: t.name, Op: op, Key: key, After: row, PartitionKeyCount: 1}, nil
}
