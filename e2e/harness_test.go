// Package e2e runs ferry end to end against real PostgreSQL servers started
// by e2e/pgtest, with the ferry binary built once for the suite.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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
		dir, err := os.MkdirTemp("", "ferry-e2e-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		ferryBin = filepath.Join(dir, "ferry")
		build := exec.Command("go", "build", "-o", ferryBin, "../cmd/ferry")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building ferry:", err)
			return 1
		}
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
	p := &pipeline{t: t, name: name, src: src, dst: dst, srcDB: "s_" + name, dstDB: "d_" + name, dir: t.TempDir(), natsPort: freePort(t)}
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
type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs ferry in the background; its output is shown if the test fails.
func (p *pipeline) start(args ...string) *proc {
	p.t.Helper()
	cmd := exec.Command(ferryBin, args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	pr := &proc{cmd: cmd, out: out, done: make(chan struct{})}
	go func() { pr.err = cmd.Wait(); close(pr.done) }()
	p.t.Cleanup(func() {
		select {
		case <-pr.done:
		default:
			_ = cmd.Process.Kill()
			<-pr.done
		}
		if p.t.Failed() {
			p.t.Logf("ferry %s output:\n%s", strings.Join(args, " "), out.String())
		}
	})
	return pr
}

// run runs ferry to completion and returns its exit code and output.
func (p *pipeline) run(timeout time.Duration, args ...string) (int, string) {
	p.t.Helper()
	pr := p.start(args...)
	select {
	case <-pr.done:
	case <-time.After(timeout):
		_ = pr.cmd.Process.Kill()
		<-pr.done
		p.t.Fatalf("ferry %s did not finish within %s:\n%s", strings.Join(args, " "), timeout, pr.out.String())
	}
	return pr.cmd.ProcessState.ExitCode(), pr.out.String()
}

// stop sends SIGTERM and waits: ferry must finish in-flight work and exit 0.
func (pr *proc) stop(t *testing.T) {
	t.Helper()
	_ = pr.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-pr.done:
	case <-time.After(60 * time.Second):
		_ = pr.cmd.Process.Kill()
		<-pr.done
		t.Fatalf("ferry did not stop within 60s of SIGTERM:\n%s", pr.out.String())
	}
	if code := pr.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("ferry exited %d after SIGTERM, want 0:\n%s", code, pr.out.String())
	}
}

// kill9 kills the process the hard way.
func (pr *proc) kill9() {
	_ = pr.cmd.Process.Signal(syscall.SIGKILL)
	<-pr.done
}

func (pr *proc) exited() bool {
	select {
	case <-pr.done:
		return true
	default:
		return false
	}
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

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
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
