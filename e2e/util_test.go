package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ferry-dev/ferry/e2e/pgtest"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startNATS runs a separate NATS server with JetStream, standing in for an
// external deployment; ferry reaches it by URL like any other.
func startNATS(t *testing.T) string {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: freePort(t), JetStream: true,
		StoreDir: filepath.Join(t.TempDir(), "js"), NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server did not start")
	}
	t.Cleanup(srv.Shutdown)
	return srv.ClientURL()
}

// plainSource starts a PostgreSQL without logical decoding holding database
// app with a table t.
func plainSource(t *testing.T) *pgtest.Server {
	t.Helper()
	plain := pgtest.StartT(t, pgtest.Options{Settings: []string{"wal_level=replica"}})
	if err := plain.CreateDB(context.Background(), "app"); err != nil {
		t.Fatal(err)
	}
	if err := plain.Exec(context.Background(), "app", "CREATE TABLE t (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	return plain
}
