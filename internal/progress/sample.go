// Package progress shows what a person running a migration for days wants to
// see: per table, how far the snapshot is and when it will end; per pipeline,
// whether the change stream keeps up. It reads only ferry's Prometheus
// metrics (metrics.Registry), so it knows nothing of producers or appliers
// and shows the same numbers an operator scrapes from /metrics.
//
// On a terminal it draws progress bars redrawn in place; otherwise it logs a
// plain line every interval. The numbers and their wording come from pure
// functions (Collect, History.View, Bar, PipelineLine, ...), tested without
// a terminal.
package progress

import (
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Metric names read here; internal/metrics defines them.
const (
	mSnapshotRows     = "ferry_snapshot_rows_total"
	mSnapshotEstimate = "ferry_snapshot_rows_estimate"
	mChunksDone       = "ferry_snapshot_chunks_done"
	mChunksTotal      = "ferry_snapshot_chunks_total"
	mPublished        = "ferry_source_events_published_total"
	mSourceLag        = "ferry_source_lag_seconds"
	mSourcePosition   = "ferry_source_position"
	mApplied          = "ferry_target_events_applied_total"
	mApplyErrors      = "ferry_target_apply_errors_total"
	mDeadLettered     = "ferry_target_dead_lettered_total"
	mTargetLag        = "ferry_target_lag_seconds"
	mPending          = "ferry_target_pending_events"
)

// Sample is ferry's metrics at one moment, grouped the way they are shown.
// Only what this process reports is in it: `ferry apply` has no source
// numbers, `ferry produce` no target numbers.
type Sample struct {
	At      time.Time
	Tables  []Table  // sorted by source, then table
	Sources []Source // sorted by name
	Targets []Target // sorted by source, then name
}

// Table is one source table's snapshot.
type Table struct {
	Source, Name string
	// Rows the snapshot published in this process (the counter starts at 0
	// on every start; chunks done before a restart are not in it).
	Rows float64
	// Estimate is the source's own guess of the table's rows (PostgreSQL:
	// reltuples); it can be off either way.
	Estimate float64
	// ChunksDone of ChunksTotal are recorded as done in the durable state,
	// including those of earlier runs: the authoritative completion.
	ChunksDone, ChunksTotal float64
}

// Source is one source's producer side.
type Source struct {
	Name      string
	Published float64 // events published (snapshot rows and changes)
	Lag       float64 // seconds; valid when HasLag
	HasLag    bool
}

// Target is one target applying one source's stream.
type Target struct {
	Name, Source string
	Applied      float64
	Pending      float64 // valid when HasPending
	HasPending   bool
	Lag          float64 // seconds; valid when HasLag
	HasLag       bool
	DeadLettered float64
	Errors       float64 // failed batch attempts (retried)
}

// Collect turns gathered metric families into a Sample. Families that are
// not ferry's (Go runtime, process) are ignored.
func Collect(families []*dto.MetricFamily, at time.Time) Sample {
	type tk struct{ src, table string }
	type gk struct{ target, src string }
	tables := map[tk]*Table{}
	sources := map[string]*Source{}
	targets := map[gk]*Target{}
	dead := map[string]float64{} // by target: the metric has no source label

	table := func(m *dto.Metric) *Table {
		k := tk{label(m, "source"), label(m, "table")}
		t := tables[k]
		if t == nil {
			t = &Table{Source: k.src, Name: k.table}
			tables[k] = t
		}
		return t
	}
	source := func(m *dto.Metric) *Source {
		n := label(m, "source")
		s := sources[n]
		if s == nil {
			s = &Source{Name: n}
			sources[n] = s
		}
		return s
	}
	target := func(m *dto.Metric) *Target {
		k := gk{label(m, "target"), label(m, "source")}
		t := targets[k]
		if t == nil {
			t = &Target{Name: k.target, Source: k.src}
			targets[k] = t
		}
		return t
	}

	for _, f := range families {
		for _, m := range f.GetMetric() {
			v := value(m)
			switch f.GetName() {
			case mSnapshotRows:
				table(m).Rows = v
			case mSnapshotEstimate:
				table(m).Estimate = v
			case mChunksDone:
				table(m).ChunksDone = v
			case mChunksTotal:
				table(m).ChunksTotal = v
			case mPublished:
				source(m).Published += v // summed over tables
			case mSourceLag:
				s := source(m)
				s.Lag, s.HasLag = v, true
			case mSourcePosition:
				source(m) // a cdc source that has published nothing yet still shows
			case mApplied:
				target(m).Applied += v // summed over tables
			case mApplyErrors:
				target(m).Errors += v
			case mPending:
				t := target(m)
				t.Pending, t.HasPending = v, true
			case mTargetLag:
				t := target(m)
				t.Lag, t.HasLag = v, true
			case mDeadLettered:
				dead[label(m, "target")] += v
			}
		}
	}

	s := Sample{At: at}
	for _, t := range tables {
		s.Tables = append(s.Tables, *t)
	}
	sort.Slice(s.Tables, func(i, j int) bool {
		a, b := s.Tables[i], s.Tables[j]
		if a.Source != b.Source {
			return a.Source < b.Source
		}
		return a.Name < b.Name
	})
	for _, src := range sources {
		s.Sources = append(s.Sources, *src)
	}
	sort.Slice(s.Sources, func(i, j int) bool { return s.Sources[i].Name < s.Sources[j].Name })
	for _, t := range targets {
		t.DeadLettered = dead[t.Name]
		s.Targets = append(s.Targets, *t)
	}
	sort.Slice(s.Targets, func(i, j int) bool {
		a, b := s.Targets[i], s.Targets[j]
		if a.Source != b.Source {
			return a.Source < b.Source
		}
		return a.Name < b.Name
	})
	return s
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Untyped != nil:
		return m.GetUntyped().GetValue()
	}
	return 0
}
