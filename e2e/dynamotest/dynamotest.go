// Package dynamotest runs private DynamoDB + DynamoDB Streams emulators
// (dynoxide, from the npm package @dynoxide/linux-x64) for tests: installed
// into a cache directory when missing, started on a free 127.0.0.1 port,
// in memory, and stopped by Stop.
package dynamotest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
)

// Package is the npm package and version of the emulator.
const Package = "@dynoxide/linux-x64@1.2.1"

// Server is one running emulator.
type Server struct {
	Port int
	cmd  *exec.Cmd
	log  *bytes.Buffer
	done chan struct{}
}

var installMu sync.Mutex

// Bin returns the emulator binary, installing the npm package into
// $FERRY_CACHE (default ~/.cache/ferry)/dynoxide when it is missing.
func Bin() (string, error) {
	installMu.Lock()
	defer installMu.Unlock()
	cache := os.Getenv("FERRY_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(home, ".cache", "ferry")
	}
	dir := filepath.Join(cache, "dynoxide-1.2.1")
	bin := filepath.Join(dir, "node_modules", "@dynoxide", "linux-x64", "dynoxide")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	npm := exec.Command("npm", "install", "--no-save", "--no-audit", "--no-fund", "--prefix", dir, Package)
	out, err := npm.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("dynotest: npm install %s: %v\n%s", Package, err, out)
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("dynotest: %s installed but %s is missing", Package, bin)
	}
	return bin, nil
}

// Start starts an in-memory emulator on a free port and waits until it
// answers.
func Start(ctx context.Context) (*Server, error) {
	bin, err := Bin()
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &Server{Port: port, log: &bytes.Buffer{}, done: make(chan struct{})}
		s.cmd = exec.Command(bin, "serve", "--host", "127.0.0.1", "--port", strconv.Itoa(port))
		s.cmd.Stdout, s.cmd.Stderr = &lockedWriter{w: s.log}, &lockedWriter{w: s.log}
		if err := s.cmd.Start(); err != nil {
			return nil, fmt.Errorf("dynamotest: starting %s: %w", bin, err)
		}
		go func() { _ = s.cmd.Wait(); close(s.done) }()
		err = s.wait(ctx)
		if err == nil {
			return s, nil
		}
		s.Stop()
		if attempt >= 2 {
			return nil, err
		}
	}
}

func (s *Server) wait(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	c := s.Client()
	for {
		select {
		case <-s.done:
			return fmt.Errorf("dynamotest: emulator exited: %s", s.log.String())
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := c.ListTables(cctx, &dynamodb.ListTablesInput{})
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dynamotest: emulator not answering on port %d after 30s: %v", s.Port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Endpoint is the emulator's URL.
func (s *Server) Endpoint() string { return fmt.Sprintf("http://127.0.0.1:%d", s.Port) }

// Config is an SDK config for the emulator (any static credentials).
func (s *Server) Config() aws.Config {
	return aws.Config{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(s.Endpoint()),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test"}, nil
		}),
	}
}

// Client is a DynamoDB client for the emulator.
func (s *Server) Client() *dynamodb.Client { return dynamodb.NewFromConfig(s.Config()) }

// Streams is a DynamoDB Streams client for the emulator.
func (s *Server) Streams() *dynamodbstreams.Client { return dynamodbstreams.NewFromConfig(s.Config()) }

// Stop kills the emulator.
func (s *Server) Stop() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Require fails the test in CI (CI=true) when the emulator could not be
// started, and skips it elsewhere.
func Require(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatalf("dynamotest: the DynamoDB emulator is required in CI: %v", err)
		return
	}
	t.Skipf("dynamotest: skipping, DynamoDB emulator unavailable (set CI=true to fail instead): %v", err)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
