package scylla

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/gocql/gocql"

	"github.com/ferry-dev/ferry/appliers"
	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/streams/pb"
)

func nt(t gocql.Type) gocql.TypeInfo { return gocql.NewNativeType(4, t, "") }

func iv(n int64) *pb.Value  { return &pb.Value{Kind: &pb.Value_Int{Int: n}} }
func tv(s string) *pb.Value { return &pb.Value{Kind: &pb.Value_Text{Text: s}} }

func testTarget() (*Target, *targetTable) {
	t := &Target{cfg: config.Target{Name: "t", CQLKeyspace: "ks",
		Tables:  map[string]string{"src.orders": "orders2"},
		Renames: []config.Rename{{From: "note", To: "remark"}}}}
	tt := &targetTable{keyspace: "ks", name: "orders2", ident: `"ks"."orders2"`, types: map[string]gocql.TypeInfo{
		"id": nt(gocql.TypeInt), "c": nt(gocql.TypeInt), "remark": nt(gocql.TypeText), "n": nt(gocql.TypeBigInt), "s": nt(gocql.TypeText),
		"tup": gocql.TupleTypeInfo{NativeType: gocql.NewNativeType(4, gocql.TypeTuple, ""), Elems: []gocql.TypeInfo{nt(gocql.TypeInt), nt(gocql.TypeText)}},
	}}
	return t, tt
}

func TestNames(t *testing.T) {
	tg, _ := testTarget()
	if ks, tb := tg.targetName("src.orders"); ks != "ks" || tb != "orders2" {
		t.Fatalf("renamed table: %s.%s", ks, tb)
	}
	if ks, tb := tg.targetName("src.other"); ks != "ks" || tb != "other" {
		t.Fatalf("plain table: %s.%s", ks, tb)
	}
	if c := tg.column("src.orders", "note"); c != "remark" {
		t.Fatalf("renamed column: %s", c)
	}
}

// TestRowStmts checks the statements of one row: cells grouped by writetime
// and TTL, NULLs of a snapshot row left out, a TTL shortened by the time
// since the read, an expired cell dropped, a tuple as a tuple literal.
func TestRowStmts(t *testing.T) {
	tg, tt := testTarget()
	const read = int64(1_700_000_000_000_000)
	ev := &pb.Event{Table: "src.orders", Op: pb.Op_OP_READ, CommitTimeUs: read,
		Key: &pb.Row{Names: []string{"id", "c"}, Values: []*pb.Value{iv(1), iv(2)}},
		After: &pb.Row{Names: []string{"id", "c", "note", "n", "s", "tup"},
			Values: []*pb.Value{iv(1), iv(2), tv("x"), iv(5), {}, {Kind: &pb.Value_Tuple{Tuple: &pb.Elements{Values: []*pb.Value{iv(1), {}}}}}},
			Meta:   []*pb.CellMeta{{}, {}, {WritetimeUs: 100, TtlSeconds: 60}, {WritetimeUs: 200}, {}, {WritetimeUs: 100, TtlSeconds: 5}}}}
	stmts, err := tg.rowStmts(tt, ev, read+10_000_000) // 10 s after the read
	if err != nil {
		t.Fatal(err)
	}
	var qs []string
	for _, s := range stmts {
		qs = append(qs, s.q)
	}
	want := []string{
		`INSERT INTO "ks"."orders2" ("id", "c", "remark") VALUES (?, ?, ?) USING TIMESTAMP ? AND TTL ?`,
		`INSERT INTO "ks"."orders2" ("id", "c", "n") VALUES (?, ?, ?) USING TIMESTAMP ?`,
	}
	if strings.Join(qs, "\n") != strings.Join(want, "\n") {
		t.Fatalf("statements:\n%s\nwant:\n%s", strings.Join(qs, "\n"), strings.Join(want, "\n"))
	}
	if ttl := stmts[0].args[4]; ttl != 50 {
		t.Fatalf("TTL %v, want 60 - 10 s since the read", ttl)
	}

	// A change event writes NULLs; the tuple goes as a tuple literal.
	ev.Op, ev.After.Meta = pb.Op_OP_UPDATE, nil
	stmts, err = tg.rowStmts(tt, ev, read)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := stmts[0].q, `INSERT INTO "ks"."orders2" ("id", "c", "remark", "n", "s", "tup") VALUES (?, ?, ?, ?, ?, (?, ?))`; got != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
}

func TestStaticOnlyAndDelete(t *testing.T) {
	tg, tt := testTarget()
	ev := &pb.Event{Table: "src.orders", Op: pb.Op_OP_READ,
		Key:   &pb.Row{Names: []string{"id", "c"}, Values: []*pb.Value{iv(1), {}}},
		After: &pb.Row{Names: []string{"id", "c", "s"}, Values: []*pb.Value{iv(1), {}, tv("st")}}}
	stmts, err := tg.rowStmts(tt, ev, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := stmts[0].q, `UPDATE "ks"."orders2" SET "s" = ? WHERE "id" = ?`; got != want {
		t.Fatalf("static-only row: %s", got)
	}
	del := &pb.Event{Table: "src.orders", Op: pb.Op_OP_DELETE, CommitTimeUs: 42,
		Key: &pb.Row{Names: []string{"id", "c"}, Values: []*pb.Value{iv(1), iv(3)}}}
	stmts, err = tg.rowStmts(tt, del, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := stmts[0].q, `DELETE FROM "ks"."orders2" USING TIMESTAMP 42 WHERE "id" = ? AND "c" = ?`; got != want {
		t.Fatalf("delete: %s", got)
	}
}

func TestCheckColumns(t *testing.T) {
	tg, tt := testTarget()
	ev := &pb.Event{Table: "src.orders", After: &pb.Row{Names: []string{"id", "missing"}}}
	err := tg.checkColumns(tt, ev)
	if err == nil || !strings.Contains(err.Error(), "ks.orders2 has no column missing") {
		t.Fatalf("got %v", err)
	}
}

func TestRetryable(t *testing.T) {
	if !retryable(gocql.ErrTimeoutNoResponse) || retryable(gocql.ErrNotFound) {
		t.Fatal("classification")
	}
}

// A write retried after a lost connection is rendered again, so its TTL is
// what is left at the moment of the attempt that succeeds: the cell expires
// when it does in the source, however long the retries took.
func TestRetryRendersTTLAgain(t *testing.T) {
	tg, tt := testTarget()
	tg.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	const read = int64(1_700_000_000_000_000)
	clock := read
	tg.clock = func() int64 { return clock }
	var ttls []any
	tg.execHook = func(all []stmt) error {
		ttls = append(ttls, all[0].args[len(all[0].args)-1])
		if len(ttls) == 1 {
			clock += 10_000_000 // the retry comes 10 s later
			return gocql.ErrNoConnections
		}
		return nil
	}
	ev := &pb.Event{Table: "src.orders", Op: pb.Op_OP_READ, CommitTimeUs: read,
		Key:   &pb.Row{Names: []string{"id", "c"}, Values: []*pb.Value{iv(1), iv(2)}},
		After: &pb.Row{Names: []string{"id", "c", "note"}, Values: []*pb.Value{iv(1), iv(2), tv("x")}, Meta: []*pb.CellMeta{{}, {}, {WritetimeUs: 100, TtlSeconds: 60}}}}
	rejected, err := tg.applyGroup(context.Background(), &group{table: tt, items: []appliers.Item{{Event: ev}}})
	if err != nil || len(rejected) > 0 {
		t.Fatalf("applyGroup: %v, %v", err, rejected)
	}
	if len(ttls) != 2 || ttls[0] != 60 || ttls[1] != 50 {
		t.Fatalf("TTLs of the attempts: %v; want [60 50]", ttls)
	}
}
