package mysql

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
)

// The fault suite for the MySQL/MariaDB source: randomized trials in which
// MariaDB receives a steady stream of updates, deletes and upserts (half of
// them to a hot set of keys) while ferry moves the table into PostgreSQL,
// and at a random moment one fault strikes. After recovery the target must
// equal the source, and no key may ever have gone back to an older value on
// the target during the run (a trigger on the target records every
// regression as it happens).
//
// FERRY_FAULT_TRIALS sets the number of trials (default: one of each fault);
// FERRY_FAULT_SEED replays one trial: every trial logs its seed and fault.

// The faults this family is tried with: all of them.
var mysqlFaults = ferrytest.AllFaults

func TestFaultTrials(t *testing.T) {
	ferrytest.Trials(t, mysqlFaults, runFaultTrial)
}

const (
	faultSrcDDL = `CREATE TABLE f (id INT PRIMARY KEY, ver BIGINT NOT NULL, val VARCHAR(32) NOT NULL)`
	faultDstDDL = `CREATE TABLE f (id int PRIMARY KEY, ver bigint NOT NULL, val text NOT NULL)`
	// faultKeys is the key space; half of it exists at the start, enough
	// rows that an early fault lands inside the snapshot.
	faultKeys = 40_000
	// ferryUser is the MariaDB account ferry connects as, so that the
	// source-conn-cut fault can kill its sessions only, never the writer's.
	ferryUser = "ferry"
	ferryPass = "ferry-pw"
)

// faultGuard is the target's regression guard on table f.
var faultGuard = ferrytest.PGGuard("f")

func runFaultTrial(t *testing.T, seed uint64, kind ferrytest.Fault, rng *rand.Rand) {
	p := newPipeline(t)
	p.src(faultSrcDDL)
	p.dst(faultDstDDL)
	p.dst(faultGuard)
	p.src(fmt.Sprintf(`INSERT INTO f SELECT seq, seq, MD5(seq) FROM seq_1_to_%d`, faultKeys/2))
	useFerryUser(p)

	var natsSrv *ferrytest.NATS
	if kind != ferrytest.KillAll {
		natsSrv = ferrytest.StartNATS(t)
		p.natsURL = natsSrv.URL
	}
	p.writeConfig("mode: snapshot+cdc\nchunkRows: 2000\nsnapshotWorkers: 2")

	w := startFaultWriter(t, p, rng.Uint64())
	defer w.halt()
	var procs []*proc
	if kind == ferrytest.KillAll {
		procs = []*proc{p.migrate()}
	} else {
		procs = []*proc{
			p.start("produce", "--config", p.cfgPath, "--source", "my"),
			p.start("apply", "--config", p.cfgPath, "--target", "dst"),
		}
	}

	// The fault strikes at a random moment in the first few seconds: during
	// the snapshot, at the switch to the binlog, or while streaming. A third
	// of the trials strike within the first 800 ms, where the snapshot of
	// this table runs.
	time.Sleep(ferrytest.Moment(rng, 800*time.Millisecond, 5*time.Second) + 100*time.Millisecond)
	// The producer logs the snapshot's end: whether the fault struck in it is
	// what the trial's log says, to tell later which path a failure took.
	phase := "while streaming"
	if !strings.Contains(procs[0].Output(), "snapshot complete") {
		phase = "during the snapshot"
	}
	t.Logf("the fault strikes %s", phase)
	ferrytest.Strike(t, kind, rng, procs, natsSrv,
		func() { t.Logf("killed %d MariaDB sessions of %s", killSessions(t, ferryUser), ferryUser) },
		func() { t.Logf("terminated %d PostgreSQL backends", terminateBackends(t, p.dstDB)) })
	if kind == ferrytest.KillAll {
		// As p.migrate does: a status run next must reach this
		// process's embedded NATS, not host one of its own.
		ferrytest.WaitListening(t, procs[0], p.natsPort, time.Minute)
	}

	// A process that gave up on a broken connection exits non-zero; an
	// operator (or systemd, or Kubernetes) starts it again. The watcher
	// does that until the pipeline has caught up.
	watcher := ferrytest.Watch(t, procs...)
	// Changes keep coming for a while after the fault.
	time.Sleep(2 * time.Second)
	w.finish(t)
	p.waitCaughtUp()
	procs, restarts := watcher.Stop()
	if restarts > 0 {
		t.Logf("%d processes were started again after exiting", restarts)
	}
	assertSameRows(t, p)
	assertNoRegression(t, p)
	for _, pr := range procs {
		pr.Stop(t)
	}
}

// useFerryUser makes ferry connect to the source as ferryUser.
func useFerryUser(p *pipeline) {
	p.t.Helper()
	p.src(fmt.Sprintf(`CREATE USER IF NOT EXISTS '%s'@'%%' IDENTIFIED BY '%s';
GRANT ALL PRIVILEGES ON *.* TO '%s'@'%%'`, ferryUser, ferryPass, ferryUser))
	p.srcDSN = fmt.Sprintf("mysql://%s:%s@%s/%s", ferryUser, ferryPass, srcServer.Addr(), p.srcDB)
}

// killSessions ends every MariaDB session of user, as a DBA's KILL or a
// network cut would: the binlog dump, the snapshot readers, the catalog
// connection.
func killSessions(t *testing.T, user string) int {
	t.Helper()
	c, err := srcServer.Connect("")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, err := c.Execute(`SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?`, user)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for i := range r.RowNumber() {
		id, _ := r.GetUint(i, 0)
		// A session may have ended on its own since the list was read.
		if _, err := c.Execute(fmt.Sprintf("KILL CONNECTION %d", id)); err == nil {
			n++
		}
	}
	return n
}

// terminateBackends ends every connection to the target database but this
// one.
func terminateBackends(t *testing.T, db string) int {
	t.Helper()
	ctx := context.Background()
	conn, err := dstServer.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, db).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// assertSameRows compares table f row by row on both sides and names the
// keys that are missing, extra or different on the target.
func assertSameRows(t *testing.T, p *pipeline) {
	t.Helper()
	src := map[int64]string{}
	r, err := srcServer.Query(p.srcDB, `SELECT id, ver, val FROM f`)
	if err != nil {
		t.Fatal(err)
	}
	for i := range r.RowNumber() {
		id, _ := r.GetInt(i, 0)
		ver, _ := r.GetInt(i, 1)
		val, _ := r.GetString(i, 2)
		src[id] = fmt.Sprintf("%d|%s", ver, val)
	}
	ctx := context.Background()
	conn, err := dstServer.Connect(ctx, p.dstDB)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT id, ver, val FROM f`)
	if err != nil {
		t.Fatal(err)
	}
	dst := map[int64]string{}
	var id, ver int64
	var val string
	if _, err := pgx.ForEachRow(rows, []any{&id, &ver, &val}, func() error {
		dst[id] = fmt.Sprintf("%d|%s", ver, val)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var missing, extra, different []string
	for k, v := range src {
		d, ok := dst[k]
		switch {
		case !ok:
			missing = append(missing, fmt.Sprintf("id=%d", k))
		case d != v:
			different = append(different, fmt.Sprintf("id=%d (source %s, target %s)", k, v, d))
		}
	}
	for k := range dst {
		if _, ok := src[k]; !ok {
			extra = append(extra, fmt.Sprintf("id=%d", k))
		}
	}
	for _, l := range []struct {
		what string
		keys []string
	}{{"missing", missing}, {"extra", extra}, {"different", different}} {
		if len(l.keys) > 0 {
			sort.Strings(l.keys)
			t.Errorf("%d rows %s on the target: %s", len(l.keys), l.what, strings.Join(l.keys[:min(10, len(l.keys))], ", "))
		}
	}
	t.Logf("%d rows on both sides", len(src))
}

// assertNoRegression fails when the target's guard saw a key go back.
func assertNoRegression(t *testing.T, p *pipeline) {
	t.Helper()
	ctx := context.Background()
	conn, err := dstServer.Connect(ctx, p.dstDB)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	n, regs, err := ferrytest.PGRegressions(ctx, conn, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range regs {
		t.Error(r)
	}
	if n > len(regs) {
		t.Errorf("%d regressions in all", n)
	}
}

// faultWriter changes the source steadily as root (not ferry's user):
// transactions of 1–5 updates, deletes and upserts, half of them to a hot
// set of 200 keys, each change with a fresh version number from one
// counter, so any older value showing up later on the target is a
// regression.
type faultWriter struct {
	stop chan struct{}
	done chan struct{}
	n    atomic.Int64
	err  error
}

func startFaultWriter(t *testing.T, p *pipeline, seed uint64) *faultWriter {
	t.Helper()
	c, err := srcServer.Connect(p.srcDB)
	if err != nil {
		t.Fatal(err)
	}
	w := &faultWriter{stop: make(chan struct{}), done: make(chan struct{})}
	rng := rand.New(rand.NewPCG(seed, 7))
	ver := int64(1_000_000)
	go func() {
		defer close(w.done)
		defer c.Close()
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			stmts := []string{"START TRANSACTION"}
			for range 1 + rng.IntN(5) {
				id := 1 + rng.IntN(faultKeys)
				if rng.IntN(2) == 0 {
					id = 1 + rng.IntN(200)
				}
				ver++
				switch r := rng.IntN(10); {
				case r < 5:
					stmts = append(stmts, fmt.Sprintf("UPDATE f SET ver = %d, val = MD5(%d) WHERE id = %d", ver, ver, id))
				case r < 7:
					stmts = append(stmts, fmt.Sprintf("DELETE FROM f WHERE id = %d", id))
				default:
					stmts = append(stmts, fmt.Sprintf("INSERT INTO f VALUES (%d, %d, MD5(%d)) ON DUPLICATE KEY UPDATE ver = VALUES(ver), val = VALUES(val)", id, ver, ver))
				}
			}
			for _, q := range append(stmts, "COMMIT") {
				if _, err := c.Execute(q); err != nil {
					w.err = fmt.Errorf("%s: %w", q, err)
					_, _ = c.Execute("ROLLBACK")
					return
				}
			}
			w.n.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return w
}

// finish stops the writer and fails the test if it failed.
func (w *faultWriter) finish(t *testing.T) {
	t.Helper()
	w.halt()
	if w.err != nil {
		t.Fatalf("source writer: %v", w.err)
	}
	t.Logf("source writer committed %d transactions", w.n.Load())
}

// halt stops the writer if it still runs.
func (w *faultWriter) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}
