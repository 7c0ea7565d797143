package progress

import (
	"sync"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// Bar priorities (lower is higher on the screen): tables in the order they
// started, then each source's total, then the pipeline lines at the bottom,
// which stay visible when the terminal is shorter than the bars (the top
// ones are cut first).
const (
	prioSnapshot = 1 << 20
	prioPipeline = 1 << 21
)

// termBars keeps one mpb bar per table being read, per source snapshot of
// several tables, and per pipeline, fed from successive Views.
type termBars struct {
	p *mpb.Progress

	mu     sync.Mutex          // guards models and lines, read by the decorators
	models map[string]BarModel // by bar key
	lines  map[string]string   // pipeline lines, by bar key

	bars  map[string]*mpb.Bar
	done  map[string]bool // completed (popped) or finished before we looked
	nextT int             // priority of the next table bar
	nextS int
	nextP int
}

func newTermBars(p *mpb.Progress) *termBars {
	return &termBars{
		p:      p,
		models: map[string]BarModel{},
		lines:  map[string]string{},
		bars:   map[string]*mpb.Bar{},
		done:   map[string]bool{},
	}
}

func (t *termBars) apply(v View) {
	t.mu.Lock()
	for _, tv := range v.Tables {
		t.models["t\x00"+tv.Source+"\x00"+tv.Name] = TableBar(tv)
	}
	for _, sv := range v.Snapshots {
		t.models["s\x00"+sv.Source] = SnapshotBar(sv)
	}
	for _, pv := range v.Pipelines {
		t.lines["p\x00"+pv.Source] = PipelineLine(pv)
	}
	t.mu.Unlock()

	justDone := map[string]bool{} // sources with a table completed now
	for _, tv := range v.Tables {
		// Unplanned tables have no chunk count to fill a bar with; the
		// source's total counts them.
		if tv.ChunksTotal > 0 && t.progressBar("t\x00"+tv.Source+"\x00"+tv.Name, tv.Rows, TableBar(tv), &t.nextT, 0) {
			justDone[tv.Source] = true
		}
	}
	for _, sv := range v.Snapshots {
		// With one table, the total would repeat its bar.
		if sv.Tables > 1 {
			m := SnapshotBar(sv)
			if justDone[sv.Source] {
				// Completed bars pop above in no set order within one
				// redraw; the total waits one update to land below its
				// last table.
				m.Done = false
			}
			t.progressBar("s\x00"+sv.Source, sv.Rows, m, &t.nextS, prioSnapshot)
		}
	}
	for _, pv := range v.Pipelines {
		key := "p\x00" + pv.Source
		if t.bars[key] == nil {
			t.bars[key] = t.p.MustAdd(0, mpb.NopStyle().Build(),
				mpb.BarFillerTrim(),
				mpb.BarPriority(prioPipeline+t.nextP),
				mpb.PrependDecorators(decor.Any(func(decor.Statistics) string { return t.line(key) })),
			)
			t.nextP++
		}
	}
}

// progressBar creates or updates the bar key, and reports whether it
// completed it now. rows is what this process read of it: a snapshot
// complete with none was finished by an earlier run and gets no bar (a
// restart would otherwise print every finished table).
func (t *termBars) progressBar(key string, rows int64, m BarModel, next *int, prio int) bool {
	if t.done[key] {
		return false
	}
	b := t.bars[key]
	if b == nil {
		if m.Done && rows == 0 {
			t.done[key] = true
			return false
		}
		text := func(f func(BarModel) string) decor.DecorFunc {
			return func(decor.Statistics) string { return f(t.model(key)) }
		}
		// Total 0: completion is triggered by SetTotal below, when the
		// chunks say so, not by the fill reaching a total that may still
		// change.
		b = t.p.New(0, mpb.BarStyle(),
			mpb.BarPriority(prio+*next),
			mpb.BarWidth(30),
			mpb.PrependDecorators(
				decor.Any(text(func(m BarModel) string { return m.Name }), decor.WCSyncSpaceR),
				decor.Any(text(func(m BarModel) string { return m.Percent }), decor.WCSyncWidth),
			),
			mpb.AppendDecorators(
				decor.Any(text(func(m BarModel) string { return m.Chunks }), decor.WCSyncSpaceR),
				decor.Any(text(func(m BarModel) string { return m.Rows }), decor.WCSyncSpaceR),
				decor.Any(text(func(m BarModel) string { return m.Rate }), decor.WCSyncSpaceR),
				decor.Any(text(func(m BarModel) string { return m.ETA }), decor.WC{C: decor.DextraSpace}),
			),
		)
		*next++
		t.bars[key] = b
	}
	b.SetTotal(m.Total, false)
	b.SetCurrent(m.Current)
	if m.Done {
		b.SetTotal(m.Total, true) // pops the bar above the live ones
		t.done[key] = true
		return true
	}
	return false
}

func (t *termBars) model(key string) BarModel {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.models[key]
}

func (t *termBars) line(key string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lines[key]
}
