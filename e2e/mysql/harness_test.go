// Package mysql runs ferry end to end from a private MariaDB (binlog on,
// ROW, FULL images, GTIDs) into a private PostgreSQL, with the ferry binary
// built once for the package.
package mysql

import (
	"bytes"
	"context"
	"encoding/json"
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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/e2e/mysqltest"
	"github.com/ferry-dev/ferry/e2e/pgtest"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

var (
	ferryBin  string
	srcServer *mysqltest.Server
	dstServer *pgtest.Server
	setupErr  error
)

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "ferry-e2e-mysql-bin")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		ferryBin = filepath.Join(dir, "ferry")
		build := exec.Command("go", "build", "-o", ferryBin, "../../cmd/ferry")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building ferry:", err)
			return 1
		}
		ctx := context.Background()
		srcServer, setupErr = mysqltest.Start(ctx, mysqltest.Options{})
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

// pipeline is one test's source and target databases and its ferry config.
type pipeline struct {
	t        *testing.T
	name     string
	srcDB    string
	dstDB    string
	dir      string
	cfgPath  string
	natsPort int
}

var nameRE = regexp.MustCompile(`[^a-z0-9_]`)

func newPipeline(t *testing.T) *pipeline {
	t.Helper()
	if setupErr != nil {
		if mysqltest.InCI() {
			t.Fatalf("servers are required in CI: %v", setupErr)
		}
		t.Skipf("servers unavailable: %v", setupErr)
	}
	name := nameRE.ReplaceAllString(strings.ToLower(t.Name()), "_")
	p := &pipeline{t: t, name: name, srcDB: "s_" + name, dstDB: "d_" + name, dir: t.TempDir(), natsPort: freePort(t)}
	if err := srcServer.Exec("", "DROP DATABASE IF EXISTS "+p.srcDB+";\nCREATE DATABASE "+p.srcDB); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := dstServer.Exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+p.dstDB+" WITH (FORCE)"); err != nil {
		t.Fatal(err)
	}
	if err := dstServer.CreateDB(ctx, p.dstDB); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeConfig writes the config with extra YAML lines for the source.
func (p *pipeline) writeConfig(sourceExtra string) {
	p.t.Helper()
	cfg := fmt.Sprintf(`nats:
  url: ""
  listen: 127.0.0.1:%d
  dataDir: %s
sources:
  - name: my
    type: mysql
    dsn: %s
%s
targets:
  - name: dst
    type: postgres
    dsn: %s
    from: my
`, p.natsPort, filepath.Join(p.dir, "nats"), srcServer.DSN(p.srcDB), indent(sourceExtra, "    "), dstServer.DSN(p.dstDB))
	p.cfgPath = filepath.Join(p.dir, "ferry.yaml")
	if err := os.WriteFile(p.cfgPath, []byte(cfg), 0o600); err != nil {
		p.t.Fatal(err)
	}
}

func indent(s, pre string) string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, pre+strings.TrimSpace(l))
		}
	}
	return strings.Join(out, "\n")
}

func (p *pipeline) src(sql string, args ...any) {
	p.t.Helper()
	if err := srcServer.Exec(p.srcDB, sql, args...); err != nil {
		p.t.Fatalf("source: %v\n%s", err, sql)
	}
}

func (p *pipeline) dst(sql string, args ...any) {
	p.t.Helper()
	if err := dstServer.Exec(context.Background(), p.dstDB, sql, args...); err != nil {
		p.t.Fatalf("target: %v\n%s", err, sql)
	}
}

// srcString runs a one-value query on the source.
func (p *pipeline) srcString(q string) string {
	p.t.Helper()
	c, err := srcServer.Connect(p.srcDB)
	if err != nil {
		p.t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Execute("SET SESSION group_concat_max_len = 1073741824"); err != nil {
		p.t.Fatal(err)
	}
	r, err := c.Execute(q)
	if err != nil {
		p.t.Fatalf("source: %v\n%s", err, q)
	}
	s, _ := r.GetString(0, 0)
	return s
}

// dstString runs a one-value query on the target ("" for NULL).
func (p *pipeline) dstString(q string) string {
	p.t.Helper()
	conn, err := dstServer.Connect(context.Background(), p.dstDB)
	if err != nil {
		p.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var s *string
	if err := conn.QueryRow(context.Background(), q).Scan(&s); err != nil {
		p.t.Fatalf("target: %v\n%s", err, q)
	}
	if s == nil {
		return ""
	}
	return *s
}

// digest compares a table on both sides through one rendering of its rows,
// given as the same expression list in MySQL and PostgreSQL syntax.
func (p *pipeline) assertSame(table, mysqlExpr, pgExpr, orderBy string) {
	p.t.Helper()
	s := p.srcString(fmt.Sprintf("SELECT CONCAT(COUNT(*), ':', COALESCE(MD5(GROUP_CONCAT(%s ORDER BY %s SEPARATOR '\\n')), '')) FROM %s", mysqlExpr, orderBy, table))
	d := p.dstString(fmt.Sprintf("SELECT count(*) || ':' || coalesce(md5(string_agg(%s, E'\\n' ORDER BY %s)), '') FROM %s", pgExpr, orderBy, table))
	if s != d {
		p.t.Errorf("%s differs: source %s, target %s", table, s, d)
	}
}

type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(b)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (p *pipeline) start(args ...string) *proc {
	p.t.Helper()
	cmd := exec.Command(ferryBin, args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	pr := &proc{cmd: cmd, out: out, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(pr.done) }()
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

// migrate starts ferry migrate and waits until its embedded NATS listens,
// so that a status command run next connects to it rather than hosting the
// server itself.
func (p *pipeline) migrate() *proc {
	p.t.Helper()
	pr := p.start("migrate", "--config", p.cfgPath)
	eventually(p.t, time.Minute, "ferry's embedded NATS", func() bool {
		if pr.exited() {
			return true
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.natsPort), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if pr.exited() {
		p.t.Fatalf("migrate exited at start:\n%s", pr.out.String())
	}
	return pr
}

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

func (pr *proc) stop(t *testing.T) {
	t.Helper()
	if code := pr.stopCode(t); code != 0 {
		t.Fatalf("ferry exited %d after SIGTERM, want 0:\n%s", code, pr.out.String())
	}
}

// stopCode sends SIGTERM and returns the exit code.
func (pr *proc) stopCode(t *testing.T) int {
	t.Helper()
	_ = pr.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-pr.done:
	case <-time.After(60 * time.Second):
		_ = pr.cmd.Process.Kill()
		<-pr.done
		t.Fatalf("ferry did not stop within 60s of SIGTERM:\n%s", pr.out.String())
	}
	return pr.cmd.ProcessState.ExitCode()
}

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

// status returns the source's status as ferry status --json reports it.
func (p *pipeline) status() (position string, snapshotDone bool) {
	p.t.Helper()
	pos, done, out, ok := p.tryStatus()
	if !ok {
		p.t.Fatalf("status failed:\n%s", out)
	}
	return pos, done
}

// tryStatus is status that reports a failure (a ferry still starting its
// embedded NATS) instead of failing the test.
func (p *pipeline) tryStatus() (position string, snapshotDone bool, out string, ok bool) {
	p.t.Helper()
	code, out := p.run(time.Minute, "status", "--config", p.cfgPath, "--json")
	if code != 0 {
		return "", false, out, false
	}
	var st struct {
		Sources []struct {
			Name         string `json:"name"`
			Position     string `json:"position"`
			SnapshotDone bool   `json:"snapshotDone"`
		} `json:"sources"`
	}
	i := strings.Index(out, "{")
	if i < 0 || json.Unmarshal([]byte(out[i:]), &st) != nil || len(st.Sources) == 0 {
		return "", false, out, false
	}
	return st.Sources[0].Position, st.Sources[0].SnapshotDone, out, true
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
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// deadLetters returns the reasons of every dead letter, read from the
// running ferry's embedded NATS.
func (p *pipeline) deadLetters() []string {
	p.t.Helper()
	js, closeNC := p.jetStream()
	defer closeNC()
	ctx := context.Background()
	s, err := js.Stream(ctx, streams.DLQStream)
	if err != nil {
		return nil
	}
	info, err := s.Info(ctx)
	if err != nil {
		p.t.Fatal(err)
	}
	var out []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		out = append(out, m.Header.Get("Ferry-Reason"))
	}
	return out
}

// schemaColumns returns the column names of a table's schema record in KV.
func (p *pipeline) schemaColumns(table string) []string {
	p.t.Helper()
	js, closeNC := p.jetStream()
	defer closeNC()
	kv, err := js.KeyValue(context.Background(), streams.StateBucket)
	if err != nil {
		p.t.Fatal(err)
	}
	st := &streams.State{KV: kv}
	var ts streams.TableSchema
	if _, err := st.GetJSON(context.Background(), streams.SchemaKey("my", table), &ts); err != nil {
		p.t.Fatal(err)
	}
	var out []string
	for _, c := range ts.Columns {
		out = append(out, c.Name)
	}
	return out
}

// jetStream connects to the running ferry's embedded NATS.
func (p *pipeline) jetStream() (jetstream.JetStream, func()) {
	p.t.Helper()
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", p.natsPort))
	if err != nil {
		p.t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		p.t.Fatal(err)
	}
	return js, nc.Close
}

// repeatedChanges reads the source's whole stream and returns the change
// positions (transaction and index) stored more than once: a transaction
// published twice would be applied twice.
func (p *pipeline) repeatedChanges() []string {
	p.t.Helper()
	js, closeNC := p.jetStream()
	defer closeNC()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := js.Stream(ctx, streams.StreamName("my"))
	if err != nil {
		p.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		p.t.Fatal(err)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		p.t.Fatal(err)
	}
	seen := map[string]int{}
	var repeated []string
	for n := uint64(0); n < info.State.Msgs; {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			p.t.Fatal(err)
		}
		for m := range batch.Messages() {
			n++
			b, err := streams.Decode(m.Data())
			if err != nil {
				p.t.Fatal(err)
			}
			for _, ev := range b.Events {
				if ev.Op == pb.Op_OP_READ {
					continue
				}
				seen[ev.PositionText]++
				if seen[ev.PositionText] == 2 {
					repeated = append(repeated, ev.PositionText)
				}
			}
		}
		if err := batch.Error(); err != nil && ctx.Err() != nil {
			p.t.Fatal(err)
		}
	}
	if len(seen) == 0 {
		p.t.Fatal("no change events in the stream")
	}
	return repeated
}
