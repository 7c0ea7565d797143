// Package ferrytest drives the ferry binary from end-to-end tests: it builds
// it once per test package, runs it as subprocesses that a test can stop,
// kill -9 and start again, and provides the polling and port helpers every
// e2e package needs. Each e2e package keeps its own servers and assertions;
// what they share lives here so a fix reaches all of them.
package ferrytest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Build compiles cmd/ferry (given as a path relative to the calling test
// package, e.g. "../../cmd/ferry") into a fresh temporary directory. The
// returned cleanup removes it.
func Build(cmdDir string) (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "ferry-e2e-bin")
	if err != nil {
		return "", nil, fmt.Errorf("creating the binary's directory: %w", err)
	}
	bin = filepath.Join(dir, "ferry")
	build := exec.Command("go", "build", "-o", bin, cmdDir)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("building ferry from %s: %w", cmdDir, err)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

// Runner starts ferry processes: the binary, and optionally the working
// directory and extra environment they run with.
type Runner struct {
	Bin string
	Dir string   // working directory; empty means the test's
	Env []string // added to the test's environment
}

// Proc is a running (or finished) ferry process.
type Proc struct {
	runner Runner
	args   []string
	cmd    *exec.Cmd
	out    *Buffer
	done   chan struct{}
	err    error
}

// Buffer is an output buffer safe for the process's writers and the test's
// readers at once.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Start runs ferry in the background. The process is killed when the test
// ends, and its output is logged if the test failed.
func (r Runner) Start(t testing.TB, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(r.Bin, args...)
	cmd.Dir = r.Dir
	if len(r.Env) > 0 {
		cmd.Env = append(os.Environ(), r.Env...)
	}
	out := &Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting ferry %s: %v", strings.Join(args, " "), err)
	}
	pr := &Proc{runner: r, args: args, cmd: cmd, out: out, done: make(chan struct{})}
	go func() { pr.err = cmd.Wait(); close(pr.done) }()
	t.Cleanup(func() {
		select {
		case <-pr.done:
		default:
			_ = cmd.Process.Kill()
			<-pr.done
		}
		if t.Failed() {
			t.Logf("ferry %s output:\n%s", strings.Join(args, " "), out.String())
		}
	})
	return pr
}

// Run runs ferry to completion and returns its exit code and output; it
// fails the test if ferry does not finish within timeout.
func (r Runner) Run(t testing.TB, timeout time.Duration, args ...string) (int, string) {
	t.Helper()
	pr := r.Start(t, args...)
	select {
	case <-pr.done:
	case <-time.After(timeout):
		_ = pr.cmd.Process.Kill()
		<-pr.done
		t.Fatalf("ferry %s did not finish within %s:\n%s", strings.Join(args, " "), timeout, pr.out.String())
	}
	return pr.ExitCode(), pr.out.String()
}

// Again starts a new process with the same runner and arguments, as an
// operator restarting a crashed service would.
func (pr *Proc) Again(t testing.TB) *Proc {
	t.Helper()
	return pr.runner.Start(t, pr.args...)
}

// Args are the process's arguments (without the binary).
func (pr *Proc) Args() []string { return pr.args }

// Output is everything the process printed so far.
func (pr *Proc) Output() string { return pr.out.String() }

// Done is closed when the process has exited.
func (pr *Proc) Done() <-chan struct{} { return pr.done }

// Pid is the process id.
func (pr *Proc) Pid() int { return pr.cmd.Process.Pid }

// Exited reports whether the process has exited.
func (pr *Proc) Exited() bool {
	select {
	case <-pr.done:
		return true
	default:
		return false
	}
}

// ExitCode is the exit code of an exited process (-1 if a signal ended it),
// and -1 while it runs.
func (pr *Proc) ExitCode() int {
	if !pr.Exited() {
		return -1
	}
	return pr.cmd.ProcessState.ExitCode()
}

// Signal sends sig to the process.
func (pr *Proc) Signal(sig os.Signal) { _ = pr.cmd.Process.Signal(sig) }

// Kill9 kills the process the hard way and waits for it to be gone.
func (pr *Proc) Kill9() {
	_ = pr.cmd.Process.Signal(syscall.SIGKILL)
	<-pr.done
}

// Stop sends SIGTERM and waits: ferry must finish in-flight work and exit 0.
func (pr *Proc) Stop(t testing.TB) {
	t.Helper()
	if code := pr.StopCode(t); code != 0 {
		t.Fatalf("ferry %s exited %d after SIGTERM, want 0:\n%s", strings.Join(pr.args, " "), code, pr.out.String())
	}
}

// StopCode sends SIGTERM, waits up to a minute, and returns the exit code.
func (pr *Proc) StopCode(t testing.TB) int {
	t.Helper()
	_ = pr.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-pr.done:
	case <-time.After(60 * time.Second):
		_ = pr.cmd.Process.Kill()
		<-pr.done
		t.Fatalf("ferry %s did not stop within 60s of SIGTERM:\n%s", strings.Join(pr.args, " "), pr.out.String())
	}
	return pr.cmd.ProcessState.ExitCode()
}

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Eventually polls cond until it holds, failing the test when the timeout
// passes first.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitListening waits until something accepts TCP connections on port, or
// the process pr exits first (then it fails the test with pr's output).
func WaitListening(t testing.TB, pr *Proc, port int, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, fmt.Sprintf("a listener on port %d", port), func() bool {
		if pr.Exited() {
			return true
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if pr.Exited() {
		t.Fatalf("ferry %s exited at start:\n%s", strings.Join(pr.args, " "), pr.Output())
	}
}

// LastLines returns the last n lines of s.
func LastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// MaxRSSKiB is the peak resident memory of an exited process, in KiB, as
// the kernel reports it; 0 while it runs.
func (pr *Proc) MaxRSSKiB() int64 {
	if !pr.Exited() {
		return 0
	}
	if ru, ok := pr.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss
	}
	return 0
}
