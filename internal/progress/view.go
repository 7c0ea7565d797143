package progress

import (
	"sort"
	"time"
)

// DefaultWindow is how far back rates look: long enough to smooth the steps
// of chunk-at-a-time counters, short enough to follow a slowdown.
const DefaultWindow = time.Minute

// maxETA is the longest ETA worth stating; beyond it (a rate near zero) the
// ETA is unknown rather than centuries.
const maxETA = 1000 * 24 * time.Hour

// View is what is shown at one moment: the Sample with rates and ETAs.
type View struct {
	At        time.Time
	Tables    []TableView
	Snapshots []SnapshotView // per source with snapshot tables
	Pipelines []PipelineView // per source, with its targets
}

// TableView is one table's snapshot progress.
type TableView struct {
	Source, Name string
	Rows         int64 // published by this process
	Estimate     int64
	ChunksDone   int64 // never above ChunksTotal
	ChunksTotal  int64 // 0 until the table is planned
	Complete     bool  // every chunk recorded as done
	Progress     Pace
}

// SnapshotView is one source's whole snapshot: its tables summed.
type SnapshotView struct {
	Source                  string
	Tables, TablesDone      int
	Rows, Estimate          int64
	ChunksDone, ChunksTotal int64
	Complete                bool // every table planned and complete
	Progress                Pace
}

// Pace is how far something is, how fast it goes and when it ends.
type Pace struct {
	Fraction      float64 // 0..1, never 1 before completion
	FractionKnown bool
	RowRate       float64 // rows per second over the window
	RateKnown     bool    // two samples at least
	ETA           time.Duration
	ETAKnown      bool // false while the rate is 0 or unknown
}

// PipelineView is one source and the targets that apply its stream.
type PipelineView struct {
	Source string
	// Producer: this process reads the source (its numbers are known).
	Producer         bool
	Published        int64
	PublishRate      float64
	PublishRateKnown bool
	Lag              float64 // seconds
	HasLag           bool
	Targets          []TargetView
}

// TargetView is one target's applier.
type TargetView struct {
	Name           string
	Applied        int64
	ApplyRate      float64
	ApplyRateKnown bool
	Pending        int64
	HasPending     bool
	Lag            float64 // seconds
	HasLag         bool
	DeadLettered   int64
	Errors         int64
}

// History keeps recent values of the counters that rates are taken from.
type History struct {
	window time.Duration
	series map[string][]point
}

type point struct {
	at time.Time
	v  float64
}

// NewHistory keeps values for rates over window (DefaultWindow when 0).
func NewHistory(window time.Duration) *History {
	if window <= 0 {
		window = DefaultWindow
	}
	return &History{window: window, series: map[string][]point{}}
}

// Observe records s and returns its View. Samples must come in time order.
func (h *History) Observe(s Sample) View {
	seen := map[string]bool{}
	rate := func(key string, v float64) (float64, bool) {
		seen[key] = true
		return h.add(key, s.At, v)
	}

	v := View{At: s.At}
	type agg struct {
		tables, done      int
		rows, est         float64
		chunks, chunksTot float64
		planned, complete bool
		rowRate, chunkRt  float64
		rateOK            bool
	}
	bySource := map[string]*agg{}
	var order []string
	for _, t := range s.Tables {
		done := min(t.ChunksDone, t.ChunksTotal)
		complete := t.ChunksTotal > 0 && t.ChunksDone >= t.ChunksTotal
		rowRate, rowOK := rate("rows\x00"+t.Source+"\x00"+t.Name, t.Rows)
		chunkRate, _ := rate("chunks\x00"+t.Source+"\x00"+t.Name, done)
		v.Tables = append(v.Tables, TableView{
			Source: t.Source, Name: t.Name,
			Rows: int64(t.Rows), Estimate: int64(t.Estimate),
			ChunksDone: int64(done), ChunksTotal: int64(t.ChunksTotal),
			Complete: complete,
			Progress: pace(t.Rows, t.Estimate, done, t.ChunksTotal, complete, rowRate, rowOK, chunkRate),
		})

		a := bySource[t.Source]
		if a == nil {
			a = &agg{planned: true, complete: true}
			bySource[t.Source] = a
			order = append(order, t.Source)
		}
		a.tables++
		if complete {
			a.done++
		} else {
			a.complete = false
		}
		if t.ChunksTotal <= 0 {
			a.planned = false
		}
		a.rows += t.Rows
		a.est += t.Estimate
		a.chunks += done
		a.chunksTot += t.ChunksTotal
		// The source's rates are its tables' summed, not taken from the
		// sums: a table whose chunks appear already done (planned by an
		// earlier run) would otherwise look like a burst of progress.
		a.rowRate += rowRate
		a.chunkRt += chunkRate
		a.rateOK = a.rateOK || rowOK
	}
	for _, src := range order {
		a := bySource[src]
		total := a.chunksTot
		if !a.planned {
			// A table not planned yet has no chunk count: the sum is not
			// the total, so only the rows can tell how far the source is.
			total = 0
		}
		v.Snapshots = append(v.Snapshots, SnapshotView{
			Source: src, Tables: a.tables, TablesDone: a.done,
			Rows: int64(a.rows), Estimate: int64(a.est),
			ChunksDone: int64(a.chunks), ChunksTotal: int64(a.chunksTot),
			Complete: a.complete,
			Progress: pace(a.rows, a.est, a.chunks, total, a.complete, a.rowRate, a.rateOK, a.chunkRt),
		})
	}

	pipes := map[string]*PipelineView{}
	pipe := func(src string) *PipelineView {
		p := pipes[src]
		if p == nil {
			p = &PipelineView{Source: src}
			pipes[src] = p
		}
		return p
	}
	for _, src := range s.Sources {
		p := pipe(src.Name)
		p.Producer = true
		p.Published = int64(src.Published)
		p.PublishRate, p.PublishRateKnown = rate("pub\x00"+src.Name, src.Published)
		p.Lag, p.HasLag = max(src.Lag, 0), src.HasLag
	}
	for _, t := range s.Targets {
		p := pipe(t.Source)
		tv := TargetView{
			Name: t.Name, Applied: int64(t.Applied),
			Pending: int64(max(t.Pending, 0)), HasPending: t.HasPending,
			Lag: max(t.Lag, 0), HasLag: t.HasLag,
			DeadLettered: int64(t.DeadLettered), Errors: int64(t.Errors),
		}
		tv.ApplyRate, tv.ApplyRateKnown = rate("app\x00"+t.Name+"\x00"+t.Source, t.Applied)
		p.Targets = append(p.Targets, tv)
	}
	for _, p := range pipes {
		v.Pipelines = append(v.Pipelines, *p)
	}
	sort.Slice(v.Pipelines, func(i, j int) bool { return v.Pipelines[i].Source < v.Pipelines[j].Source })

	// Series that disappeared (a reset vector) would otherwise stay forever.
	for k := range h.series {
		if !seen[k] {
			delete(h.series, k)
		}
	}
	return v
}

// add appends a value and returns the rate per second over the window:
// from the newest point at or before the window's start (so that a counter
// that moves in steps is measured over the whole window) to now. Only one
// point: unknown. A counter that went down (a restart) gives rate 0.
func (h *History) add(key string, at time.Time, v float64) (float64, bool) {
	pts := append(h.series[key], point{at, v})
	for len(pts) > 2 && !pts[1].at.After(at.Add(-h.window)) {
		pts = pts[1:]
	}
	h.series[key] = pts
	if len(pts) < 2 {
		return 0, false
	}
	first, last := pts[0], pts[len(pts)-1]
	dt := last.at.Sub(first.at).Seconds()
	if dt <= 0 {
		return 0, false
	}
	return max(last.v-first.v, 0) / dt, true
}

// pace computes the fraction done and the ETA of a snapshot (one table
// or a source's sum). Chunks are authoritative: the fraction is chunks done
// of chunks planned, and the ETA is the chunks left at the recent chunk rate
// (chunks are of equal size, ChunkRows keys each, so that is the row rate
// without trusting the row estimate). Only before planning is the row
// estimate used, capped: it can be exceeded, and is never a completion.
func pace(rows, est, chunksDone, chunksTotal float64, complete bool, rowRate float64, rowRateOK bool, chunkRate float64) Pace {
	e := Pace{RowRate: rowRate, RateKnown: rowRateOK}
	var left, rate float64
	switch {
	case complete:
		return Pace{Fraction: 1, FractionKnown: true, RowRate: rowRate, RateKnown: rowRateOK, ETAKnown: true}
	case chunksTotal > 0:
		e.Fraction, e.FractionKnown = chunksDone/chunksTotal, true
		left, rate = chunksTotal-chunksDone, chunkRate
	case est > 0:
		e.Fraction, e.FractionKnown = rows/est, true
		left, rate = est-rows, rowRate
	default:
		return e
	}
	// Not complete: never 100%, whatever an estimate says.
	e.Fraction = min(max(e.Fraction, 0), 0.999)
	e.ETA, e.ETAKnown = eta(left, rate)
	return e
}

// eta is left/rate as a duration; unknown when the rate is 0 (nothing moved
// in the window), when nothing measurable is left although the work is not
// complete (a row estimate already exceeded), or when absurdly far.
func eta(left, rate float64) (time.Duration, bool) {
	if left <= 0 || rate <= 0 {
		return 0, false
	}
	secs := left / rate
	if secs > maxETA.Seconds() {
		return 0, false
	}
	return time.Duration(secs * float64(time.Second)), true
}
