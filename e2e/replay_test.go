package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
	"github.com/ferry-dev/ferry/e2e/pgtest"
)

// addTargetDB creates a database on the target server holding ddl.
func (p *pipeline) addTargetDB(name, ddl string) {
	p.t.Helper()
	ctx := context.Background()
	if err := p.dst.Exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		p.t.Fatal(err)
	}
	if err := p.dst.CreateDB(ctx, name); err != nil {
		p.t.Fatal(err)
	}
	if err := p.dst.Exec(ctx, name, ddl); err != nil {
		p.t.Fatal(err)
	}
}

// addTarget appends a target entry (extra: YAML lines, indented 4) to the
// config.
func (p *pipeline) addTarget(name, db, extra string) {
	p.t.Helper()
	cfg := readFile(p.t, p.cfgPath) + fmt.Sprintf("  - name: %s\n    type: postgres\n    dsn: %s\n    from: pg\n%s", name, p.dst.DSN(db), extra)
	writeFile(p.t, p.cfgPath, cfg)
}

// waitSame waits until table on target database db holds what the source
// table holds.
func (p *pipeline) waitSame(db, srcTable, dstTable string) {
	p.t.Helper()
	var sn, dn int64
	var ssum, dsum string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		sn, ssum = tableDigest(p.t, p.src, p.srcDB, srcTable, "id")
		dn, dsum = tableDigest(p.t, p.dst, db, dstTable, "id")
		if sn == dn && ssum == dsum {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s on %s: %d rows (%s), source %s: %d rows (%s)", dstTable, db, dn, dsum, srcTable, sn, ssum)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// changeStream opens the source's change stream on the test's NATS.
func changeStream(t *testing.T, url string) jetstream.Stream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(context.Background(), "FERRY_PG")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// Two targets from one source, one stopped for a while and restarted; the
// change stream then trimmed by the retention; a third target added later is
// seeded from the state stream alone, with ferry's source role no longer
// allowed to read the table (a snapshot query would fail); the stopped target,
// whose events were trimmed meanwhile, is refused and then rebuilt with
// --from-start. All end equal to the source.
func TestReplaySeedFromLogAfterTrim(t *testing.T) {
	p := newPipeline(t)
	ctx := context.Background()
	second, third := "d2_"+p.name, "d3_"+p.name
	ddl := `CREATE TABLE public.accounts (id bigint PRIMARY KEY, owner text NOT NULL, balance numeric(14,2), doc text)`
	p.both(ddl)
	p.addTargetDB(second, ddl)
	p.addTargetDB(third, ddl)

	// ferry reads the source as a role of its own, which loses SELECT on the
	// table once the snapshot is done.
	role := "r_" + p.name
	if len(role) > 60 {
		role = role[:60]
	}
	p.srcExec(fmt.Sprintf(`DROP ROLE IF EXISTS %[1]s; CREATE ROLE %[1]s LOGIN REPLICATION;
		GRANT SELECT ON accounts TO %[1]s;
		CREATE PUBLICATION ferry_pg FOR TABLE accounts;
		ALTER TABLE accounts ALTER COLUMN doc SET STORAGE EXTERNAL`, role))
	t.Cleanup(func() {
		bg := context.Background()
		_ = p.src.Exec(bg, "postgres", "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active", p.srcDB)
		_ = p.src.Exec(bg, "postgres", "DROP DATABASE IF EXISTS "+p.srcDB+" WITH (FORCE)")
		_ = p.src.Exec(bg, "postgres", "DROP ROLE IF EXISTS "+role)
	})
	// Every tenth row carries a document stored out of line: updates that
	// leave it alone send it as unchanged, which the compactor must merge.
	p.srcExec(`INSERT INTO accounts SELECT i, 'owner ' || i, i,
		CASE WHEN i % 10 = 0 THEN (SELECT string_agg(md5(i::text || g::text), '') FROM generate_series(1, 100) g) END
		FROM generate_series(1, 3000) i`)

	natsURL := startNATS(t)
	setConfig := func(retention string) {
		p.writeConfig("mode: snapshot+cdc\n"+retention, natsURL)
		cfg := strings.Replace(readFile(t, p.cfgPath), p.src.DSN(p.srcDB), strings.Replace(p.src.DSN(p.srcDB), "postgres://postgres@", "postgres://"+role+"@", 1), 1)
		writeFile(t, p.cfgPath, cfg)
		p.addTarget("second", second, "")
		p.addTarget("third", third, "")
	}
	setConfig("")
	prod := p.start("produce", "--config", p.cfgPath)
	first := p.start("apply", "--config", p.cfgPath, "--target", "dst")
	two := p.start("apply", "--config", p.cfgPath, "--target", "second")
	p.waitSame(p.dstDB, "public.accounts", "public.accounts") // the snapshot is done
	p.srcExec(`UPDATE accounts SET balance = balance * 2 WHERE id % 3 = 0`)
	p.srcExec(`DELETE FROM accounts WHERE id > 2900`)
	p.srcExec(`INSERT INTO accounts VALUES (5000, 'new', 1, NULL)`)
	p.waitSame(p.dstDB, "public.accounts", "public.accounts")
	p.waitSame(second, "public.accounts", "public.accounts")

	// The update of row 30 left its document out (unchanged): the state
	// stream must merge it into the row it holds.
	code, out := p.run(time.Minute, "events", "--config", p.cfgPath, "--source", "pg", "--key", "id=30")
	if evs := parseEvents(t, out); code != 0 || len(evs) != 2 || evs[1].Event.Op != "OP_UPDATE" || strings.Join(evs[1].Event.Unchanged, ",") != "doc" {
		t.Fatalf("events of id=30: exit %d, want a read and an update with doc unchanged: %+v\n%s", code, evs, out)
	}

	// The second target is down while the source changes, then catches up.
	two.Stop(t)
	p.srcExec(`UPDATE accounts SET owner = owner || ' (moved)' WHERE id % 7 = 0`)
	p.srcExec(`UPDATE accounts SET id = id + 100000 WHERE id BETWEEN 10 AND 20`)
	p.srcExec(`DELETE FROM accounts WHERE id % 11 = 0`)
	p.waitSame(p.dstDB, "public.accounts", "public.accounts")
	if n := count(t, p.dst, second, "public.accounts"); n == count(t, p.src, p.srcDB, "public.accounts") {
		t.Fatalf("the stopped target already has the source's %d rows", n)
	}
	two = p.start("apply", "--config", p.cfgPath, "--target", "second")
	p.waitSame(second, "public.accounts", "public.accounts")
	two.Stop(t)

	// Changes the second target will miss, then the retention trims every
	// event the compactor has folded. The source role may no longer read
	// the table: nothing below may query it.
	p.srcExec(`UPDATE accounts SET balance = balance + 1 WHERE id % 5 = 0`)
	p.waitSame(p.dstDB, "public.accounts", "public.accounts")
	p.srcExec("REVOKE SELECT ON accounts FROM " + role)
	prod.Stop(t)
	setConfig("retention: {maxAge: 1s}")
	prod = p.start("produce", "--config", p.cfgPath)
	st := changeStream(t, natsURL)
	ferrytest.Eventually(t, time.Minute, "the change stream to be trimmed", func() bool {
		info, err := st.Info(ctx)
		return err == nil && info.State.Msgs == 0 && info.State.FirstSeq > 1
	})
	prod.Stop(t)
	setConfig("retention: {maxAge: 1h}")
	prod = p.start("produce", "--config", p.cfgPath)

	p.srcExec(`UPDATE accounts SET balance = balance - 3 WHERE id % 4 = 0`)
	p.srcExec(`DELETE FROM accounts WHERE id % 13 = 0`)
	p.srcExec(`INSERT INTO accounts SELECT i, 'late ' || i, i, NULL FROM generate_series(6000, 6100) i`)

	three := p.start("apply", "--config", p.cfgPath, "--target", "third")
	p.waitSame(third, "public.accounts", "public.accounts")
	p.waitSame(p.dstDB, "public.accounts", "public.accounts")
	if !strings.Contains(three.Output(), "lane seeded from the state stream") {
		t.Fatalf("the third target was not seeded from the state stream:\n%s", three.Output())
	}

	// The second target's lanes lost events to the retention: refused.
	code, out = p.run(2*time.Minute, "apply", "--config", p.cfgPath, "--target", "second")
	if code != 1 || !strings.Contains(out, "retention removed event") || !strings.Contains(out, "--from-start") {
		t.Fatalf("apply of a target behind the retention: exit %d, want 1 naming the retention and --from-start:\n%s", code, out)
	}
	if err := p.dst.Exec(ctx, second, "TRUNCATE accounts"); err != nil {
		t.Fatal(err)
	}
	two = p.start("apply", "--config", p.cfgPath, "--target", "second", "--from-start")
	p.srcExec(`UPDATE accounts SET owner = 'last' WHERE id = 1`)
	p.waitSame(second, "public.accounts", "public.accounts")
	p.waitSame(third, "public.accounts", "public.accounts")
	p.waitSame(p.dstDB, "public.accounts", "public.accounts")
	if prod.Exited() || strings.Contains(prod.Output(), "permission denied") {
		t.Fatalf("the producer queried the table it may no longer read:\n%s", prod.Output())
	}
	for _, pr := range []*proc{two, three, first, prod} {
		pr.Stop(t)
	}
}

// eventsLine is one line of `ferry events`.
type eventsLine struct {
	Seq   uint64    `json:"seq"`
	Lane  int       `json:"lane"`
	Time  time.Time `json:"time"`
	Event struct {
		Table     string   `json:"table"`
		Op        string   `json:"op"`
		Unchanged []string `json:"unchanged"`
		Key       struct {
			Names  []string         `json:"names"`
			Values []map[string]any `json:"values"`
		} `json:"key"`
	} `json:"event"`
}

func parseEvents(t *testing.T, out string) []eventsLine {
	t.Helper()
	var lines []eventsLine
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "{") {
			continue // a log line
		}
		var e eventsLine
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("ferry events printed a line that is not JSON: %v\n%s", err, l)
		}
		lines = append(lines, e)
	}
	return lines
}

// ferry events prints the log as JSON lines; a truncated target is rebuilt
// by replaying the change stream from a sequence, and from a time.
func TestReplayFromSequenceAndEvents(t *testing.T) {
	p := newPipeline(t)
	ctx := context.Background()
	p.both(`CREATE TABLE public.accounts (id bigint PRIMARY KEY, owner text NOT NULL, balance numeric(14,2))`)
	p.srcExec(`INSERT INTO accounts SELECT i, 'owner ' || i, i FROM generate_series(1, 500) i`)
	// Without a state stream the replay reads the change stream itself.
	p.writeConfig("mode: snapshot+cdc\nretention: {compact: false}", startNATS(t))
	prod := p.start("produce", "--config", p.cfgPath)
	app := p.start("apply", "--config", p.cfgPath, "--target", "dst")
	p.waitSame(p.dstDB, "public.accounts", "public.accounts")
	p.srcExec(`UPDATE accounts SET balance = balance + 1`)
	p.waitSame(p.dstDB, "public.accounts", "public.accounts")

	code, out := p.run(time.Minute, "events", "--config", p.cfgPath, "--source", "pg", "--table", "public.accounts")
	if code != 0 {
		t.Fatalf("events exited %d:\n%s", code, out)
	}
	evs := parseEvents(t, out)
	var firstUpdate eventsLine
	reads, updates := 0, 0
	for _, e := range evs {
		switch e.Event.Op {
		case "OP_READ":
			reads++
		case "OP_UPDATE":
			if updates == 0 {
				firstUpdate = e
			}
			updates++
		}
		if e.Event.Table != "public.accounts" || e.Seq == 0 {
			t.Fatalf("bad event line: %+v", e)
		}
	}
	if reads != 500 || updates != 500 {
		t.Fatalf("ferry events printed %d reads and %d updates, want 500 each", reads, updates)
	}
	code, out = p.run(time.Minute, "events", "--config", p.cfgPath, "--source", "pg", "--key", "id=42")
	if code != 0 {
		t.Fatalf("events --key exited %d:\n%s", code, out)
	}
	keyed := parseEvents(t, out)
	if len(keyed) != 2 || keyed[0].Event.Op != "OP_READ" || keyed[1].Event.Op != "OP_UPDATE" ||
		keyed[0].Event.Key.Names[0] != "id" || fmt.Sprint(keyed[0].Event.Key.Values[0]["int"]) != "42" {
		t.Fatalf("events --key id=42: %+v", keyed)
	}
	code, out = p.run(time.Minute, "events", "--config", p.cfgPath, "--source", "pg", "--from-sequence", fmt.Sprint(firstUpdate.Seq))
	if got := parseEvents(t, out); code != 0 || len(got) != 500 || got[0].Seq != firstUpdate.Seq {
		t.Fatalf("events --from-sequence %d: exit %d, %d events", firstUpdate.Seq, code, len(got))
	}

	p.srcExec(`DELETE FROM accounts WHERE id % 9 = 0`)
	p.waitSame(p.dstDB, "public.accounts", "public.accounts")

	// An operator error empties the target; every row changed after the
	// first update, so replaying from there rebuilds it.
	app.Stop(t)
	p.dstExec(`TRUNCATE accounts`)
	app = p.start("apply", "--config", p.cfgPath, "--target", "dst", "--from-sequence", fmt.Sprint(firstUpdate.Seq))
	p.waitSame(p.dstDB, "public.accounts", "public.accounts")
	app.Stop(t)

	p.dstExec(`TRUNCATE accounts`)
	app = p.start("apply", "--config", p.cfgPath, "--target", "dst", "--from-time", firstUpdate.Time.Format(time.RFC3339Nano))
	p.srcExec(`INSERT INTO accounts VALUES (9999, 'after the replay', 1)`)
	p.waitSame(p.dstDB, "public.accounts", "public.accounts")

	// A replay from before what the stream holds is refused by name.
	code, out = p.run(time.Minute, "apply", "--config", p.cfgPath, "--target", "dst", "--from-sequence", "999999999")
	if code == 0 || !regexp.MustCompile(`ends at \d+`).MatchString(out) {
		t.Fatalf("replay from beyond the stream: exit %d:\n%s", code, out)
	}
	_ = ctx
	app.Stop(t)
	prod.Stop(t)
}

// Table and column renames: events of public.items land in public.goods,
// column name in label. A rename to a column the target lacks stops the
// applier with an error naming it.
func TestRenameTablesAndColumns(t *testing.T) {
	p := newPipeline(t)
	p.srcExec(`CREATE TABLE public.items (id bigint PRIMARY KEY, name text, qty int)`)
	p.dstExec(`CREATE TABLE public.goods (id bigint PRIMARY KEY, label text, qty int)`)
	p.srcExec(`INSERT INTO items SELECT i, 'item ' || i, i FROM generate_series(1, 300) i`)
	p.writeConfig("mode: snapshot+cdc", startNATS(t))
	cfg := readFile(t, p.cfgPath) + `    tables: {public.items: goods}
    renames:
      - {table: public.items, from: name, to: label}
`
	writeFile(t, p.cfgPath, cfg)
	prod := p.start("produce", "--config", p.cfgPath)
	app := p.start("apply", "--config", p.cfgPath, "--target", "dst")
	p.srcExec(`UPDATE items SET name = name || '!' WHERE id % 2 = 0`)
	p.srcExec(`DELETE FROM items WHERE id % 5 = 0`)
	p.waitSame(p.dstDB, "public.items", "public.goods")

	bad := "d2_" + p.name
	p.addTargetDB(bad, `CREATE TABLE public.goods (id bigint PRIMARY KEY, label text, qty int)`)
	p.addTarget("bad", bad, `    tables: {items: public.goods}
    renames:
      - {table: items, from: qty, to: quantity}
`)
	code, out := p.run(2*time.Minute, "apply", "--config", p.cfgPath, "--target", "bad")
	if code != 1 || !strings.Contains(out, "items.qty is renamed to quantity, but target table public.goods has no column quantity") {
		t.Fatalf("apply with a rename to a missing column: exit %d:\n%s", code, out)
	}
	app.Stop(t)
	prod.Stop(t)
}

// BenchmarkReplaySeed measures, at FERRY_BENCH_ROWS keys (default
// 1,000,000) and only with FERRY_BENCH_REPLAY=1: the snapshot from the
// source into PostgreSQL without and with the state stream kept beside it,
// the state stream's storage and the NATS server's memory, and the rate at
// which a new target is seeded from the state stream alone. NATS runs as a
// process of its own (built from the module) so that its memory is its own.
// Results go to docs/BENCHMARKS.md.
func BenchmarkReplaySeed(b *testing.B) {
	if os.Getenv("FERRY_BENCH_REPLAY") == "" {
		b.Skip("set FERRY_BENCH_REPLAY=1 to run")
	}
	pgtest.Require(b, setupErr)
	rows := benchRows()
	ctx := context.Background()
	dir := b.TempDir()
	natsBin := filepath.Join(dir, "nats-server")
	build := exec.Command("go", "build", "-o", natsBin, "github.com/nats-io/nats-server/v2")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building nats-server: %v\n%s", err, out)
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		port := ferrytest.FreePort(b)
		srv := exec.Command(natsBin, "-js", "-sd", filepath.Join(dir, fmt.Sprint("js", i)), "-a", "127.0.0.1", "-p", fmt.Sprint(port))
		must(b, srv.Start())
		natsURL := fmt.Sprintf("nats://127.0.0.1:%d", port)
		deadline := time.Now().Add(20 * time.Second)
		for {
			nc, err := nats.Connect(natsURL)
			if err == nil {
				nc.Close()
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("nats-server did not start")
			}
			time.Sleep(50 * time.Millisecond)
		}
		name := fmt.Sprintf("rbench_%d_%d", rows, i)
		src, base, snap, seed := "s_"+name, "d0_"+name, "d_"+name, "d2_"+name
		must(b, srcServer.Exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+src+" WITH (FORCE)"))
		must(b, srcServer.Exec(ctx, "postgres", "CREATE DATABASE "+src))
		must(b, srcServer.Exec(ctx, src, benchTable))
		for _, db := range []string{base, snap, seed} {
			must(b, dstServer.Exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)"))
			must(b, dstServer.Exec(ctx, "postgres", "CREATE DATABASE "+db))
			must(b, dstServer.Exec(ctx, db, benchTable))
		}
		must(b, srcServer.Exec(ctx, src, fmt.Sprintf(`INSERT INTO bench SELECT i, 'name ' || i, i * 1.2345, timestamptz '2024-01-01' + i * interval '1 ms',
			jsonb_build_object('i', i, 'tag', 't' || (i %% 100)) FROM generate_series(1, %d) i`, rows)))
		must(b, srcServer.Exec(ctx, src, "VACUUM ANALYZE bench"))

		cfgPath := filepath.Join(dir, fmt.Sprint("ferry", i, ".yaml"))
		must(b, os.WriteFile(cfgPath, []byte(fmt.Sprintf(`nats: {url: %q}
sources:
  - {name: base, type: postgres, dsn: %q, mode: snapshot, retention: {compact: false}}
  - {name: pg, type: postgres, dsn: %q, mode: snapshot}
targets:
  - {name: base, type: postgres, dsn: %q, from: base}
  - {name: snap, type: postgres, dsn: %q, from: pg}
  - {name: seed, type: postgres, dsn: %q, from: pg}
log: {level: info, format: text}
`, natsURL, srcServer.DSN(src), srcServer.DSN(src), dstServer.DSN(base), dstServer.DSN(snap), dstServer.DSN(seed))), 0o600))
		// Snapshot of one source with one target, as `ferry migrate` of a
		// config holding only those would run.
		migrate := func(source, target string) time.Duration {
			one := filepath.Join(dir, source+".yaml")
			cfg := readFileTB(b, cfgPath)
			var keep []string
			for _, l := range strings.Split(cfg, "\n") {
				if strings.Contains(l, "name: ") && !strings.Contains(l, "name: "+source+",") && !strings.Contains(l, "name: "+target+",") {
					continue
				}
				keep = append(keep, l)
			}
			must(b, os.WriteFile(one, []byte(strings.Join(keep, "\n")), 0o600))
			start := time.Now()
			out, err := exec.Command(ferryBin, "migrate", "--config", one).CombinedOutput()
			if err != nil {
				b.Fatalf("ferry migrate: %v\n%s", err, out)
			}
			return time.Since(start)
		}
		b.StartTimer()
		baseDur := migrate("base", "base")
		compactDur := migrate("pg", "snap")
		b.StopTimer()
		nc, err := nats.Connect(natsURL)
		must(b, err)
		js, err := jetstream.New(nc)
		must(b, err)
		streamBytes := func(name string) (uint64, uint64) {
			st, err := js.Stream(ctx, name)
			must(b, err)
			info, err := st.Info(ctx)
			must(b, err)
			return info.State.Bytes, info.State.Msgs
		}
		stateBytes, stateMsgs := streamBytes("FERRY_STATE_PG")
		changeBytes, _ := streamBytes("FERRY_PG")
		rssAfterCompact, _ := procMem(b, srv.Process.Pid)
		nc.Close()

		b.StartTimer()
		start := time.Now()
		app := ferrytest.Runner{Bin: ferryBin}.Start(b, "apply", "--config", cfgPath, "--target", "seed")
		// Fail when the seed stops making progress for a minute.
		last, lastAt := int64(-1), time.Now()
		for n := count(b, dstServer, seed, "bench"); n != int64(rows); n = count(b, dstServer, seed, "bench") {
			if n != last {
				last, lastAt = n, time.Now()
			}
			if time.Since(lastAt) > time.Minute {
				app.Signal(syscall.SIGQUIT)
				<-app.Done()
				b.Fatalf("seed target stalled at %d rows:\n%s", n, app.Output())
			}
			time.Sleep(100 * time.Millisecond)
		}
		seedDur := time.Since(start)
		b.StopTimer()
		app.StopCode(b)
		applyRSS := app.MaxRSSKiB()
		_, natsPeak := procMem(b, srv.Process.Pid)
		sn, ssum := tableDigest(b, srcServer, src, "bench", "id")
		dn, dsum := tableDigest(b, dstServer, seed, "bench", "id")
		if sn != dn || ssum != dsum {
			b.Fatalf("seeded target differs: %d rows (%s), source %d (%s)", dn, dsum, sn, ssum)
		}
		_ = srv.Process.Signal(syscall.SIGTERM)
		_ = srv.Wait()

		b.ReportMetric(float64(rows)/baseDur.Seconds(), "snapshot-rows/s")
		b.ReportMetric(float64(rows)/compactDur.Seconds(), "snapshot+compact-rows/s")
		b.ReportMetric(float64(rows)/seedDur.Seconds(), "seed-rows/s")
		b.ReportMetric(float64(stateBytes)/float64(rows), "state-B/key")
		b.ReportMetric(float64(changeBytes)/float64(rows), "change-B/row")
		b.ReportMetric(float64(rssAfterCompact)/1024, "nats-RSS-MiB")
		b.ReportMetric(float64(natsPeak)/1024, "nats-peak-RSS-MiB")
		b.ReportMetric(float64(applyRSS)/1024, "seed-apply-peak-RSS-MiB")
		for _, l := range strings.Split(app.Output(), "\n") {
			if strings.Contains(l, "seeded from the state stream") && !strings.Contains(l, "lane=") {
				b.Log(l)
			}
		}
		b.Logf("rows %d: snapshot %.1fs, snapshot with compaction %.1fs, seed %.1fs; state stream %d msgs %d B, change stream %d B",
			rows, baseDur.Seconds(), compactDur.Seconds(), seedDur.Seconds(), stateMsgs, stateBytes, changeBytes)
		b.StartTimer()
	}
}

// procMem reads a process's resident memory now and at its peak, in KiB.
func procMem(b *testing.B, pid int) (rss, peak int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(b, err)
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			peak = v
		}
	}
	return rss, peak
}

func readFileTB(b testing.TB, path string) string {
	data, err := os.ReadFile(path)
	must(b, err)
	return string(data)
}
