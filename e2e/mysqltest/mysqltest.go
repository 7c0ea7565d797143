// Package mysqltest starts private, throw-away MariaDB servers for tests:
// each in its own temp directory, on a free port of 127.0.0.1, with the
// binary log on in ROW format with full row images (what ferry's MySQL
// source needs), removed completely by Stop.
package mysqltest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

const installHint = "install it with: apt-get update && apt-get install -y mariadb-server"

// Options configure a server.
type Options struct {
	// Args are extra mariadbd options ("--binlog-row-metadata=FULL").
	Args []string
	// Log, when set, receives one line per step.
	Log func(string)
}

// Server is a running private MariaDB.
type Server struct {
	Port int
	Dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

func bin(name string) (string, error) {
	for _, d := range []string{"/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("mysqltest: %s not found; %s", name, installHint)
}

// Start creates, starts and waits for a new private server.
func Start(ctx context.Context, opts Options) (*Server, error) {
	installDB, err := bin("mariadb-install-db")
	if err != nil {
		return nil, err
	}
	mariadbd, err := bin("mariadbd")
	if err != nil {
		return nil, err
	}
	logf := func(format string, args ...any) {
		if opts.Log != nil {
			opts.Log(fmt.Sprintf(format, args...))
		}
	}
	dir, err := os.MkdirTemp("", "mysqltest-")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, done: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			_ = s.Stop()
		}
	}()
	data := filepath.Join(dir, "data")
	out, err := exec.CommandContext(ctx, installDB, "--no-defaults", "--datadir="+data, "--user="+currentUser(),
		"--auth-root-authentication-method=normal", "--skip-test-db").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("mysqltest: mariadb-install-db: %v\n%s", err, tail(string(out), 20))
	}
	for attempt := 0; attempt < 3; attempt++ {
		if s.Port, err = freePort(); err != nil {
			return nil, err
		}
		args := append([]string{"--no-defaults", "--datadir=" + data, "--user=" + currentUser(),
			"--port=" + strconv.Itoa(s.Port), "--bind-address=127.0.0.1", "--socket=" + filepath.Join(dir, "sock"),
			"--log-bin=" + filepath.Join(dir, "binlog"), "--binlog-format=ROW", "--binlog-row-image=FULL",
			"--server-id=1", "--log-error=" + filepath.Join(dir, "err.log"), "--pid-file=" + filepath.Join(dir, "pid"),
			"--skip-name-resolve", "--innodb-buffer-pool-size=128M", "--innodb-flush-log-at-trx-commit=2",
			"--sync-binlog=0", "--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci",
			"--max-allowed-packet=64M"}, opts.Args...)
		logf("mysqltest: starting mariadbd on 127.0.0.1:%d in %s", s.Port, dir)
		s.cmd = exec.Command(mariadbd, args...)
		// The server dies with the test process, however that ends.
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := s.cmd.Start(); err != nil {
			return nil, fmt.Errorf("mysqltest: starting mariadbd: %w", err)
		}
		s.done = make(chan struct{})
		go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(s.cmd, s.done)
		err = s.waitReady(ctx)
		if err == nil {
			ok = true
			return s, nil
		}
		_ = s.cmd.Process.Kill()
		<-s.done
		if !strings.Contains(s.LogTail(30), "Address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("mysqltest: mariadbd did not start: %v\n%s", err, s.LogTail(30))
}

func currentUser() string {
	if os.Geteuid() == 0 {
		return "root"
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return strconv.Itoa(os.Geteuid())
}

func (s *Server) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := client.Connect(fmt.Sprintf("127.0.0.1:%d", s.Port), "root", "", "")
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-s.done:
			return errors.New("mariadbd exited")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after 60s: %v", err)
		}
	}
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.Port) }

// DSN is a mysql:// URL for root and database db.
func (s *Server) DSN(db string) string { return fmt.Sprintf("mysql://root@%s/%s", s.Addr(), db) }

// Connect opens a connection to db ("" for none) as root, with utf8mb4.
func (s *Server) Connect(db string) (*client.Conn, error) {
	c, err := client.Connect(s.Addr(), "root", "", db)
	if err != nil {
		return nil, err
	}
	if err := c.SetCharset("utf8mb4"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Exec runs statements (separated by ";" at line ends) in db.
func (s *Server) Exec(db, sql string, args ...any) error {
	c, err := s.Connect(db)
	if err != nil {
		return err
	}
	defer c.Close()
	if len(args) > 0 {
		_, err = c.Execute(sql, args...)
		return err
	}
	for _, stmt := range SplitStatements(sql) {
		if _, err := c.Execute(stmt); err != nil {
			return fmt.Errorf("%w\n%s", err, stmt)
		}
	}
	return nil
}

// Query runs one query in db and returns its result.
func (s *Server) Query(db, sql string, args ...any) (*gomysql.Result, error) {
	c, err := s.Connect(db)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.Execute(sql, args...)
}

// SplitStatements splits a script at semicolons that end a line.
func SplitStatements(sql string) []string {
	var out []string
	for _, part := range strings.Split(sql, ";\n") {
		part = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(part), ";"))
		if part != "" {
			out = append(out, part)
		}
	}
	return out
}

// LogTail returns the last n lines of the server's error log.
func (s *Server) LogTail(n int) string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "err.log"))
	return tail(string(b), n)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Stop kills the server and removes its directory.
func (s *Server) Stop() error {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	return os.RemoveAll(s.Dir)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// InCI reports whether env CI is set to a true value.
func InCI() bool {
	v, _ := strconv.ParseBool(os.Getenv("CI"))
	return v
}

// Require turns a failure to start a server into the test's outcome: a
// skip locally, a failure in CI (CI=true), where a missing server is a
// broken machine.
func Require(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if InCI() {
		t.Fatalf("mysqltest: MariaDB is required in CI: %v", err)
		return
	}
	t.Skipf("mysqltest: skipping, MariaDB unavailable (set CI=true to fail instead): %v", err)
}
