// Package cassandra runs ferry end to end from Cassandra to Cassandra: one
// Cassandra 2.1 server (e2e/cqltest) for the whole package, each test with
// a source and a target keyspace on it, and the ferry binary built once.
package cassandra

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"google.golang.org/protobuf/encoding/prototext"

	"github.com/ferry-dev/ferry/e2e/cqltest"
	"github.com/ferry-dev/ferry/e2e/ferrytest"
	"github.com/ferry-dev/ferry/internal/cqlcodec"
	"github.com/ferry-dev/ferry/streams/pb"
)

var (
	ferryBin string
	server   *cqltest.Server
	setupErr error
)

func TestMain(m *testing.M) {
	gocql.Logger = log.New(io.Discard, "", 0) // the driver's reconnect chatter
	code := func() int {
		bin, cleanup, err := ferrytest.Build("../../cmd/ferry")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer cleanup()
		ferryBin = bin
		server, setupErr = cqltest.Start(context.Background(), cqltest.Options{HeapMB: 768, Log: func(s string) { fmt.Fprintln(os.Stderr, s) }})
		if setupErr == nil {
			defer server.Stop()
		}
		return m.Run()
	}()
	os.Exit(code)
}

// pipeline is one test's keyspaces, working directory and config.
type pipeline struct {
	t        *testing.T
	src, dst string // keyspaces
	dir      string
	cfgPath  string
	srcSess  *gocql.Session
	dstSess  *gocql.Session
}

var ksRE = regexp.MustCompile(`[^a-z0-9_]`)

func newPipeline(t *testing.T) *pipeline {
	t.Helper()
	cqltest.Require(t, setupErr)
	name := ksRE.ReplaceAllString(strings.ToLower(t.Name()), "_")
	if len(name) > 40 {
		name = name[:40]
	}
	p := &pipeline{t: t, src: "s_" + name, dst: "d_" + name, dir: t.TempDir()}
	for _, ks := range []string{p.src, p.dst} {
		if err := server.Exec("system", "DROP KEYSPACE IF EXISTS "+ks,
			"CREATE KEYSPACE "+ks+" WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"); err != nil {
			t.Fatal(err)
		}
	}
	var err error
	if p.srcSess, err = server.Session(p.src); err != nil {
		t.Fatal(err)
	}
	if p.dstSess, err = server.Session(p.dst); err != nil {
		t.Fatal(err)
	}
	return p
}

// both runs DDL in the source and the target keyspace.
func (p *pipeline) both(stmts ...string) {
	p.t.Helper()
	for _, ks := range []string{p.src, p.dst} {
		if err := server.Exec(ks, stmts...); err != nil {
			p.t.Fatal(err)
		}
	}
}

func (p *pipeline) srcExec(q string, args ...any) {
	p.t.Helper()
	if err := p.srcSess.Query(q, args...).Exec(); err != nil {
		p.t.Fatalf("source: %v\n%s", err, q)
	}
}

// writeConfig writes a ferry config from source to target keyspace with the
// given extra source and target lines.
func (p *pipeline) writeConfig(sourceExtra, targetExtra, top string) {
	p.t.Helper()
	natsPort := ferrytest.FreePort(p.t)
	cfg := fmt.Sprintf(`nats:
  listen: 127.0.0.1:%d
  dataDir: %s
log:
  level: debug
sources:
  - name: cql
    type: cassandra
    dsn: cassandra://%s
    keyspace: %s
    consistencyLevel: ONE
%s
targets:
  - name: dst
    type: scylla
    dsn: cassandra://%s
    keyspace: %s
    consistencyLevel: ONE
    from: cql
%s
%s
`, natsPort, filepath.Join(p.dir, "nats"), server.Hosts(), p.src, indent(sourceExtra, "    "), server.Hosts(), p.dst, indent(targetExtra, "    "), top)
	p.cfgPath = filepath.Join(p.dir, "ferry.yaml")
	if err := os.WriteFile(p.cfgPath, []byte(cfg), 0o600); err != nil {
		p.t.Fatal(err)
	}
}

func indent(s, pre string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, pre+l)
		}
	}
	return strings.Join(out, "\n")
}

// proc is a running ferry process.
type proc = ferrytest.Proc

// start runs ferry in dir (the pipeline's by default) in the background; its
// output is shown if the test fails.
func (p *pipeline) start(dir string, env []string, args ...string) *proc {
	p.t.Helper()
	return p.runner(dir, env).Start(p.t, args...)
}

func (p *pipeline) runner(dir string, env []string) ferrytest.Runner {
	if dir == "" {
		dir = p.dir
	}
	return ferrytest.Runner{Bin: ferryBin, Dir: dir, Env: env}
}

func tail(s string) string {
	if len(s) > 6000 {
		return "..." + s[len(s)-6000:]
	}
	return s
}

// run runs ferry to completion and returns its exit code and output.
func (p *pipeline) run(dir string, env []string, timeout time.Duration, args ...string) (int, string) {
	p.t.Helper()
	return p.runner(dir, env).Run(p.t, timeout, args...)
}

// migrate runs `ferry migrate` with the pipeline's config and requires
// success.
func (p *pipeline) migrate() string {
	p.t.Helper()
	code, out := p.run("", nil, 3*time.Minute, "migrate", "--config", p.cfgPath)
	if code != 0 {
		p.t.Fatalf("ferry migrate exited %d:\n%s", code, tail(out))
	}
	return out
}

// rowsOf reads every row of a table as canonical text (the decoded values
// in their protobuf text form, NULL apart from empty), one string per row,
// sorted.
func rowsOf(t *testing.T, sess *gocql.Session, ks, table string, cols []string) []string {
	t.Helper()
	q := "SELECT " + strings.Join(cols, ", ") + " FROM " + ks + "." + table
	iter := sess.Query(q).PageSize(500).Iter()
	scan := cqlcodec.NewRowScanner(iter.Columns())
	var out []string
	var vals []*pb.Value
	for iter.Scan(scan.Dest()...) {
		var err error
		if vals, err = scan.Values(vals); err != nil {
			t.Fatalf("%s.%s: %v", ks, table, err)
		}
		var b strings.Builder
		for i, v := range vals {
			b.WriteString(cols[i] + "=" + valueText(v) + "; ")
		}
		out = append(out, b.String())
	}
	if err := iter.Close(); err != nil {
		t.Fatalf("reading %s.%s: %v", ks, table, err)
	}
	sort.Strings(out)
	return out
}

func valueText(v *pb.Value) string {
	if v == nil {
		return "NULL"
	}
	return strings.Join(strings.Fields(prototext.MarshalOptions{}.Format(v)), " ")
}

// assertSameRows compares a table's rows in the source and target keyspace.
func (p *pipeline) assertSameRows(table string, cols ...string) int {
	p.t.Helper()
	return p.assertSameRowsAs(table, table, cols, cols)
}

func (p *pipeline) assertSameRowsAs(srcTable, dstTable string, srcCols, dstCols []string) int {
	p.t.Helper()
	a := rowsOf(p.t, p.srcSess, p.src, srcTable, srcCols)
	b := rowsOf(p.t, p.dstSess, p.dst, dstTable, dstCols)
	if len(srcCols) > 0 && !equalStrings(srcCols, dstCols) {
		// Compare values only: column names differ by renames.
		strip := func(rows []string) {
			for i, r := range rows {
				parts := strings.Split(r, "; ")
				for j, part := range parts {
					if _, v, ok := strings.Cut(part, "="); ok {
						parts[j] = v
					}
				}
				rows[i] = strings.Join(parts, "; ")
			}
			sort.Strings(rows)
		}
		strip(a)
		strip(b)
	}
	if len(a) == 0 {
		p.t.Fatalf("source table %s is empty; the test is broken", srcTable)
	}
	if len(a) != len(b) {
		p.t.Fatalf("%s: %d rows in the source, %d in the target", srcTable, len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			p.t.Fatalf("%s: row %d differs:\nsource: %s\ntarget: %s", srcTable, i, a[i], b[i])
		}
	}
	return len(a)
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// rowCount counts a table's rows.
func rowCount(t testing.TB, sess *gocql.Session, ks, table string) int {
	t.Helper()
	var n int64
	if err := sess.Query("SELECT count(*) FROM " + ks + "." + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return int(n)
}
