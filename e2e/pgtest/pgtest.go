// Package pgtest starts private, throw-away PostgreSQL servers for tests and
// scripts.
//
// Each server gets its own temp directory (data, unix socket, log) and a free
// TCP port on 127.0.0.1, runs with durability switched off (fsync, full page
// writes, synchronous commit) because test data is disposable, and is removed
// completely by Stop. Nothing is shared with a system cluster, so tests can run
// in parallel and on machines that already run PostgreSQL.
//
// initdb refuses to run as root, so when the test process is root every server
// command runs as the OS user "postgres" (created by Debian's postgresql
// package) through runuser; otherwise commands run as the current user.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultBinDir is where Debian 12's postgresql package installs PostgreSQL 15.
const DefaultBinDir = "/usr/lib/postgresql/15/bin"

// installHint is appended to every "PostgreSQL is missing" error.
const installHint = "install it with: apt-get update && apt-get install -y postgresql"

// Options configure a server.
type Options struct {
	// Logical enables logical decoding (pgoutput): wal_level=logical,
	// max_replication_slots=10, max_wal_senders=10.
	Logical bool
	// Settings are extra server settings, each "key=value" as given to
	// postgres -c (a leading "-c " is accepted too). Later entries win.
	Settings []string
	// Log, when set, receives one line per step (commands run, port chosen).
	Log func(string)
}

// Server is a running private PostgreSQL instance.
type Server struct {
	// Port is the TCP port on 127.0.0.1.
	Port int
	// Dir is the temp directory holding data/, the unix socket and postgres.log.
	Dir string
	// DataDir is Dir/data, the cluster's data directory.
	DataDir string
	// LogFile is the server log (kept until Stop removes Dir).
	LogFile string

	opts     Options
	settings []setting // effective -c settings, in order, last one per key
	asPG     *pgUser   // non-nil when commands run through runuser as postgres
	pgctl    string

	mu      sync.Mutex
	stopped bool
	reaper  *exec.Cmd
	reaperW io.WriteCloser
}

type setting struct{ key, value string }

type pgUser struct{ uid, gid int }

// Bin returns the path of the PostgreSQL program name (initdb, pg_ctl,
// postgres, psql, ...). It looks in $PGTEST_BINDIR, /usr/lib/postgresql/15/bin,
// `pg_config --bindir`, then the newest /usr/lib/postgresql/*/bin.
func Bin(name string) (string, error) {
	var dirs []string
	if d := os.Getenv("PGTEST_BINDIR"); d != "" {
		dirs = append(dirs, d)
	}
	dirs = append(dirs, DefaultBinDir)
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dirs = append(dirs, strings.TrimSpace(string(out)))
	}
	// Other major versions, newest first (lexical sort is wrong for 9 vs 10,
	// so sort by the numeric directory name).
	if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin"); len(m) > 0 {
		sort.Slice(m, func(i, j int) bool { return pgMajor(m[i]) > pgMajor(m[j]) })
		dirs = append(dirs, m...)
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("pgtest: PostgreSQL program %q not found (looked in %s); %s",
		name, strings.Join(slices.Compact(dirs), ", "), installHint)
}

func pgMajor(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

// Start creates, starts and waits for a new private server. The caller must
// Stop it. On failure nothing is left behind and the error carries the tail of
// the server log.
func Start(ctx context.Context, opts Options) (*Server, error) {
	initdb, err := Bin("initdb")
	if err != nil {
		return nil, err
	}
	pgctl, err := Bin("pg_ctl")
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, pgctl: pgctl}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgtest: running as root needs the OS user postgres to run the server (%v); %s", err, installHint)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.asPG = &pgUser{uid: uid, gid: gid}
	}
	if err := s.initSettings(opts); err != nil {
		return nil, err
	}

	s.Dir, err = s.makeDir()
	if err != nil {
		return nil, err
	}
	s.DataDir = filepath.Join(s.Dir, "data")
	s.LogFile = filepath.Join(s.Dir, "postgres.log")
	ok := false
	defer func() {
		if !ok {
			s.cleanup()
		}
	}()
	// From here on a crash of the test process must not leak a postmaster.
	if err := s.startReaper(); err != nil {
		return nil, err
	}

	// --no-sync: the cluster is thrown away, so skip initdb's fsync pass (it
	// dominates initdb's run time). --locale=C: byte-order collation, the
	// same on every machine, and English server messages (we look for "could
	// not bind" in the log).
	if out, err := s.run(ctx, initdb, "-D", s.DataDir, "-A", "trust", "-U", "postgres",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"); err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %v\n%s", err, out)
	}

	// The port comes from the kernel (listen on :0), but it is free only
	// until someone else takes it: another test may grab it between our
	// probe and the postmaster's bind, so retry with a fresh port.
	const attempts = 5
	for i := 1; ; i++ {
		s.Port, err = freePort()
		if err != nil {
			return nil, err
		}
		err = s.pgctlStart(ctx)
		if err == nil {
			break
		}
		if i < attempts && ctx.Err() == nil && s.bindFailed() {
			s.logf("port %d was taken, retrying with another", s.Port)
			continue
		}
		return nil, fmt.Errorf("pgtest: starting PostgreSQL: %v\n--- last lines of %s ---\n%s", err, s.LogFile, s.LogTail(30))
	}
	if err := s.waitReady(ctx); err != nil {
		return nil, fmt.Errorf("pgtest: %v\n--- last lines of %s ---\n%s", err, s.LogFile, s.LogTail(30))
	}
	ok = true
	s.logf("PostgreSQL ready on 127.0.0.1:%d (dir %s)", s.Port, s.Dir)
	return s, nil
}

// initSettings builds the effective settings: test-speed defaults, logical
// decoding if asked, then the caller's.
func (s *Server) initSettings(opts Options) error {
	base := []string{
		"listen_addresses=127.0.0.1",
		// Durability is pointless for throw-away data and costs a lot of
		// time on small CI disks. Never use these settings for real data.
		"fsync=off",
		"synchronous_commit=off",
		"full_page_writes=off",
		"shared_buffers=128MB",
	}
	if opts.Logical {
		base = append(base, "wal_level=logical", "max_replication_slots=10", "max_wal_senders=10")
	}
	return s.addSettings(append(base, opts.Settings...))
}

func (s *Server) addSettings(list []string) error {
	for _, kv := range list {
		kv = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(kv), "-c "))
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return fmt.Errorf("pgtest: setting %q is not key=value", kv)
		}
		// Settings the harness owns would break DSN() or the socket dir.
		if k == "port" || k == "unix_socket_directories" {
			return fmt.Errorf("pgtest: setting %q is managed by pgtest", k)
		}
		s.settings = slices.DeleteFunc(s.settings, func(x setting) bool { return x.key == k })
		s.settings = append(s.settings, setting{k, strings.TrimSpace(v)})
	}
	return nil
}

// makeDir creates the server's temp dir. As root it must be reachable by user
// postgres: if $TMPDIR lies under a private directory (e.g. /root), fall back
// to /tmp.
func (s *Server) makeDir() (string, error) {
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	if s.asPG == nil {
		return dir, nil
	}
	if !searchableByOthers(filepath.Dir(dir)) {
		os.Remove(dir)
		if dir, err = os.MkdirTemp("/tmp", "pgtest-"); err != nil {
			return "", fmt.Errorf("pgtest: %w", err)
		}
	}
	if err := os.Chown(dir, s.asPG.uid, s.asPG.gid); err != nil {
		os.Remove(dir)
		return "", fmt.Errorf("pgtest: chown %s to postgres: %w", dir, err)
	}
	return dir, nil
}

// searchableByOthers reports whether every directory from dir up to / has the
// "others may search" bit, so that user postgres can reach a child of dir.
func searchableByOthers(dir string) bool {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == "/" || d == "." {
			return true
		}
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgtest: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// pgctlStart starts the postmaster and waits (-w) until it accepts
// connections. Settings go through pg_ctl -o, which hands them to /bin/sh, so
// each argument is shell-quoted.
func (s *Server) pgctlStart(ctx context.Context) error {
	args := []string{"-p", strconv.Itoa(s.Port), "-k", s.Dir}
	for _, st := range s.settings {
		args = append(args, "-c", st.key+"="+st.value)
	}
	quoted := make([]string, len(args))
	for i, a := range args {
		quoted[i] = shellQuote(a)
	}
	out, err := s.run(ctx, s.pgctl, "start", "-w", "-t", "60", "-D", s.DataDir, "-l", s.LogFile,
		"-o", strings.Join(quoted, " "))
	if err != nil {
		return fmt.Errorf("pg_ctl start: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// bindFailed reports whether the log says the port was in use.
func (s *Server) bindFailed() bool {
	b, _ := os.ReadFile(s.LogFile)
	return bytes.Contains(b, []byte("could not bind")) || bytes.Contains(b, []byte("Address already in use"))
}

// waitReady connects until a query succeeds. pg_ctl -w already waited for
// the postmaster, this also proves TCP and authentication work.
func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last error
	for {
		conn, err := s.Connect(ctx, "postgres")
		if err == nil {
			var one int
			err = conn.QueryRow(ctx, "SELECT 1").Scan(&one)
			conn.Close(context.Background())
			if err == nil {
				return nil
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("server on port %d did not accept connections: %v", s.Port, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// DSN returns a URL connecting to database db as the superuser postgres
// (trust authentication, no password).
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, url.PathEscape(db))
}

// Connect opens a connection to database db. The caller closes it.
func (s *Server) Connect(ctx context.Context, db string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, s.DSN(db))
}

// CreateDB creates database name.
func (s *Server) CreateDB(ctx context.Context, name string) error {
	return s.Exec(ctx, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
}

// Exec runs sql in database db on a fresh connection. Without args it uses
// the simple protocol, so sql may hold several statements.
func (s *Server) Exec(ctx context.Context, db, sql string, args ...any) error {
	conn, err := s.Connect(ctx, db)
	if err != nil {
		return fmt.Errorf("pgtest: connecting to %s: %w", db, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("pgtest: exec in %s: %w", db, err)
	}
	return nil
}

// Restart stops the server and starts it again on the same port, with
// settings ("key=value") added to, or replacing, the current ones — e.g. to
// change wal_level, which needs a restart.
func (s *Server) Restart(ctx context.Context, settings ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("pgtest: Restart after Stop")
	}
	old := slices.Clone(s.settings)
	if err := s.addSettings(settings); err != nil {
		return err
	}
	if out, err := s.run(ctx, s.pgctl, "stop", "-w", "-m", "fast", "-D", s.DataDir); err != nil {
		s.settings = old
		return fmt.Errorf("pgtest: pg_ctl stop: %v: %s", err, strings.TrimSpace(string(out)))
	}
	if err := s.pgctlStart(ctx); err != nil {
		return fmt.Errorf("pgtest: restart: %v\n--- last lines of %s ---\n%s", err, s.LogFile, s.LogTail(30))
	}
	return s.waitReady(ctx)
}

// Stop shuts the server down (fast mode: open sessions are disconnected) and
// removes its directory. It is safe to call more than once.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	return s.cleanup()
}

// cleanup stops the postmaster if it runs, removes Dir and retires the reaper.
func (s *Server) cleanup() error {
	var errs []error
	// No context: cleanup must run even when the caller's context is done.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if s.DataDir != "" && fileExists(filepath.Join(s.DataDir, "postmaster.pid")) {
		if out, err := s.run(ctx, s.pgctl, "stop", "-w", "-m", "fast", "-D", s.DataDir); err != nil {
			// A stuck server must not keep Dir alive: escalate.
			if _, err2 := s.run(ctx, s.pgctl, "stop", "-w", "-m", "immediate", "-D", s.DataDir); err2 != nil {
				errs = append(errs, fmt.Errorf("pgtest: pg_ctl stop: %v: %s", err, strings.TrimSpace(string(out))))
			}
		}
	}
	s.stopReaper()
	if s.Dir != "" {
		if err := os.RemoveAll(s.Dir); err != nil {
			errs = append(errs, fmt.Errorf("pgtest: removing %s: %w", s.Dir, err))
		}
	}
	return errors.Join(errs...)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// startReaper starts a detached shell that blocks reading a pipe whose only
// writer is this process. If the process dies without Stop (test timeout,
// panic, SIGKILL), the pipe closes, and the shell stops the postmaster and
// removes Dir, so crashed test runs leave no servers behind. Stop kills it
// first.
func (s *Server) startReaper() error {
	stop := s.command(s.pgctl, "stop", "-m", "immediate", "-D", s.DataDir)
	script := `d=$1; shift; while read -r _; do :; done; "$@" >/dev/null 2>&1; rm -rf -- "$d"`
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, "pgtest-reaper", s.Dir}, stop.Args...)...)
	cmd.Env = stop.Env
	// Own session: a Ctrl-C for the test's process group must not kill it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	w, err := cmd.StdinPipe()
	if err != nil {
		return fmt.Errorf("pgtest: reaper: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: reaper: %w", err)
	}
	s.reaper, s.reaperW = cmd, w
	return nil
}

func (s *Server) stopReaper() {
	if s.reaper == nil {
		return
	}
	_ = s.reaper.Process.Kill() // SIGKILL: no cleanup from it, we did ours
	_ = s.reaperW.Close()
	_ = s.reaper.Wait()
	s.reaper = nil
}

// command builds cmd for a server program, through runuser when root.
// PG* variables of the caller's environment are dropped so that they cannot
// redirect pg_ctl to another cluster; LC_ALL=C keeps messages in English.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if s.asPG != nil {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	} else {
		cmd = exec.Command(name, args...)
	}
	env := []string{"LC_ALL=C"}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "PG") && !strings.HasPrefix(e, "LC_") && !strings.HasPrefix(e, "LANG") {
			env = append(env, e)
		}
	}
	cmd.Env = env
	cmd.Dir = "/" // user postgres may not be able to read the caller's cwd
	return cmd
}

// run runs a server program and returns its combined output. The context
// bounds the wait; pg_ctl itself has its own -t timeout.
func (s *Server) run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := s.command(name, args...)
	s.logf("run: %s %s", filepath.Base(name), strings.Join(args, " "))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.Bytes(), err
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-done
		return out.Bytes(), ctx.Err()
	}
}

// LogTail returns the last n lines of the server log.
func (s *Server) LogTail(n int) string {
	b, err := os.ReadFile(s.LogFile)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (s *Server) logf(format string, args ...any) {
	if s.opts.Log != nil {
		s.opts.Log(fmt.Sprintf(format, args...))
	}
}
