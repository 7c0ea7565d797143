package mysql

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// validateReport is the part of `ferry validate --report` the tests read.
type validateReport struct {
	Equal   bool `json:"equal"`
	Reports []struct {
		Tables []validateTable `json:"tables"`
	} `json:"reports"`
}

type validateTable struct {
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
	Failures      []struct {
		Kind string `json:"kind"`
		Key  []struct {
			Column, Value string
		} `json:"key"`
		Columns []struct {
			Column, Source, Target string
		} `json:"columns"`
	} `json:"failures"`
}

func (r validateReport) table(name string) validateTable {
	for _, rep := range r.Reports {
		for _, t := range rep.Tables {
			if t.Table == name {
				return t
			}
		}
	}
	return validateTable{}
}

func (p *pipeline) validate(args ...string) (int, string, validateReport) {
	p.t.Helper()
	path := filepath.Join(p.dir, fmt.Sprintf("report-%d.json", time.Now().UnixNano()))
	code, out := p.run(2*time.Minute, append([]string{"validate", "--config", p.cfgPath, "--report", path}, args...)...)
	var rep validateReport
	if code == 0 || code == 1 {
		b, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(b, &rep)
		}
		if err != nil {
			p.t.Fatalf("report %s: %v\n%s", path, err, out)
		}
	}
	return code, out, rep
}

// MariaDB → PostgreSQL: after a migration of every type, a composite key
// and a case-insensitive text key (MariaDB's collation orders it unlike
// PostgreSQL), validate finds the tables equal; a deleted, an extra and a
// changed target row are reported by key and column; --repair fixes them
// through the running pipeline; a killed validation resumes.
func TestValidate(t *testing.T) {
	p := newPipeline(t)
	seedTypesAndLines(p)
	p.src(`CREATE TABLE tags (name VARCHAR(20) COLLATE utf8mb4_general_ci PRIMARY KEY, n INT) CHARACTER SET utf8mb4`)
	p.dst(`CREATE TABLE tags (name text COLLATE "C" PRIMARY KEY, n int)`)
	p.src(`INSERT INTO tags VALUES ('a', 1), ('B', 2), ('c', 3), ('_x', 4), ('Z', 5), ('é', 6), ('f', 7), ('~', 8), ('10', 9), ('9', 10)`)
	p.writeConfig("mode: snapshot+cdc\nchunkRows: 1000")
	mig := p.migrate()
	p.waitCaughtUp()

	code, out, rep := p.validate()
	if code != 0 || !rep.Equal {
		t.Fatalf("validate after the migration exited %d, want 0:\n%s", code, out)
	}
	for name, rows := range map[string]int64{"alltypes": 3, "order_lines": 15000, "tags": 10} {
		if tb := rep.table(name); tb.SourceRows != rows || tb.TargetRows != rows {
			t.Errorf("%s: %+v, want %d rows on each side", name, tb, rows)
		}
	}
	// Small ranges cut the case-insensitive keys at bounds that are out of
	// order for PostgreSQL: still equal, every row counted once.
	code, out, rep = p.validate("--tables", "tags", "--range-rows", "3")
	if tb := rep.table("tags"); code != 0 || tb.Ranges != 4 || tb.SourceRows != 10 || tb.TargetRows != 10 {
		t.Fatalf("validate of tags in ranges of 3 exited %d: %+v\n%s", code, tb, out)
	}

	p.dst(`DELETE FROM order_lines WHERE order_id = 5 AND line_no = 2`)
	p.dst(`INSERT INTO order_lines VALUES (99999, 1, 'only on the target', 1)`)
	p.dst(`UPDATE order_lines SET sku = 'changed' WHERE order_id = 7 AND line_no = 3`)
	p.dst(`UPDATE alltypes SET l1 = 'cafe' WHERE id = 1`)
	p.dst(`DELETE FROM tags WHERE name = 'é'`)
	code, out, rep = p.validate("--range-rows", "700")
	if code != 1 || rep.Equal {
		t.Fatalf("validate of differing tables exited %d, want 1:\n%s", code, out)
	}
	ol := rep.table("order_lines")
	if ol.Missing != 1 || ol.Extraneous != 1 || ol.Mismatched != 1 {
		t.Errorf("order_lines counts: %+v", ol)
	}
	got := map[string]string{}
	for _, f := range ol.Failures {
		var key []string
		for _, k := range f.Key {
			key = append(key, k.Column+"="+k.Value)
		}
		got[f.Kind] = strings.Join(key, ",")
		if f.Kind == "mismatched" && (len(f.Columns) != 1 || f.Columns[0].Column != "sku" || f.Columns[0].Source != "sku-7-3" || f.Columns[0].Target != "changed") {
			t.Errorf("order_lines mismatch columns: %+v", f.Columns)
		}
	}
	for kind, key := range map[string]string{"missing": "order_id=5,line_no=2", "extraneous": "order_id=99999,line_no=1", "mismatched": "order_id=7,line_no=3"} {
		if got[kind] != key {
			t.Errorf("order_lines %s row: got %q, want %q (%+v)", kind, got[kind], key, ol.Failures)
		}
	}
	if at := rep.table("alltypes"); at.Mismatched != 1 || len(at.Failures) != 1 || len(at.Failures[0].Columns) != 1 || at.Failures[0].Columns[0].Column != "l1" {
		t.Errorf("alltypes: want one mismatch in l1, got %+v", at)
	}
	if tg := rep.table("tags"); tg.Missing != 1 || tg.Extraneous != 0 || tg.Mismatched != 0 {
		t.Errorf("tags: want the one deleted row missing, got %+v", tg)
	}
	for _, s := range []string{"order_lines missing: order_id=5, line_no=2", "sku: source sku-7-3, target changed", "result: DIFFERENT"} {
		if !strings.Contains(out, s) {
			t.Errorf("summary lacks %q:\n%s", s, out)
		}
	}

	// --repair publishes fresh source rows; the running migrate applies them.
	code, out, rep = p.validate("--repair")
	if code != 0 {
		t.Fatalf("validate --repair exited %d, want 0 once repaired:\n%s", code, out)
	}
	var repaired int64
	for _, tb := range rep.Reports[0].Tables {
		repaired += tb.Repaired
	}
	if repaired != 5 {
		t.Errorf("repaired %d rows, want 5:\n%s", repaired, out)
	}
	if code, out, _ = p.validate(); code != 0 {
		t.Fatalf("validate after the repair exited %d, want 0:\n%s", code, out)
	}
	p.assertSame("order_lines", olMy, olPG, "order_id, line_no")
	checkTypesRow(p, 1)

	// A validation killed halfway continues where it stopped: the ranges
	// it finished are not read again. Finished ranges are logged at debug.
	f, err := os.OpenFile(p.cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("log: {level: debug}\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	args := []string{"--tables", "order_lines", "--range-rows", "500", "--parallel", "1"}
	slow := p.start(append([]string{"validate", "--config", p.cfgPath, "--rows-per-second", "2000"}, args...)...)
	eventually(t, time.Minute, "three ranges checked", func() bool {
		return strings.Count(slow.Output(), "range checked") >= 3 || slow.Exited()
	})
	slow.Kill9()
	if slow.ExitCode() != -1 {
		t.Fatalf("the slow validation finished before it was killed:\n%s", slow.Output())
	}
	checked := strings.Count(slow.Output(), "range checked")
	code, out, rep = p.validate(args...)
	if code != 0 {
		t.Fatalf("resumed validate exited %d:\n%s", code, out)
	}
	tb := rep.table("order_lines")
	if tb.Ranges != 31 || tb.RangesResumed < checked || tb.RangesRead != tb.Ranges-tb.RangesResumed || tb.SourceRows != 15000 || tb.TargetRows != 15000 {
		t.Fatalf("resumed run: %+v (the killed run had checked %d ranges)\n%s", tb, checked, out)
	}
	mig.Stop(t)
}

// --live while changes stream from MariaDB: rows in flight are not
// reported, the one row that really differs is.
func TestValidateLive(t *testing.T) {
	p := newPipeline(t)
	seedTypesAndLines(p)
	p.writeConfig("mode: snapshot+cdc\nchunkRows: 1000")
	mig := p.migrate()
	p.waitCaughtUp()
	p.dst(`DELETE FROM order_lines WHERE order_id = 2999 AND line_no = 4`)

	c, err := srcServer.Connect(p.srcDB)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	var writes atomic.Int64
	go func() {
		defer c.Close()
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			// Every order but 2999, lines spread over all key ranges.
			if _, err := c.Execute("UPDATE order_lines SET qty = qty + 1 WHERE order_id = ? AND line_no = ?", 1+i*7%2998, 1+i%5); err != nil {
				done <- err
				return
			}
			writes.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	eventually(t, time.Minute, "changes streaming", func() bool { return writes.Load() > 200 })
	code, out, rep := p.validate("--tables", "order_lines", "--live", "--live-delay", "2s", "--range-rows", "2000")
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("source writer: %v", err)
	}
	if ol := rep.table("order_lines"); code != 1 || ol.Missing != 1 || ol.Extraneous != 0 || ol.Mismatched != 0 || !strings.Contains(out, "order_lines missing: order_id=2999, line_no=4") {
		t.Fatalf("validate --live exited %d (%d updates streamed), want 1 for the one deleted row only: %+v\n%s", code, writes.Load(), ol, out)
	}
	p.waitCaughtUp()
	if code, out, _ := p.validate("--repair"); code != 0 {
		t.Fatalf("validate --repair exited %d:\n%s", code, out)
	}
	p.assertSame("order_lines", olMy, olPG, "order_id, line_no")
	mig.Stop(t)
}
