package progress

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vbauerster/mpb/v8"

	"github.com/ferry-dev/ferry/internal/metrics"
)

// The tests set ferry's real metrics (not look-alikes), so a renamed metric
// or label breaks them here rather than silently emptying the display. They
// share the global registry: no t.Parallel.

func resetMetrics() {
	for _, v := range []interface{ Reset() }{
		metrics.EventsPublished, metrics.SnapshotRows, metrics.SnapshotRowsEstimate,
		metrics.SnapshotChunksDone, metrics.SnapshotChunksTotal, metrics.SourceLag,
		metrics.SourcePosition, metrics.EventsApplied, metrics.ApplyErrors,
		metrics.DeadLettered, metrics.TargetLag, metrics.ConsumerPending,
	} {
		v.Reset()
	}
}

func sample(t *testing.T, at time.Time) Sample {
	t.Helper()
	fams, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return Collect(fams, at)
}

type tableState struct {
	est, chunks, done, rows float64
}

func setTable(src, table string, s tableState) {
	metrics.SnapshotRowsEstimate.WithLabelValues(src, table).Set(s.est)
	metrics.SnapshotChunksTotal.WithLabelValues(src, table).Set(s.chunks)
	metrics.SnapshotChunksDone.WithLabelValues(src, table).Set(s.done)
	// A counter: bring it to s.rows.
	c := metrics.SnapshotRows.WithLabelValues(src, table)
	c.Add(s.rows - counterValue(src, table))
}

func counterValue(src, table string) float64 {
	fams, _ := metrics.Registry.Gather()
	for _, f := range fams {
		if f.GetName() != mSnapshotRows {
			continue
		}
		for _, m := range f.GetMetric() {
			if label(m, "source") == src && label(m, "table") == table {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// logText renders lines as the text handler writes them, without time.
func logText(lines []Line) string {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	for _, l := range lines {
		log.LogAttrs(context.Background(), slog.LevelInfo, l.Msg, l.Attrs...)
	}
	return buf.String()
}

func barLines(v View) string {
	var b strings.Builder
	for _, t := range v.Tables {
		b.WriteString(TableBar(t).String() + "\n")
	}
	for _, s := range v.Snapshots {
		b.WriteString(SnapshotBar(s).String() + "\n")
	}
	for _, p := range v.Pipelines {
		b.WriteString(PipelineLine(p) + "\n")
	}
	return b.String()
}

func check(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s:\ngot:\n%s\nwant:\n%s", what, got, want)
	}
}

// A snapshot of three tables seen twice, 10 s apart: one table finishes,
// one is being read, one waits.
func TestSnapshotRender(t *testing.T) {
	resetMetrics()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	h := NewHistory(time.Minute)
	var logs LogState

	setTable("pg", "public.customers", tableState{est: 10000, chunks: 1})
	setTable("pg", "public.orders", tableState{est: 5e6, chunks: 250, done: 100, rows: 2e6})
	setTable("pg", "public.order_lines", tableState{est: 1e7, chunks: 500})
	metrics.EventsPublished.WithLabelValues("pg", "public.orders").Add(2e6)
	metrics.EventsApplied.WithLabelValues("dst", "pg", "public.orders").Add(1.9e6)
	metrics.ConsumerPending.WithLabelValues("dst", "pg").Set(100000)

	v0 := h.Observe(sample(t, t0))
	check(t, "bars at t0", barLines(v0), ""+
		"pg public.customers    0.0%  chunks 0/1  rows 0/~10.0k  ETA ?\n"+
		"pg public.order_lines    0.0%  chunks 0/500  rows 0/~10.0M  ETA ?\n"+
		"pg public.orders   40.0%  chunks 100/250  rows 2.00M/~5.00M  ETA ?\n"+
		"pg: 0/3 tables   13.3%  chunks 100/751  rows 2.00M/~15.0M  ETA ?\n"+
		"pg: published 2.00M | dst: applied 1.90M, pending 100k msgs\n")
	check(t, "log at t0", logText(logs.Lines(v0)), ""+
		`level=INFO msg=snapshot source=pg table=public.orders percent=40.0% chunks=100/250 rows=2000000 estimate=5000000 eta=?`+"\n"+
		`level=INFO msg=snapshot source=pg tables=0/3 percent=13.3% chunks=100/751 rows=2000000 estimate=15010000 eta=?`+"\n"+
		`level=INFO msg=pipeline source=pg published=2000000 dst.applied=1900000 dst.pending_msgs=100000`+"\n")

	setTable("pg", "public.customers", tableState{est: 10000, chunks: 1, done: 1, rows: 10000})
	setTable("pg", "public.orders", tableState{est: 5e6, chunks: 250, done: 110, rows: 2.2e6})
	metrics.EventsPublished.WithLabelValues("pg", "public.orders").Add(200000)
	metrics.EventsPublished.WithLabelValues("pg", "public.customers").Add(10000)
	metrics.EventsApplied.WithLabelValues("dst", "pg", "public.orders").Add(250000)
	metrics.ConsumerPending.WithLabelValues("dst", "pg").Set(60000)
	metrics.TargetLag.WithLabelValues("dst", "pg").Set(3.3)

	// orders: 10 chunks in 10 s, 140 left: 2m20s. The source: 11 chunks in
	// 10 s (1.1/s), 640 left: 581.8 s.
	v1 := h.Observe(sample(t, t0.Add(10*time.Second)))
	check(t, "bars at t1", barLines(v1), ""+
		"pg public.customers  100.0%  chunks 1/1  rows 10.0k  done\n"+
		"pg public.order_lines    0.0%  chunks 0/500  rows 0/~10.0M  0 rows/s  ETA ?\n"+
		"pg public.orders   44.0%  chunks 110/250  rows 2.20M/~5.00M  20.0k rows/s  ETA 2m20s\n"+
		"pg: 1/3 tables   14.7%  chunks 111/751  rows 2.21M/~15.0M  21.0k rows/s  ETA 9m42s\n"+
		"pg: published 2.21M (21.0k/s) | dst: applied 2.15M (25.0k/s), pending 60.0k msgs, lag 3.3s\n")
	check(t, "log at t1", logText(logs.Lines(v1)), ""+
		`level=INFO msg="snapshot table done" source=pg table=public.customers percent=100.0% chunks=1/1 rows=10000`+"\n"+
		`level=INFO msg=snapshot source=pg table=public.orders percent=44.0% chunks=110/250 rows=2200000 estimate=5000000 rate=20.0k/s eta=2m20s`+"\n"+
		`level=INFO msg=snapshot source=pg tables=1/3 percent=14.7% chunks=111/751 rows=2210000 estimate=15010000 rate=21.0k/s eta=9m42s`+"\n"+
		`level=INFO msg=pipeline source=pg published=2210000 rate=21.0k/s dst.applied=2150000 dst.rate=25.0k/s dst.pending_msgs=60000 dst.lag=3.3s`+"\n")

	// Everything read: each table is reported done once, then the source.
	setTable("pg", "public.orders", tableState{est: 5e6, chunks: 250, done: 250, rows: 5.1e6})
	setTable("pg", "public.order_lines", tableState{est: 1e7, chunks: 500, done: 500, rows: 9.9e6})
	v2 := h.Observe(sample(t, t0.Add(20*time.Second)))
	check(t, "log at t2", logText(logs.Lines(v2)), ""+
		`level=INFO msg="snapshot table done" source=pg table=public.order_lines percent=100.0% chunks=500/500 rows=9900000`+"\n"+
		`level=INFO msg="snapshot table done" source=pg table=public.orders percent=100.0% chunks=250/250 rows=5100000`+"\n"+
		`level=INFO msg="snapshot done" source=pg tables=3/3 percent=100.0% chunks=751/751 rows=15010000`+"\n"+
		`level=INFO msg=pipeline source=pg published=2210000 rate=10.5k/s dst.applied=2150000 dst.rate=12.5k/s dst.pending_msgs=60000 dst.lag=3.3s`+"\n")
	v3 := h.Observe(sample(t, t0.Add(30*time.Second)))
	check(t, "log at t3", logText(logs.Lines(v3)), ""+
		`level=INFO msg=pipeline source=pg published=2210000 rate=7.00k/s dst.applied=2150000 dst.rate=8.33k/s dst.pending_msgs=60000 dst.lag=3.3s`+"\n")
}

// Estimates are guesses: a table with more rows than estimated must not go
// past 100% or show a negative ETA.
func TestEstimateBelowDone(t *testing.T) {
	resetMetrics()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	h := NewHistory(time.Minute)

	// Planned: chunks decide; the row count passing the estimate changes
	// nothing.
	setTable("pg", "public.big", tableState{est: 1000, chunks: 10, done: 4, rows: 4000})
	// Not planned yet (no chunk count): only the estimate can say how far.
	metrics.SnapshotRowsEstimate.WithLabelValues("pg", "public.new").Set(1000)
	metrics.SnapshotRows.WithLabelValues("pg", "public.new").Add(900)
	h.Observe(sample(t, t0))
	setTable("pg", "public.big", tableState{est: 1000, chunks: 10, done: 6, rows: 6000})
	metrics.SnapshotRows.WithLabelValues("pg", "public.new").Add(600)
	v := h.Observe(sample(t, t0.Add(10*time.Second)))

	check(t, "bars", barLines(v), ""+
		"pg public.big   60.0%  chunks 6/10  rows 6.00k/~1.00k  200 rows/s  ETA 20s\n"+
		"pg public.new   99.9%  chunks 0/0  rows 1.50k/~1.00k  60 rows/s  ETA ?\n"+
		"pg: 0/2 tables   99.9%  chunks 6/10  rows 7.50k/~2.00k  260 rows/s  ETA ?\n")
	for _, tv := range v.Tables {
		p := tv.Progress
		if p.Fraction > 1 || p.ETA < 0 {
			t.Errorf("%s: fraction %v, ETA %v", tv.Name, p.Fraction, p.ETA)
		}
	}
}

func TestETAUnknownWhenRateZero(t *testing.T) {
	p := pace(100, 1000, 3, 10, false, 0, true, 0)
	if p.ETAKnown {
		t.Errorf("ETA known at rate 0: %v", p.ETA)
	}
	if got := FormatETA(p.ETA, p.ETAKnown); got != "?" {
		t.Errorf("FormatETA = %q, want ?", got)
	}
	if got := TableBar(TableView{Source: "pg", Name: "t", ChunksDone: 3, ChunksTotal: 10, Progress: p}).String(); got != "pg t   30.0%  chunks 3/10  rows 0  0 rows/s  ETA ?" {
		t.Errorf("bar = %q", got)
	}
	// A single sample: no rate at all yet.
	h := NewHistory(0)
	if _, ok := h.add("k", time.Unix(0, 0), 5); ok {
		t.Error("rate known from one point")
	}
	// A counter that went down (a restart) is rate 0, not negative.
	h.add("k", time.Unix(10, 0), 2)
	if r, ok := h.add("k", time.Unix(20, 0), 1); !ok || r != 0 {
		t.Errorf("rate after a decrease = %v %v, want 0 true", r, ok)
	}
}

// The rate covers the window: from the newest point at or before its start.
func TestRateWindow(t *testing.T) {
	h := NewHistory(time.Minute)
	var r float64
	for i := 0; i <= 12; i++ { // every 10 s, +100 until 60 s, then flat
		v := float64(min(i, 6) * 100)
		r, _ = h.add("k", time.Unix(int64(i*10), 0), v)
	}
	// At 120 s the window starts at 60 s, where the counter was already 600.
	if r != 0 {
		t.Errorf("rate = %v, want 0", r)
	}
	if n := len(h.series["k"]); n != 7 {
		t.Errorf("kept %d points, want 7", n)
	}
}

// The change stream of a cdc source, seen from `ferry migrate`, from
// `ferry apply` (no source numbers) and from `ferry produce` (no target).
func TestPipelineRender(t *testing.T) {
	resetMetrics()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	h := NewHistory(time.Minute)
	metrics.SourcePosition.WithLabelValues("pg").Set(1 << 30)
	metrics.SourceLag.WithLabelValues("pg").Set(0.4)
	metrics.EventsPublished.WithLabelValues("pg", "public.a").Add(1000)
	metrics.EventsApplied.WithLabelValues("dst", "pg", "public.a").Add(990)
	metrics.EventsApplied.WithLabelValues("crdb", "pg", "public.a").Add(500)
	metrics.ConsumerPending.WithLabelValues("dst", "pg").Set(10)
	metrics.ConsumerPending.WithLabelValues("crdb", "pg").Set(500)
	metrics.TargetLag.WithLabelValues("dst", "pg").Set(0.02)
	metrics.TargetLag.WithLabelValues("crdb", "pg").Set(4000)
	metrics.DeadLettered.WithLabelValues("crdb", "public.a").Add(2)
	metrics.ApplyErrors.WithLabelValues("crdb", "pg").Add(3)
	metrics.SourceLag.WithLabelValues("idle").Set(0)
	h.Observe(sample(t, t0))
	metrics.EventsPublished.WithLabelValues("pg", "public.a").Add(3)
	metrics.EventsApplied.WithLabelValues("dst", "pg", "public.a").Add(13)
	v := h.Observe(sample(t, t0.Add(10*time.Second)))

	check(t, "lines", barLines(v), ""+
		"idle: published 0 (0/s), lag 0s\n"+
		"pg: published 1.00k (0.3/s), lag 0.4s | crdb: applied 500 (0/s), pending 500 msgs, lag 1h07m, dead-lettered 2, failed batches 3 | dst: applied 1.00k (1.3/s), pending 10 msgs, lag 0s\n")
	var logs LogState
	check(t, "log", logText(logs.Lines(v)), ""+
		`level=INFO msg=pipeline source=idle published=0 rate=0/s lag=0s`+"\n"+
		`level=INFO msg=pipeline source=pg published=1003 rate=0.3/s lag=0.4s crdb.applied=500 crdb.rate=0/s crdb.pending_msgs=500 crdb.lag=1h07m crdb.dead_lettered=2 crdb.failed_batches=3 dst.applied=1003 dst.rate=1.3/s dst.pending_msgs=10 dst.lag=0s`+"\n")

	// `ferry apply`: the producer runs elsewhere.
	resetMetrics()
	metrics.EventsApplied.WithLabelValues("dst", "pg", "public.a").Add(7)
	metrics.ConsumerPending.WithLabelValues("dst", "pg").Set(0)
	v = NewHistory(0).Observe(sample(t, t0))
	check(t, "apply only", barLines(v), "pg | dst: applied 7, pending 0 msgs\n")
}

// A restart finds tables an earlier run finished: they are counted, not
// reported (no "done" line for each of hundreds of tables).
func TestFinishedEarlier(t *testing.T) {
	resetMetrics()
	setTable("pg", "public.a", tableState{est: 10, chunks: 1, done: 1})
	setTable("pg", "public.b", tableState{est: 10, chunks: 1, done: 1})
	var logs LogState
	v := NewHistory(0).Observe(sample(t, time.Unix(0, 0)))
	check(t, "log", logText(logs.Lines(v)), "")
	check(t, "bars", barLines(v), ""+
		"pg public.a  100.0%  chunks 1/1  rows 0  done\n"+
		"pg public.b  100.0%  chunks 1/1  rows 0  done\n"+
		"pg: 2/2 tables  100.0%  chunks 2/2  rows 0  done\n")
}

func TestFormat(t *testing.T) {
	counts := map[float64]string{
		-5: "0", 0: "0", 999: "999", 999.4: "999", 999.5: "1.00k", 1234: "1.23k",
		12345: "12.3k", 123456: "123k", 999400: "999k", 999600: "1.00M",
		2260000: "2.26M", 4.56e9: "4.56B", 7e12: "7.00T", 5e15: "5000T",
	}
	for v, want := range counts {
		if got := FormatCount(v); got != want {
			t.Errorf("FormatCount(%v) = %q, want %q", v, got, want)
		}
	}
	rates := map[float64]string{0: "0/s", 0.44: "0.4/s", 9.94: "9.9/s", 9.96: "10/s", 12345: "12.3k/s"}
	for v, want := range rates {
		if got := FormatRate(v); got != want {
			t.Errorf("FormatRate(%v) = %q, want %q", v, got, want)
		}
	}
	secs := map[float64]string{
		-3: "0s", 0: "0s", 0.04: "0s", 0.4: "0.4s", 9.94: "9.9s", 9.96: "10s", 42: "42s",
		59.6: "1m00s", 187: "3m07s", 3599.6: "1h00m", 18120: "5h02m",
		2*86400 + 7*3600: "2d07h", 86400*30 + 1799: "30d00h",
	}
	for v, want := range secs {
		if got := FormatSeconds(v); got != want {
			t.Errorf("FormatSeconds(%v) = %q, want %q", v, got, want)
		}
	}
	percents := []struct {
		p        Pace
		complete bool
		want     string
	}{
		{Pace{}, false, "     ?"},
		{Pace{}, true, "100.0%"},
		{Pace{Fraction: 0.452, FractionKnown: true}, false, " 45.2%"},
		{Pace{Fraction: 0.99996, FractionKnown: true}, false, " 99.9%"},
		{Pace{Fraction: 1.7, FractionKnown: true}, false, " 99.9%"},
		{Pace{Fraction: -0.1, FractionKnown: true}, false, "  0.0%"},
	}
	for _, c := range percents {
		if got := FormatPercent(c.p, c.complete); got != c.want {
			t.Errorf("FormatPercent(%+v, %v) = %q, want %q", c.p, c.complete, got, c.want)
		}
	}
	if got := FormatETA(90*time.Second, true); got != "1m30s" {
		t.Errorf("FormatETA = %q", got)
	}
}

// The terminal bars, drawn by mpb into a buffer: every bar and the
// pipeline line appear, the finished table popped above the live ones.
func TestTerminalBars(t *testing.T) {
	resetMetrics()
	setTable("pg", "public.customers", tableState{est: 10000, chunks: 1, done: 1, rows: 10000})
	setTable("pg", "public.orders", tableState{est: 5e6, chunks: 250, done: 110, rows: 2.2e6})
	metrics.EventsPublished.WithLabelValues("pg", "public.orders").Add(2.21e6)
	metrics.EventsApplied.WithLabelValues("dst", "pg", "public.orders").Add(2.15e6)

	var buf bytes.Buffer
	p := mpb.New(mpb.WithOutput(&buf), mpb.WithWidth(140), mpb.WithAutoRefresh(), mpb.PopCompletedMode())
	bars := newTermBars(p)
	h := NewHistory(0)
	bars.apply(h.Observe(sample(t, time.Unix(0, 0))))
	bars.apply(h.Observe(sample(t, time.Unix(1, 0))))
	p.Shutdown()
	out := buf.String()
	for _, want := range []string{
		"pg public.customers",
		"pg public.orders",
		"[===========>----",
		"chunks 110/250",
		"pg: 1/2 tables",
		"pg: published 2.21M (0/s) | dst: applied 2.15M (0/s)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal output lacks %q:\n%s", want, out)
		}
	}
	if i, j := strings.LastIndex(out, "pg public.customers"), strings.LastIndex(out, "pg public.orders"); i > j {
		t.Errorf("the finished table is not above the live one:\n%s", out)
	}
}
