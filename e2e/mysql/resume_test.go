package mysql

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// writer runs small multi-table transactions on the source until stopped.
type writer struct {
	stop chan struct{}
	wg   sync.WaitGroup
	n    atomic.Int64
	err  atomic.Value
}

func startWriter(p *pipeline) *writer {
	w := &writer{stop: make(chan struct{})}
	c, err := srcServer.Connect(p.srcDB)
	if err != nil {
		p.t.Fatal(err)
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		defer c.Close()
		for seq := int64(1); ; seq++ {
			select {
			case <-w.stop:
				return
			default:
			}
			for _, q := range []string{
				"START TRANSACTION",
				fmt.Sprintf("INSERT INTO txlog VALUES (%d, 'tx %d')", seq, seq),
				fmt.Sprintf("UPDATE acct SET n = n + 1 WHERE id = %d", seq%10),
				fmt.Sprintf("UPDATE big SET amount = amount + 1 WHERE id = %d", seq*7919%bigRows+1),
				"COMMIT",
			} {
				if _, err := c.Execute(q); err != nil {
					w.err.Store(err)
					return
				}
			}
			w.n.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return w
}

func (w *writer) finish(t *testing.T) {
	t.Helper()
	close(w.stop)
	w.wg.Wait()
	if err, _ := w.err.Load().(error); err != nil {
		t.Fatalf("source writer: %v", err)
	}
}

func (p *pipeline) dstCount(table string) int64 {
	n, _ := strconv.ParseInt(p.dstString("SELECT count(*)::text FROM "+table), 10, 64)
	return n
}

// kill -9 during the snapshot and again while streaming, with transactions
// running all along: after the last restart the target equals the source,
// and the position in KV is exactly the source's last transaction.
func TestKillDuringSnapshotAndStreaming(t *testing.T) {
	p := newPipeline(t)
	p.src(`CREATE TABLE big (id BIGINT PRIMARY KEY, payload VARCHAR(40), amount DECIMAL(18,4))`)
	p.dst(`CREATE TABLE big (id bigint PRIMARY KEY, payload text, amount numeric(18,4))`)
	p.src(fmt.Sprintf(`INSERT INTO big SELECT seq, MD5(seq), seq * 1.5 FROM seq_1_to_%d`, bigRows))
	p.src(`CREATE TABLE txlog (seq BIGINT PRIMARY KEY, note VARCHAR(40))`)
	p.dst(`CREATE TABLE txlog (seq bigint PRIMARY KEY, note text)`)
	p.src(`CREATE TABLE acct (id INT PRIMARY KEY, n INT NOT NULL)`)
	p.dst(`CREATE TABLE acct (id int PRIMARY KEY, n int NOT NULL)`)
	p.src(`INSERT INTO acct SELECT seq, 0 FROM seq_0_to_9`)
	// Slow reads keep the snapshot running long enough to be killed in it.
	p.writeConfig("mode: snapshot+cdc\nchunkRows: 10000\nsnapshotWorkers: 2\nreadRowsPerSecond: 40000")
	w := startWriter(p)
	defer func() {
		select {
		case <-w.stop:
		default:
			close(w.stop)
			w.wg.Wait()
		}
	}()

	pr := p.migrate()
	eventually(t, 2*time.Minute, "part of the snapshot on the target", func() bool { return p.dstCount("big") >= 20000 || pr.Exited() })
	if got := p.dstCount("big"); got >= bigRows || pr.Exited() {
		t.Fatalf("the snapshot was not in progress when killed (%d rows on the target):\n%s", got, pr.Output())
	}
	pr.Kill9()

	pr = p.migrate()
	eventually(t, 3*time.Minute, "the snapshot to finish", func() bool {
		_, done, _, _ := p.tryStatus()
		return done || pr.Exited()
	})
	before := p.dstCount("txlog")
	eventually(t, 2*time.Minute, "changes streaming to the target", func() bool { return p.dstCount("txlog") > before+50 || pr.Exited() })
	if pr.Exited() {
		t.Fatalf("migrate exited:\n%s", pr.Output())
	}
	pr.Kill9()

	pr = p.migrate()
	// Let the restarted producer stream for a while before the writes stop.
	before = p.dstCount("txlog")
	eventually(t, 2*time.Minute, "changes after the restart", func() bool { return p.dstCount("txlog") > before+50 || pr.Exited() })
	w.finish(t)
	p.waitCaughtUp()
	p.assertSame("big", "CONCAT_WS('|', id, payload, amount)", "concat_ws('|', id, payload, amount)", "id")
	p.assertSame("txlog", "CONCAT_WS('|', seq, note)", "concat_ws('|', seq, note)", "seq")
	p.assertSame("acct", "CONCAT_WS('|', id, n)", "concat_ws('|', id, n)", "id")
	if n := p.dstCount("txlog"); n != w.n.Load() {
		t.Errorf("target has %d transactions of %d", n, w.n.Load())
	}
	// Two kills, and yet every transaction's events are in the stream
	// once: what the restarted producers published again was dropped.
	if rep := p.repeatedChanges(); len(rep) > 0 {
		t.Errorf("%d change events are in the stream more than once, e.g. %v", len(rep), rep[:min(5, len(rep))])
	}
	// The saved position is exactly the source's newest transaction: no
	// gap, and nothing beyond it.
	want := p.srcString("SELECT @@gtid_binlog_pos")
	eventually(t, 30*time.Second, "the saved GTID position to reach "+want, func() bool {
		got, _, _, _ := p.tryStatus()
		return got == want
	})
	pr.Stop(t)
	if got, _ := p.status(); got != want {
		t.Errorf("position after stop %q, want %q", got, want)
	}
}

// defaultGTIDSet is where a first start begins; a resume ignores it. An
// unsupported schema change then stops the stream with the position
// before it saved.
func TestDefaultGTIDSetAndUnsupportedDDL(t *testing.T) {
	p := newPipeline(t)
	p.src(`CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))`)
	p.dst(`CREATE TABLE t (id int PRIMARY KEY, v text)`)
	for i := 1; i <= 3; i++ {
		p.src(fmt.Sprintf("INSERT INTO t VALUES (%d, 'before')", i))
	}
	start := p.srcString("SELECT @@gtid_binlog_pos")
	p.src("INSERT INTO t VALUES (4, 'after')")
	p.src("INSERT INTO t VALUES (5, 'after')")
	p.writeConfig("mode: cdc\ndefaultGTIDSet: \"" + start + "\"")
	pr := p.migrate()
	p.src("INSERT INTO t VALUES (6, 'live')")
	eventually(t, time.Minute, "rows 4-6 on the target", func() bool { return p.dstCount("t") >= 3 || pr.Exited() })
	p.waitCaughtUp()
	if got := p.dstString("SELECT string_agg(id::text, ',' ORDER BY id) FROM t"); got != "4,5,6" {
		t.Fatalf("target rows %q, want 4,5,6 (the changes after defaultGTIDSet %s)", got, start)
	}
	pr.Stop(t)

	// A resume ignores defaultGTIDSet, even one that would replay from
	// the beginning.
	domain := strings.SplitN(start, "-", 2)[0]
	p.writeConfig("mode: cdc\ndefaultGTIDSet: \"" + domain + "-1-1\"")
	p.src("INSERT INTO t VALUES (7, 'resumed')")
	pr = p.migrate()
	p.waitCaughtUp()
	if got := p.dstString("SELECT string_agg(id::text, ',' ORDER BY id) FROM t"); got != "4,5,6,7" {
		t.Fatalf("target rows %q after resume, want 4,5,6,7", got)
	}
	// ADD COLUMN and DROP COLUMN keep the stream going, and the schema
	// record in KV follows.
	p.dst("ALTER TABLE t ADD COLUMN w int")
	p.src("ALTER TABLE t ADD COLUMN w INT")
	p.src("INSERT INTO t VALUES (8, 'added', 80)")
	eventually(t, 30*time.Second, "the added column in KV", func() bool { return strings.Join(p.schemaColumns("t"), ",") == "id,v,w" })
	p.src("ALTER TABLE t DROP COLUMN w")
	p.src("INSERT INTO t VALUES (9, 'dropped')")
	p.waitCaughtUp()
	if got := p.dstString("SELECT string_agg(id || ':' || coalesce(w::text, '-'), ',' ORDER BY id) FROM t WHERE id >= 8"); got != "8:80,9:-" {
		t.Fatalf("after ADD/DROP COLUMN the target holds %q, want 8:80,9:-", got)
	}
	if got := strings.Join(p.schemaColumns("t"), ","); got != "id,v" {
		t.Fatalf("schema record after DROP COLUMN: %s", got)
	}
	want := p.srcString("SELECT @@gtid_binlog_pos")

	// An unsupported change stops the stream, naming the statement, at the
	// position before it.
	p.src("ALTER TABLE t MODIFY v VARCHAR(40)")
	select {
	case <-pr.Done():
	case <-time.After(time.Minute):
		t.Fatalf("migrate did not stop on an unsupported schema change:\n%s", pr.Output())
	}
	if code := pr.ExitCode(); code == 0 || !strings.Contains(pr.Output(), "unsupported schema change on t") {
		t.Fatalf("migrate exited %d; want a failure naming the schema change:\n%s", code, pr.Output())
	}
	if got, _ := p.status(); got != want {
		t.Fatalf("saved position %q, want %q (the transaction before the schema change)", got, want)
	}
}

// Zero dates stop the run naming table.column and row by default, and
// become NULL under zeroDates: null; TIME beyond a day travels as an
// interval.
func TestZeroDatesAndDurations(t *testing.T) {
	p := newPipeline(t)
	p.src("CREATE TABLE z (id INT PRIMARY KEY, d DATE, dt DATETIME, tm TIME)")
	p.dst("CREATE TABLE z (id int PRIMARY KEY, d date, dt timestamp, tm interval)")
	p.src("SET SESSION sql_mode = '';\nINSERT INTO z VALUES (1, '0000-00-00', '0000-00-00 00:00:00', '-838:59:59'), (2, '2024-01-01', '2024-01-01 10:00:00', '100:00:00')")
	p.writeConfig("mode: snapshot")
	code, out := p.run(2*time.Minute, "migrate", "--config", p.cfgPath)
	if code == 0 || !strings.Contains(out, "z.d holds a zero date") || !strings.Contains(out, "row id=1") {
		t.Fatalf("migrate exited %d; want a failure naming z.d and row id=1:\n%s", code, out)
	}
	p.writeConfig("mode: snapshot\nzeroDates: \"null\"")
	if code, out := p.run(2*time.Minute, "migrate", "--config", p.cfgPath); code != 0 {
		t.Fatalf("migrate with zeroDates: null exited %d:\n%s", code, out)
	}
	got := p.dstString("SELECT string_agg(concat_ws('|', id, coalesce(d::text, 'NULL'), coalesce(dt::text, 'NULL'), tm), ',' ORDER BY id) FROM z")
	if want := "1|NULL|NULL|-838:59:59,2|2024-01-01|2024-01-01 10:00:00|100:00:00"; got != want {
		t.Fatalf("target rows %q, want %q", got, want)
	}
	// validate reads zero dates as NULL and long TIMEs as intervals too.
	if code, out, _ := p.validate(); code != 0 {
		t.Fatalf("validate exited %d, want 0:\n%s", code, out)
	}
	p.dst("UPDATE z SET tm = '100:00:01' WHERE id = 2")
	if code, out, rep := p.validate(); code != 1 || rep.table("z").Mismatched != 1 || !strings.Contains(out, "tm: source") {
		t.Fatalf("validate of a changed interval exited %d, want 1 naming tm:\n%s", code, out)
	}
}

// A snapshot killed halfway is finished in a fresh snapshot, newer than the
// binlog position the first one was consistent with. A row of a chunk still
// to read, changed twice meanwhile, must not reach the target first at its
// newest value and then go back to the older one when the binlog replays
// the changes: the changes the fresh snapshot contains are published before
// its rows.
func TestResumedSnapshotNeverGoesBack(t *testing.T) {
	p := newPipeline(t)
	p.src(faultSrcDDL)
	p.dst(faultDstDDL)
	p.dst(faultGuard)
	p.src(`INSERT INTO f SELECT seq, seq, MD5(seq) FROM seq_1_to_20000`)
	useFerryUser(p)
	// One slow reader: the last chunk is read seconds after the first.
	p.writeConfig("mode: snapshot+cdc\nchunkRows: 2000\nsnapshotWorkers: 1\nreadRowsPerSecond: 5000")
	pr := p.migrate()
	eventually(t, time.Minute, "the first chunks on the target", func() bool { return p.dstCount("f") >= 2000 || pr.Exited() })
	pr.Kill9()
	if got := p.dstCount("f"); got >= 20000 {
		t.Fatalf("the snapshot finished before it was killed (%d rows)", got)
	}
	p.src(`UPDATE f SET ver = 100001, val = 'first' WHERE id = 19999;
UPDATE f SET ver = 100002, val = 'second' WHERE id = 19999;
UPDATE f SET ver = 100003 WHERE id = 20000;
DELETE FROM f WHERE id = 20000;
INSERT INTO f VALUES (20000, 100004, 'again')`)
	pr = p.migrate()
	// The resumed snapshot loses its MariaDB sessions halfway: ferry
	// starts the producer again itself (the process stays up), and that
	// second resume catches up again before reading on.
	eventually(t, time.Minute, "the resumed snapshot reading", func() bool {
		return p.dstCount("f") >= 12000 || pr.Exited()
	})
	p.src(`UPDATE f SET ver = 100005, val = 'third' WHERE id = 19999;
UPDATE f SET ver = 100006, val = 'fourth' WHERE id = 19999`)
	// On a busy machine the snapshot may be over by now; then the cut hits
	// the binlog stream, which the replication client reconnects itself.
	during := !strings.Contains(pr.Output(), "snapshot complete")
	if n := killSessions(t, ferryUser); n == 0 {
		t.Fatal("no MariaDB session of ferry's user to kill")
	}
	p.waitCaughtUp()
	assertSameRows(t, p)
	assertNoRegression(t, p)
	if pr.Exited() {
		t.Fatalf("migrate exited when its MariaDB sessions were killed:\n%s", pr.Output())
	}
	out := pr.Output()
	if during && !strings.Contains(out, "source stopped on a connection failure") {
		t.Errorf("no restart of the producer after its sessions were killed during the snapshot:\n%s", out)
	}
	if n := strings.Count(out, "publishing the changes the resumed snapshot already contains"); n < 1 {
		t.Errorf("the resumed snapshot did not catch the stream up first:\n%s", out)
	}
	pr.Stop(t)
}
