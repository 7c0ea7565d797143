package cassandra

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gocql/gocql"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/cqlcodec"
	"github.com/ferry-dev/ferry/internal/metrics"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

// rangeDone is the KV record of one finished token range of a table.
type rangeDone struct {
	Rows int64 `json:"rows"`
}

// rangePrefix is the KV prefix of a table's finished token ranges; each key
// ends in "<start>_<end>".
func rangePrefix(source, table string) string {
	return streams.SourceKey(source, "ranges", table) + "."
}

func rangeKey(source, table string, r tokenRange) string {
	return rangePrefix(source, table) + strconv.FormatInt(r.Start, 10) + "_" + strconv.FormatInt(r.End, 10)
}

// doneRanges reads a table's finished ranges from KV.
func (p *producer) doneRanges(ctx context.Context, t *table) ([]tokenRange, error) {
	keys, err := p.env.State.Keys(ctx, rangePrefix(p.cfg.Name, t.Name))
	if err != nil {
		return nil, err
	}
	var out []tokenRange
	for _, k := range keys {
		s, e, ok := strings.Cut(k[strings.LastIndexByte(k, '.')+1:], "_")
		a, err1 := strconv.ParseInt(s, 10, 64)
		b, err2 := strconv.ParseInt(e, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("source %s: bad token range key %q in KV", p.cfg.Name, k)
		}
		out = append(out, tokenRange{Start: a, End: b})
	}
	return normalize(out), nil
}

type job struct {
	t *table
	r tokenRange
}

// progress keeps what is finished, per table, for savepoints.
type progress struct {
	mu   sync.Mutex
	done map[string][]tokenRange
}

func (pr *progress) add(table string, r tokenRange) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.done[table] = normalize(append(pr.done[table], r))
}

// finished is what every table has finished: the ranges a savepoint may
// skip, since skipTokenRanges applies to all tables of the source.
func (pr *progress) finished(tables []*table) []tokenRange {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	var out []tokenRange
	for i, t := range tables {
		if i == 0 {
			out = pr.done[t.Name]
			continue
		}
		out = intersect(out, pr.done[t.Name])
	}
	return append([]tokenRange(nil), out...)
}

// snapshot reads what is left of every table's ring and reports done=false
// when ctx ended first.
func (p *producer) snapshot(ctx context.Context) (bool, error) {
	prog := &progress{done: map[string][]tokenRange{}}
	var jobs []job
	for _, t := range p.tables {
		done, err := p.doneRanges(ctx, t)
		if err != nil {
			return false, err
		}
		skip := normalize(append(append([]tokenRange(nil), done...), p.cfg.SkipTokenRanges...))
		prog.done[t.Name] = skip
		left := plan(p.cfg.SplitCount, skip)
		metrics.SnapshotChunksTotal.WithLabelValues(p.cfg.Name, t.Name).Set(float64(len(left)))
		p.log.Info("planned snapshot", "table", t.Name, "ranges", len(left), "rangesDoneBefore", len(done), "skipTokenRanges", len(p.cfg.SkipTokenRanges))
		for _, r := range left {
			jobs = append(jobs, job{t, r})
		}
	}
	sp := newSavepointer(p.cfg, p.tables, prog, p.log)
	stopSP := sp.start(ctx)
	defer stopSP()

	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		rows     atomic.Int64
		next     atomic.Int64
	)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range min(p.cfg.CQLConnections, max(len(jobs), 1)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for wctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) {
					return
				}
				j := jobs[i]
				n, err := p.readRange(wctx, j.t, j.r)
				if err != nil {
					if wctx.Err() == nil {
						errOnce.Do(func() { firstErr = err; cancel() })
					}
					return
				}
				// Recorded only after JetStream acknowledged every row.
				if err := p.env.State.PutJSON(context.WithoutCancel(wctx), rangeKey(p.cfg.Name, j.t.Name, j.r), rangeDone{Rows: n}); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				prog.add(j.t.Name, j.r)
				rows.Add(n)
				metrics.SnapshotChunksDone.WithLabelValues(p.cfg.Name, j.t.Name).Inc()
				metrics.SnapshotRows.WithLabelValues(p.cfg.Name, j.t.Name).Add(float64(n))
				metrics.EventsPublished.WithLabelValues(p.cfg.Name, j.t.Name).Add(float64(n))
				p.log.Debug("token range done", "table", j.t.Name, "start", j.r.Start, "end", j.r.End, "rows", n)
			}
		}()
	}
	wg.Wait()
	p.log.Info("snapshot rows published", "rows", rows.Load())
	if firstErr != nil {
		return false, firstErr
	}
	if ctx.Err() != nil {
		return false, nil
	}
	return true, nil
}

type laneBuf struct {
	events []*pb.Event
	size   int
	part   int
}

// readRange scans one token range of a table and publishes its rows, then
// waits until JetStream acknowledged every message.
func (p *producer) readRange(ctx context.Context, t *table, r tokenRange) (int64, error) {
	q := p.sess.Query(t.query, r.Start, r.End).WithContext(ctx).
		PageSize(p.cfg.FetchSize).Consistency(p.cons).Idempotent(true)
	if p.cfg.PreserveTimestamps {
		// Rows are stamped with the time before the Scan that fetched
		// their page (pageClock). A page prefetched in the background was
		// read earlier than that, and its TTLs would be overstated by the
		// wait: pages are fetched when needed instead.
		q = q.Prefetch(0)
	}
	lanes := make([]laneBuf, p.cfg.Partitions)
	var futs []jetstream.PubAckFuture
	rangeID := strconv.FormatInt(r.Start, 10) + "_" + strconv.FormatInt(r.End, 10)
	flush := func(lane int) error {
		lb := &lanes[lane]
		if len(lb.events) == 0 {
			return nil
		}
		data, err := streams.Encode(lb.events...)
		if err != nil {
			return err
		}
		id := fmt.Sprintf("%s:snap:%s:%s:%d:%d:%d", p.cfg.Name, t.Name, rangeID, p.run, lane, lb.part)
		f, err := p.env.Conn.PublishAsync(streams.EventSubject(p.cfg.Name, t.Name, lane), id, data)
		if err != nil {
			return err
		}
		futs = append(futs, f)
		lb.events, lb.size = nil, 0
		lb.part++
		return nil
	}
	limit := min(p.maxPayload/2, 512<<10)
	var n int64
	start := time.Now().UnixMicro()
	iter := q.Iter()
	clock := newPageClock(start, iter.PageState)
	scan := cqlcodec.NewRowScanner(iter.Columns())
	var vals []*pb.Value
	for clock.before() && iter.Scan(scan.Dest()...) {
		var err error
		if vals, err = scan.Values(vals); err != nil {
			_ = iter.Close()
			return 0, fmt.Errorf("source %s: %s.%w", p.cfg.Name, t.Name, err)
		}
		ev, err := p.rowEvent(t, vals, clock.row())
		if err != nil {
			_ = iter.Close()
			return 0, err
		}
		size := ev.SizeVT()
		if size+64 > p.maxPayload {
			_ = iter.Close()
			return 0, fmt.Errorf("source %s: row %s (%s) is %d bytes encoded, above the NATS server's max_payload of %d; raise max_payload (nats.maxPayload for the embedded server)",
				p.cfg.Name, t.Name, streams.KeyText(ev.GetKey()), size, p.maxPayload)
		}
		lane := streams.Lane(ev.Key, p.cfg.Partitions)
		lb := &lanes[lane]
		if lb.size+size > limit || len(lb.events) >= 2000 {
			if err := flush(lane); err != nil {
				_ = iter.Close()
				return 0, err
			}
		}
		lb.events = append(lb.events, ev)
		lb.size += size
		n++
		if err := paceRows(ctx, p.limit, n, false); err != nil {
			_ = iter.Close()
			return 0, err
		}
	}
	if err := iter.Close(); err != nil {
		return 0, fmt.Errorf("source %s: reading %s tokens (%d, %d]: %w", p.cfg.Name, t.Name, r.Start, r.End, err)
	}
	if err := paceRows(ctx, p.limit, n, true); err != nil {
		return 0, err
	}
	for lane := range lanes {
		if err := flush(lane); err != nil {
			return 0, err
		}
	}
	if err := streams.WaitAcks(ctx, futs); err != nil {
		return 0, fmt.Errorf("source %s: %s tokens (%d, %d]: %w", p.cfg.Name, t.Name, r.Start, r.End, err)
	}
	return n, nil
}

// paceRows charges the read limit (readRowsPerSecond) for the n-th row of a
// range: every 256 rows, and at the end of the range (end) for the rows
// since the last charge. Without that last charge a range's tail was never
// counted, and a table of many small ranges was read well above the limit.
func paceRows(ctx context.Context, l *rate.Limiter, n int64, end bool) error {
	switch {
	case end:
		return config.WaitRows(ctx, l, int(n%256))
	case n%256 == 0:
		return config.WaitRows(ctx, l, 256)
	}
	return nil
}

// pageClock tells when the page a row came in was read, which is when its
// ttl() values were current. Stamping each row when ferry got to it instead
// counted the time a page waited in ferry (a publish stalled by a slow
// stream, the read limit, a busy machine) as not yet passed, and the
// target's TTLs came out seconds too long. A page is recognised by the
// paging state that came with it; its time is the moment before the Scan
// that brought it (a page the driver fetched ahead, when three quarters of
// the previous one were read, is stamped a little late, by the time the last
// quarter took).
type pageClock struct {
	state    func() []byte
	cur      []byte
	at, prev int64
}

func newPageClock(start int64, state func() []byte) *pageClock {
	return &pageClock{state: state, cur: state(), at: start}
}

// before notes the time before a Scan; it is always true, to sit in the
// loop's condition.
func (c *pageClock) before() bool {
	c.prev = time.Now().UnixMicro()
	return true
}

// row is the read time of the row the last Scan gave.
func (c *pageClock) row() int64 {
	if s := c.state(); !bytes.Equal(s, c.cur) {
		c.cur, c.at = s, c.prev
	}
	return c.at
}

// rowEvent builds the snapshot event of one scanned row (vals in the
// order of the table's select list).
func (p *producer) rowEvent(t *table, vals []*pb.Value, readAt int64) (*pb.Event, error) {
	after := &pb.Row{Names: t.names, Values: make([]*pb.Value, len(t.cols))}
	// A partition's static-only row (no clustering values) has no regular
	// cells. Read in a token range after other rows, Cassandra 2.1 gave it
	// a regular value (likely a tuple's writetime() NULL indicator), and
	// the target refused to write it without a clustering key.
	staticOnly := t.nKey > t.nPart && vals[t.nPart] == nil
	for i := range t.cols {
		v := vals[i]
		if v == nil || (t.null[i] >= 0 && nullTuple(v, vals[t.null[i]])) ||
			(staticOnly && i >= t.nKey && t.cols[i].Kind != gocql.ColumnStatic) {
			v = &pb.Value{} // NULL
		}
		after.Values[i] = v
	}
	if p.cfg.PreserveTimestamps && !t.counter {
		after.Meta = cellMeta(t, vals, after.Values)
	}
	key := &pb.Row{Names: t.keyNames, Values: after.Values[:t.nKey:t.nKey]}
	return &pb.Event{
		Source: p.cfg.Name, Table: t.Name, Op: pb.Op_OP_READ, Key: key, After: after,
		PartitionKeyCount: uint32(t.nPart),
		// When the row was read: TTLs are what was left then, and a
		// writer subtracts the time since.
		CommitTimeUs: readAt,
	}, nil
}

// nullTuple tells a NULL tuple from a tuple of NULL members by the
// cell's writetime: none for no cell. Cassandra 2.1 answers 0 rather than
// NULL in a partition's static-only row, so 0 counts as none too when every
// member is NULL.
func nullTuple(v, writetime *pb.Value) bool {
	if writetime == nil {
		return true
	}
	if writetime.GetInt() != 0 {
		return false
	}
	for _, m := range v.GetTuple().GetValues() {
		if _, isNull := m.Kind.(*pb.Value_Null); !isNull {
			return false
		}
	}
	return true
}

// cellMeta is the per-cell writetime and TTL of a row. Key columns have
// none. A non-frozen collection (or UDT) has no single writetime: each
// element has its own, and CQL's writetime() refuses it. Such a column
// takes the writetime and TTL of the row's regular cell with the newest
// writetime (ties: the longer TTL); in a row with no such cell it keeps
// none, so the target writes it at its own current time without a TTL. A
// non-frozen list keeps only that TTL and is written at the target's
// current time, so that writing it twice replaces it instead of appending.
func cellMeta(t *table, vals, after []*pb.Value) []*pb.CellMeta {
	meta := make([]*pb.CellMeta, len(t.cols))
	var newest *pb.CellMeta
	for i := range t.cols {
		m := &pb.CellMeta{}
		meta[i] = m
		if t.wt[i] < 0 || vals[t.wt[i]] == nil || cqlcodec.IsNull(after[i]) {
			continue // no writetime: a key column, or a NULL cell
		}
		m.WritetimeUs = vals[t.wt[i]].GetInt()
		if ttl := vals[t.ttl[i]]; ttl != nil {
			m.TtlSeconds = int32(ttl.GetInt())
		}
		if newest == nil || m.WritetimeUs > newest.WritetimeUs || (m.WritetimeUs == newest.WritetimeUs && longerTTL(m, newest)) {
			newest = m
		}
	}
	if newest != nil {
		for i := range t.cols {
			if t.inherit[i] && !cqlcodec.IsNull(after[i]) {
				meta[i] = &pb.CellMeta{WritetimeUs: newest.WritetimeUs, TtlSeconds: newest.TtlSeconds}
				if t.types[i].Type() == gocql.TypeList {
					// A list written again at the same timestamp would
					// append its elements a second time (their cells are
					// keyed by time, and the write's own tombstone is one
					// microsecond older): lists take the target's clock.
					meta[i].WritetimeUs = 0
				}
			}
		}
	}
	return meta
}

// longerTTL: no TTL (0) outlives any TTL.
func longerTTL(a, b *pb.CellMeta) bool {
	if a.TtlSeconds == 0 {
		return b.TtlSeconds != 0
	}
	return b.TtlSeconds != 0 && a.TtlSeconds > b.TtlSeconds
}
