package config

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

const good = `
nats:
  url: ""
  listen: 127.0.0.1:4333
  dataDir: ./ferry-data
sources:
  - name: pg
    type: postgres
    dsn: postgres://user@127.0.0.1:5432/src
    tables: [public.orders]
    mode: snapshot+cdc
    slot: ferry_pg
    publication: ferry_pg
targets:
  - name: crdb
    type: cockroachdb
    dsn: postgres://user@127.0.0.1:26257/dst
    from: pg
`

func TestParseIssueShape(t *testing.T) {
	c, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Sources[0]
	if s.Slot != "ferry_pg" || s.Mode != ModeSnapshotCDC || !s.HasCDC() || !s.HasSnapshot() || s.Tables[0] != "public.orders" {
		t.Fatalf("source parsed wrong: %+v", s)
	}
	if c.Targets[0].From != "pg" || c.Targets[0].BatchSize != 500 {
		t.Fatalf("target parsed wrong: %+v", c.Targets[0])
	}
	if c.NATS.DuplicateWindow.D() != 10*time.Minute || s.Partitions != 8 {
		t.Fatalf("defaults not applied: %+v %+v", c.NATS, s)
	}
}

func TestParseErrorsNameTheKey(t *testing.T) {
	cases := map[string]struct{ doc, want string }{
		"unknown source key": {strings.Replace(good, "slot: ferry_pg", "slotName: ferry_pg", 1), `unknown key "slotName" in sources[]`},
		"unknown top key":    {good + "extra: 1\n", `unknown key "extra"`},
		"wrong type":         {strings.Replace(good, "tables: [public.orders]", "tables: 5", 1), "wrong type"},
		"bad mode":           {strings.Replace(good, "mode: snapshot+cdc", "mode: live", 1), `sources[0].mode: "live"`},
		"unknown from":       {strings.Replace(good, "from: pg", "from: nope", 1), `targets[0].from: "nope" names no source`},
		"bad duration":       {strings.Replace(good, "  dataDir: ./ferry-data", "  dataDir: x\n  duplicateWindow: soon", 1), `"soon" is not a duration`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an ErrInvalid containing %q", err, tc.want)
			}
		})
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:secret@h:5432/db":          "postgres://u:xxxxx@h:5432/db",
		"postgres://u@h/db":                      "postgres://u@h/db",
		"host=h user=u password=secret dbname=d": "host=h user=u password=xxxxx dbname=d",
		"postgres://h/db?user=u&password=secret": "postgres://h/db?user=u&password=xxxxx",
		"nats://tok:p%40ss@127.0.0.1:4222":       "nats://tok:xxxxx@127.0.0.1:4222",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOperatorKeys(t *testing.T) {
	doc := good + "metrics:\n  addr: 127.0.0.1:9090\n"
	doc = strings.Replace(doc, "    publication: ferry_pg\n", "    publication: ferry_pg\n    readRowsPerSecond: 1000\n", 1)
	doc = strings.Replace(doc, "    from: pg\n", "    from: pg\n    writeRowsPerSecond: 500\n", 1)
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.Metrics.Addr != "127.0.0.1:9090" || c.Sources[0].ReadRowsPerSecond != 1000 || c.Targets[0].WriteRowsPerSecond != 500 {
		t.Fatalf("parsed %+v %+v %+v", c.Metrics, c.Sources[0], c.Targets[0])
	}
	if _, err := Parse([]byte(strings.Replace(doc, "writeRowsPerSecond: 500", "writeRowsPerSecond: -1", 1))); err == nil || !strings.Contains(err.Error(), "targets[0].writeRowsPerSecond") {
		t.Fatalf("negative rate: %v", err)
	}
}

// A limiter of n rows/s lets a burst of n through at once and then paces:
// 3n rows take about 2 seconds; no limiter never waits.
func TestWaitRows(t *testing.T) {
	ctx := context.Background()
	if err := WaitRows(ctx, Limiter(0), 1_000_000); err != nil {
		t.Fatal(err)
	}
	l := Limiter(1000)
	start := time.Now()
	if err := WaitRows(ctx, l, 3000); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 1900*time.Millisecond {
		t.Fatalf("3000 rows at 1000/s took %s, want about 2s", d)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := WaitRows(cctx, l, 5000); err == nil {
		t.Fatal("a cancelled wait must fail")
	}
}

func TestMigratorDocUnknownSourceType(t *testing.T) {
	doc := "source:\n  type: parquet\n  path: /x\ntarget:\n  type: scylla\n"
	_, err := Parse([]byte(doc))
	if err == nil || !strings.Contains(err.Error(), `source.type "parquet" is not supported`) {
		t.Fatalf("want unsupported source type error, got %v", err)
	}
	if _, err := Parse([]byte(doc + "sparkConf: {}\n")); err == nil || !strings.Contains(err.Error(), "sparkConf") {
		t.Fatalf("want an error naming the unknown top-level key, got %v", err)
	}
}
