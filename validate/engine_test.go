package validate

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/streams/pb"
)

// memSide is an in-memory table: one side of a validation, for testing the
// engine without databases. cmp is its key order (a database's collation);
// unordered sides return range rows in random order (a scan).
type memSide struct {
	mu        sync.Mutex
	t         Table
	rows      map[string]*pb.Row
	cmp       func(a, b []*pb.Value) int
	unordered bool
	// afterRead runs once after the first Read (rows changing in flight).
	afterRead func(*memSide)
	reads     int
	// onLookup runs after each Lookup (changes arriving meanwhile).
	onLookup func()
}

func newMem(t Table) *memSide {
	return &memSide{t: t, rows: map[string]*pb.Row{}, cmp: compareKeys}
}

func (m *memSide) key(r *pb.Row) []*pb.Value {
	var k []*pb.Value
	for _, kc := range m.t.Key {
		for i, c := range m.t.Columns {
			if c == kc {
				k = append(k, r.Values[i])
			}
		}
	}
	return k
}

func (m *memSide) put(vals ...*pb.Value) {
	r := &pb.Row{Names: m.t.Columns, Values: vals}
	m.mu.Lock()
	m.rows[keyString(m.key(r))] = r
	m.mu.Unlock()
}

func (m *memSide) del(key ...*pb.Value) {
	m.mu.Lock()
	delete(m.rows, keyString(key))
	m.mu.Unlock()
}

func (m *memSide) sorted() []*pb.Row {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*pb.Row, 0, len(m.rows))
	for _, r := range m.rows {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return m.cmp(m.key(out[i]), m.key(out[j])) < 0 })
	return out
}

func (m *memSide) Tables(context.Context) ([]Table, error) { return []Table{m.t}, nil }
func (m *memSide) Table(_ context.Context, name string) (Table, error) {
	if name != m.t.Name {
		return Table{}, fmt.Errorf("table %s does not exist", name)
	}
	return m.t, nil
}
func (m *memSide) Close()        {}
func (m *memSide) Ordered() bool { return !m.unordered }

func (m *memSide) Ranges(_ context.Context, _ Table, n int) ([]Range, error) {
	rows := m.sorted()
	var out []Range
	var lo *pb.Row
	for i := n - 1; i < len(rows); i += n {
		hi := &pb.Row{Names: m.t.Key, Values: m.key(rows[i])}
		out = append(out, Range{Lo: lo, Hi: hi})
		lo = hi
	}
	return append(out, Range{Lo: lo}), nil
}

func (m *memSide) Read(_ context.Context, _ Table, r Range, emit func(*pb.Row) error) error {
	var out []*pb.Row
	for _, row := range m.sorted() {
		k := m.key(row)
		if (r.Lo == nil || m.cmp(k, r.Lo.Values) > 0) && (r.Hi == nil || m.cmp(k, r.Hi.Values) <= 0) {
			out = append(out, row)
		}
	}
	if m.unordered {
		rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	}
	for _, row := range out {
		if err := emit(row); err != nil {
			return err
		}
	}
	m.mu.Lock()
	m.reads++
	f := m.afterRead
	m.afterRead = nil
	m.mu.Unlock()
	if f != nil {
		f(m)
	}
	return nil
}

func (m *memSide) Lookup(_ context.Context, _ Table, keys []*pb.Row) ([]*pb.Row, error) {
	m.mu.Lock()
	var out []*pb.Row
	for _, k := range keys {
		if r, ok := m.rows[keyString(k.Values)]; ok {
			out = append(out, r)
		}
	}
	f := m.onLookup
	m.mu.Unlock()
	if f != nil {
		f()
	}
	return out, nil
}

var people = Table{Name: "public.people", Key: []string{"id"}, Columns: []string{"id", "name", "score"}}

// pairOf makes a source with rows 1..n and a target holding the same.
func pairOf(n int) (*memSide, *memSide) {
	src, dst := newMem(people), newMem(people)
	for i := 1; i <= n; i++ {
		src.put(vInt(int64(i)), vText(fmt.Sprint("p", i)), vDec(fmt.Sprint(i, ".50")))
		// The target stores the score as a float and the id as a decimal:
		// the same values in other kinds.
		dst.put(vDec(fmt.Sprint(i)), vText(fmt.Sprint("p", i)), vF64(float64(i)+0.5))
	}
	return src, dst
}

func opts() Options {
	return Options{Source: config.Source{Name: "s", Type: "mem"}, TargetCfg: config.Target{Name: "d", Type: "mem"}, RangeRows: 7, Parallel: 3,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func run(t *testing.T, src *memSide, dst *memSide, o Options) *Report {
	t.Helper()
	rep, err := Run(context.Background(), src, dst, o)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func kinds(tr *TableReport) string {
	var out []string
	for _, f := range tr.Failures {
		s := f.Kind + " " + f.keyText()
		for _, c := range f.Columns {
			s += fmt.Sprintf(" %s(%s|%s)", c.Column, c.Source, c.Target)
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

func breakTarget(dst *memSide) {
	dst.del(vInt(10))
	dst.put(vInt(200), vText("extra"), vNull())
	dst.put(vInt(20), vText("changed"), vF64(20.5))
}

const wantKinds = "extraneous id=200; mismatched id=20 name(p20|changed); missing id=10"

func TestValidateMergeFindsEachDifference(t *testing.T) {
	src, dst := pairOf(100)
	rep := run(t, src, dst, opts())
	if !rep.Equal || rep.Mode != "merge" {
		t.Fatalf("equal tables (in other kinds): %+v", rep.Tables[0])
	}
	breakTarget(dst)
	rep = run(t, src, dst, opts())
	tr := rep.Tables[0]
	if rep.Equal || tr.Missing != 1 || tr.Extraneous != 1 || tr.Mismatched != 1 || tr.SourceRows != 100 || tr.TargetRows != 100 {
		t.Fatalf("report: %+v", tr)
	}
	if got := kinds(tr); got != wantKinds {
		t.Errorf("failures:\n got %s\nwant %s", got, wantKinds)
	}
}

func TestValidateLookupModeFindsEachDifference(t *testing.T) {
	src, dst := pairOf(100)
	src.unordered = true
	breakTarget(dst)
	rep := run(t, src, dst, opts())
	tr := rep.Tables[0]
	if rep.Mode != "lookup" || tr.Missing != 1 || tr.Extraneous != 1 || tr.Mismatched != 1 || tr.SourceRows != 100 || tr.TargetRows != 100 {
		t.Fatalf("report (%s): %+v", rep.Mode, tr)
	}
	if got := kinds(tr); got != wantKinds {
		t.Errorf("failures:\n got %s\nwant %s", got, wantKinds)
	}
}

// The target orders text keys case-insensitively, the source byte-wise: the
// same key bounds cut different rows on each side, yet nothing differs.
func TestValidateMergeSurvivesADifferentKeyOrder(t *testing.T) {
	tbl := Table{Name: "public.words", Key: []string{"w"}, Columns: []string{"w", "n"}}
	src, dst := newMem(tbl), newMem(tbl)
	dst.cmp = func(a, b []*pb.Value) int {
		return strings.Compare(strings.ToLower(Text(a[0]))+Text(a[0]), strings.ToLower(Text(b[0]))+Text(b[0]))
	}
	for i := range 60 {
		w := fmt.Sprintf("%c%d", 'a'+rune(i%26), i)
		if i%2 == 0 {
			w = strings.ToUpper(w)
		}
		src.put(vText(w), vInt(int64(i)))
		dst.put(vText(w), vInt(int64(i)))
	}
	rep := run(t, src, dst, opts())
	if !rep.Equal {
		t.Fatalf("false differences: %s", kinds(rep.Tables[0]))
	}
	dst.put(vText("b1"), vInt(-1))
	rep = run(t, src, dst, opts())
	if got := kinds(rep.Tables[0]); got != "mismatched w=b1 n(1|-1)" {
		t.Errorf("got %s", got)
	}
	if tr := rep.Tables[0]; tr.SourceRows != 60 || tr.TargetRows != 60 {
		t.Errorf("rows counted: source %d, target %d, want 60 each", tr.SourceRows, tr.TargetRows)
	}
}

// The source orders text keys case-insensitively (MariaDB's *_ci
// collations), the target byte-wise: the source's bounds are not in the
// target's order, so the target's intervals overlap and leave rows out.
// Every row is still compared, and counted once.
func TestValidateMergeCountsEachTargetRowOnce(t *testing.T) {
	tbl := Table{Name: "tags", Key: []string{"w"}, Columns: []string{"w", "n"}}
	src, dst := newMem(tbl), newMem(tbl)
	src.cmp = func(a, b []*pb.Value) int {
		return strings.Compare(strings.ToLower(Text(a[0]))+Text(a[0]), strings.ToLower(Text(b[0]))+Text(b[0]))
	}
	// In ranges of 2 the bounds are b, D, f, H, j: b > D and f > H byte-wise.
	for i, w := range []string{"a", "b", "c", "D", "e", "f", "g", "H", "i", "j", "_x", "10", "~", "Y"} {
		src.put(vText(w), vInt(int64(i)))
		dst.put(vText(w), vInt(int64(i)))
	}
	o := opts()
	o.RangeRows = 2
	rep := run(t, src, dst, o)
	if tr := rep.Tables[0]; !rep.Equal || tr.SourceRows != 14 || tr.TargetRows != 14 {
		t.Fatalf("equal tables: %+v %s", tr, kinds(tr))
	}
	dst.del(vText("c"))
	dst.put(vText("Y"), vInt(-1))
	dst.put(vText("zz"), vInt(99))
	rep = run(t, src, dst, o)
	tr := rep.Tables[0]
	if got, want := kinds(tr), "extraneous w=zz; mismatched w=Y n(13|-1); missing w=c"; got != want {
		t.Errorf("failures:\n got %s\nwant %s", got, want)
	}
	if tr.SourceRows != 14 || tr.TargetRows != 14 {
		t.Errorf("rows counted: source %d, target %d, want 14 each", tr.SourceRows, tr.TargetRows)
	}
}

func TestValidateFailuresToFetchCapsTheListNotTheCounts(t *testing.T) {
	src, dst := pairOf(100)
	for i := 1; i <= 50; i++ {
		dst.put(vInt(int64(i)), vText("x"), vF64(float64(i)+0.5))
	}
	o := opts()
	o.FailuresToFetch = 5
	tr := run(t, src, dst, o).Tables[0]
	if tr.Mismatched != 50 || len(tr.Failures) != 5 || tr.FailuresOmitted != 45 {
		t.Fatalf("mismatched %d, listed %d, omitted %d", tr.Mismatched, len(tr.Failures), tr.FailuresOmitted)
	}
}

func TestValidateRenamesAndTolerances(t *testing.T) {
	src := newMem(Table{Name: "public.people", Key: []string{"id"}, Columns: []string{"id", "name", "score"}})
	dst := newMem(Table{Name: "crm.persons", Key: []string{"pid"}, Columns: []string{"pid", "full_name", "score", "extra"}})
	for i := 1; i <= 20; i++ {
		src.put(vInt(int64(i)), vText(fmt.Sprint("p", i)), vF64(float64(i)/3))
		dst.put(vInt(int64(i)), vText(fmt.Sprint("p", i)), vF64(float64(i)/3+1e-12), vText("ignored"))
	}
	o := opts()
	o.TargetCfg.Tables = map[string]string{"public.people": "crm.persons"}
	o.TargetCfg.Renames = []config.Rename{{Table: "people", From: "name", To: "full_name"}, {From: "id", To: "pid"}}
	if tr := run(t, src, dst, o).Tables[0]; tr.Mismatched != 20 {
		t.Fatalf("without a float tolerance every score differs: %+v", tr)
	}
	o.Tolerances.Float = 1e-9
	rep := run(t, src, dst, o)
	if !rep.Equal || rep.Tables[0].TargetTable != "crm.persons" {
		t.Fatalf("renamed, within tolerance: %+v %s", rep.Tables[0], kinds(rep.Tables[0]))
	}
	dst.put(vInt(3), vText("other"), vF64(1), vNull())
	f := run(t, src, dst, o).Tables[0].Failures
	if len(f) != 1 || f[0].Columns[0].Column != "name" || f[0].Columns[0].TargetColumn != "full_name" || f[0].Key[0].Column != "id" {
		t.Fatalf("failure names: %+v", f)
	}
}

// A difference that is gone when read again (a row in flight) is not
// reported with --live, and is without.
func TestValidateLiveRechecksBeforeReporting(t *testing.T) {
	for _, live := range []bool{false, true} {
		src, dst := pairOf(30)
		dst.put(vInt(5), vText("stale"), vF64(5.5))
		dst.afterRead = func(m *memSide) { m.put(vInt(5), vText("p5"), vF64(5.5)) }
		src.del(vInt(30)) // and a real difference
		o := opts()
		o.RangeRows = 100
		o.Live = live
		tr := run(t, src, dst, o).Tables[0]
		want := "extraneous id=30"
		if !live {
			want = "extraneous id=30; mismatched id=5 name(p5|stale)"
		}
		if got := kinds(tr); got != want {
			t.Errorf("live=%v: got %s, want %s", live, got, want)
		}
		if live && tr.Rechecked != 1 {
			t.Errorf("rechecked %d, want 1", tr.Rechecked)
		}
	}
}

// memRepairer applies repair events to an in-memory target on Settle.
type memRepairer struct {
	dst    *memSide
	mu     sync.Mutex
	events []*pb.Event
}

func (r *memRepairer) Repair(ctx context.Context, _ string, keys []*pb.Row, fresh func(context.Context, []*pb.Row) ([]*pb.Event, error)) error {
	evs, err := fresh(ctx, keys)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.events = append(r.events, evs...)
	r.mu.Unlock()
	return nil
}

func (r *memRepairer) Settle(context.Context) error {
	for _, ev := range r.events {
		if ev.Op == pb.Op_OP_DELETE {
			r.dst.del(ev.Key.Values...)
		} else {
			r.dst.put(ev.After.Values...)
		}
	}
	return nil
}

func TestValidateRepairSendsFreshRowsAndDeletes(t *testing.T) {
	src, dst := pairOf(100)
	breakTarget(dst)
	rp := &memRepairer{dst: dst}
	o := opts()
	o.Repair = rp
	rep := run(t, src, dst, o)
	if !rep.Equal || rep.Tables[0].Repaired != 3 || rep.Tables[0].Unrepaired != 0 {
		t.Fatalf("repair: %+v", rep.Tables[0])
	}
	var got []string
	for _, ev := range rp.events {
		got = append(got, ev.Op.String()+" "+Text(ev.Key.Values[0]))
		if ev.Op == pb.Op_OP_READ && (ev.Table != "public.people" || ev.Source != "s" || len(ev.After.Values) != 3) {
			t.Errorf("repair event: %v", ev)
		}
	}
	sort.Strings(got)
	if want := "OP_DELETE 200,OP_READ 10,OP_READ 20"; strings.Join(got, ",") != want {
		t.Errorf("events %v, want %s", got, want)
	}
	if rep := run(t, src, dst, opts()); !rep.Equal {
		t.Fatalf("after repair: %s", kinds(rep.Tables[0]))
	}
}

// A repair that does not take (the applier refused the row) leaves the
// run different.
func TestValidateRepairThatDoesNotTakeIsReported(t *testing.T) {
	src, dst := pairOf(10)
	dst.del(vInt(3))
	o := opts()
	o.Repair = &memRepairer{dst: newMem(people)} // applies elsewhere
	rep := run(t, src, dst, o)
	if rep.Equal || rep.Tables[0].Unrepaired != 1 {
		t.Fatalf("%+v", rep.Tables[0])
	}
}

func TestValidateTablesFilterNamesUnknownTables(t *testing.T) {
	src, dst := pairOf(3)
	o := opts()
	o.Tables = []string{"nope"}
	if _, err := Run(context.Background(), src, dst, o); err == nil || !strings.Contains(err.Error(), "nope is not a table") {
		t.Fatalf("err = %v", err)
	}
	o.Tables = []string{"people"}
	if rep := run(t, src, dst, o); len(rep.Tables) != 1 {
		t.Fatal("bare table name not matched")
	}
}

// lookupOnly is a target that can only look rows up by key.
type lookupOnly struct{ m *memSide }

func (l lookupOnly) Table(ctx context.Context, name string) (Table, error) {
	return l.m.Table(ctx, name)
}
func (l lookupOnly) Close() {}
func (l lookupOnly) Lookup(ctx context.Context, t Table, keys []*pb.Row) ([]*pb.Row, error) {
	return l.m.Lookup(ctx, t, keys)
}

func TestValidateLookupOnlyTargetSaysExtraRowsWereNotLookedFor(t *testing.T) {
	src, dst := pairOf(20)
	src.unordered = true
	breakTarget(dst)
	rep, err := Run(context.Background(), src, lookupOnly{dst}, opts())
	if err != nil {
		t.Fatal(err)
	}
	tr := rep.Tables[0]
	if !tr.ExtraneousNotChecked || tr.Extraneous != 0 || tr.Missing != 1 || tr.Mismatched != 1 {
		t.Fatalf("%+v", tr)
	}
	var b strings.Builder
	rep.Summary(&b)
	if !strings.Contains(b.String(), "rows only the target has were not looked for") {
		t.Errorf("summary:\n%s", b.String())
	}
}

func TestValidateNegativeToleranceIsRefused(t *testing.T) {
	src, dst := pairOf(1)
	o := opts()
	o.Tolerances.TimestampMs = -1
	if _, err := Run(context.Background(), src, dst, o); err == nil || !strings.Contains(err.Error(), "validation.timestampMsTolerance must not be negative") {
		t.Fatalf("err = %v", err)
	}
}

// A hot row whose source keeps changing while the target follows a step
// behind is in flight, not different: --live keeps reading it until it
// settles, where a fixed number of re-reads would have reported it.
func TestValidateLiveWaitsForAHotRowToSettle(t *testing.T) {
	src, dst := pairOf(10)
	src.put(vInt(5), vText("s1"), vDec("5.50"))
	dst.put(vInt(5), vText("s0"), vF64(5.5))
	n := 0
	dst.onLookup = func() {
		n++
		switch {
		case n <= 4:
			src.put(vInt(5), vText(fmt.Sprint("s", n+1)), vDec("5.50"))
			dst.put(vInt(5), vText(fmt.Sprint("s", n)), vF64(5.5))
		case n == 5:
			dst.put(vInt(5), vText("s5"), vF64(5.5))
		}
	}
	o := opts()
	o.Live = true
	rep := run(t, src, dst, o)
	if !rep.Equal || rep.Tables[0].Rechecked != 1 {
		t.Fatalf("hot row reported: %s (rechecked %d, %d lookups)", kinds(rep.Tables[0]), rep.Tables[0].Rechecked, n)
	}
}

// metaSide records what the engine asked of a side's write times and TTLs.
type metaSide struct {
	*memSide
	asked *bool
}

func (m metaSide) ReadMeta(on bool) { *m.asked = on }

// Sides that can read per-cell write times and TTLs are told, before
// anything is read, whether they are compared.
func TestValidateTellsSidesWhetherMetaIsCompared(t *testing.T) {
	for _, on := range []bool{true, false} {
		s, d := pairOf(3)
		srcAsked, dstAsked := !on, !on
		o := opts()
		o.Tolerances.CompareTimestamps = on
		rep, err := Run(context.Background(), metaSide{s, &srcAsked}, metaSide{d, &dstAsked}, o)
		if err != nil || !rep.Equal {
			t.Fatalf("compareTimestamps %v: %v %+v", on, err, rep)
		}
		if srcAsked != on || dstAsked != on {
			t.Errorf("compareTimestamps %v: source told %v, target told %v", on, srcAsked, dstAsked)
		}
	}
}
