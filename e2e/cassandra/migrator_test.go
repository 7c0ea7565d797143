package cassandra

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
)

// migratorConfig is a scylla-migrator config.yaml as its users write it.
func migratorConfig(p *pipeline, table, dstTable, savepoints string, renames string) string {
	host, port, _ := strings.Cut(server.Hosts(), ":")
	return fmt.Sprintf(`source:
  type: cassandra
  host: %[1]s
  port: %[2]s
  credentials:
    username: cassandra
    password: Top-S3cret-pw
  keyspace: %[3]s
  table: %[4]s
  consistencyLevel: ONE
  preserveTimestamps: true
  splitCount: 8
  connections: 2
  fetchSize: 100
target:
  type: scylla
  host: %[1]s
  port: %[2]s
  credentials:
    username: cassandra
    password: Top-S3cret-pw
  keyspace: %[5]s
  table: %[6]s
  consistencyLevel: ONE
  connections: 4
  stripTrailingZerosForDecimals: true
%[8]s
savepoints:
  path: %[7]s
  intervalSeconds: 300
`, host, port, p.src, table, p.dst, dstTable, savepoints, renames)
}

// TestMigratorConfigsOneAfterAnother runs two scylla-migrator configs, one
// table each, one after the other from one working directory (sharing its
// ferry-data), with a table rename and a column rename; then starts ferry
// with the final savepoint of the first as its config, in a fresh
// directory: it has nothing left to read.
func TestMigratorConfigsOneAfterAnother(t *testing.T) {
	p := newPipeline(t)
	if err := server.Exec(p.src,
		"CREATE TABLE t1 (id int PRIMARY KEY, a text, b int)",
		"CREATE TABLE t2 (k text, c int, v double, tags set<text>, PRIMARY KEY (k, c))"); err != nil {
		t.Fatal(err)
	}
	if err := server.Exec(p.dst,
		"CREATE TABLE t1_new (id int PRIMARY KEY, a2 text, b int)",
		"CREATE TABLE t2 (k text, c int, v double, tags set<text>, PRIMARY KEY (k, c))"); err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		p.srcExec("INSERT INTO t1 (id, a, b) VALUES (?, ?, ?) USING TTL 86400", i, fmt.Sprint("a", i), i*2)
		p.srcExec("INSERT INTO t2 (k, c, v, tags) VALUES (?, ?, ?, ?)", fmt.Sprint("k", i%13), i, float64(i)/4, []string{"x", fmt.Sprint(i)})
	}
	work := filepath.Join(p.dir, "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	port := ferrytest.FreePort(t)
	env := []string{fmt.Sprintf("FERRY_NATS_LISTEN=127.0.0.1:%d", port)}
	sp1, sp2 := filepath.Join(p.dir, "sp1"), filepath.Join(p.dir, "sp2")
	cfg1 := filepath.Join(work, "t1.yaml")
	cfg2 := filepath.Join(work, "t2.yaml")
	write := func(path, body string) {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(cfg1, migratorConfig(p, "t1", "t1_new", sp1, "renames:\n  - from: a\n    to: a2"))
	write(cfg2, migratorConfig(p, "t2", "t2", sp2, ""))
	for _, cfg := range []string{cfg1, cfg2} {
		code, out := p.run(work, env, 3*time.Minute, "migrate", "--config", cfg)
		if code != 0 {
			t.Fatalf("ferry migrate --config %s exited %d:\n%s", cfg, code, tail(out))
		}
		if !strings.Contains(out, "stripTrailingZerosForDecimals") {
			t.Fatalf("the inert key stripTrailingZerosForDecimals was not reported:\n%s", tail(out))
		}
	}
	p.assertSameRowsAs("t1", "t1_new", []string{"id", "a", "b"}, []string{"id", "a2", "b"})
	p.assertSameRows("t2", "k", "c", "v", "tags")
	p.assertStamps2("t1", "t1_new", "id", "b")

	final := newestSavepoint(t, sp1)
	body := readFile(t, final)
	if strings.Contains(body, "Top-S3cret-pw") {
		t.Fatalf("savepoint holds the password:\n%s", body)
	}
	if !strings.Contains(body, "skipTokenRanges:") || !strings.Contains(body, "type: long") {
		t.Fatalf("savepoint has no finished token ranges:\n%s", body)
	}
	// The savepoint is a migrator config again; in a fresh directory (no
	// ferry-data) it resumes with everything finished, so it reads nothing.
	fresh := filepath.Join(p.dir, "fresh")
	if err := os.MkdirAll(fresh, 0o755); err != nil {
		t.Fatal(err)
	}
	port2 := ferrytest.FreePort(t)
	env2 := []string{fmt.Sprintf("FERRY_NATS_LISTEN=127.0.0.1:%d", port2),
		"FERRY_SOURCE_CREDENTIALS_PASSWORD=Top-S3cret-pw", "FERRY_TARGET_CREDENTIALS_PASSWORD=Top-S3cret-pw"}
	code, out := p.run(fresh, env2, 2*time.Minute, "migrate", "--config", final)
	if code != 0 {
		t.Fatalf("ferry migrate --config <savepoint> exited %d:\n%s", code, tail(out))
	}
	if n := publishedRows(t, out); n != 0 {
		t.Fatalf("resuming from the final savepoint read %d rows, want 0", n)
	}
}

// assertStamps2 compares one column's writetime and TTL across a renamed
// table.
func (p *pipeline) assertStamps2(srcTable, dstTable, key, col string) {
	p.t.Helper()
	q := func(ks, table string) map[int][2]int64 {
		out := map[int][2]int64{}
		s := p.srcSess
		if ks == p.dst {
			s = p.dstSess
		}
		iter := s.Query("SELECT " + key + ", writetime(" + col + "), ttl(" + col + ") FROM " + ks + "." + table).Iter()
		var id, ttl int
		var wt int64
		for iter.Scan(&id, &wt, &ttl) {
			out[id] = [2]int64{wt, int64(ttl)}
		}
		if err := iter.Close(); err != nil {
			p.t.Fatal(err)
		}
		return out
	}
	a, b := q(p.src, srcTable), q(p.dst, dstTable)
	for id, av := range a {
		bv := b[id]
		if av[0] != bv[0] || bv[1]-av[1] > 1 || av[1]-bv[1] > 1 || bv[1] == 0 {
			p.t.Fatalf("%s id %d: writetime/TTL %v in the source, %v in the target", srcTable, id, av, bv)
		}
	}
}

// TestBadInput: an unknown keyspace, an unknown table and a column of a
// type ferry cannot map each stop the run with an error naming them.
func TestBadInput(t *testing.T) {
	p := newPipeline(t)
	p.both("CREATE TABLE ok (id int PRIMARY KEY, v text)",
		"CREATE TABLE weird (id int PRIMARY KEY, x 'org.apache.cassandra.db.marshal.CompositeType(org.apache.cassandra.db.marshal.Int32Type,org.apache.cassandra.db.marshal.UTF8Type)')")
	p.srcExec("INSERT INTO ok (id, v) VALUES (1, 'x')")
	cases := []struct {
		name, source, want string
	}{
		{"unknown keyspace", "tables: [ok]", `keyspace "no_such_ks" does not exist`},
		{"unknown table", "tables: [nope]", "table " + p.src + ".nope does not exist"},
		{"unmappable type", "tables: [ok, weird]", "column " + p.src + ".weird.x"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p.t = t
			p.writeConfig(c.source, "", "")
			if c.name == "unknown keyspace" {
				cfg := readFile(t, p.cfgPath)
				cfg = strings.Replace(cfg, "keyspace: "+p.src, "keyspace: no_such_ks", 1)
				if err := os.WriteFile(p.cfgPath, []byte(cfg), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			code, out := p.run("", nil, 2*time.Minute, "migrate", "--config", p.cfgPath)
			if code == 0 {
				t.Fatalf("ferry migrate succeeded; want an error naming %q:\n%s", c.want, tail(out))
			}
			if !strings.Contains(out, c.want) {
				t.Fatalf("the error does not say %q:\n%s", c.want, tail(out))
			}
		})
	}
}

// TestRejectedRowGoesToDeadLetters: a value the target column cannot hold
// (a bigint beyond the target's int) is a dead letter naming the row and
// the column; the other rows are written.
func TestRejectedRowGoesToDeadLetters(t *testing.T) {
	p := newPipeline(t)
	if err := server.Exec(p.src, "CREATE TABLE narrow (id int PRIMARY KEY, v bigint)"); err != nil {
		t.Fatal(err)
	}
	if err := server.Exec(p.dst, "CREATE TABLE narrow (id int PRIMARY KEY, v int)"); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		v := int64(i)
		if i == 7 {
			v = 1 << 40
		}
		p.srcExec("INSERT INTO narrow (id, v) VALUES (?, ?)", i, v)
	}
	p.writeConfig("", "", "")
	code, out := p.run("", nil, 2*time.Minute, "migrate", "--config", p.cfgPath)
	if code == 0 {
		t.Fatalf("ferry migrate succeeded with a rejected row:\n%s", tail(out))
	}
	if !strings.Contains(out, "1 rows were rejected") || !strings.Contains(out, "id=7") || !strings.Contains(out, "column v: 1099511627776 is out of range for int") {
		t.Fatalf("no dead letter naming id=7 and column v:\n%s", tail(out))
	}
	if n := rowCount(t, p.dstSess, p.dst, "narrow"); n != 19 {
		t.Fatalf("%d rows in the target, want the 19 good ones", n)
	}
}
