package pgtest

import (
	"context"
	"os"
	"strconv"
	"testing"
)

// Require turns a failure to start a server into the test's outcome. Locally
// (no PostgreSQL installed, say) the test is skipped with the reason; in CI
// (env CI=true) a missing server is a broken machine, and a skip there would
// hide it, so the test fails.
func Require(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if InCI() {
		t.Fatalf("pgtest: PostgreSQL is required in CI: %v", err)
		return // Fatalf does not return in a real test; stay correct if it does
	}
	t.Skipf("pgtest: skipping, PostgreSQL unavailable (set CI=true to fail instead): %v", err)
}

// InCI reports whether env CI is set to a true value ("true", "1", ...).
func InCI() bool {
	v, _ := strconv.ParseBool(os.Getenv("CI"))
	return v
}

// StartT starts a server for t with Require semantics and stops it when the
// test ends. Server steps are logged through t.Log.
func StartT(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Log == nil {
		opts.Log = func(s string) { t.Log(s) }
	}
	s, err := Start(context.Background(), opts)
	Require(t, err)
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stopping PostgreSQL: %v", err)
		}
	})
	return s
}
