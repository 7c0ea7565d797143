package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/streams"
)

// The fault suite: randomized trials in which the source receives a steady
// stream of inserts, updates and deletes (many to the same keys) while ferry
// runs, and at a random moment one fault strikes. After recovery the target
// must equal the source, and no key may ever have gone back to an older
// value on the target during the run (a trigger on the target records every
// regression as it happens).
//
// FERRY_FAULT_TRIALS sets the number of trials (default: one of each fault);
// FERRY_FAULT_SEED replays one trial: every trial logs its seed and fault.

// faultKind is one way things break.
type faultKind int

const (
	faultKillAll      faultKind = iota // kill -9 of the single migrate process (embedded NATS dies too)
	faultKillProducer                  // kill -9 of the producer process only
	faultKillApplier                   // kill -9 of the applier process only
	faultNATSRestart                   // restart of the external NATS server
	faultSourceCut                     // ferry's source connections terminated by the server
	faultTargetCut                     // ferry's target connections terminated by the server
	faultKinds
)

func (k faultKind) String() string {
	return [...]string{"kill-all", "kill-producer", "kill-applier", "nats-restart", "source-conn-cut", "target-conn-cut"}[k]
}

func TestFaultTrials(t *testing.T) {
	servers(t)
	trials := int(faultKinds)
	if s := os.Getenv("FERRY_FAULT_TRIALS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("FERRY_FAULT_TRIALS=%q is not a positive number", s)
		}
		trials = n
	}
	if s := os.Getenv("FERRY_FAULT_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FERRY_FAULT_SEED=%q is not a number", s)
		}
		runFaultTrial(t, seed)
		return
	}
	base := uint64(time.Now().UnixNano())
	results := map[faultKind][2]int{} // kind → passed, failed
	for i := range trials {
		seed := base + uint64(i)
		// Cycle the kinds so a short run covers each once; the seed picks
		// the moment and the mix of changes.
		seed = seed - seed%uint64(faultKinds) + uint64(i%int(faultKinds))
		ok := t.Run(fmt.Sprintf("trial%03d", i), func(t *testing.T) { runFaultTrial(t, seed) })
		r := results[faultKind(seed%uint64(faultKinds))]
		if ok {
			r[0]++
		} else {
			r[1]++
		}
		results[faultKind(seed%uint64(faultKinds))] = r
	}
	for k := range faultKinds {
		if r, ok := results[k]; ok {
			t.Logf("fault %-16s passed %d, failed %d", k, r[0], r[1])
		}
	}
}

// faultSetup is the source table and the target's regression guard.
const faultDDL = `CREATE TABLE f (id int PRIMARY KEY, ver bigint NOT NULL, val text NOT NULL)`

// faultGuard records, on the target, every write that would take a key back
// to an older version. fault_seen keeps the highest version each key ever
// had, across deletes, so an old insert replayed after a delete is caught
// too. ENABLE ALWAYS keeps the trigger firing whatever the session's
// replication role.
const faultGuard = `
CREATE TABLE fault_seen (id int PRIMARY KEY, ver bigint NOT NULL);
CREATE TABLE fault_regress (id int, seen bigint, got bigint, at timestamptz DEFAULT now());
CREATE FUNCTION fault_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE m bigint;
BEGIN
  SELECT ver INTO m FROM fault_seen WHERE id = NEW.id;
  IF m IS NOT NULL AND NEW.ver < m THEN
    INSERT INTO fault_regress (id, seen, got) VALUES (NEW.id, m, NEW.ver);
  END IF;
  INSERT INTO fault_seen VALUES (NEW.id, NEW.ver)
    ON CONFLICT (id) DO UPDATE SET ver = greatest(fault_seen.ver, EXCLUDED.ver);
  RETURN NEW;
END $$;
CREATE TRIGGER fault_guard BEFORE INSERT OR UPDATE ON f FOR EACH ROW EXECUTE FUNCTION fault_guard();
ALTER TABLE f ENABLE ALWAYS TRIGGER fault_guard;`

const faultKeys = 40_000

func runFaultTrial(t *testing.T, seed uint64) {
	kind := faultKind(seed % uint64(faultKinds))
	rng := rand.New(rand.NewPCG(seed, seed>>32|1))
	t.Logf("seed %d: fault %s (replay with FERRY_FAULT_SEED=%d)", seed, kind, seed)

	p := newPipeline(t)
	p.both(faultDDL)
	p.dstExec(faultGuard)
	// Enough rows that an early fault lands inside the snapshot.
	p.srcExec(fmt.Sprintf(`INSERT INTO f SELECT i, i, md5(i::text) FROM generate_series(1, %d) i`, faultKeys/2))

	var natsSrv *restartableNATS
	url := ""
	if kind != faultKillAll {
		natsSrv = startRestartableNATS(t)
		url = natsSrv.url
	}
	p.writeConfig("mode: snapshot+cdc\nchunkRows: 2000\nsnapshotWorkers: 2", url)

	w := startFaultWriter(t, p, rng.Uint64())
	var procs []*proc
	startAll := func() {
		if kind == faultKillAll {
			procs = []*proc{p.start("migrate", "--config", p.cfgPath)}
			return
		}
		procs = []*proc{
			p.start("produce", "--config", p.cfgPath, "--source", "pg"),
			p.start("apply", "--config", p.cfgPath, "--target", "dst"),
		}
	}
	startAll()

	// The fault strikes at a random moment in the first few seconds: during
	// the snapshot, at the switch to the change stream, or while streaming.
	// A third of the trials strike within the first 800 ms, where the
	// snapshot of this table runs.
	at := time.Duration(rng.Int64N(int64(5 * time.Second)))
	if rng.IntN(3) == 0 {
		at = time.Duration(rng.Int64N(int64(800 * time.Millisecond)))
	}
	time.Sleep(at + 100*time.Millisecond)
	for i, pr := range procs {
		if pr.exited() {
			t.Fatalf("process %d exited before the fault:\n%s", i, pr.out.String())
		}
	}
	switch kind {
	case faultKillAll:
		procs[0].kill9()
		procs[0] = p.start("migrate", "--config", p.cfgPath)
	case faultKillProducer:
		procs[0].kill9()
		time.Sleep(time.Duration(rng.Int64N(int64(time.Second))))
		procs[0] = p.start("produce", "--config", p.cfgPath, "--source", "pg")
	case faultKillApplier:
		procs[1].kill9()
		time.Sleep(time.Duration(rng.Int64N(int64(time.Second))))
		procs[1] = p.start("apply", "--config", p.cfgPath, "--target", "dst")
	case faultNATSRestart:
		natsSrv.restart(t, time.Duration(rng.Int64N(int64(2*time.Second))))
	case faultSourceCut:
		terminateBackends(t, p.src.DSN(p.srcDB), p.srcDB, "application_name = 'ferry'")
	case faultTargetCut:
		terminateBackends(t, p.dst.DSN(p.dstDB), p.dstDB, "pid <> pg_backend_pid()")
	}

	// A process that gave up on a broken connection exits non-zero; an
	// operator (or systemd, or Kubernetes) starts it again. The watcher
	// does that until the pipeline has caught up.
	var mu sync.Mutex
	restarts := 0
	watch := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-watch:
				return
			case <-time.After(200 * time.Millisecond):
			}
			mu.Lock()
			for i, pr := range procs {
				if pr.exited() {
					t.Logf("process %d exited after the fault (code %d); starting it again. Its last words:\n%s", i, pr.cmd.ProcessState.ExitCode(), lastLines(pr.out.String(), 5))
					procs[i] = p.start(pr.cmd.Args[1:]...)
					restarts++
				}
			}
			mu.Unlock()
		}
	}()
	// Changes keep coming for a while after the fault.
	time.Sleep(2 * time.Second)
	w.finish(t)
	p.waitCaughtUp()
	close(watch)
	<-watched
	p.assertEqual("public.f", "id")
	if restarts > 0 {
		t.Logf("%d processes were started again after exiting", restarts)
	}
	regressed := assertNoRegression(t, p)
	for _, pr := range procs {
		pr.stop(t)
	}
	if len(regressed) > 0 && os.Getenv("FERRY_FAULT_DUMP") != "" && kind == faultKillAll {
		dumpKeyHistory(t, filepath.Join(p.dir, "nats"), regressed)
	}
}

// assertNoRegression fails when the target's guard saw a key go back, and
// returns those keys.
func assertNoRegression(t *testing.T, p *pipeline) map[int64]bool {
	t.Helper()
	conn, err := p.dst.Connect(context.Background(), p.dstDB)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), `SELECT id, seen, got FROM fault_regress ORDER BY at LIMIT 10`)
	if err != nil {
		t.Fatal(err)
	}
	type reg struct{ id, seen, got int64 }
	regs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (reg, error) {
		var g reg
		return g, r.Scan(&g.id, &g.seen, &g.got)
	})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[int64]bool{}
	for _, g := range regs {
		t.Errorf("key id=%d went back from version %d to %d on the target", g.id, g.seen, g.got)
		ids[g.id] = true
	}
	return ids
}

// terminateBackends ends the server's connections matching cond in db, as a
// network cut or a DBA would.
func terminateBackends(t *testing.T, dsn, db, cond string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	q := fmt.Sprintf(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND %s AND application_name <> 'fault-writer'`, cond)
	if err := conn.QueryRow(ctx, q, db).Scan(&n); err != nil {
		t.Fatal(err)
	}
	t.Logf("terminated %d backends", n)
}

// faultWriter changes the source steadily: updates, deletes and inserts,
// most to a small hot set of keys, each with a fresh version number from one
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
	cfg, err := pgx.ParseConfig(p.src.DSN(p.srcDB))
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = "fault-writer"
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := &faultWriter{stop: make(chan struct{}), done: make(chan struct{})}
	rng := rand.New(rand.NewPCG(seed, 7))
	ver := int64(1_000_000)
	go func() {
		defer close(w.done)
		defer conn.Close(context.Background())
		ctx := context.Background()
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			// A transaction of 1–5 changes; a hot set of 200 keys gets half
			// of them so one key sees many changes in a row.
			tx, err := conn.Begin(ctx)
			if err != nil {
				w.err = err
				return
			}
			for range 1 + rng.IntN(5) {
				id := 1 + rng.IntN(faultKeys)
				if rng.IntN(2) == 0 {
					id = 1 + rng.IntN(200)
				}
				ver++
				switch r := rng.IntN(10); {
				case r < 5:
					_, err = tx.Exec(ctx, `UPDATE f SET ver = $2, val = md5($2::bigint::text) WHERE id = $1`, id, ver)
				case r < 7:
					_, err = tx.Exec(ctx, `DELETE FROM f WHERE id = $1`, id)
				default:
					_, err = tx.Exec(ctx, `INSERT INTO f VALUES ($1, $2, md5($2::bigint::text)) ON CONFLICT (id) DO UPDATE SET ver = EXCLUDED.ver, val = EXCLUDED.val`, id, ver)
				}
				if err != nil {
					_ = tx.Rollback(ctx)
					w.err = err
					return
				}
			}
			if err := tx.Commit(ctx); err != nil {
				w.err = err
				return
			}
			w.n.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return w
}

func (w *faultWriter) finish(t *testing.T) {
	t.Helper()
	close(w.stop)
	<-w.done
	if w.err != nil {
		t.Fatalf("source writer: %v", w.err)
	}
	t.Logf("source writer committed %d transactions", w.n.Load())
}

// restartableNATS is an external NATS server that the test can stop and
// start again on the same port and store, as an operator restart would.
type restartableNATS struct {
	mu   sync.Mutex
	opts *server.Options
	srv  *server.Server
	url  string
}

func startRestartableNATS(t *testing.T) *restartableNATS {
	t.Helper()
	n := &restartableNATS{opts: &server.Options{
		Host: "127.0.0.1", Port: freePort(t), JetStream: true,
		StoreDir: filepath.Join(t.TempDir(), "js"), NoSigs: true, NoLog: true,
	}}
	n.start(t)
	n.url = n.srv.ClientURL()
	t.Cleanup(func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		n.srv.Shutdown()
	})
	return n
}

func (n *restartableNATS) start(t *testing.T) {
	t.Helper()
	srv, err := server.NewServer(n.opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(20 * time.Second) {
		t.Fatal("NATS server did not start")
	}
	n.srv = srv
}

// restart shuts the server down, waits down for the given time, and starts
// it again with the same store.
func (n *restartableNATS) restart(t *testing.T, down time.Duration) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	time.Sleep(down)
	n.start(t)
}

// dumpKeyHistory prints, for a failed trial, every event of the given keys
// in the embedded server's stream, in stream order, with the version each
// carried: what a reader needs to see how a key went back.
func dumpKeyHistory(t *testing.T, storeDir string, ids map[int64]bool) {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: storeDir, ServerName: "ferry", NoSigs: true, NoLog: true})
	if err != nil {
		t.Log(err)
		return
	}
	go srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		return
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Log(err)
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, streams.StreamName("pg"))
	if err != nil {
		t.Log(err)
		return
	}
	info, _ := st.Info(ctx)
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		events, err := streams.Decode(m.Data)
		if err != nil {
			continue
		}
		for _, e := range events.GetEvents() {
			id := e.GetKey().GetValues()[0].GetInt()
			if !ids[id] {
				continue
			}
			ver := int64(-1)
			for i, n := range e.GetAfter().GetNames() {
				if n == "ver" {
					ver = e.GetAfter().GetValues()[i].GetInt()
				}
			}
			t.Logf("seq %d subj %s id %s: id=%d op=%s ver=%d pos=%s tx=%s/%d", seq, m.Subject, m.Header.Get("Nats-Msg-Id"), id, e.GetOp(), ver, e.GetPositionText(), e.GetTxId(), e.GetTxIndex())
		}
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
