package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
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

// The faults this family is tried with: all of them.
var pgFaults = ferrytest.AllFaults

func TestFaultTrials(t *testing.T) {
	servers(t)
	ferrytest.Trials(t, pgFaults, runFaultTrial)
}

// faultDDL is the source table; the target also gets the regression guard
// (ferrytest.PGGuard).
const faultDDL = `CREATE TABLE f (id int PRIMARY KEY, ver bigint NOT NULL, val text NOT NULL)`

const faultKeys = 40_000

func runFaultTrial(t *testing.T, seed uint64, kind ferrytest.Fault, rng *rand.Rand) {
	p := newPipeline(t)
	p.both(faultDDL)
	p.dstExec(ferrytest.PGGuard("f"))
	// Enough rows that an early fault lands inside the snapshot.
	p.srcExec(fmt.Sprintf(`INSERT INTO f SELECT i, i, md5(i::text) FROM generate_series(1, %d) i`, faultKeys/2))

	var natsSrv *ferrytest.NATS
	url := ""
	if kind != ferrytest.KillAll {
		natsSrv = ferrytest.StartNATS(t)
		url = natsSrv.URL
	}
	p.writeConfig("mode: snapshot+cdc\nchunkRows: 2000\nsnapshotWorkers: 2", url)

	w := startFaultWriter(t, p, rng.Uint64())
	var procs []*proc
	startAll := func() {
		if kind == ferrytest.KillAll {
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
	time.Sleep(ferrytest.Moment(rng, 800*time.Millisecond, 5*time.Second) + 100*time.Millisecond)
	ferrytest.Strike(t, kind, rng, procs, natsSrv,
		func() { terminateBackends(t, p.src.DSN(p.srcDB), p.srcDB, "application_name = 'ferry'") },
		func() { terminateBackends(t, p.dst.DSN(p.dstDB), p.dstDB, "pid <> pg_backend_pid()") })

	// A process that gave up on a broken connection exits non-zero; an
	// operator (or systemd, or Kubernetes) starts it again. The watcher
	// does that until the pipeline has caught up.
	watcher := ferrytest.Watch(t, procs...)
	// Changes keep coming for a while after the fault.
	time.Sleep(2 * time.Second)
	w.finish(t)
	p.waitCaughtUp()
	procs, restarts := watcher.Stop()
	p.assertEqual("public.f", "id")
	if restarts > 0 {
		t.Logf("%d processes were started again after exiting", restarts)
	}
	regressed := assertNoRegression(t, p)
	for _, pr := range procs {
		pr.Stop(t)
	}
	if len(regressed) > 0 && os.Getenv("FERRY_FAULT_DUMP") != "" && kind == ferrytest.KillAll {
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
	n, regs, err := ferrytest.PGRegressions(context.Background(), conn, 10)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[int64]bool{}
	for _, g := range regs {
		t.Error(g)
		ids[g.ID] = true
	}
	if n > len(regs) {
		t.Errorf("... %d regressions in all", n)
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
