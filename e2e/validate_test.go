package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
	mig.stop(t)
}

// A validation killed halfway continues where it stopped: the ranges it
// finished are not read again.
func TestValidateResume(t *testing.T) {
	p := newPipeline(t)
	seedValidate(p, 20000)
	p.writeConfig("mode: snapshot", "")
	if code, out := p.run(3*time.Minute, "migrate", "--config", p.cfgPath); code != 0 {
		t.Fatalf("migrate exited %d:\n%s", code, out)
	}
	args := []string{"validate", "--config", p.cfgPath, "--tables", "items", "--range-rows", "1000", "--parallel", "1"}
	slow := p.start(append(args, "--rows-per-second", "2000")...)
	eventually(t, 2*time.Minute, "three ranges checked", func() bool {
		return strings.Count(slow.out.String(), "range checked") >= 3 || slow.exited()
	})
	slow.kill9()
	if slow.cmd.ProcessState.ExitCode() != -1 {
		t.Fatalf("the slow validation finished before it was killed:\n%s", slow.out.String())
	}
	checked := strings.Count(slow.out.String(), "range checked")

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
// really differs is.
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
	eventually(t, time.Minute, "changes streaming", func() bool { return writes.Load() > 200 })
	code, out, rep := p.validate("--live", "--live-delay", "1s", "--range-rows", "500")
	stop()
	wg.Wait()
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
	mig.stop(t)
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
