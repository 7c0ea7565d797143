package progress

import (
	"context"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vbauerster/mpb/v8"
	"golang.org/x/term"

	"github.com/ferry-dev/ferry/internal/metrics"
)

// DefaultInterval is how often the plain log line is written when stderr is
// not a terminal.
const DefaultInterval = 10 * time.Second

const (
	// sampleEvery is how often the metrics are read: the bars take new
	// numbers (a person watching wants to see them move), and rates have
	// points to be taken from.
	sampleEvery = time.Second
	// terminalRedraw is how often the bars are redrawn; log lines written
	// through LogWriter appear at the next redraw.
	terminalRedraw = 500 * time.Millisecond
)

// Run shows ferry's progress until ctx ends. When w is a terminal it draws
// bars on w, redrawn in place; otherwise it logs the same numbers through
// log every interval (DefaultInterval when 0). On a terminal it draws the
// last numbers before it returns, so they stay above what follows; the log
// gets no extra line at the end (the caller's summary follows).
func Run(ctx context.Context, w *os.File, log *slog.Logger, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultInterval
	}
	r := NewReporter(metrics.Registry)
	if IsTerminal(w) {
		r.runTerminal(ctx, w, log)
		return
	}
	r.runLog(ctx, log, interval)
}

// IsTerminal reports whether f is a terminal that can redraw bars in place
// (not TERM=dumb, which has no cursor movement).
func IsTerminal(f *os.File) bool {
	if f == nil || os.Getenv("TERM") == "dumb" {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}

// Reporter turns successive metric snapshots into views.
type Reporter struct {
	gather prometheus.Gatherer
	hist   *History
	logs   LogState
}

// NewReporter reads metrics from g (ferry's: metrics.Registry).
func NewReporter(g prometheus.Gatherer) *Reporter {
	return &Reporter{gather: g, hist: NewHistory(DefaultWindow)}
}

// Update gathers the metrics as of now and returns what to show.
func (r *Reporter) Update(now time.Time) (View, error) {
	fams, err := r.gather.Gather()
	if err != nil && len(fams) == 0 {
		return View{}, err
	}
	// A partial gather (one collector failed) still has ferry's metrics.
	return r.hist.Observe(Collect(fams, now)), nil
}

func (r *Reporter) runLog(ctx context.Context, log *slog.Logger, interval time.Duration) {
	// Samples are taken more often than lines are written, so that the
	// first line already has rates and each rate covers the whole window.
	sample := time.NewTicker(min(sampleEvery, interval))
	defer sample.Stop()
	write := time.NewTicker(interval)
	defer write.Stop()
	update := func(now time.Time) (View, bool) {
		v, err := r.Update(now)
		if err != nil {
			log.Debug("progress: gathering metrics", "err", err)
			return View{}, false
		}
		return v, true
	}
	update(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-sample.C:
			update(now)
		case now := <-write.C:
			if v, ok := update(now); ok {
				for _, l := range r.logs.Lines(v) {
					log.LogAttrs(context.Background(), slog.LevelInfo, l.Msg, l.Attrs...)
				}
			}
		}
	}
}

// Line is one log line.
type Line struct {
	Msg   string
	Attrs []slog.Attr
}

// LogState decides which log lines a View makes. Writing every table of a
// 500-table source every 10 seconds would bury what moves, so it logs:
//   - "snapshot" per table being read (some chunks done, not all);
//   - "snapshot table done" once, when a table completes (not for tables
//     an earlier run finished: they are counted in the source's line);
//   - "snapshot" per source of several tables, for the whole snapshot's
//     ETA, and "snapshot done" once when it completes;
//   - "pipeline" per source: published, applied, pending and lags.
type LogState struct {
	tables  map[string]phase
	sources map[string]phase
}

type phase int

const (
	unseen   phase = iota
	running        // seen incomplete
	finished       // done reported, or done before we looked
)

// Lines returns the log lines for v, remembering what it reported.
func (s *LogState) Lines(v View) []Line {
	if s.tables == nil {
		s.tables, s.sources = map[string]phase{}, map[string]phase{}
	}
	var out []Line
	for _, t := range v.Tables {
		key := t.Source + "\x00" + t.Name
		switch ph := s.tables[key]; {
		case !t.Complete:
			s.tables[key] = running
			if t.ChunksDone > 0 || t.Rows > 0 {
				out = append(out, Line{"snapshot", TableAttrs(t)})
			}
		case ph == running || (ph == unseen && t.Rows > 0):
			s.tables[key] = finished
			out = append(out, Line{"snapshot table done", TableAttrs(t)})
		default:
			s.tables[key] = finished
		}
	}
	for _, sv := range v.Snapshots {
		switch ph := s.sources[sv.Source]; {
		case !sv.Complete:
			s.sources[sv.Source] = running
			if sv.Tables > 1 {
				out = append(out, Line{"snapshot", SnapshotAttrs(sv)})
			}
		case ph == running:
			s.sources[sv.Source] = finished
			out = append(out, Line{"snapshot done", SnapshotAttrs(sv)})
		default:
			s.sources[sv.Source] = finished
		}
	}
	for _, p := range v.Pipelines {
		out = append(out, Line{"pipeline", PipelineAttrs(p)})
	}
	return out
}

func (r *Reporter) runTerminal(ctx context.Context, w *os.File, log *slog.Logger) {
	p := mpb.New(
		mpb.WithOutput(w),
		mpb.WithRefreshRate(terminalRedraw),
		// A finished table's bar is printed once above the live ones and
		// scrolls away like output, instead of taking a line for days.
		mpb.PopCompletedMode(),
	)
	setActive(w, p)
	bars := newTermBars(p)
	update := func(now time.Time) {
		v, err := r.Update(now)
		if err != nil {
			log.Debug("progress: gathering metrics", "err", err)
			return
		}
		bars.apply(v)
	}
	update(time.Now())
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// The last numbers, drawn by Shutdown's final redraw, stay on
			// the screen above what follows (the run's summary).
			update(time.Now())
			p.Shutdown()
			setActive(nil, nil)
			return
		case now := <-t.C:
			update(now)
		}
	}
}

// The Progress drawing on a file, for LogWriter.
var active struct {
	sync.RWMutex
	fd uintptr
	p  *mpb.Progress
}

func setActive(f *os.File, p *mpb.Progress) {
	active.Lock()
	defer active.Unlock()
	active.p = p
	if f != nil {
		active.fd = f.Fd()
	}
}

// LogWriter returns the writer a logger sharing f with the bars should
// write to. While bars are drawn on f, each write is printed above them at
// the next redraw; a direct write to f would be erased by that redraw.
// Otherwise (no terminal, or the reporter stopped) it writes to f.
func LogWriter(f *os.File) io.Writer { return logWriter{f} }

type logWriter struct{ f *os.File }

func (w logWriter) Write(b []byte) (int, error) {
	active.RLock()
	p := active.p
	mine := p != nil && active.fd == w.f.Fd()
	active.RUnlock()
	if mine {
		if n, err := p.Write(b); err == nil {
			return n, nil
		}
		// The Progress shut down in between: write directly.
	}
	return w.f.Write(b)
}
