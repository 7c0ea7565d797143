package cassandra

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
)

// validateReport is the part of `ferry validate --report` the tests read.
type validateReport struct {
	Equal   bool `json:"equal"`
	Reports []struct {
		Mode   string `json:"mode"`
		Tables []tableReport
	} `json:"reports"`
}

type tableReport struct {
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
}

func (p *pipeline) validate(args ...string) (int, string, validateReport) {
	p.t.Helper()
	path := filepath.Join(p.dir, fmt.Sprintf("report-%d.json", time.Now().UnixNano()))
	code, out := p.run("", nil, 2*time.Minute, append([]string{"validate", "--config", p.cfgPath, "--report", path}, args...)...)
	var rep validateReport
	if code == 0 || code == 1 {
		if err := json.Unmarshal([]byte(readFile(p.t, path)), &rep); err != nil {
			p.t.Fatalf("report %s: %v\n%s", path, err, tail(out))
		}
	}
	return code, out, rep
}

func (p *pipeline) dstExec(q string, args ...any) {
	p.t.Helper()
	if err := p.dstSess.Query(q, args...).Exec(); err != nil {
		p.t.Fatalf("target: %v\n%s", err, q)
	}
}

func (r validateReport) table(t *testing.T, name string) tableReport {
	t.Helper()
	for _, tb := range r.Reports[0].Tables {
		if strings.HasSuffix(tb.Table, "."+name) {
			return tb
		}
	}
	t.Fatalf("no table %s in the report %+v", name, r)
	return tableReport{}
}

const validateWT = int64(1_600_000_000_000_000)

// TestValidateCQL: after a migration with preserveTimestamps, validate
// compares values, write times and TTLs (exit 0); rows deleted or added on
// the target, changed values, write times and TTLs and a changed counter
// are each reported by key and column (exit 1); --repair, with an applier
// running, makes the target equal again (exit 0).
func TestValidateCQL(t *testing.T) {
	p := newPipeline(t)
	p.both("CREATE TABLE items (id int, c int, v text, n bigint, tup frozen<tuple<int, text>>, tags set<text>, PRIMARY KEY (id, c))")
	// The counter table is renamed on the target, and its column too.
	p.srcExec("CREATE TABLE hits (k text PRIMARY KEY, n counter)")
	p.dstExec("CREATE TABLE hits_t (k text PRIMARY KEY, cnt counter)")
	for i := range 200 {
		q := "INSERT INTO items (id, c, v, n, tup, tags) VALUES (?, ?, ?, ?, (?, ?), ?) USING TIMESTAMP ?"
		args := []any{i, i % 3, fmt.Sprint("v", i), int64(i) * 1000, i, "t", []string{"a", fmt.Sprint(i)}, validateWT + int64(i)}
		if i%3 == 0 {
			// No tuple, no set.
			q = "INSERT INTO items (id, c, v, n) VALUES (?, ?, ?, ?) USING TIMESTAMP ?"
			args = append(args[:4], args[7])
		}
		if i%4 == 1 {
			q += " AND TTL 86400"
		}
		p.srcExec(q, args...)
	}
	for i := range 10 {
		p.srcExec("UPDATE hits SET n = n + ? WHERE k = ?", int64(i+1), fmt.Sprint("k", i))
	}
	p.writeConfig("splitCount: 8\npreserveTimestamps: true", "tables: {hits: hits_t}\nrenames: [{table: hits, from: n, to: cnt}]",
		"validation:\n  compareTimestamps: true\n  ttlToleranceMillis: 5000\n  writetimeToleranceMillis: 1\n  failuresToFetch: 50")
	p.migrate()

	code, out, rep := p.validate()
	if code != 0 || !rep.Equal {
		t.Fatalf("validate after the migration exited %d (equal=%v):\n%s", code, rep.Equal, tail(out))
	}
	items, hits := rep.table(t, "items"), rep.table(t, "hits")
	if rep.Reports[0].Mode != "lookup" || items.SourceRows != 200 || items.TargetRows != 200 || hits.SourceRows != 10 || items.Ranges != 8 {
		t.Fatalf("equal run: mode %s, items %+v, hits %+v", rep.Reports[0].Mode, items, hits)
	}

	// Differences made on the target.
	key := func(i int) []any { return []any{i, i % 3} }
	p.dstExec("DELETE FROM items WHERE id = ? AND c = ?", key(10)...)
	p.dstExec("INSERT INTO items (id, c, v) VALUES (9999, 0, 'only on the target')")
	p.dstExec("UPDATE items SET v = 'changed' WHERE id = ? AND c = ?", key(20)...)
	// Same value, other write time: only the write time differs.
	p.dstExec("UPDATE items USING TIMESTAMP ? SET n = ? WHERE id = ? AND c = ?", append([]any{validateWT + 30 + 5_000_000, int64(30_000)}, key(30)...)...)
	// Same value, a write time 1µs later (within writetimeToleranceMillis)
	// and a TTL: only the TTL differs.
	p.dstExec("UPDATE items USING TIMESTAMP ? AND TTL 500 SET n = ? WHERE id = ? AND c = ?", append([]any{validateWT + 40 + 1, int64(40_000)}, key(40)...)...)
	p.dstExec("UPDATE hits_t SET cnt = cnt + 5 WHERE k = 'k3'")

	code, out, rep = p.validate()
	if code != 1 || rep.Equal {
		t.Fatalf("validate of differing tables exited %d, want 1:\n%s", code, tail(out))
	}
	items, hits = rep.table(t, "items"), rep.table(t, "hits")
	if items.Missing != 1 || items.Extraneous != 1 || items.Mismatched != 3 || hits.Mismatched != 1 || hits.Missing+hits.Extraneous != 0 {
		t.Fatalf("counts: items %+v, hits %+v\n%s", items, hits, tail(out))
	}
	got := map[string]string{}
	for _, f := range append(items.Failures, hits.Failures...) {
		var k []string
		for _, c := range f.Key {
			k = append(k, c.Column+"="+c.Value)
		}
		var cols []string
		for _, c := range f.Columns {
			cols = append(cols, c.Column+":"+c.What+":"+c.Source+"→"+c.Target)
		}
		got[strings.Join(k, ",")] = f.Kind + " " + strings.Join(cols, " ")
	}
	// Each row's differing columns, by what differs. A non-frozen
	// collection (tags) has no write time of its own and carries its row's
	// newest cell's on both sides, so it follows v in row 20 and n in 40.
	want := map[string][]string{
		"id=10,c=1":   {"missing "},
		"id=9999,c=0": {"extraneous "},
		"id=20,c=2":   {"mismatched ", "v:value:v20→changed", "v:writetime:1600000000000020→"},
		"id=30,c=0":   {"mismatched ", fmt.Sprintf("n:writetime:%d→%d", validateWT+30, validateWT+30+5_000_000)},
		"id=40,c=1":   {"mismatched ", "n:ttl:0→"},
		"k=k3":        {"mismatched ", "n:value:4→9"},
	}
	for k, ws := range want {
		for _, w := range ws {
			if !strings.Contains(got[k], w) {
				t.Errorf("row %s: got %q, want it to hold %q", k, got[k], w)
			}
		}
	}
	if strings.Contains(got["id=30,c=0"], ":value:") || strings.Contains(got["id=30,c=0"], ":ttl:") || strings.Contains(got["id=40,c=1"], ":writetime:") {
		t.Errorf("a write time (row 30) or a TTL (row 40) alone changed, yet: %q, %q", got["id=30,c=0"], got["id=40,c=1"])
	}
	if len(got) != len(want) {
		t.Errorf("reported rows: %v", got)
	}
	if !strings.Contains(out, "missing: id=10, c=1") || !strings.Contains(out, "result: DIFFERENT") {
		t.Errorf("summary:\n%s", tail(out))
	}

	// Repairs keep the source's write times, and in CQL the newest write
	// wins: a target cell written after the source's (the changes above)
	// cannot be overwritten by it. Real repairs mend a target that is
	// behind; so the source now moves on for those rows, as it would
	// after changes the pipeline missed, and a row appears that the target
	// never got.
	now := time.Now().UnixMicro()
	for _, i := range []int{10, 20, 30, 40} {
		p.srcExec("INSERT INTO items (id, c, v, n, tup, tags) VALUES (?, ?, ?, ?, (?, ?), ?) USING TIMESTAMP ? AND TTL 7200",
			i, i%3, fmt.Sprint("new ", i), int64(i), i, "new", []string{"n"}, now)
	}
	p.srcExec("INSERT INTO items (id, c, v) VALUES (500, 0, 'new row') USING TIMESTAMP ?", now)
	apply := p.start("", nil, "apply", "--config", p.cfgPath)
	// validate then uses the applier's embedded NATS.
	ferrytest.Eventually(t, 30*time.Second, "the applier's NATS", func() bool { return strings.Contains(apply.Output(), "embedded NATS started") })
	code, out, rep = p.validate("--repair", "--repair-timeout", "1m")
	if code != 0 || !rep.Equal {
		t.Fatalf("validate --repair exited %d, want 0:\n%s", code, tail(out))
	}
	items, hits = rep.table(t, "items"), rep.table(t, "hits")
	if items.Repaired != 6 || hits.Repaired != 1 || items.Unrepaired+hits.Unrepaired != 0 {
		t.Fatalf("repairs: items %+v, hits %+v\n%s", items, hits, tail(out))
	}
	code, out, rep = p.validate()
	if code != 0 || rep.table(t, "items").SourceRows != 201 {
		t.Fatalf("validate after the repair exited %d:\n%s", code, tail(out))
	}
	apply.Kill9()
	p.assertSameRows("items", "id", "c", "v", "n", "tup", "tags")
	p.assertSameRowsAs("hits", "hits_t", []string{"k", "n"}, []string{"k", "cnt"})
	p.assertStamps("items", []string{"id", "c"}, []string{"v", "n", "tup"}, true)
}

// TestValidateCQLResume: a validation killed halfway continues where it
// stopped; the token ranges it finished are not read again.
func TestValidateCQLResume(t *testing.T) {
	p := newPipeline(t)
	p.both("CREATE TABLE big (id int PRIMARY KEY, v text, w double)")
	fillBig(t, p.srcSess, 2400)
	p.writeConfig("splitCount: 4", "", "")
	p.migrate()
	args := []string{"validate", "--config", p.cfgPath, "--parallel", "1"}
	slow := p.start("", nil, append(args, "--rows-per-second", "300")...)
	ferrytest.Eventually(t, time.Minute, "two ranges checked", func() bool {
		select {
		case <-slow.Done():
			return true
		default:
		}
		return strings.Count(slow.Output(), "range checked") >= 2
	})
	slow.Kill9()
	if slow.ExitCode() != -1 {
		t.Fatalf("the slow validation finished before it was killed:\n%s", tail(slow.Output()))
	}
	checked := strings.Count(slow.Output(), "range checked")

	code, out, rep := p.validate("--parallel", "1")
	if code != 0 {
		t.Fatalf("resumed validate exited %d:\n%s", code, tail(out))
	}
	tb := rep.table(t, "big")
	if tb.Ranges != 4 || tb.RangesResumed < min(checked, 4) || tb.RangesResumed == 0 || tb.RangesRead != tb.Ranges-tb.RangesResumed || tb.SourceRows != 2400 || tb.TargetRows != 2400 {
		t.Fatalf("resumed run: %+v (the killed run had checked %d ranges)\n%s", tb, checked, tail(out))
	}
}

// TestValidateCQLEveryType: every Cassandra 2.1 type, NULLs, static
// columns and a static-only partition, tuples, a UDT, collections with
// TTLs and counters validate as equal after a migration, write times and
// TTLs included; one changed cell of a static-only partition is found.
// With 4 token ranges the static-only row follows other rows in its scan,
// where Cassandra 2.1 gave it a regular value it does not have.
func TestValidateCQLEveryType(t *testing.T) {
	p := newPipeline(t)
	p.both(joinDDL(allTypesDDL)...)
	fillAllTypes(p, 120)
	p.writeConfig("splitCount: 4\npreserveTimestamps: true", "", "validation:\n  compareTimestamps: true\n  ttlToleranceMillis: 5000")
	p.migrate()
	code, out, rep := p.validate()
	if code != 0 || !rep.Equal || rep.table(t, "alltypes").SourceRows != 121 {
		t.Fatalf("validate after the migration exited %d:\n%s", code, tail(out))
	}
	p.dstExec("UPDATE alltypes SET s_static = 'moved' WHERE p1 = 99 AND p2 = 'only-static'")
	code, out, rep = p.validate()
	tb := rep.table(t, "alltypes")
	if code != 1 || tb.Mismatched != 1 || len(tb.Failures) != 1 || tb.Failures[0].Columns[0].Column != "s_static" {
		t.Fatalf("validate of a changed static-only row exited %d: %+v\n%s", code, tb, tail(out))
	}
}
