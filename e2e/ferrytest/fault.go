package ferrytest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// The randomized fault suite's common parts. Each source family's e2e
// package writes its own trial (its source, its steady writer of changes,
// its equality check and its regression guard); the kinds of fault, the
// choice of trials and seeds, the external NATS server that can be
// restarted and the watcher that starts crashed processes again are shared
// here, so every family is tried the same way and a seed replays the same
// way everywhere.
//
// FERRY_FAULT_TRIALS sets the number of trials (default: one of each fault
// the family supports); FERRY_FAULT_SEED replays one trial, whose seed every
// trial logs.

// Fault is one way things break.
type Fault int

const (
	KillAll      Fault = iota // kill -9 of the single migrate process (embedded NATS dies too)
	KillProducer              // kill -9 of the producer process only
	KillApplier               // kill -9 of the applier process only
	NATSRestart               // restart of the external NATS server
	SourceCut                 // ferry's source connections cut
	TargetCut                 // ferry's target connections cut
)

func (f Fault) String() string {
	names := [...]string{"kill-all", "kill-producer", "kill-applier", "nats-restart", "source-conn-cut", "target-conn-cut"}
	if f < 0 || int(f) >= len(names) {
		return fmt.Sprintf("fault(%d)", int(f))
	}
	return names[f]
}

// AllFaults is every fault, in order.
var AllFaults = []Fault{KillAll, KillProducer, KillApplier, NATSRestart, SourceCut, TargetCut}

// FaultOf is the fault a seed picks among faults: a replayed seed strikes
// the same fault.
func FaultOf(seed uint64, faults []Fault) Fault { return faults[seed%uint64(len(faults))] }

// Trials runs the trials the environment asks for, cycling through faults so
// that a short run covers each once, and logs how each fault fared. trial
// gets the seed (which also picks the fault, see FaultOf) and a random
// source seeded from it.
func Trials(t *testing.T, faults []Fault, trial func(t *testing.T, seed uint64, fault Fault, rng *rand.Rand)) {
	t.Helper()
	run := func(t *testing.T, seed uint64) {
		f := FaultOf(seed, faults)
		t.Logf("seed %d: fault %s (replay with FERRY_FAULT_SEED=%d)", seed, f, seed)
		trial(t, seed, f, rand.New(rand.NewPCG(seed, seed>>32|1)))
	}
	if s := os.Getenv("FERRY_FAULT_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FERRY_FAULT_SEED=%q is not a number", s)
		}
		run(t, seed)
		return
	}
	trials := len(faults)
	if s := os.Getenv("FERRY_FAULT_TRIALS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("FERRY_FAULT_TRIALS=%q is not a positive number", s)
		}
		trials = n
	}
	k := uint64(len(faults))
	base := uint64(time.Now().UnixNano())
	passed, failed := map[Fault]int{}, map[Fault]int{}
	for i := range trials {
		seed := base + uint64(i)
		seed = seed - seed%k + uint64(i)%k
		if t.Run(fmt.Sprintf("trial%03d", i), func(t *testing.T) { run(t, seed) }) {
			passed[FaultOf(seed, faults)]++
		} else {
			failed[FaultOf(seed, faults)]++
		}
	}
	for _, f := range faults {
		if passed[f]+failed[f] > 0 {
			t.Logf("fault %-16s passed %d, failed %d", f, passed[f], failed[f])
		}
	}
}

// Moment is when a fault strikes after ferry started: a third of the time
// within early (where the family's snapshot runs), else within late.
func Moment(rng *rand.Rand, early, late time.Duration) time.Duration {
	if rng.IntN(3) == 0 {
		return time.Duration(rng.Int64N(int64(early)))
	}
	return time.Duration(rng.Int64N(int64(late)))
}

// NATS is an external NATS server that a test can stop and start again on
// the same port and store, as an operator restart would.
type NATS struct {
	mu   sync.Mutex
	opts *server.Options
	srv  *server.Server
	URL  string
	Port int
}

// StartNATS starts a JetStream server on a free port with its store in a
// temporary directory; it is shut down when the test ends.
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	port := FreePort(t)
	n := &NATS{Port: port, opts: &server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true,
		StoreDir: filepath.Join(t.TempDir(), "js"), NoSigs: true, NoLog: true,
	}}
	n.start(t)
	n.URL = n.srv.ClientURL()
	t.Cleanup(func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		n.srv.Shutdown()
	})
	return n
}

func (n *NATS) start(t testing.TB) {
	t.Helper()
	srv, err := server.NewServer(n.opts)
	if err != nil {
		t.Fatalf("creating the NATS server: %v", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(20 * time.Second) {
		t.Fatal("the NATS server did not start within 20s")
	}
	n.srv = srv
}

// Restart shuts the server down, keeps it down for the given time, and
// starts it again with the same store.
func (n *NATS) Restart(t testing.TB, down time.Duration) {
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	time.Sleep(down)
	n.start(t)
}

// Watcher starts again any watched process that exits non-zero, as systemd
// or Kubernetes would for a service that gave up on a broken connection, and
// logs the last words of each. A process that exited 0 is left alone: in a
// pipeline whose sources are snapshot-only, `ferry produce` exits 0 once the
// snapshot is published and `ferry migrate` once every row is applied, and
// starting them again would only repeat that.
type Watcher struct {
	t        testing.TB
	mu       sync.Mutex
	procs    []*Proc
	restarts int
	stop     chan struct{}
	stopOnce sync.Once
	stopped  chan struct{}
}

// Watch starts watching procs. The watching ends with Stop, or when
// the test ends (a test that failed before Stop must not leave a watcher
// that logs to it, or starts processes for it, afterwards).
func Watch(t testing.TB, procs ...*Proc) *Watcher {
	w := &Watcher{t: t, procs: procs, stop: make(chan struct{}), stopped: make(chan struct{})}
	t.Cleanup(func() { w.Stop() })
	go func() {
		defer close(w.stopped)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			w.mu.Lock()
			for i, pr := range w.procs {
				if pr.Exited() && pr.ExitCode() != 0 {
					w.t.Logf("ferry %v exited (code %d); starting it again. Its last words:\n%s", pr.Args(), pr.ExitCode(), LastLines(pr.Output(), 25))
					w.procs[i] = pr.Again(w.t)
					w.restarts++
				}
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// Finished reports whether the i-th process (in the order given to
// Watch) has exited 0.
func (w *Watcher) Finished(i int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.procs[i].Exited() && w.procs[i].ExitCode() == 0
}

// Procs returns the processes now watched (in the order given).
func (w *Watcher) Procs() []*Proc {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*Proc(nil), w.procs...)
}

// Stop ends the watching and returns the processes (in the order given to
// Watch) and how many were started again.
func (w *Watcher) Stop() ([]*Proc, int) {
	w.stopOnce.Do(func() { close(w.stop) })
	<-w.stopped
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.procs, w.restarts
}

// Strike makes fault happen to a pipeline. With KillAll, procs[0] is the
// single migrate process; otherwise procs[0] produces and procs[1] applies,
// on the external server nats. A killed process is started again (after a
// random pause of up to a second when the other one runs on), and procs is
// updated in place. cutSource and cutTarget end ferry's connections to the
// family's source and target, each the way that family can.
// A process that exited before the fault fails the test: the trial would
// prove nothing about that fault.
func Strike(t testing.TB, fault Fault, rng *rand.Rand, procs []*Proc, nats *NATS, cutSource, cutTarget func()) {
	t.Helper()
	for i, pr := range procs {
		if pr.Exited() {
			t.Fatalf("process %d (ferry %v) exited before the fault:\n%s", i, pr.Args(), pr.Output())
		}
	}
	switch fault {
	case KillAll:
		procs[0].Kill9()
		procs[0] = procs[0].Again(t)
	case KillProducer, KillApplier:
		i := 0
		if fault == KillApplier {
			i = 1
		}
		procs[i].Kill9()
		time.Sleep(time.Duration(rng.Int64N(int64(time.Second))))
		procs[i] = procs[i].Again(t)
	case NATSRestart:
		nats.Restart(t, time.Duration(rng.Int64N(int64(2*time.Second))))
	case SourceCut:
		cutSource()
	case TargetCut:
		cutTarget()
	}
}
