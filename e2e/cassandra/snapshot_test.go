package cassandra

import (
	"fmt"
	"math"
	"math/big"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"gopkg.in/inf.v0"
)

const allTypesDDL = `CREATE TYPE addr (street text, zip int, tags set<text>)
CREATE TABLE alltypes (
  p1 int, p2 text, c1 timeuuid, c2 bigint,
  s_static text static,
  a ascii, bi bigint, bl blob, bo boolean, de decimal, db double, fl float, ie inet, i int,
  t text, ts timestamp, tu timeuuid, u uuid, vc varchar, vi varint,
  l list<int>, st set<text>, m map<text, double>,
  mt map<int, frozen<tuple<text, int>>>,
  tup frozen<tuple<int, text, double>>, ad frozen<addr>, lad list<frozen<addr>>,
  PRIMARY KEY ((p1, p2), c1, c2)
) WITH CLUSTERING ORDER BY (c1 DESC, c2 ASC)
CREATE TABLE counts (k text, b int, n counter, m counter, PRIMARY KEY (k, b))
CREATE TABLE plain (id int PRIMARY KEY, v text, w bigint)`

var allTypesCols = strings.Fields("p1 p2 c1 c2 s_static a bi bl bo de db fl ie i t ts tu u vc vi l st m mt tup ad lad")

// stampCols are the columns whose writetime and TTL CQL can read.
var stampCols = strings.Fields("s_static a bi bl bo de db fl ie i t ts tu u vc vi tup ad")

func joinDDL(s string) []string {
	// Statements are separated by lines starting with CREATE.
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "CREATE") || len(out) == 0 {
			out = append(out, l)
		} else {
			out[len(out)-1] += "\n" + l
		}
	}
	return out
}

// fillAllTypes writes rows exercising every Cassandra 2.1 type, NULLs,
// edge values, static columns (also a partition with only its static row),
// per-cell writetimes and TTLs, collections with TTLs, and counters.
func fillAllTypes(p *pipeline, n int) {
	p.t.Helper()
	ins := "INSERT INTO alltypes (p1, p2, c1, c2, a, bi, bl, bo, de, db, fl, ie, i, t, ts, tu, u, vc, vi, l, st, m, mt, tup, ad, lad) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, (?, ?, ?), ?, ?)"
	base := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)
	doubles := []float64{math.NaN(), math.Inf(1), math.Inf(-1), math.Copysign(0, -1), 1.5e300, -2.25}
	for i := range n {
		p1, p2 := i%7, fmt.Sprintf("part-%d", i%5)
		c1 := gocql.UUIDFromTime(base.Add(time.Duration(i) * time.Second))
		vi, _ := new(big.Int).SetString(strings.Repeat("9", 1+i%40), 10)
		if i%2 == 1 {
			vi.Neg(vi)
		}
		de := inf.NewDec(int64(i*1234567-50000), inf.Scale(i%6))
		addr := map[string]any{"street": fmt.Sprintf("Main %d", i), "zip": i, "tags": []string{"x", fmt.Sprint(i)}}
		args := []any{
			p1, p2, c1, int64(i) * 1e15,
			"ascii-" + fmt.Sprint(i), int64(math.MinInt64 + i), []byte{0, byte(i), 0xff}, i%2 == 0, de,
			doubles[i%len(doubles)], float32(i) / 3, net.IPv4(10, 0, byte(i), 1), int(int32(math.MaxInt32 - i)),
			"text ☃ é " + fmt.Sprint(i), base.Add(-time.Duration(i) * 36 * time.Hour).Truncate(time.Millisecond), gocql.TimeUUID(), gocql.MustRandomUUID(), "", vi,
			[]int{i, i, -i}, []string{"a", fmt.Sprint(i)}, map[string]float64{"k": float64(i) / 7, "nan": math.NaN()},
			map[int][]any{i: {"x", nil}, -1: {"", 0}},
			i, nil, 0.5, addr, []map[string]any{addr, {"street": "", "zip": nil, "tags": nil}},
		}
		if i%4 == 3 {
			// NULLs: nothing but the key.
			p.srcExec("INSERT INTO alltypes (p1, p2, c1, c2) VALUES (?, ?, ?, ?)", p1, p2, c1, int64(i))
			continue
		}
		wt := int64(1_600_000_000_000_000) + int64(i)*1000
		p.srcExec(ins+" USING TIMESTAMP ?", append(args, wt)...)
		// Other writetimes and TTLs on some cells.
		if i%3 == 0 {
			p.srcExec("UPDATE alltypes USING TIMESTAMP ? AND TTL ? SET t = ?, l = ? WHERE p1 = ? AND p2 = ? AND c1 = ? AND c2 = ?",
				wt+5_000_000, 86400+i, "later", []int{7, 8}, p1, p2, c1, int64(i)*1e15)
		}
		if i%5 == 0 {
			p.srcExec("UPDATE alltypes USING TTL ? SET ie = ?, st = st + {'ttl'} WHERE p1 = ? AND p2 = ? AND c1 = ? AND c2 = ?",
				3600+i, net.ParseIP("2001:db8::1"), p1, p2, c1, int64(i)*1e15)
		}
	}
	for i := range 5 {
		p.srcExec("UPDATE alltypes USING TIMESTAMP ? SET s_static = ? WHERE p1 = ? AND p2 = ?", int64(1_700_000_000_000_000+i), fmt.Sprint("static ", i), i, fmt.Sprintf("part-%d", i))
	}
	// A partition holding nothing but its static row.
	p.srcExec("INSERT INTO alltypes (p1, p2, s_static) VALUES (?, ?, ?) USING TTL 7200", 99, "only-static", "lonely")
	for i := range 40 {
		p.srcExec("UPDATE counts SET n = n + ?, m = m - ? WHERE k = ? AND b = ?", int64(i*3+1), int64(i), fmt.Sprint("k", i%6), i)
	}
	for i := range 300 {
		p.srcExec("INSERT INTO plain (id, v, w) VALUES (?, ?, ?)", i, fmt.Sprint("v", i), int64(i)*int64(i))
	}
}

// assertStamps compares each stamped cell's writetime (exactly) and TTL
// (within a second) between source and
// target, and checks that preserved TTLs exist at all.
func (p *pipeline) assertStamps(table string, key []string, cols []string, wantTTL bool) {
	p.t.Helper()
	sel := append([]string{}, key...)
	for _, c := range cols {
		sel = append(sel, "writetime("+c+")", "ttl("+c+")")
	}
	read := func(sessKS string, sess *gocql.Session) map[string][]int64 {
		out := map[string][]int64{}
		iter := sess.Query("SELECT " + strings.Join(sel, ", ") + " FROM " + sessKS + "." + table).Iter()
		for {
			m := map[string]any{}
			if !iter.MapScan(m) {
				break
			}
			var k strings.Builder
			for _, c := range key {
				fmt.Fprintf(&k, "%v|", m[c])
			}
			var v []int64
			for _, c := range cols {
				wt, _ := m["writetime("+c+")"].(int64)
				ttl, _ := m["ttl("+c+")"].(int)
				v = append(v, wt, int64(ttl))
			}
			out[k.String()] = v
		}
		if err := iter.Close(); err != nil {
			p.t.Fatal(err)
		}
		return out
	}
	a, b := read(p.src, p.srcSess), read(p.dst, p.dstSess)
	if len(a) != len(b) {
		p.t.Fatalf("%s: %d source rows, %d target rows", table, len(a), len(b))
	}
	ttls := 0
	for k, av := range a {
		bv, ok := b[k]
		if !ok {
			p.t.Fatalf("%s: row %s missing in the target", table, k)
		}
		for i, c := range cols {
			if av[2*i] != bv[2*i] {
				p.t.Fatalf("%s row %s column %s: writetime %d in the source, %d in the target", table, k, c, av[2*i], bv[2*i])
			}
			st, dt := av[2*i+1], bv[2*i+1]
			if st > 0 {
				ttls++
			}
			if (st == 0) != (dt == 0) || dt-st > 1 || st-dt > 1 {
				p.t.Fatalf("%s row %s column %s: TTL %d in the source, %d in the target", table, k, c, st, dt)
			}
		}
	}
	if wantTTL && ttls == 0 {
		p.t.Fatalf("%s: no cell has a TTL; the test data is broken", table)
	}
}

// TestSnapshotEveryTypeWithTimestamps migrates a whole keyspace with
// preserveTimestamps and checks every row, value, writetime and TTL.
func TestSnapshotEveryTypeWithTimestamps(t *testing.T) {
	p := newPipeline(t)
	p.both(joinDDL(allTypesDDL)...)
	fillAllTypes(p, 120)
	p.writeConfig("splitCount: 16\nconnections: 4\nfetchSize: 50\npreserveTimestamps: true", "connections: 8", "")
	out := p.migrate()
	if !strings.Contains(out, "snapshot complete") {
		t.Fatalf("no snapshot completion in the output:\n%s", tail(out))
	}
	n := p.assertSameRows("alltypes", allTypesCols...)
	if n != 121 {
		t.Fatalf("alltypes: %d rows, want 121 (the static-only partition included)", n)
	}
	p.assertSameRows("counts", "k", "b", "n", "m")
	p.assertSameRows("plain", "id", "v", "w")
	p.assertStamps("alltypes", []string{"p1", "p2", "c1", "c2"}, stampCols, true)
	p.assertStamps("plain", []string{"id"}, []string{"v", "w"}, false)

	// Replay the whole stream into the same tables, as a crash before any
	// acknowledgement would: a second target with its own consumers reads
	// every event again. Counters must not count twice; nothing changes.
	cfg := readFile(t, p.cfgPath)
	cfg = strings.Replace(cfg, "targets:\n", fmt.Sprintf("targets:\n  - name: replay\n    type: cassandra\n    dsn: cassandra://%s\n    keyspace: %s\n    consistencyLevel: ONE\n    from: cql\n", server.Hosts(), p.dst), 1)
	if err := os.WriteFile(p.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out = p.migrate()
	if !strings.Contains(out, "target=replay events=461") {
		t.Fatalf("the replay target did not apply all 461 events again:\n%s", tail(out))
	}
	p.assertSameRows("counts", "k", "b", "n", "m")
	p.assertSameRows("alltypes", allTypesCols...)
	p.assertStamps("alltypes", []string{"p1", "p2", "c1", "c2"}, stampCols, true)
}
