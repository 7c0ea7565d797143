package validate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/streams/pb"
)

// Options configure one validation run.
type Options struct {
	Source     config.Source
	TargetCfg  config.Target
	Tolerances Tolerances
	// FailuresToFetch caps the listed differences of the run (counts stay
	// exact); 0 means 100.
	FailuresToFetch int
	// Tables limits the run to these source tables (schema.table or table).
	Tables []string
	// RangeRows is the rows per key range.
	RangeRows int
	// Parallel ranges are compared at once.
	Parallel int
	// RowsPerSecond caps rows read per side; 0: no cap.
	RowsPerSecond int
	// Live re-reads each difference after LiveDelay, up to LiveRetries
	// times, and reports only those that persist.
	Live        bool
	LiveDelay   time.Duration
	LiveRetries int
	// Repair, when set, is handed the writes that repair differences.
	Repair Repairer
	// Progress stores finished ranges so that a killed run resumes; nil
	// runs without.
	Progress *Progress
	Log      *slog.Logger
}

// Repairer makes the target equal to the source for the given keys of a
// source table. fresh reads the keys in the source now and returns one event
// per key: OP_READ with the row (write it) or OP_DELETE (drop the key), named
// as the source names them. A repairer may call fresh again for keys whose
// read it could not order against concurrent changes.
type Repairer interface {
	Repair(ctx context.Context, table string, keys []*pb.Row, fresh func(context.Context, []*pb.Row) ([]*pb.Event, error)) error
	// Settle waits until every repair handed over is on the target.
	Settle(ctx context.Context) error
}

// pair is a table as both sides name it. Their Columns line up: column i
// of a target row is the source's column i, renamed.
type pair struct {
	src, dst Table
	keyIdx   []int // indexes of the key columns in Columns
	// renamed[i] is the target column name when it differs.
	renamed []string
}

type engine struct {
	logMu   sync.Mutex
	lastLog time.Time

	opts Options
	src  Source
	dst  Target
	// srcLimit and dstLimit cap the rows read per second on each side.
	srcLimit, dstLimit *rate.Limiter
	mode               string
	capLeft            int // failures still to list in the report
}

// Run validates every table of the source against the target.
func Run(ctx context.Context, src Source, dst Target, opts Options) (*Report, error) {
	if opts.FailuresToFetch <= 0 {
		opts.FailuresToFetch = 100
	}
	if opts.RangeRows <= 0 {
		opts.RangeRows = 20000
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 4
	}
	if opts.LiveRetries <= 0 {
		opts.LiveRetries = 3
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if err := checkTolerances(opts.Tolerances); err != nil {
		return nil, err
	}
	e := &engine{opts: opts, src: src, dst: dst, capLeft: opts.FailuresToFetch,
		srcLimit: config.Limiter(opts.RowsPerSecond), dstLimit: config.Limiter(opts.RowsPerSecond)}
	srr, srcRanges := src.(RangeReader)
	drr, dstRanges := dst.(RangeReader)
	_, dstLookup := dst.(Lookuper)
	_, srcLookup := src.(Lookuper)
	switch {
	case srcRanges && dstRanges && srr.Ordered() && drr.Ordered():
		e.mode = "merge"
	case srcRanges && dstLookup:
		e.mode = "lookup"
	default:
		return nil, fmt.Errorf("source %s (%s) and target %s (%s) offer no way to compare: the source must be readable by ranges and the target by ranges in key order or by key lookups",
			opts.Source.Name, opts.Source.Type, opts.TargetCfg.Name, opts.TargetCfg.Type)
	}
	if (opts.Live || opts.Repair != nil) && !(srcLookup && dstLookup) {
		return nil, fmt.Errorf("--live and --repair need key lookups on both sides, which source %s (%s) or target %s (%s) does not offer",
			opts.Source.Name, opts.Source.Type, opts.TargetCfg.Name, opts.TargetCfg.Type)
	}
	rep := &Report{Source: opts.Source.Name, Target: opts.TargetCfg.Name, Mode: e.mode, Live: opts.Live,
		Repair: opts.Repair != nil, Started: time.Now().UTC(), FailuresToFetch: opts.FailuresToFetch}
	runID, err := opts.Progress.begin(ctx)
	if err != nil {
		return nil, err
	}
	rep.RunID = runID
	if r, ok := opts.Repair.(interface{ SetRunID(string) }); ok {
		r.SetRunID(runID)
	}

	for _, side := range []any{src, dst} {
		if m, ok := side.(MetaReader); ok {
			m.ReadMeta(opts.Tolerances.CompareTimestamps)
		}
	}
	tables, err := src.Tables(ctx)
	if err != nil {
		return nil, fmt.Errorf("source %s: listing tables: %w", opts.Source.Name, err)
	}
	tables, err = filterTables(tables, opts.Tables)
	if err != nil {
		return nil, err
	}
	var pairs []*pair
	for _, t := range tables {
		p, err := e.pairFor(ctx, t)
		if err != nil {
			return nil, err
		}
		pairs = append(pairs, p)
	}
	repairs := map[string][][]*pb.Value{}
	for _, p := range pairs {
		tr, fixed, err := e.table(ctx, p)
		if err != nil {
			return nil, err
		}
		rep.Tables = append(rep.Tables, tr)
		repairs[p.src.Name] = fixed
	}
	// Every range is read: a later run starts afresh even if confirming
	// the repairs below fails (its ranges' results would be stale).
	if err := opts.Progress.finish(ctx); err != nil {
		return nil, err
	}
	if opts.Repair != nil {
		if err := e.confirmRepairs(ctx, pairs, rep, repairs); err != nil {
			return nil, err
		}
	}
	rep.Equal = true
	for _, t := range rep.Tables {
		if t.Differences() > 0 && (opts.Repair == nil || t.Repaired < t.Differences() || t.Unrepaired > 0) {
			rep.Equal = false
		}
	}
	rep.Finished = time.Now().UTC()
	return rep, nil
}

// ErrBadTolerance marks a negative tolerance in the config.
var ErrBadTolerance = errors.New("invalid validation tolerance")

func checkTolerances(t Tolerances) error {
	var bad []string
	if t.Float < 0 {
		bad = append(bad, "validation.floatingPointTolerance")
	}
	if t.TimestampMs < 0 {
		bad = append(bad, "validation.timestampMsTolerance")
	}
	if t.WritetimeMs < 0 {
		bad = append(bad, "validation.writetimeToleranceMillis")
	}
	if t.TTLMs < 0 {
		bad = append(bad, "validation.ttlToleranceMillis")
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s must not be negative", ErrBadTolerance, strings.Join(bad, ", "))
	}
	return nil
}

// filterTables keeps the named tables ("schema.table", or a bare name that
// matches one table).
func filterTables(all []Table, names []string) ([]Table, error) {
	if len(names) == 0 {
		return all, nil
	}
	var out []Table
	for _, n := range names {
		found := false
		for _, t := range all {
			if t.Name == n || strings.HasSuffix(t.Name, "."+n) {
				out = append(out, t)
				found = true
			}
		}
		if !found {
			known := make([]string, len(all))
			for i, t := range all {
				known[i] = t.Name
			}
			return nil, fmt.Errorf("--tables: %s is not a table of the source (tables: %s)", n, strings.Join(known, ", "))
		}
	}
	return out, nil
}

// pairFor maps a source table to the target: the table rename
// (targets[].tables), then column renames (targets[].renames).
func (e *engine) pairFor(ctx context.Context, t Table) (*pair, error) {
	name := t.Name
	if to, ok := e.opts.TargetCfg.Tables[t.Name]; ok {
		name = to
	} else if i := strings.IndexByte(t.Name, '.'); i >= 0 {
		if to, ok := e.opts.TargetCfg.Tables[t.Name[i+1:]]; ok {
			name = to
		}
	}
	dt, err := e.dst.Table(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", e.opts.TargetCfg.Name, err)
	}
	have := map[string]bool{}
	for _, c := range dt.Columns {
		have[c] = true
	}
	p := &pair{src: t, dst: Table{Name: dt.Name, Schemaless: dt.Schemaless}, renamed: make([]string, len(t.Columns))}
	for i, c := range t.Columns {
		to := renameColumn(e.opts.TargetCfg.Renames, t.Name, c)
		if to != c {
			p.renamed[i] = to
		}
		if !have[to] {
			return nil, fmt.Errorf("target %s: table %s has no column %s (source column %s.%s)", e.opts.TargetCfg.Name, dt.Name, to, t.Name, c)
		}
		p.dst.Columns = append(p.dst.Columns, to)
	}
	for _, k := range t.Key {
		idx := -1
		for i, c := range t.Columns {
			if c == k {
				idx = i
			}
		}
		if idx < 0 {
			return nil, fmt.Errorf("source %s: key column %s of %s is not among its columns", e.opts.Source.Name, k, t.Name)
		}
		p.keyIdx = append(p.keyIdx, idx)
		p.dst.Key = append(p.dst.Key, p.dst.Columns[idx])
	}
	return p, nil
}

func renameColumn(renames []config.Rename, table, col string) string {
	for _, r := range renames {
		if r.From != col {
			continue
		}
		if r.Table == "" || r.Table == table || strings.HasSuffix(table, "."+r.Table) {
			return r.To
		}
	}
	return col
}

// diff is one difference found in a range.
type diff struct {
	kind     string
	key      []*pb.Value
	src, dst *pb.Row
	cols     []ColumnDiff
}

// rangeResult is what a finished range leaves in KV.
type rangeResult struct {
	SourceRows int64     `json:"sourceRows"`
	TargetRows int64     `json:"targetRows"`
	Missing    int64     `json:"missing"`
	Extraneous int64     `json:"extraneous"`
	Mismatched int64     `json:"mismatched"`
	Rechecked  int64     `json:"rechecked,omitempty"`
	Repaired   int64     `json:"repaired,omitempty"`
	Failures   []Failure `json:"failures,omitempty"`
	Omitted    int64     `json:"omitted,omitempty"`
	// RepairedKeys are the keys repaired (up to maxStoredKeys, as encoded
	// pb.Rows), for a resumed run to confirm.
	RepairedKeys [][]byte `json:"repairedKeys,omitempty"`
}

// maxStoredKeys bounds the repaired keys a range keeps in KV, and
// maxStoredFailures its listed differences: a KV value must stay well under
// NATS's max_payload (1 MiB by default on a standalone server).
const (
	maxStoredKeys     = 2000
	maxStoredFailures = 500
)

func encodeKeys(keys [][]*pb.Value) [][]byte {
	var out [][]byte
	for _, k := range keys[:min(len(keys), maxStoredKeys)] {
		b, err := (&pb.Row{Values: k}).MarshalVT()
		if err == nil {
			out = append(out, b)
		}
	}
	return out
}

func decodeKeys(bs [][]byte) [][]*pb.Value {
	var out [][]*pb.Value
	for _, b := range bs {
		r := &pb.Row{}
		if r.UnmarshalVT(b) == nil {
			out = append(out, r.Values)
		}
	}
	return out
}

// pass is one sweep of a table's ranges: "fwd" compares source ranges with
// the target; "rev" (lookup mode) scans the target for rows the source
// lacks.
type pass struct {
	name   string
	ranges []Range
}

func (e *engine) table(ctx context.Context, p *pair) (*TableReport, [][]*pb.Value, error) {
	tr := &TableReport{Table: p.src.Name, TargetTable: p.dst.Name, Failures: []Failure{}}
	passes := []string{"fwd"}
	if e.mode == "lookup" {
		if _, ok := e.dst.(RangeReader); ok {
			if _, ok := e.src.(Lookuper); ok {
				passes = append(passes, "rev")
			}
		}
	}
	if e.mode == "lookup" && len(passes) == 1 {
		// Neither a target scan nor source lookups: rows only the target
		// has cannot be found.
		tr.ExtraneousNotChecked = true
	}
	var fixed [][]*pb.Value
	var fixedMu sync.Mutex
	for _, ps := range passes {
		ranges, err := e.plan(ctx, p, ps)
		if err != nil {
			return nil, nil, err
		}
		if ps == "fwd" {
			tr.Ranges = len(ranges)
		}
		done, err := e.opts.Progress.done(ctx, p.src.Name, ps)
		if err != nil {
			return nil, nil, err
		}
		results := make([]*rangeResult, len(ranges))
		var todo []int
		for i := range ranges {
			if r, ok := done[i]; ok {
				results[i] = r
				fixed = append(fixed, decodeKeys(r.RepairedKeys)...)
				if ps == "fwd" {
					tr.RangesResumed++
				}
			} else {
				todo = append(todo, i)
			}
		}
		var finished atomic.Int64
		finished.Store(int64(len(ranges) - len(todo)))
		if len(done) > 0 {
			e.opts.Log.Info("resuming: ranges finished by an earlier run are not read again", "table", p.src.Name, "pass", ps, "done", len(done), "ranges", len(ranges))
		}
		work := make(chan int)
		var wg sync.WaitGroup
		var errOnce sync.Once
		var firstErr error
		wctx, cancel := context.WithCancel(ctx)
		for range min(e.opts.Parallel, max(len(todo), 1)) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range work {
					res, keys, err := e.rangeOf(wctx, p, ps, ranges[i])
					if err == nil {
						err = e.opts.Progress.save(wctx, p.src.Name, ps, i, res)
					}
					if err != nil {
						errOnce.Do(func() {
							firstErr = fmt.Errorf("table %s, range %d of %d: %w", p.src.Name, i+1, len(ranges), err)
							cancel()
						})
						continue
					}
					results[i] = res
					fixedMu.Lock()
					fixed = append(fixed, keys...)
					fixedMu.Unlock()
					e.opts.Log.Debug("range checked", "table", p.src.Name, "pass", ps, "range", i+1, "of", len(ranges),
						"sourceRows", res.SourceRows, "targetRows", res.TargetRows, "differences", res.Missing+res.Extraneous+res.Mismatched)
					e.progress(p.src.Name, ps, finished.Add(1), len(ranges))
				}
			}()
		}
	feed:
		for _, i := range todo {
			select {
			case work <- i:
			case <-wctx.Done():
				break feed
			}
		}
		close(work)
		wg.Wait()
		cancel()
		if firstErr != nil {
			return nil, nil, firstErr
		}
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		if ps == "fwd" {
			tr.RangesRead = len(todo)
		}
		for _, r := range results {
			tr.SourceRows += r.SourceRows
			tr.TargetRows += r.TargetRows
			tr.Missing += r.Missing
			tr.Extraneous += r.Extraneous
			tr.Mismatched += r.Mismatched
			tr.Rechecked += r.Rechecked
			tr.Repaired += r.Repaired
			tr.FailuresOmitted += r.Omitted
			for _, f := range r.Failures {
				if e.capLeft > 0 {
					tr.Failures = append(tr.Failures, f)
					e.capLeft--
				} else {
					tr.FailuresOmitted++
				}
			}
		}
	}
	return tr, fixed, nil
}

// progress logs the ranges done, at most every progressEvery (each range
// is logged at debug level).
func (e *engine) progress(table, pass string, done int64, total int) {
	e.logMu.Lock()
	due := time.Since(e.lastLog) >= progressEvery || done == int64(total)
	if due {
		e.lastLog = time.Now()
	}
	e.logMu.Unlock()
	if due {
		e.opts.Log.Info("validating", "table", table, "pass", pass, "ranges", fmt.Sprintf("%d/%d", done, total))
	}
}

const progressEvery = 10 * time.Second

// plan returns a pass's ranges: stored by an interrupted run, or new.
func (e *engine) plan(ctx context.Context, p *pair, ps string) ([]Range, error) {
	if rs, ok, err := e.opts.Progress.plan(ctx, p.src.Name, ps); err != nil || ok {
		return rs, err
	}
	var rs []Range
	var err error
	if ps == "fwd" {
		rs, err = e.src.(RangeReader).Ranges(ctx, p.src, e.opts.RangeRows)
		if err != nil {
			err = fmt.Errorf("source %s: splitting %s into ranges: %w", e.opts.Source.Name, p.src.Name, err)
		}
	} else {
		rs, err = e.dst.(RangeReader).Ranges(ctx, p.dst, e.opts.RangeRows)
		if err != nil {
			err = fmt.Errorf("target %s: splitting %s into ranges: %w", e.opts.TargetCfg.Name, p.dst.Name, err)
		}
	}
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		rs = []Range{{}}
	}
	return rs, e.opts.Progress.savePlan(ctx, p.src.Name, ps, rs)
}

// rangeOf compares one range and returns its result and, with --repair,
// the keys it repaired.
func (e *engine) rangeOf(ctx context.Context, p *pair, ps string, r Range) (*rangeResult, [][]*pb.Value, error) {
	res := &rangeResult{}
	var diffs []diff
	var err error
	switch {
	case ps == "rev":
		diffs, err = e.reverseRange(ctx, p, r, res)
	case e.mode == "merge":
		diffs, err = e.mergeRange(ctx, p, r, res)
	default:
		diffs, err = e.lookupRange(ctx, p, r, res)
	}
	if err != nil {
		return nil, nil, err
	}
	if diffs, err = e.confirmUnmatched(ctx, p, ps, diffs, res); err != nil {
		return nil, nil, err
	}
	if e.opts.Live && len(diffs) > 0 {
		before := len(diffs)
		if diffs, err = e.liveRecheck(ctx, p, diffs); err != nil {
			return nil, nil, err
		}
		res.Rechecked += int64(before - len(diffs))
	}
	for _, d := range diffs {
		switch d.kind {
		case Missing:
			res.Missing++
		case Extraneous:
			res.Extraneous++
		case Mismatched:
			res.Mismatched++
		}
		if len(res.Failures) < min(e.opts.FailuresToFetch, maxStoredFailures) {
			res.Failures = append(res.Failures, e.failure(p, d))
		} else {
			res.Omitted++
		}
	}
	var fixed [][]*pb.Value
	if e.opts.Repair != nil && len(diffs) > 0 {
		fixed = keysOf(diffs)
		if err := e.repair(ctx, p, fixed); err != nil {
			return nil, nil, err
		}
		res.Repaired = int64(len(fixed))
		res.RepairedKeys = encodeKeys(fixed)
	}
	return res, fixed, nil
}

// confirmUnmatched looks up, on both sides, the rows a merge found on one
// side only. Both sides read the same key bounds, but each in its own key
// order: where those differ (text keys under different collations) a row
// can fall into another range on the target and look missing here and
// extraneous there. Looked up by key it is found, and compared. Differences
// are usually few, so this costs little; without lookups on both sides the
// merge's answer stands.
//
// The target's rows are counted in the source range that holds their key:
// where the orders differ, the same bounds can cut overlapping intervals in
// the target's order (or leave a row out of the range it belongs to), so a
// target row read here but held by another source range is not counted
// here, and a row this range holds that the target read elsewhere is.
func (e *engine) confirmUnmatched(ctx context.Context, p *pair, ps string, diffs []diff, res *rangeResult) ([]diff, error) {
	_, sl := e.src.(Lookuper)
	_, dl := e.dst.(Lookuper)
	if e.mode != "merge" || ps != "fwd" || !sl || !dl {
		return diffs, nil
	}
	var kept []diff
	var keys [][]*pb.Value
	for _, d := range diffs {
		if d.kind == Mismatched {
			kept = append(kept, d)
		} else {
			keys = append(keys, d.key)
		}
	}
	if len(keys) == 0 {
		return diffs, nil
	}
	again, err := e.recheck(ctx, p, keys)
	if err != nil {
		return nil, err
	}
	extra, missing := map[string]bool{}, map[string]bool{}
	for _, d := range diffs {
		switch d.kind {
		case Extraneous:
			extra[keyString(d.key)] = true
		case Missing:
			missing[keyString(d.key)] = true
		}
	}
	onlySrc, onlyDst := map[string]bool{}, map[string]bool{}
	for _, d := range again {
		switch d.kind {
		case Missing:
			onlySrc[keyString(d.key)] = true
		case Extraneous:
			onlyDst[keyString(d.key)] = true
		}
	}
	for ks := range extra {
		if !onlyDst[ks] {
			res.TargetRows-- // the source has it: counted in its own range
		}
	}
	for ks := range missing {
		if !onlySrc[ks] {
			res.TargetRows++ // the target has it, read in another range
		}
	}
	for _, d := range again {
		// A row this range saw only on the target but the source has
		// belongs to the source range that holds its key, which reports
		// it: counting it here too would count it twice.
		if d.kind != Extraneous && extra[keyString(d.key)] {
			continue
		}
		kept = append(kept, d)
	}
	sort.Slice(kept, func(i, j int) bool { return compareKeys(kept[i].key, kept[j].key) < 0 })
	return kept, nil
}

// liveRecheck reads differences again after LiveDelay until each has been
// seen LiveRetries times in a row with the source row unchanged over the
// delay, which gave the pipeline that long to bring the row over; then it
// is reported. A row whose source changed meanwhile is in flight and starts
// counting again. A row that keeps changing and differing is reported after
// 3×LiveRetries reads all the same, so a validation ends.
func (e *engine) liveRecheck(ctx context.Context, p *pair, diffs []diff) ([]diff, error) {
	stable := map[string]int{}
	var confirmed []diff
	for round := 0; round < 3*e.opts.LiveRetries && len(diffs) > 0; round++ {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(e.opts.LiveDelay):
		}
		prev := make(map[string]*pb.Row, len(diffs))
		for _, d := range diffs {
			prev[keyString(d.key)] = d.src
		}
		again, err := e.recheck(ctx, p, keysOf(diffs))
		if err != nil {
			return nil, err
		}
		diffs = diffs[:0]
		for _, d := range again {
			k := keyString(d.key)
			if sameRow(prev[k], d.src) {
				stable[k]++
			} else {
				stable[k] = 0
			}
			if stable[k] >= e.opts.LiveRetries {
				confirmed = append(confirmed, d)
			} else {
				diffs = append(diffs, d)
			}
		}
	}
	return append(confirmed, diffs...), nil
}

// sameRow reports whether two reads of a source row are identical (both
// absent counts as identical).
func sameRow(a, b *pb.Row) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	ma, err1 := a.MarshalVT()
	mb, err2 := b.MarshalVT()
	return err1 == nil && err2 == nil && string(ma) == string(mb)
}

func keysOf(diffs []diff) [][]*pb.Value {
	out := make([][]*pb.Value, len(diffs))
	for i, d := range diffs {
		out[i] = d.key
	}
	return out
}

func (e *engine) failure(p *pair, d diff) Failure {
	f := Failure{Kind: d.kind, Columns: d.cols}
	for i, k := range p.src.Key {
		f.Key = append(f.Key, Cell{Column: k, Value: short(Text(d.key[i]))})
	}
	return f
}

func (p *pair) key(row *pb.Row) []*pb.Value {
	k := make([]*pb.Value, len(p.keyIdx))
	for i, j := range p.keyIdx {
		k[i] = at(row.GetValues(), j)
	}
	return k
}

// compareRows lists the columns that differ between a source row and the
// target row of the same key.
func (e *engine) compareRows(p *pair, s, d *pb.Row) []ColumnDiff {
	var out []ColumnDiff
	sv, dv := s.GetValues(), d.GetValues()
	for i, c := range p.src.Columns {
		a, b := at(sv, i), at(dv, i)
		if !e.opts.Tolerances.Equal(a, b) {
			out = append(out, ColumnDiff{Column: c, TargetColumn: p.renamed[i], What: "value", Source: short(Text(a)), Target: short(Text(b))})
		}
		if e.opts.Tolerances.CompareTimestamps && i < len(s.GetMeta()) && i < len(d.GetMeta()) {
			ma, mb := s.GetMeta()[i], d.GetMeta()[i]
			wt, ttl := e.opts.Tolerances.MetaEqual(ma, mb)
			if !wt {
				out = append(out, ColumnDiff{Column: c, TargetColumn: p.renamed[i], What: "writetime",
					Source: fmt.Sprint(ma.GetWritetimeUs()), Target: fmt.Sprint(mb.GetWritetimeUs())})
			}
			if !ttl {
				out = append(out, ColumnDiff{Column: c, TargetColumn: p.renamed[i], What: "ttl",
					Source: fmt.Sprint(ma.GetTtlSeconds()), Target: fmt.Sprint(mb.GetTtlSeconds())})
			}
		}
	}
	if p.src.Schemaless && p.dst.Schemaless {
		out = append(out, e.compareAttributes(p, s, d)...)
	}
	return out
}

// rowBatch is a slice of rows from one side, or the error that ended it.
type rowBatch struct {
	rows []*pb.Row
	err  error
}

// stream reads a range on one side into a channel of batches, at most
// limit rows a second.
func (e *engine) stream(ctx context.Context, rr RangeReader, t Table, r Range, limit *rate.Limiter) <-chan rowBatch {
	ch := make(chan rowBatch, 4)
	go func() {
		defer close(ch)
		var buf []*pb.Row
		err := rr.Read(ctx, t, r, func(row *pb.Row) error {
			buf = append(buf, row)
			if len(buf) < 256 {
				return nil
			}
			if err := config.WaitRows(ctx, limit, len(buf)); err != nil {
				return err
			}
			select {
			case ch <- rowBatch{rows: buf}:
			case <-ctx.Done():
				return ctx.Err()
			}
			buf = make([]*pb.Row, 0, 256)
			return nil
		})
		if err == nil && len(buf) > 0 {
			// The tail of a range counts against the cap too (a range of
			// fewer rows than a batch would otherwise read uncapped).
			err = config.WaitRows(ctx, limit, len(buf))
		}
		if err == nil && len(buf) > 0 {
			select {
			case ch <- rowBatch{rows: buf}:
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		if err != nil {
			select {
			case ch <- rowBatch{err: err}:
			case <-ctx.Done():
			}
		}
	}()
	return ch
}

// cursor walks one side's batches row by row.
type cursor struct {
	ch   <-chan rowBatch
	buf  []*pb.Row
	i    int
	err  error
	done bool
}

func (c *cursor) next() *pb.Row {
	for c.i >= len(c.buf) {
		if c.done {
			return nil
		}
		b, ok := <-c.ch
		if !ok {
			c.done = true
			return nil
		}
		if b.err != nil {
			c.err, c.done = b.err, true
			return nil
		}
		c.buf, c.i = b.rows, 0
	}
	r := c.buf[c.i]
	c.i++
	return r
}

// mergeRange reads a range on both sides in key order and merges them. A
// row whose key sorts before the other side's current row is set aside
// rather than declared missing at once: if the two sides order keys
// differently (text under different collations), its partner still turns up
// later in the range, and only what is left unmatched at the end differs.
// With the same order on both sides nothing waits but true differences.
func (e *engine) mergeRange(ctx context.Context, p *pair, r Range, res *rangeResult) ([]diff, error) {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dr := r
	dr.Lo, dr.Hi = renameKey(r.Lo, p.dst.Key), renameKey(r.Hi, p.dst.Key)
	sc := &cursor{ch: e.stream(rctx, e.src.(RangeReader), p.src, r, e.srcLimit)}
	dc := &cursor{ch: e.stream(rctx, e.dst.(RangeReader), p.dst, dr, e.dstLimit)}
	srcWait, dstWait := map[string]*pb.Row{}, map[string]*pb.Row{}
	var diffs []diff
	match := func(s, d *pb.Row, key []*pb.Value) {
		if cols := e.compareRows(p, s, d); len(cols) > 0 {
			diffs = append(diffs, diff{kind: Mismatched, key: key, src: s, dst: d, cols: cols})
		}
	}
	s, d := sc.next(), dc.next()
	for (s != nil || d != nil) && sc.err == nil && dc.err == nil {
		var c int
		var sk, dk []*pb.Value
		if s != nil {
			sk = p.key(s)
		}
		if d != nil {
			dk = p.key(d)
		}
		switch {
		case d == nil:
			c = -1
		case s == nil:
			c = 1
		default:
			c = compareKeys(sk, dk)
		}
		switch {
		case c == 0:
			match(s, d, sk)
			res.SourceRows++
			res.TargetRows++
			s, d = sc.next(), dc.next()
		case c <= 0:
			res.SourceRows++
			ks := keyString(sk)
			if o, ok := dstWait[ks]; ok {
				delete(dstWait, ks)
				match(s, o, sk)
			} else {
				srcWait[ks] = s
			}
			s = sc.next()
		default:
			res.TargetRows++
			ks := keyString(dk)
			if o, ok := srcWait[ks]; ok {
				delete(srcWait, ks)
				match(o, d, dk)
			} else {
				dstWait[ks] = d
			}
			d = dc.next()
		}
		// Keys waiting on the side that is behind can still be matched;
		// keys on the side that is ahead can be settled once the other
		// side has passed them. Both maps stay empty while orders agree.
		if len(srcWait) > 0 && d != nil {
			e.settle(p, srcWait, dk, Missing, &diffs)
		}
		if len(dstWait) > 0 && s != nil {
			e.settle(p, dstWait, sk, Extraneous, &diffs)
		}
	}
	if sc.err != nil {
		return nil, fmt.Errorf("source %s: reading %s: %w", e.opts.Source.Name, p.src.Name, sc.err)
	}
	if dc.err != nil {
		return nil, fmt.Errorf("target %s: reading %s: %w", e.opts.TargetCfg.Name, p.dst.Name, dc.err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, row := range srcWait {
		diffs = append(diffs, diff{kind: Missing, key: p.key(row), src: row})
	}
	for _, row := range dstWait {
		diffs = append(diffs, diff{kind: Extraneous, key: p.key(row), dst: row})
	}
	sort.Slice(diffs, func(i, j int) bool { return compareKeys(diffs[i].key, diffs[j].key) < 0 })
	return diffs, nil
}

// settle declares waiting rows different when the other side's current key
// is past them in this engine's order. It only trusts the order for keys
// it compares reliably (numbers, times): for text, a waiting row stays in
// the map until the range ends, in case the sides order text differently.
func (e *engine) settle(p *pair, wait map[string]*pb.Row, other []*pb.Value, kind string, diffs *[]diff) {
	if other == nil || !orderedKinds(other) {
		return
	}
	for ks, row := range wait {
		k := p.key(row)
		if compareKeys(k, other) < 0 {
			d := diff{kind: kind, key: k}
			if kind == Missing {
				d.src = row
			} else {
				d.dst = row
			}
			*diffs = append(*diffs, d)
			delete(wait, ks)
		}
	}
}

func orderedKinds(key []*pb.Value) bool {
	for _, v := range key {
		if isNull(v) || !(isNumeric(v) || isTimestamp(v)) {
			return false
		}
	}
	return true
}

func isTimestamp(v *pb.Value) bool {
	_, ok := v.Kind.(*pb.Value_Timestamp)
	return ok
}

func renameKey(k *pb.Row, names []string) *pb.Row {
	if k == nil {
		return nil
	}
	return &pb.Row{Names: names, Values: k.GetValues()}
}

// lookupRange scans a source range and looks its rows up on the target.
func (e *engine) lookupRange(ctx context.Context, p *pair, r Range, res *rangeResult) ([]diff, error) {
	return e.scanLookup(ctx, p, r, res, false)
}

// reverseRange scans a target range and looks its rows up in the source,
// reporting rows only the target has (lookup mode).
func (e *engine) reverseRange(ctx context.Context, p *pair, r Range, res *rangeResult) ([]diff, error) {
	return e.scanLookup(ctx, p, r, res, true)
}

func (e *engine) scanLookup(ctx context.Context, p *pair, r Range, res *rangeResult, reverse bool) ([]diff, error) {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	from, fromT, toT, limit := e.src.(RangeReader), p.src, p.dst, e.srcLimit
	to, _ := e.dst.(Lookuper)
	if reverse {
		from, fromT, toT, limit = e.dst.(RangeReader), p.dst, p.src, e.dstLimit
		to = e.src.(Lookuper)
	}
	c := &cursor{ch: e.stream(rctx, from, fromT, r, limit)}
	var diffs []diff
	for {
		var batch []*pb.Row
		for len(batch) < 100 {
			row := c.next()
			if row == nil {
				break
			}
			batch = append(batch, row)
		}
		if len(batch) == 0 {
			break
		}
		keys := make([]*pb.Row, len(batch))
		for i, row := range batch {
			keys[i] = &pb.Row{Names: toT.Key, Values: p.key(row)}
		}
		found, err := to.Lookup(ctx, toT, keys)
		if err != nil {
			return nil, fmt.Errorf("looking up %d keys of %s: %w", len(keys), toT.Name, err)
		}
		byKey := make(map[string]*pb.Row, len(found))
		for _, f := range found {
			byKey[keyString(p.key(f))] = f
		}
		for _, row := range batch {
			k := p.key(row)
			other, ok := byKey[keyString(k)]
			switch {
			case reverse:
				// The forward pass counted the target rows the source
				// has; this one adds those it lacks.
				if !ok {
					res.TargetRows++
					diffs = append(diffs, diff{kind: Extraneous, key: k, dst: row})
				}
			case !ok:
				res.SourceRows++
				diffs = append(diffs, diff{kind: Missing, key: k, src: row})
			default:
				res.SourceRows++
				res.TargetRows++
				if cols := e.compareRows(p, row, other); len(cols) > 0 {
					diffs = append(diffs, diff{kind: Mismatched, key: k, src: row, dst: other, cols: cols})
				}
			}
		}
	}
	if c.err != nil {
		return nil, fmt.Errorf("reading %s: %w", fromT.Name, c.err)
	}
	return diffs, ctx.Err()
}

// recheck reads keys again on both sides and returns those that still
// differ.
func (e *engine) recheck(ctx context.Context, p *pair, keys [][]*pb.Value) ([]diff, error) {
	var out []diff
	for start := 0; start < len(keys); start += 500 {
		part := keys[start:min(start+500, len(keys))]
		srcRows, err := e.lookup(ctx, e.src.(Lookuper), p.src, part)
		if err != nil {
			return nil, fmt.Errorf("source %s: re-reading %s: %w", e.opts.Source.Name, p.src.Name, err)
		}
		dstRows, err := e.lookup(ctx, e.dst.(Lookuper), p.dst, part)
		if err != nil {
			return nil, fmt.Errorf("target %s: re-reading %s: %w", e.opts.TargetCfg.Name, p.dst.Name, err)
		}
		for _, k := range part {
			ks := keyString(k)
			s, sok := srcRows[ks]
			d, dok := dstRows[ks]
			switch {
			case sok && dok:
				if cols := e.compareRows(p, s, d); len(cols) > 0 {
					out = append(out, diff{kind: Mismatched, key: k, src: s, dst: d, cols: cols})
				}
			case sok:
				out = append(out, diff{kind: Missing, key: k, src: s})
			case dok:
				out = append(out, diff{kind: Extraneous, key: k, dst: d})
			}
		}
	}
	return out, nil
}

func (e *engine) lookup(ctx context.Context, l Lookuper, t Table, keys [][]*pb.Value) (map[string]*pb.Row, error) {
	rows := make([]*pb.Row, len(keys))
	for i, k := range keys {
		rows[i] = &pb.Row{Names: t.Key, Values: k}
	}
	found, err := l.Lookup(ctx, t, rows)
	if err != nil {
		return nil, err
	}
	idx := make([]int, len(t.Key))
	for i, k := range t.Key {
		for j, c := range t.Columns {
			if c == k {
				idx[i] = j
			}
		}
	}
	out := make(map[string]*pb.Row, len(found))
	for _, f := range found {
		k := make([]*pb.Value, len(idx))
		for i, j := range idx {
			k[i] = at(f.GetValues(), j)
		}
		out[keyString(k)] = f
	}
	return out, nil
}

// repair hands the repairer the keys and a way to read them again in the
// source: a fresh row for each key the source has, a delete for each it
// lacks.
func (e *engine) repair(ctx context.Context, p *pair, keys [][]*pb.Value) error {
	fresh := func(ctx context.Context, keys []*pb.Row) ([]*pb.Event, error) {
		vals := make([][]*pb.Value, len(keys))
		for i, k := range keys {
			vals[i] = k.GetValues()
		}
		rows, err := e.lookup(ctx, e.src.(Lookuper), p.src, vals)
		if err != nil {
			return nil, fmt.Errorf("source %s: reading %s for repair: %w", e.opts.Source.Name, p.src.Name, err)
		}
		events := make([]*pb.Event, len(keys))
		for i, k := range keys {
			ev := &pb.Event{Source: e.opts.Source.Name, Table: p.src.Name, Key: k}
			if row, ok := rows[keyString(k.GetValues())]; ok {
				ev.Op, ev.After = pb.Op_OP_READ, row
			} else {
				ev.Op = pb.Op_OP_DELETE
			}
			events[i] = ev
		}
		return events, nil
	}
	for start := 0; start < len(keys); start += 500 {
		part := keys[start:min(start+500, len(keys))]
		rows := make([]*pb.Row, len(part))
		for i, k := range part {
			rows[i] = &pb.Row{Names: p.src.Key, Values: k}
		}
		if err := e.opts.Repair.Repair(ctx, p.src.Name, rows, fresh); err != nil {
			return fmt.Errorf("repairing %d rows of %s: %w", len(part), p.src.Name, err)
		}
	}
	return nil
}

// confirmRepairs waits until the target has applied the repairs, then reads
// the repaired keys again on both sides.
func (e *engine) confirmRepairs(ctx context.Context, pairs []*pair, rep *Report, fixed map[string][][]*pb.Value) error {
	any := false
	for _, t := range rep.Tables {
		if t.Repaired > 0 {
			any = true
		}
	}
	if !any {
		return nil
	}
	e.opts.Log.Info("repairs published; waiting until the target has applied them")
	if err := e.opts.Repair.Settle(ctx); err != nil {
		return err
	}
	for i, p := range pairs {
		tr := rep.Tables[i]
		keys := fixed[p.src.Name]
		if int64(len(keys)) < tr.Repaired {
			// More repaired keys than a range keeps in KV, by an earlier,
			// interrupted run: those not kept are not confirmed.
			tr.Unrepaired += tr.Repaired - int64(len(keys))
		}
		if len(keys) == 0 {
			continue
		}
		still, err := e.recheck(ctx, p, keys)
		if err != nil {
			return err
		}
		tr.Unrepaired += int64(len(still))
		for _, d := range still {
			e.opts.Log.Warn("still different after repair", "table", p.src.Name, "kind", d.kind, "key", e.failure(p, d).keyText())
		}
	}
	return nil
}

// ErrDifferent is returned by callers that turn a report into an exit code.
var ErrDifferent = errors.New("source and target differ")
