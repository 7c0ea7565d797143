package ferrytest

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// FailWatcher starts again any watched process that exits non-zero, as
// Watcher does, but leaves a process that exited 0 alone: in a pipeline whose
// sources are snapshot-only, `ferry produce` exits 0 once the snapshot is
// published and `ferry migrate` once every row is applied, and starting them
// again would only repeat that.
type FailWatcher struct {
	t        testing.TB
	mu       sync.Mutex
	procs    []*Proc
	restarts int
	stop     chan struct{}
	stopOnce sync.Once
	stopped  chan struct{}
}

// WatchFailures starts watching procs. The watching ends with Stop, or when
// the test ends (a test that failed before Stop must not leave a watcher
// that logs to it, or starts processes for it, afterwards).
func WatchFailures(t testing.TB, procs ...*Proc) *FailWatcher {
	w := &FailWatcher{t: t, procs: procs, stop: make(chan struct{}), stopped: make(chan struct{})}
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
// WatchFailures) has exited 0.
func (w *FailWatcher) Finished(i int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.procs[i].Exited() && w.procs[i].ExitCode() == 0
}

// Procs returns the processes now watched (in the order given).
func (w *FailWatcher) Procs() []*Proc {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*Proc(nil), w.procs...)
}

// Stop ends the watching and returns the processes (in the order given to
// WatchFailures) and how many were started again.
func (w *FailWatcher) Stop() ([]*Proc, int) {
	w.stopOnce.Do(func() { close(w.stop) })
	<-w.stopped
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.procs, w.restarts
}

// PeerPorts returns the remote ports of the established TCP connections that
// process pid holds to 127.0.0.1, read from /proc: what a test needs to see
// that a client reaches a server only through a Proxy (a driver that
// discovers the server's real address would bypass it, and a cut of the
// proxy would then miss those connections).
func PeerPorts(pid int) ([]int, error) {
	fds, err := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		l, err := os.Readlink(fd)
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ports []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 || fs[3] != "01" || !inodes[fs[9]] { // 01: ESTABLISHED
			continue
		}
		ip, port, ok := strings.Cut(fs[2], ":")
		if !ok || ip != "0100007F" { // 127.0.0.1, little-endian hex
			continue
		}
		p, err := strconv.ParseUint(port, 16, 16)
		if err != nil {
			return nil, fmt.Errorf("/proc/%d/net/tcp: bad port in %q", pid, fs[2])
		}
		ports = append(ports, int(p))
	}
	return ports, sc.Err()
}
