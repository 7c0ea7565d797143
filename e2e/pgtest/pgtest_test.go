package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func TestStartLogical(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Start(ctx, Options{Logical: true, Log: func(m string) { t.Log(m) }})
	Require(t, err)
	stopped := false
	defer func() {
		if !stopped {
			s.Stop()
		}
	}()

	if err := s.CreateDB(ctx, "src"); err != nil {
		t.Fatal(err)
	}
	if err := s.Exec(ctx, "src", "CREATE TABLE t (id bigint PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a')"); err != nil {
		t.Fatal(err)
	}
	if err := s.Exec(ctx, "src", "INSERT INTO t VALUES ($1, $2)", 2, "b"); err != nil {
		t.Fatal(err)
	}
	conn, err := s.Connect(ctx, "src")
	if err != nil {
		t.Fatal(err)
	}
	var walLevel string
	var rows int
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if walLevel != "logical" {
		t.Errorf("wal_level = %q, want logical", walLevel)
	}
	if rows != 2 {
		t.Errorf("count(*) = %d, want 2", rows)
	}

	dir := s.Dir
	stopped = true
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Stop, %s still exists (stat: %v)", dir, err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

func TestRestartChangesSettings(t *testing.T) {
	s := StartT(t, Options{Settings: []string{"max_connections=50"}})
	ctx := context.Background()
	show := func(name string) string {
		t.Helper()
		conn, err := s.Connect(ctx, "postgres")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var v string
		if err := conn.QueryRow(ctx, "SHOW "+name).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if got := show("wal_level"); got != "replica" {
		t.Fatalf("wal_level = %q, want the default replica", got)
	}
	if got := show("max_connections"); got != "50" {
		t.Fatalf("max_connections = %q, want 50", got)
	}
	port := s.Port
	if err := s.Restart(ctx, "wal_level=logical", "-c application_name=it's quoted"); err != nil {
		t.Fatal(err)
	}
	if s.Port != port {
		t.Errorf("port changed on restart: %d -> %d", port, s.Port)
	}
	if got := show("wal_level"); got != "logical" {
		t.Errorf("after Restart wal_level = %q, want logical", got)
	}
	if got := show("max_connections"); got != "50" {
		t.Errorf("after Restart max_connections = %q, want 50 (kept)", got)
	}
}

func TestBadSetting(t *testing.T) {
	if _, err := Start(context.Background(), Options{Settings: []string{"port=1"}}); err == nil {
		t.Fatal("want an error for a managed setting")
	}
}

// A server that cannot start must say why: the error carries the log tail.
func TestStartFailureShowsLog(t *testing.T) {
	if _, err := Bin("postgres"); err != nil {
		Require(t, err)
	}
	_, err := Start(context.Background(), Options{Settings: []string{"shared_buffers=lots"}})
	if err == nil {
		t.Fatal("want an error for shared_buffers=lots")
	}
	if !strings.Contains(err.Error(), `invalid value for parameter "shared_buffers"`) {
		t.Errorf("error lacks the server log's reason:\n%v", err)
	}
}

// fakeTB records what Require does with a test.
type fakeTB struct {
	testing.TB
	fatal, skip string
}

func (f *fakeTB) Helper()                        {}
func (f *fakeTB) Fatalf(format string, a ...any) { f.fatal = fmt.Sprintf(format, a...) }
func (f *fakeTB) Skipf(format string, a ...any)  { f.skip = fmt.Sprintf(format, a...) }

func TestRequire(t *testing.T) {
	boom := errors.New("no postgres here")
	for _, tc := range []struct {
		ci        string
		wantFatal bool
	}{{"", false}, {"false", false}, {"true", true}, {"1", true}} {
		t.Setenv("CI", tc.ci)
		f := &fakeTB{}
		Require(f, nil)
		if f.fatal != "" || f.skip != "" {
			t.Errorf("CI=%q: Require(nil) acted: %+v", tc.ci, f)
		}
		Require(f, boom)
		if tc.wantFatal && (f.fatal == "" || f.skip != "") {
			t.Errorf("CI=%q: want Fatalf, got %+v", tc.ci, f)
		}
		if !tc.wantFatal && (f.skip == "" || f.fatal != "") {
			t.Errorf("CI=%q: want Skipf, got %+v", tc.ci, f)
		}
	}
}
