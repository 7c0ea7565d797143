// Package mysql runs ferry end to end from a private MariaDB (binlog on,
// ROW, FULL images, GTIDs) into a private PostgreSQL, with the ferry binary
// built once for the package.
package mysql

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
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
		bin, cleanup, err := ferrytest.Build("../../cmd/ferry")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer cleanup()
		ferryBin = bin
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
	// srcDSN is the source DSN ferry uses (default: root on srcDB), and
	// natsURL an external NATS server (default: ferry's embedded one).
	srcDSN  string
	natsURL string
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
	p := &pipeline{t: t, name: name, srcDB: "s_" + name, dstDB: "d_" + name, dir: t.TempDir(), natsPort: ferrytest.FreePort(t)}
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
	dsn := p.srcDSN
	if dsn == "" {
		dsn = srcServer.DSN(p.srcDB)
	}
	cfg := fmt.Sprintf(`nats:
  url: %q
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
`, p.natsURL, p.natsPort, filepath.Join(p.dir, "nats"), dsn, indent(sourceExtra, "    "), dstServer.DSN(p.dstDB))
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

// proc is a running ferry process.
type proc = ferrytest.Proc

// start runs ferry in the background; its output is shown if the test fails.
func (p *pipeline) start(args ...string) *proc {
	p.t.Helper()
	return ferrytest.Runner{Bin: ferryBin}.Start(p.t, args...)
}

// migrate starts ferry migrate and waits until its embedded NATS listens,
// so that a status command run next connects to it rather than hosting the
// server itself.
func (p *pipeline) migrate() *proc {
	p.t.Helper()
	pr := p.start("migrate", "--config", p.cfgPath)
	ferrytest.WaitListening(p.t, pr, p.natsPort, time.Minute)
	return pr
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

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ferrytest.Eventually(t, timeout, what, cond)
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
