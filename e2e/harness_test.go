// Package e2e runs ferry end to end against real PostgreSQL servers started
// by e2e/pgtest, with the ferry binary built once for the suite.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
	"github.com/ferry-dev/ferry/e2e/pgtest"
)

// Servers shared by the suite: started once, each test uses its own
// databases on them.
var (
	ferryBin  string
	srcServer *pgtest.Server
	dstServer *pgtest.Server
	setupErr  error
)

func TestMain(m *testing.M) {
	code := func() int {
		bin, cleanup, err := ferrytest.Build("../cmd/ferry")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer cleanup()
		ferryBin = bin
		ctx := context.Background()
		srcServer, setupErr = pgtest.Start(ctx, pgtest.Options{Logical: true})
		if setupErr == nil {
			defer srcServer.Stop()
			dstServer, setupErr = pgtest.Start(ctx, pgtest.Options{})
			if setupErr == nil {
				defer dstServer.Stop()
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// servers returns the shared servers, failing (CI) or skipping the test when
// they could not be started.
func servers(t *testing.T) (*pgtest.Server, *pgtest.Server) {
	t.Helper()
	pgtest.Require(t, setupErr)
	return srcServer, dstServer
}

// pipeline is one test's source and target databases and its ferry config.
type pipeline struct {
	t        *testing.T
	name     string
	src, dst *pgtest.Server
	srcDB    string
	dstDB    string
	dir      string
	cfgPath  string
	natsPort int
}

var dbNameRE = regexp.MustCompile(`[^a-z0-9_]`)

func newPipeline(t *testing.T) *pipeline {
	t.Helper()
	src, dst := servers(t)
	name := dbNameRE.ReplaceAllString(strings.ToLower(t.Name()), "_")
	p := &pipeline{t: t, name: name, src: src, dst: dst, srcDB: "s_" + name, dstDB: "d_" + name, dir: t.TempDir(), natsPort: ferrytest.FreePort(t)}
	ctx := context.Background()
	for _, db := range []struct {
		s    *pgtest.Server
		name string
	}{{src, p.srcDB}, {dst, p.dstDB}} {
		if err := db.s.Exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+db.name+" WITH (FORCE)"); err != nil {
			t.Fatal(err)
		}
		if err := db.s.CreateDB(ctx, db.name); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		// Slots pin WAL on the shared server; drop this test's.
		_ = src.Exec(context.Background(), "postgres", "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active", p.srcDB)
	})
	return p
}

// writeConfig writes the pipeline's config with the given source options
// (YAML lines of the source entry, indented by the caller's choice).
func (p *pipeline) writeConfig(sourceExtra string, natsURL string) {
	p.t.Helper()
	cfg := fmt.Sprintf(`nats:
  url: %q
  listen: 127.0.0.1:%d
  dataDir: %s
sources:
  - name: pg
    type: postgres
    dsn: %s
    slot: %s
%s
targets:
  - name: dst
    type: postgres
    dsn: %s
    from: pg
`, natsURL, p.natsPort, filepath.Join(p.dir, "nats"), p.src.DSN(p.srcDB), p.srcDB, indent(sourceExtra, "    "), p.dst.DSN(p.dstDB))
	p.cfgPath = filepath.Join(p.dir, "ferry.yaml")
	if err := os.WriteFile(p.cfgPath, []byte(cfg), 0o600); err != nil {
		p.t.Fatal(err)
	}
}

func indent(s, pre string) string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l != "" {
			out = append(out, pre+strings.TrimSpace(l))
		}
	}
	return strings.Join(out, "\n")
}

// both runs SQL on the source and the target database.
func (p *pipeline) both(sql string) {
	p.t.Helper()
	p.srcExec(sql)
	p.dstExec(sql)
}

func (p *pipeline) srcExec(sql string, args ...any) {
	p.t.Helper()
	if err := p.src.Exec(context.Background(), p.srcDB, sql, args...); err != nil {
		p.t.Fatalf("source: %v\n%s", err, sql)
	}
}

func (p *pipeline) dstExec(sql string, args ...any) {
	p.t.Helper()
	if err := p.dst.Exec(context.Background(), p.dstDB, sql, args...); err != nil {
		p.t.Fatalf("target: %v\n%s", err, sql)
	}
}

// proc is a running ferry process.
type proc = ferrytest.Proc

// start runs ferry in the background; its output is shown if the test fails.
func (p *pipeline) start(args ...string) *proc {
	p.t.Helper()
	return ferrytest.Runner{Bin: ferryBin}.Start(p.t, args...)
}

// run runs ferry to completion and returns its exit code and output.
func (p *pipeline) run(timeout time.Duration, args ...string) (int, string) {
	p.t.Helper()
	return ferrytest.Runner{Bin: ferryBin}.Run(p.t, timeout, args...)
}

// waitCaughtUp runs the cut-over check.
func (p *pipeline) waitCaughtUp() {
	p.t.Helper()
	code, out := p.run(3*time.Minute, "status", "--config", p.cfgPath, "--wait-caught-up", "--timeout", "150s")
	if code != 0 {
		p.t.Fatalf("status --wait-caught-up exited %d:\n%s", code, out)
	}
}

// tableDigest returns a table's row count and the md5 of all its rows in
// key order, rendered as text by the server.
func tableDigest(t testing.TB, s *pgtest.Server, db, table, orderBy string) (int64, string) {
	t.Helper()
	conn, err := s.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int64
	var sum *string
	q := fmt.Sprintf("SELECT count(*), md5(string_agg(x::text, '|' ORDER BY %s)) FROM %s x", orderBy, table)
	if err := conn.QueryRow(context.Background(), q).Scan(&n, &sum); err != nil {
		t.Fatalf("digest of %s: %v", table, err)
	}
	if sum == nil {
		return n, ""
	}
	return n, *sum
}

// assertEqual checks that a table has the same rows on both sides; on a
// difference it names the first differing keys.
func (p *pipeline) assertEqual(table, orderBy string) {
	p.t.Helper()
	sn, ssum := tableDigest(p.t, p.src, p.srcDB, table, orderBy)
	dn, dsum := tableDigest(p.t, p.dst, p.dstDB, table, orderBy)
	if sn == dn && ssum == dsum {
		return
	}
	p.t.Errorf("%s differs: source %d rows, target %d rows; first differences: %s", table, sn, dn, p.diff(table, orderBy))
}

// diff lists a few rows that differ, for the failure message.
func (p *pipeline) diff(table, orderBy string) string {
	rows := func(s *pgtest.Server, db string) map[string]bool {
		conn, err := s.Connect(context.Background(), db)
		if err != nil {
			return nil
		}
		defer conn.Close(context.Background())
		r, err := conn.Query(context.Background(), fmt.Sprintf("SELECT x::text FROM %s x ORDER BY %s", table, orderBy))
		if err != nil {
			return nil
		}
		list, _ := pgx.CollectRows(r, pgx.RowTo[string])
		m := map[string]bool{}
		for _, l := range list {
			m[l] = true
		}
		return m
	}
	a, b := rows(p.src, p.srcDB), rows(p.dst, p.dstDB)
	var out []string
	for k := range a {
		if !b[k] && len(out) < 5 {
			out = append(out, "only in source: "+trunc(k))
		}
	}
	for k := range b {
		if !a[k] && len(out) < 10 {
			out = append(out, "only in target: "+trunc(k))
		}
	}
	return strings.Join(out, "; ")
}

func trunc(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// count returns a table's row count on a server.
func count(t testing.TB, s *pgtest.Server, db, table string) int64 {
	t.Helper()
	conn, err := s.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int64
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		return -1
	}
	return n
}
