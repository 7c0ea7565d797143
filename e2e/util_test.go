package e2e

import (
	"context"
	"os"
	"testing"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
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
	return ferrytest.StartNATS(t).URL
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
