package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
	"github.com/ferry-dev/ferry/e2e/pgtest"
)

// validateReport is the part of `ferry validate --report` the tests read.
type validateReport struct {
	Equal   bool `json:"equal"`
	Reports []struct {
		Equal  bool `json:"equal"`
		Tables []struct {
			Table         string `json:"table"`
			SourceRows    int64  `json:"sourceRows"`
			TargetRows    int64  `json:"targetRows"`
			Missing       int64  `json:"missing"`
			Extraneous    int64  `json:"extraneous"`
			Mismatched    int64  `json:"mismatched"`
			Ranges        int    `json:"ranges"`
			RangesRead    int    `json:"rangesRead"`
			RangesResumed int    `json:"rangesResumed"`
			Repaired      int64  `json:"repaired"`
			Unrepaired    int64  `json:"unrepaired"`
			Failures      []struct {
				Kind string `json:"kind"`
				Key  []struct {
					Column, Value string
				} `json:"key"`
				Columns []struct {
					Column, Source, Target, What string
				} `json:"columns"`
			} `json:"failures"`
		} `json:"tables"`
	} `json:"reports"`
}

func (p *pipeline) validate(args ...string) (int, string, validateReport) {
	p.t.Helper()
	path := filepath.Join(p.dir, fmt.Sprintf("report-%d.json", time.Now().UnixNano()))
	code, out := p.run(3*time.Minute, append([]string{"validate", "--config", p.cfgPath, "--report", path}, args...)...)
	var rep validateReport
	if code == 0 || code == 1 {
		if err := json.Unmarshal([]byte(readFile(p.t, path)), &rep); err != nil {
			p.t.Fatalf("report %s: %v\n%s", path, err, out)
		}
	}
	return code, out, rep
}

// snapshotOnce moves the source with a snapshot-only migrate, which exits
// once the target holds every row.
func (p *pipeline) snapshotOnce() {
	p.t.Helper()
	p.writeConfig("mode: snapshot", "")
	if code, out := p.run(3*time.Minute, "migrate", "--config", p.cfgPath); code != 0 {
		p.t.Fatalf("migrate exited %d:\n%s", code, out)
	}
}

const validateDDL = `
CREATE TABLE public.items (id bigint PRIMARY KEY, name text, qty int, price numeric(10,2), at timestamptz, doc jsonb);
CREATE TABLE public.lines (order_id bigint, line_no int, sku text NOT NULL, PRIMARY KEY (order_id, line_no));`

func seedValidate(p *pipeline, rows int) {
	p.both(validateDDL)
	p.srcExec(fmt.Sprintf(`INSERT INTO items SELECT i, 'name ' || i, i %% 100, i * 1.25, timestamptz '2024-01-01' + i * interval '1 s',
		jsonb_build_object('i', i) FROM generate_series(1, %d) i`, rows))
	p.srcExec(`INSERT INTO lines SELECT o, l, 'sku-' || o || '-' || l FROM generate_series(1, 500) o, generate_series(1, 3) l`)
}

// Equal tables exit 0; a row deleted on the target, an extra row and a
// changed row are each reported with key and column and exit 1; --repair
// fixes them through the stream and a second run exits 0.
func TestValidateReportAndRepair(t *testing.T) {
	p := newPipeline(t)
	seedValidate(p, 5000)
	p.writeConfig("mode: snapshot+cdc\nchunkRows: 1000", "")
	mig := p.start("migrate", "--config", p.cfgPath)
	p.waitCaughtUp()

	code, out, rep := p.validate()
	if code != 0 || !rep.Equal {
		t.Fatalf("validate of equal tables exited %d (equal=%v):\n%s", code, rep.Equal, out)
	}
	tb := rep.Reports[0].Tables
	if len(tb) != 2 || tb[0].SourceRows+tb[1].SourceRows != 6500 || tb[0].TargetRows+tb[1].TargetRows != 6500 {
		t.Fatalf("want 2 tables of 6500 rows in all, got %+v", tb)
	}

	p.dstExec(`DELETE FROM items WHERE id = 10`)
	p.dstExec(`INSERT INTO items (id, name) VALUES (999999, 'only on the target')`)
	p.dstExec(`UPDATE items SET name = 'changed' WHERE id = 20`)
	p.dstExec(`DELETE FROM lines WHERE order_id = 7 AND line_no = 2`)
	code, out, rep = p.validate("--range-rows", "700")
	if code != 1 || rep.Equal {
		t.Fatalf("validate of differing tables exited %d, want 1:\n%s", code, out)
	}
	items, lines := rep.Reports[0].Tables[0], rep.Reports[0].Tables[1]
	if items.Table != "public.items" {
		items, lines = lines, items
	}
	if items.Missing != 1 || items.Extraneous != 1 || items.Mismatched != 1 || lines.Missing != 1 {
		t.Fatalf("counts: items %+v, lines %+v", items, lines)
	}
	got := map[string]string{}
	for _, f := range items.Failures {
		key := f.Key[0].Column + "=" + f.Key[0].Value
		got[f.Kind] = key
		if f.Kind == "mismatched" {
			if len(f.Columns) != 1 || f.Columns[0].Column != "name" || f.Columns[0].Source != "name 20" || f.Columns[0].Target != "changed" {
				t.Errorf("mismatch columns: %+v", f.Columns)
			}
		}
	}
	want := map[string]string{"missing": "id=10", "extraneous": "id=999999", "mismatched": "id=20"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s row: got %q, want %q (failures %+v)", k, got[k], v, items.Failures)
		}
	}
	if k := lines.Failures[0].Key; len(k) != 2 || k[0].Value != "7" || k[1].Value != "2" {
		t.Errorf("composite key of the missing line: %+v", k)
	}
	for _, s := range []string{"public.items missing: id=10", "public.items extraneous: id=999999", "name: source name 20, target changed", "result: DIFFERENT"} {
		if !strings.Contains(out, s) {
			t.Errorf("summary lacks %q:\n%s", s, out)
		}
	}

	code, out, rep = p.validate("--repair")
	if code != 0 {
		t.Fatalf("validate --repair exited %d, want 0 once repaired:\n%s", code, out)
	}
	var repaired int64
	for _, tb := range rep.Reports[0].Tables {
		repaired += tb.Repaired
	}
	if repaired != 4 {
		t.Errorf("repaired %d rows, want 4:\n%s", repaired, out)
	}
	code, out, _ = p.validate()
	if code != 0 {
		t.Fatalf("validate after repair exited %d:\n%s", code, out)
	}
	p.assertEqual("public.items", "id")
	p.assertEqual("public.lines", "order_id, line_no")
	mig.Stop(t)
}

// A validation killed halfway continues where it stopped: the ranges it
// finished are not read again.
func TestValidateResume(t *testing.T) {
	p := newPipeline(t)
	seedValidate(p, 20000)
	p.snapshotOnce()
	// Each finished range is logged at debug level.
	f, err := os.OpenFile(p.cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("log: {level: debug}\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	args := []string{"validate", "--config", p.cfgPath, "--tables", "items", "--range-rows", "1000", "--parallel", "1"}
	slow := p.start(append(args, "--rows-per-second", "2000")...)
	ferrytest.Eventually(t, 2*time.Minute, "three ranges checked", func() bool {
		return strings.Count(slow.Output(), "range checked") >= 3 || slow.Exited()
	})
	slow.Kill9()
	if slow.ExitCode() != -1 {
		t.Fatalf("the slow validation finished before it was killed:\n%s", slow.Output())
	}
	checked := strings.Count(slow.Output(), "range checked")

	code, out, rep := p.validate("--tables", "items", "--range-rows", "1000", "--parallel", "1")
	if code != 0 {
		t.Fatalf("resumed validate exited %d:\n%s", code, out)
	}
	tb := rep.Reports[0].Tables[0]
	if tb.Ranges != 21 || tb.RangesResumed < checked || tb.RangesRead != tb.Ranges-tb.RangesResumed || tb.SourceRows != 20000 || tb.TargetRows != 20000 {
		t.Fatalf("resumed run: %+v (the killed run had checked %d ranges)\n%s", tb, checked, out)
	}
	// A finished validation is not resumed: the next run reads everything.
	_, _, rep = p.validate("--tables", "items", "--range-rows", "1000")
	if tb := rep.Reports[0].Tables[0]; tb.RangesResumed != 0 || tb.RangesRead != 21 {
		t.Fatalf("run after a finished one: %+v", tb)
	}
}

// --live while changes stream: rows in flight are not reported, a row that
// really differs is, and --repair restores it while the changes go on.
func TestValidateLive(t *testing.T) {
	p := newPipeline(t)
	seedValidate(p, 5000)
	p.writeConfig("mode: snapshot+cdc\nchunkRows: 1000", "")
	mig := p.start("migrate", "--config", p.cfgPath)
	p.waitCaughtUp()
	p.dstExec(`DELETE FROM items WHERE id = 4321`)

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var writes atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := p.src.Connect(ctx, p.srcDB)
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(context.Background())
		r := rand.New(rand.NewSource(1))
		for ctx.Err() == nil {
			id := 1 + r.Intn(5000)
			if id == 4321 {
				continue
			}
			if _, err := conn.Exec(ctx, `UPDATE items SET qty = qty + 1, at = now() WHERE id = $1`, id); err != nil && ctx.Err() == nil {
				t.Error(err)
				return
			}
			writes.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	// Let the stream be busy before validating.
	ferrytest.Eventually(t, time.Minute, "changes streaming", func() bool { return writes.Load() > 200 })
	code, out, rep := p.validate("--live", "--live-delay", "2s", "--range-rows", "500")
	// Repair while the changes still stream: repairs are ordered with them.
	rcode, rout, _ := p.validate("--live", "--live-delay", "2s", "--range-rows", "500", "--repair")
	stop()
	wg.Wait()
	if rcode != 0 {
		t.Errorf("validate --live --repair exited %d:\n%s", rcode, rout)
	}
	p.waitCaughtUp()
	p.assertEqual("public.items", "id")
	if code != 1 {
		t.Fatalf("validate --live exited %d, want 1 for the one deleted row:\n%s", code, out)
	}
	for _, tb := range rep.Reports[0].Tables {
		want := int64(0)
		if tb.Table == "public.items" {
			want = 1
		}
		if tb.Missing != want || tb.Extraneous != 0 || tb.Mismatched != 0 {
			t.Errorf("%s: missing %d extraneous %d mismatched %d, want only the deleted row (%d updates streamed):\n%s",
				tb.Table, tb.Missing, tb.Extraneous, tb.Mismatched, writes.Load(), out)
		}
	}
	if !strings.Contains(out, "public.items missing: id=4321") {
		t.Errorf("summary lacks the deleted row:\n%s", out)
	}
	mig.Stop(t)
}

// A config naming a table the target lacks is an error (exit 2) that names
// it; an unknown --target is a usage error (exit 2).
func TestValidateErrors(t *testing.T) {
	p := newPipeline(t)
	p.srcExec(`CREATE TABLE public.only_src (id int PRIMARY KEY)`)
	p.writeConfig("mode: snapshot\ntables: [public.only_src]", "")
	code, out := p.run(time.Minute, "validate", "--config", p.cfgPath)
	if code != 2 || !strings.Contains(out, "only_src does not exist") {
		t.Fatalf("exit %d, want 2 naming the missing table:\n%s", code, out)
	}
	code, out = p.run(time.Minute, "validate", "--config", p.cfgPath, "--target", "nope")
	if code != 2 || !strings.Contains(out, "--target nope") {
		t.Fatalf("exit %d, want 2 naming the target:\n%s", code, out)
	}
	_ = os.Remove(filepath.Join(p.dir, "x"))
}

// Table renames, column renames and the target schema are honoured, and
// values compare by value across column types (int vs numeric, json vs
// jsonb, timestamp within the tolerance).
func TestValidateRenamesAndTypes(t *testing.T) {
	p := newPipeline(t)
	p.srcExec(`CREATE TABLE public.people (id int PRIMARY KEY, full_name text, score int, doc json, seen timestamptz)`)
	p.dstExec(`CREATE SCHEMA crm; CREATE TABLE crm.persons (id numeric PRIMARY KEY, name varchar(50), score numeric(10,2), doc jsonb, seen timestamptz, note text)`)
	p.srcExec(`INSERT INTO people SELECT i, 'n' || i, i, '{"b": 1,  "a": [1, 2]}', timestamptz '2024-01-01' + i * interval '1 s' FROM generate_series(1, 300) i`)
	p.dstExec(`INSERT INTO crm.persons SELECT i, 'n' || i, i, '{"a": [1, 2.0], "b": 1}', timestamptz '2024-01-01' + i * interval '1 s' + interval '0.4 ms', 'target only' FROM generate_series(1, 300) i`)
	cfg := fmt.Sprintf(`nats: {url: "", listen: "127.0.0.1:%d", dataDir: %q}
sources: [{name: pg, type: postgres, dsn: %q, mode: snapshot, tables: [public.people]}]
targets:
  - name: dst
    type: postgres
    dsn: %q
    from: pg
    schema: crm
    tables: {public.people: persons}
    renames: [{table: people, from: full_name, to: name}]
validation: {timestampMsTolerance: 1, failuresToFetch: 2}
`, p.natsPort, filepath.Join(p.dir, "nats"), p.src.DSN(p.srcDB), p.dst.DSN(p.dstDB))
	p.cfgPath = filepath.Join(p.dir, "ferry.yaml")
	writeFile(t, p.cfgPath, cfg)
	code, out, rep := p.validate("--range-rows", "100")
	if code != 0 {
		t.Fatalf("validate exited %d:\n%s", code, out)
	}
	if tb := rep.Reports[0].Tables[0]; tb.SourceRows != 300 || tb.TargetRows != 300 {
		t.Fatalf("rows: %+v", tb)
	}
	p.dstExec(`UPDATE crm.persons SET name = 'renamed?' WHERE id IN (7, 8, 9)`)
	p.dstExec(`UPDATE crm.persons SET seen = seen + interval '5 ms' WHERE id = 10`)
	code, out, rep = p.validate("--range-rows", "100")
	tb := rep.Reports[0].Tables[0]
	if code != 1 || tb.Mismatched != 4 || len(tb.Failures) != 2 {
		t.Fatalf("exit %d, want 1 with 4 mismatches and 2 listed (failuresToFetch): %+v\n%s", code, tb, out)
	}
	if !strings.Contains(out, "public.people -> crm.persons") || !strings.Contains(out, "full_name (target name): source n7, target renamed?") ||
		!strings.Contains(out, "2 more differences not listed") {
		t.Errorf("summary:\n%s", out)
	}
}

// --repair with no applier running says so (exit 2) and leaves the repairs
// in the stream; once `ferry apply` runs, a repair run succeeds and the
// target is equal.
func TestValidateRepairNeedsAnApplier(t *testing.T) {
	p := newPipeline(t)
	seedValidate(p, 2000)
	p.snapshotOnce()
	p.dstExec(`DELETE FROM items WHERE id BETWEEN 100 AND 149`)
	code, out := p.run(2*time.Minute, "validate", "--config", p.cfgPath, "--repair", "--repair-timeout", "3s")
	if code != 2 || !strings.Contains(out, "has not applied the repairs yet") {
		t.Fatalf("repair without an applier exited %d, want 2 saying so:\n%s", code, out)
	}
	apply := p.start("apply", "--config", p.cfgPath)
	ferrytest.Eventually(t, time.Minute, "the applier to apply the earlier repairs", func() bool { return count(t, p.dst, p.dstDB, "items") == 2000 })
	code, out, _ = p.validate("--repair")
	if code != 0 {
		t.Fatalf("validate --repair with the applier running exited %d:\n%s", code, out)
	}
	apply.Stop(t)
	p.assertEqual("public.items", "id")
}

// --continuous validates again and again until stopped, then exits with the
// last result.
func TestValidateContinuous(t *testing.T) {
	p := newPipeline(t)
	seedValidate(p, 500)
	p.snapshotOnce()
	v := p.start("validate", "--config", p.cfgPath, "--continuous", "--interval", "200ms")
	ferrytest.Eventually(t, time.Minute, "three passes", func() bool { return strings.Count(v.Output(), "result: EQUAL") >= 3 })
	v.Stop(t)
}

// BenchmarkValidate measures `ferry validate` on the benchmark table
// (FERRY_BENCH_ROWS rows, default 1,000,000) beside `ferry migrate`'s
// snapshot of the same table in the same run. It only runs with
// FERRY_VALIDATE_BENCH=1. Results go to docs/BENCHMARKS.md.
func BenchmarkValidate(b *testing.B) {
	if os.Getenv("FERRY_VALIDATE_BENCH") == "" {
		b.Skip("set FERRY_VALIDATE_BENCH=1 to run")
	}
	pgtest.Require(b, setupErr)
	rows := benchRows()
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("vbench_%d_%d", rows, i)
		src, dst := "s_"+name, "d_"+name
		for _, x := range []struct {
			s  *pgtest.Server
			db string
		}{{srcServer, src}, {dstServer, dst}} {
			must(b, x.s.Exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+x.db+" WITH (FORCE)"))
			must(b, x.s.Exec(ctx, "postgres", "CREATE DATABASE "+x.db))
			must(b, x.s.Exec(ctx, x.db, benchTable))
		}
		must(b, srcServer.Exec(ctx, src, fmt.Sprintf(`INSERT INTO bench SELECT i, 'name ' || i, i * 1.2345, timestamptz '2024-01-01' + i * interval '1 ms',
			jsonb_build_object('i', i, 'tag', 't' || (i %% 100)) FROM generate_series(1, %d) i`, rows)))
		must(b, srcServer.Exec(ctx, src, "VACUUM ANALYZE bench"))
		dir := b.TempDir()
		cfg := fmt.Sprintf(`nats: {url: "", listen: "127.0.0.1:%d", dataDir: %q}
sources: [{name: pg, type: postgres, dsn: %q, mode: snapshot}]
targets: [{name: dst, type: postgres, dsn: %q, from: pg}]
log: {level: warn}
`, ferrytest.FreePort(b), dir+"/nats", srcServer.DSN(src), dstServer.DSN(dst))
		must(b, os.WriteFile(dir+"/ferry.yaml", []byte(cfg), 0o600))

		b.StopTimer()
		start := time.Now()
		if out, err := exec.Command(ferryBin, "migrate", "--config", dir+"/ferry.yaml").CombinedOutput(); err != nil {
			b.Fatalf("ferry migrate: %v\n%s", err, out)
		}
		snapDur := time.Since(start)
		must(b, dstServer.Exec(ctx, dst, "VACUUM ANALYZE bench"))
		b.StartTimer()
		start = time.Now()
		cmd := exec.Command(ferryBin, "validate", "--config", dir+"/ferry.yaml", "--report", dir+"/report.json")
		out, err := cmd.CombinedOutput()
		valDur := time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatalf("ferry validate: %v\n%s", err, out)
		}
		var rep validateReport
		data, err := os.ReadFile(dir + "/report.json")
		must(b, err)
		must(b, json.Unmarshal(data, &rep))
		if tb := rep.Reports[0].Tables[0]; !rep.Equal || tb.SourceRows != int64(rows) || tb.TargetRows != int64(rows) {
			b.Fatalf("report: %+v", rep)
		}
		rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss
		b.ReportMetric(snapDur.Seconds(), "snapshot-s")
		b.ReportMetric(float64(rows)/snapDur.Seconds(), "snapshot-rows/s")
		b.ReportMetric(valDur.Seconds(), "validate-s")
		b.ReportMetric(float64(rows)/valDur.Seconds(), "validate-rows/s")
		b.ReportMetric(float64(rss)/1024, "validate-peak-RSS-MiB")
		b.StartTimer()
	}
}
