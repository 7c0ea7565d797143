package preflight

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ferry-dev/ferry/config"
)

func TestCheckSeverityText(t *testing.T) {
	for _, s := range []Severity{OK, Warn, Block} {
		b, err := s.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back Severity
		if err := back.UnmarshalText(b); err != nil || back != s {
			t.Fatalf("%v: round trip gave %v, %v", s, back, err)
		}
	}
	if OK.String() != "ok" || Warn.String() != "warn" || Block.String() != "block" {
		t.Fatalf("names: %s %s %s", OK, Warn, Block)
	}
	if _, err := Severity(7).MarshalText(); err == nil {
		t.Fatal("an unknown severity must not marshal")
	}
	var s Severity
	if err := s.UnmarshalText([]byte("fatal")); err == nil {
		t.Fatal("an unknown name must not unmarshal")
	}
}

func TestCheckExitCode(t *testing.T) {
	ok := Finding{Check: "a", Severity: OK}
	warn := Finding{Check: "b", Severity: Warn, Fix: "x"}
	block := Finding{Check: "c", Severity: Block, Fix: "y"}
	for _, c := range []struct {
		fs   []Finding
		code int
		sum  string
	}{
		{nil, 0, "0 ok, 0 warnings, 0 blocking: nothing blocks the migration"},
		{[]Finding{ok, ok}, 0, "2 ok, 0 warnings, 0 blocking: nothing blocks the migration"},
		{[]Finding{ok, warn}, 0, "1 ok, 1 warning, 0 blocking: nothing blocks the migration; read the warnings"},
		{[]Finding{warn, block, ok, block}, 1, "1 ok, 1 warning, 2 blocking: ferry cannot run until the blocking findings are fixed"},
		// A severity nobody knows blocks rather than passes.
		{[]Finding{ok, {Severity: Severity(9)}}, 1, "1 ok, 0 warnings, 1 blocking: ferry cannot run until the blocking findings are fixed"},
	} {
		if got := ExitCode(c.fs); got != c.code {
			t.Errorf("%+v: exit code %d, want %d", c.fs, got, c.code)
		}
		if got := Blocking(c.fs); got != (c.code == 1) {
			t.Errorf("%+v: Blocking %v", c.fs, got)
		}
		if got := Summary(c.fs); got != c.sum {
			t.Errorf("%+v: summary %q, want %q", c.fs, got, c.sum)
		}
	}
}

func TestCheckWriteTable(t *testing.T) {
	fs := []Finding{
		{Component: "nats", Check: "connect", Severity: OK, Message: "embedded"},
		{Component: "target dst", Check: "table", Severity: Block,
			Message: "table public.lonely does not exist on the target, and this message is long enough to wrap\tonce",
			Fix:     "create it, e.g.:\nCREATE TABLE t (\n  id int\n);"},
		{Component: "source pg", Check: "publication", Severity: Warn, Message: "ferry will\ncreate it", Fix: "nothing to do"},
	}
	var b bytes.Buffer
	if err := Write(&b, fs); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if !strings.HasPrefix(lines[0], "COMPONENT") || !strings.Contains(lines[0], "STATUS") || !strings.HasSuffix(lines[0], "FIX") {
		t.Fatalf("header: %q", lines[0])
	}
	fixCol := strings.Index(lines[0], "FIX")
	msgCol := strings.Index(lines[0], "MESSAGE")
	// The block finding: first row carries the names, continuation rows
	// the wrapped message and the fix's lines, each under its column.
	want := []struct{ msg, fix string }{
		{"table public.lonely does not exist on the target, and this", "create it, e.g.:"},
		{"message is long enough to wrap once", "CREATE TABLE t ("},
		{"", "  id int"},
		{"", ");"},
	}
	for i, w := range want {
		l := lines[2+i]
		if i == 0 && (!strings.HasPrefix(l, "target dst") || !strings.Contains(l, "BLOCK")) {
			t.Fatalf("row %d: %q", i, l)
		}
		if i > 0 && strings.TrimSpace(l[:msgCol]) != "" {
			t.Fatalf("continuation row %d repeats the names: %q", i, l)
		}
		if got := strings.TrimRight(l[msgCol:fixCol], " "); got != w.msg {
			t.Fatalf("row %d message %q, want %q\n%s", i, got, w.msg, out)
		}
		if got := l[fixCol:]; got != w.fix {
			t.Fatalf("row %d fix %q, want %q\n%s", i, got, w.fix, out)
		}
	}
	if !strings.Contains(out, "ferry will create it") {
		t.Fatalf("a line break in a message must become a space:\n%s", out)
	}
	if !strings.HasSuffix(out, "\n"+Summary(fs)+"\n") {
		t.Fatalf("the report must end with the summary:\n%s", out)
	}
}

func TestCheckWrap(t *testing.T) {
	got := wrap("a bb "+strings.Repeat("x", 25)+" cc", 10)
	want := []string{"a bb", "xxxxxxxxxx", "xxxxxxxxxx", "xxxxx cc"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("wrap: %q, want %q", got, want)
	}
	// A multi-byte character is never cut in half.
	for _, l := range wrap(strings.Repeat("é", 12), 5) {
		if !strings.HasPrefix(l, "é") || len(l) > 5 {
			t.Fatalf("bad piece %q", l)
		}
	}
}

func TestCheckWriteJSON(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, nil); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(b.String()) != "[]" {
		t.Fatalf("no findings: %q, want []", b.String())
	}
	fs := []Finding{
		{Component: "source pg", Check: "wal_level", Severity: Block, Message: `wal_level is "replica"`, Fix: "ALTER SYSTEM SET wal_level = logical;"},
		{Component: "nats", Check: "connect", Severity: OK, Message: "up"},
	}
	b.Reset()
	if err := WriteJSON(&b, fs); err != nil {
		t.Fatal(err)
	}
	var raw []map[string]any
	if err := json.Unmarshal(b.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	if raw[0]["severity"] != "block" || raw[1]["severity"] != "ok" {
		t.Fatalf("severities are written by name: %v", raw)
	}
	if _, ok := raw[1]["fix"]; ok {
		t.Fatalf("an OK finding has no fix key: %v", raw[1])
	}
	var back []Finding
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back) != 2 || back[0] != fs[0] || back[1] != fs[1] {
		t.Fatalf("round trip: %+v", back)
	}
}

func TestCheckOpenFailed(t *testing.T) {
	src := config.Source{Name: "pg", Type: "nosuchtype-for-test", DSN: "x"}
	f := SourceOpenFailed(src, errors.New("boom"))
	if f.Component != "source pg" || f.Check != "connect" || f.Severity != Block || f.Message != "boom" || !strings.Contains(f.Fix, "sources[].dsn") {
		t.Fatalf("default finding: %+v", f)
	}
	var gotDSN string
	RegisterTargetAdvice("testdb", func(dsn string, err error) (string, string) {
		gotDSN = dsn
		return "state", "do this: " + err.Error()
	})
	f = TargetOpenFailed(config.Target{Name: "dst", Type: "testdb", DSN: "the-dsn"}, errors.New("no table"))
	if f.Component != "target dst" || f.Check != "state" || f.Fix != "do this: no table" || gotDSN != "the-dsn" {
		t.Fatalf("advised finding: %+v (dsn %q)", f, gotDSN)
	}
}

func TestCheckPostgresConnectFix(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&pgconn.PgError{Code: "28P01"}, "fix the user and password in sources[].dsn"},
		{&pgconn.PgError{Code: "3D000"}, "CREATE DATABASE"},
		{&pgconn.PgError{Code: "28000"}, "pg_hba.conf"},
		{errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), "start the server, or fix the host and port in sources[].dsn"},
		{errors.New("lookup nohost: no such host"), "fix the host in sources[].dsn"},
		{errors.New("something else"), "check sources[].dsn"},
	} {
		if got := PostgresConnectFix(c.err, "sources[].dsn"); !strings.Contains(got, c.want) {
			t.Errorf("%v: %q lacks %q", c.err, got, c.want)
		}
	}
}

func TestCheckPostgresAddress(t *testing.T) {
	if got := PostgresAddress("postgres://u:s3cret@db.example:6543/app?sslmode=disable"); got != "db.example:6543/app" {
		t.Fatalf("got %q", got)
	}
	if got := PostgresAddress("host=h port=5 dbname=d user=u password=s3cret"); got != "h:5/d" {
		t.Fatalf("got %q", got)
	}
	if got := PostgresAddress("postgres://u:s3cret@h:notaport/d"); strings.Contains(got, "s3cret") {
		t.Fatalf("an unparsable DSN leaks its password: %q", got)
	}
}
