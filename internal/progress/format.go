package progress

import (
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"
)

// FormatCount writes a count in three significant digits with a unit
// (999, 1.23k, 45.6M, 7.89B): a bar line has no room for 1,234,567,890, and
// the exact number is in the log and in /metrics.
func FormatCount(v float64) string {
	if v < 0 || math.IsNaN(v) {
		v = 0
	}
	units := []string{"", "k", "M", "B", "T"}
	u := 0
	// 999.5 rounds to 1000: that is already the next unit.
	for v >= 999.5 && u < len(units)-1 {
		v /= 1000
		u++
	}
	switch {
	case u == 0:
		return strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	case v < 9.995:
		return strconv.FormatFloat(v, 'f', 2, 64) + units[u]
	case v < 99.95:
		return strconv.FormatFloat(v, 'f', 1, 64) + units[u]
	default:
		return strconv.FormatFloat(v, 'f', 0, 64) + units[u]
	}
}

// FormatRate writes a per-second rate: 12.3k/s, and one decimal below 10
// (a quiet change stream does 0.4/s, which is not 0).
func FormatRate(perSec float64) string {
	if perSec > 0 && perSec < 9.95 {
		return strconv.FormatFloat(perSec, 'f', 1, 64) + "/s"
	}
	return FormatCount(perSec) + "/s"
}

// FormatSeconds writes a duration for a person: 0s, 0.4s, 42s, 3m07s,
// 5h02m, 2d07h. Negative is 0s (a lag or ETA is never negative).
func FormatSeconds(s float64) string {
	if s < 0.05 || math.IsNaN(s) {
		return "0s"
	}
	if s < 9.95 {
		return strconv.FormatFloat(s, 'f', 1, 64) + "s"
	}
	n := int64(math.Round(s))
	if n < 60 {
		return fmt.Sprintf("%ds", n)
	}
	if n < 3600 {
		return fmt.Sprintf("%dm%02ds", n/60, n%60)
	}
	if m := int64(math.Round(s / 60)); m < 24*60 {
		return fmt.Sprintf("%dh%02dm", m/60, m%60)
	}
	h := int64(math.Round(s / 3600))
	return fmt.Sprintf("%dd%02dh", h/24, h%24)
}

// FormatETA writes an ETA, "?" when unknown.
func FormatETA(d time.Duration, known bool) string {
	if !known {
		return "?"
	}
	return FormatSeconds(d.Seconds())
}

// FormatPercent writes a fraction as " 45.2%" (fixed width, for columns),
// "    ?" when unknown. Only a complete table shows 100.0%: an unfinished
// one stops at 99.9% instead of rounding up.
func FormatPercent(p Pace, complete bool) string {
	switch {
	case complete:
		return "100.0%"
	case !p.FractionKnown:
		return "     ?"
	}
	f := min(max(p.Fraction, 0), 0.999)
	// Floor, not round (99.96% is not 100.0%); the epsilon keeps 0.452
	// (451.999... in binary) at 45.2.
	return fmt.Sprintf("%5.1f%%", math.Floor(f*1000+1e-6)/10)
}

// BarModel is one progress bar: the fill (chunks done of chunks planned)
// and the texts around it, in columns.
type BarModel struct {
	Name           string // "pg public.orders"
	Percent        string // " 45.2%"
	Current, Total int64  // the fill: chunks
	Chunks         string // "chunks 113/250"
	Rows           string // "rows 2.26M/~5.00M"
	Rate           string // "12.3k rows/s", empty when unknown or done
	ETA            string // "ETA 3m42s", "ETA ?" or "done"
	Done           bool
}

// String is the bar's line without the bar graphic.
func (b BarModel) String() string {
	parts := []string{b.Name, b.Percent, b.Chunks, b.Rows}
	if b.Rate != "" {
		parts = append(parts, b.Rate)
	}
	parts = append(parts, b.ETA)
	return strings.Join(parts, "  ")
}

// TableBar is the bar of one table's snapshot.
func TableBar(v TableView) BarModel {
	return barModel(v.Source+" "+v.Name, v.Rows, v.Estimate, v.ChunksDone, v.ChunksTotal, v.Complete, v.Progress)
}

// SnapshotBar is the bar of a source's whole snapshot.
func SnapshotBar(v SnapshotView) BarModel {
	name := fmt.Sprintf("%s: %d/%d tables", v.Source, v.TablesDone, v.Tables)
	return barModel(name, v.Rows, v.Estimate, v.ChunksDone, v.ChunksTotal, v.Complete, v.Progress)
}

func barModel(name string, rows, est, done, total int64, complete bool, p Pace) BarModel {
	b := BarModel{
		Name:    name,
		Percent: FormatPercent(p, complete),
		Current: min(done, total),
		Total:   total,
		Chunks:  fmt.Sprintf("chunks %d/%d", done, total),
		Rows:    "rows " + FormatCount(float64(rows)),
		Done:    complete,
	}
	if est > 0 && !complete {
		// "~": the source's guess, which the count may pass.
		b.Rows += "/~" + FormatCount(float64(est))
	}
	if complete {
		b.ETA = "done"
		return b
	}
	if p.RateKnown {
		b.Rate = FormatRate(p.RowRate)
		b.Rate = strings.TrimSuffix(b.Rate, "/s") + " rows/s"
	}
	b.ETA = "ETA " + FormatETA(p.ETA, p.ETAKnown)
	return b
}

// PipelineLine is the one-line summary of a pipeline: what the source
// published, then per target what it applied, what is pending and how far
// behind it is.
//
//	pg: published 2.27M (12.3k/s), lag 0.4s | dst: applied 2.20M (12.0k/s), pending 70 msgs, lag 5.2s
//
// A part this process does not run (the producer in `ferry apply`) is left
// out: "pg | dst: applied ...".
func PipelineLine(p PipelineView) string {
	var b strings.Builder
	b.WriteString(p.Source)
	if p.Producer {
		b.WriteString(": published " + FormatCount(float64(p.Published)))
		if p.PublishRateKnown {
			b.WriteString(" (" + FormatRate(p.PublishRate) + ")")
		}
		if p.HasLag {
			b.WriteString(", lag " + FormatSeconds(p.Lag))
		}
	}
	for _, t := range p.Targets {
		b.WriteString(" | " + t.Name + ": applied " + FormatCount(float64(t.Applied)))
		if t.ApplyRateKnown {
			b.WriteString(" (" + FormatRate(t.ApplyRate) + ")")
		}
		if t.HasPending {
			// Messages, not events: a message carries a batch of events.
			b.WriteString(", pending " + FormatCount(float64(t.Pending)) + " msgs")
		}
		if t.HasLag {
			b.WriteString(", lag " + FormatSeconds(t.Lag))
		}
		if t.DeadLettered > 0 {
			b.WriteString(", dead-lettered " + strconv.FormatInt(t.DeadLettered, 10))
		}
		if t.Errors > 0 {
			b.WriteString(", failed batches " + strconv.FormatInt(t.Errors, 10))
		}
	}
	return b.String()
}

// TableAttrs are the log attributes of one table's snapshot progress: the
// numbers of its bar, counts exact.
func TableAttrs(v TableView) []slog.Attr {
	return append([]slog.Attr{slog.String("source", v.Source), slog.String("table", v.Name)},
		snapshotAttrs(v.Rows, v.Estimate, v.ChunksDone, v.ChunksTotal, v.Complete, v.Progress)...)
}

// SnapshotAttrs are the log attributes of a source's whole snapshot.
func SnapshotAttrs(v SnapshotView) []slog.Attr {
	return append([]slog.Attr{
		slog.String("source", v.Source),
		slog.String("tables", fmt.Sprintf("%d/%d", v.TablesDone, v.Tables)),
	}, snapshotAttrs(v.Rows, v.Estimate, v.ChunksDone, v.ChunksTotal, v.Complete, v.Progress)...)
}

func snapshotAttrs(rows, est, done, total int64, complete bool, p Pace) []slog.Attr {
	a := []slog.Attr{
		slog.String("percent", strings.TrimSpace(FormatPercent(p, complete))),
		slog.String("chunks", fmt.Sprintf("%d/%d", done, total)),
		slog.Int64("rows", rows),
	}
	if complete {
		return a
	}
	a = append(a, slog.Int64("estimate", est))
	if p.RateKnown {
		a = append(a, slog.String("rate", FormatRate(p.RowRate))) // rows
	}
	return append(a, slog.String("eta", FormatETA(p.ETA, p.ETAKnown)))
}

// PipelineAttrs are the log attributes of a pipeline's summary: the
// numbers of PipelineLine, counts exact, each target's in a group named
// after it (dst.applied=...).
func PipelineAttrs(p PipelineView) []slog.Attr {
	a := []slog.Attr{slog.String("source", p.Source)}
	if p.Producer {
		a = append(a, slog.Int64("published", p.Published))
		if p.PublishRateKnown {
			a = append(a, slog.String("rate", FormatRate(p.PublishRate)))
		}
		if p.HasLag {
			a = append(a, slog.String("lag", FormatSeconds(p.Lag)))
		}
	}
	for _, t := range p.Targets {
		g := []any{slog.Int64("applied", t.Applied)}
		if t.ApplyRateKnown {
			g = append(g, slog.String("rate", FormatRate(t.ApplyRate)))
		}
		if t.HasPending {
			g = append(g, slog.Int64("pending_msgs", t.Pending))
		}
		if t.HasLag {
			g = append(g, slog.String("lag", FormatSeconds(t.Lag)))
		}
		if t.DeadLettered > 0 {
			g = append(g, slog.Int64("dead_lettered", t.DeadLettered))
		}
		if t.Errors > 0 {
			g = append(g, slog.Int64("failed_batches", t.Errors))
		}
		a = append(a, slog.Group(t.Name, g...))
	}
	return a
}
