package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry/appliers"
	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/e2e/pgtest"
	"github.com/ferry-dev/ferry/internal/pgcodec"
	"github.com/ferry-dev/ferry/streams/pb"
)

// Real-server tests share one private PostgreSQL 15 (started on first use,
// stopped by TestMain); each test gets its own database.
var (
	srvOnce sync.Once
	srv     *pgtest.Server
	srvErr  error
	dbSeq   atomic.Int32
)

func TestMain(m *testing.M) {
	code := m.Run()
	if srv != nil {
		if err := srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping PostgreSQL:", err)
		}
	}
	os.Exit(code)
}

// testDB creates a fresh database, runs setup SQL in it and returns a
// target config for it.
func testDB(tb testing.TB, setup string) config.Target {
	tb.Helper()
	srvOnce.Do(func() { srv, srvErr = pgtest.Start(context.Background(), pgtest.Options{}) })
	pgtest.Require(tb, srvErr)
	ctx := context.Background()
	name := fmt.Sprintf("t%d", dbSeq.Add(1))
	if err := srv.CreateDB(ctx, name); err != nil {
		tb.Fatal(err)
	}
	if setup != "" {
		if err := srv.Exec(ctx, name, setup); err != nil {
			tb.Fatal(err)
		}
	}
	return config.Target{Name: "pgt", Type: "postgres", DSN: srv.DSN(name), From: "pg", BatchSize: 500}
}

func openTarget(tb testing.TB, cfg config.Target) *Target {
	tb.Helper()
	tg, err := open(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(tg.Close)
	return tg
}

// query returns the rows of sql as text, read under ferry's session
// settings (the ones Encode writes for).
func query(tb testing.TB, cfg config.Target, sql string) [][]string {
	tb.Helper()
	ctx := context.Background()
	pc, err := pgx.ParseConfig(cfg.DSN)
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range pgcodec.SessionParams {
		pc.RuntimeParams[k] = v
	}
	conn, err := pgx.ConnectConfig(ctx, pc)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		tb.Fatalf("%s: %v", sql, err)
	}
	var out [][]string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			tb.Fatal(err)
		}
		r := make([]string, len(vals))
		for i, v := range vals {
			if v == nil {
				r[i] = "NULL"
			} else {
				r[i] = fmt.Sprint(v)
			}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

func items(events ...*pb.Event) []appliers.Item {
	out := make([]appliers.Item, len(events))
	for i, e := range events {
		out[i] = appliers.Item{Event: e, Seq: uint64(i + 1)}
	}
	return out
}

var lane0 = appliers.Lane{Source: "pg", Partition: 0}

const ordersDDL = `CREATE TABLE public.orders (
    id bigint PRIMARY KEY,
    customer text NOT NULL DEFAULT 'nobody',
    qty integer CHECK (qty >= 0),
    note varchar(10),
    created timestamptz NOT NULL DEFAULT '2000-01-01 00:00:00+00'
)`

func TestAllTypesRoundTrip(t *testing.T) {
	cfg := testDB(t, `
CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE public.alltypes (
    id bigint PRIMARY KEY,
    i int, n numeric(12,4), f float8, t text, b bytea,
    tz timestamptz, ts timestamp, d date, tm time, iv interval,
    u uuid, j jsonb, ia int[], ta text[], m public.mood, ip inet, ok bool,
    vc varchar(5), bt bit(3), ch char(3), ts3 timestamp(3)
)`)
	tg := openTarget(t, cfg)

	ts := func(us int64, zoned bool) *pb.Value {
		return &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: &pb.Timestamp{UnixUs: us, Zoned: zoned}}}
	}
	tsInf := func(inf int32, zoned bool) *pb.Value {
		return &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: &pb.Timestamp{Infinity: inf, Zoned: zoned}}}
	}
	date := func(days int32) *pb.Value { return &pb.Value{Kind: &pb.Value_Date{Date: &pb.Date{Days: days}}} }
	f64 := func(f float64) *pb.Value { return &pb.Value{Kind: &pb.Value_Float64{Float64: f}} }
	dec := func(s string) *pb.Value { return &pb.Value{Kind: &pb.Value_Decimal{Decimal: s}} }
	arr := func(dims, lower []int32, el ...*pb.Value) *pb.Value {
		return &pb.Value{Kind: &pb.Value_Array{Array: &pb.Array{Dims: dims, LowerBounds: lower, Elements: el}}}
	}
	iv := func(m, d int32, us int64) *pb.Value {
		return &pb.Value{Kind: &pb.Value_Interval{Interval: &pb.Interval{Months: m, Days: d, Micros: us}}}
	}
	uuid := &pb.Value{Kind: &pb.Value_Uuid{Uuid: []byte{0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11}}}
	bytes := func(b ...byte) *pb.Value { return &pb.Value{Kind: &pb.Value_Bytes{Bytes: b}} }
	jsonv := func(s string) *pb.Value { return &pb.Value{Kind: &pb.Value_Json{Json: s}} }
	boolv := func(b bool) *pb.Value { return &pb.Value{Kind: &pb.Value_Bool{Bool: b}} }
	timev := func(us int64) *pb.Value { return &pb.Value{Kind: &pb.Value_TimeUs{TimeUs: us}} }

	cols := []string{"id", "i", "n", "f", "t", "b", "tz", "ts", "d", "tm", "iv", "u", "j", "ia", "ta", "m", "ip", "ok", "vc", "bt", "ch", "ts3"}
	type tc struct {
		vals []*pb.Value
		want []string
	}
	cases := []tc{{
		vals: []*pb.Value{vInt(1), vInt(-42), dec("12345.6700"), f64(0.1), vText("héllo wörld ✓ 日本語 🚀 'q' \"dq\" \\ end"),
			bytes(0, 1, 0xfe, 0xff), ts(1700000000123456, true), ts(1700000000123456, false), date(19675),
			timev(3723000001), iv(14, 3, 4_000_500), uuid, jsonv(`{"b": 1, "a": [true, null]}`),
			arr([]int32{3}, nil, vInt(1), vNull(), vInt(3)),
			arr([]int32{4}, nil, vText("a b"), vText(`q"x`), vText(""), vNull()),
			vNative("happy"), vNative("192.168.0.1/24"), boolv(true), vText("abc"),
			vNative("101"), vText("ab"), ts(1700000000123456, false)},
		want: []string{"1", "-42", "12345.6700", "0.1", "héllo wörld ✓ 日本語 🚀 'q' \"dq\" \\ end",
			`\x0001feff`, "2023-11-14 22:13:20.123456+00", "2023-11-14 22:13:20.123456", "2023-11-14",
			"01:02:03.000001", "P1Y2M3DT4.0005S", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", `{"a": [true, null], "b": 1}`,
			"{1,NULL,3}", `{"a b","q\"x","",NULL}`, "happy", "192.168.0.1/24", "true", "abc",
			"101", "ab", "2023-11-14 22:13:20.123"},
	}, {
		vals: []*pb.Value{vInt(2), {}, dec("NaN"), f64(math.NaN()), vNull(),
			bytes(), tsInf(1, true), tsInf(-1, false), date(-735160),
			timev(86_400_000_000), iv(-1, 0, -1), vNull(), jsonv(`[]`),
			arr([]int32{2, 2}, nil, vInt(1), vInt(2), vInt(3), vInt(4)),
			arr(nil, nil),
			vNative("sad"), vNative("::1"), boolv(false), vText(""), vNull(), vNull(), vNull()},
		want: []string{"2", "NULL", "NaN", "NaN", "NULL",
			`\x`, "infinity", "-infinity", "0044-03-15 BC",
			"24:00:00", "P-1MT-0.000001S", "NULL", "[]",
			"{{1,2},{3,4}}", "{}", "sad", "::1/128", "false", "", "NULL", "NULL", "NULL"},
	}, {
		vals: []*pb.Value{vInt(3), vInt(math.MaxInt32), dec("1.23456"), f64(math.Inf(1)), vText("x"),
			vNull(), ts(-1, true), ts(0, false), date(0),
			timev(0), iv(0, 0, 0), vNull(), jsonv(`"\u00e9"`),
			arr([]int32{2}, []int32{0}, vInt(5), vInt(6)),
			arr([]int32{1}, nil, vText("NULL")),
			vNull(), vNative("10.0.0.0/8"), vNull(), vNull(), vNull(), vNull(), vNull()},
		want: []string{"3", "2147483647", "1.2346", "Infinity", "x",
			"NULL", "1969-12-31 23:59:59.999999+00", "1970-01-01 00:00:00", "1970-01-01",
			"00:00:00", "PT0S", "NULL", `"é"`,
			"[0:1]={5,6}", `{"NULL"}`, "NULL", "10.0.0.0/8", "NULL", "NULL", "NULL", "NULL", "NULL"},
	}, {
		vals: []*pb.Value{vInt(4), vInt(math.MinInt32), dec("-0.0001"), f64(math.Inf(-1)), vText(strings.Repeat("ü", 5000)),
			vNull(), vNull(), vNull(), vNull(), vNull(), vNull(), vNull(), vNull(), vNull(), vNull(), vNull(), vNull(), vNull(),
			vText("ßßßßß"), vNull(), vNull(), vNull()},
		want: []string{"4", "-2147483648", "-0.0001", "-Infinity", strings.Repeat("ü", 5000),
			"NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL",
			"ßßßßß", "NULL", "NULL", "NULL"},
	}}
	var events []*pb.Event
	for _, c := range cases {
		r := &pb.Row{Names: cols, Values: c.vals}
		events = append(events, &pb.Event{Source: "pg", Table: "public.alltypes", Op: pb.Op_OP_READ,
			Key: &pb.Row{Names: []string{"id"}, Values: c.vals[:1]}, After: r})
	}
	rej, err := tg.Apply(context.Background(), lane0, items(events...), 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rej) != 0 {
		t.Fatalf("rejected: %v", rej)
	}
	sel := "SELECT " + strings.Join(func() []string {
		var s []string
		for _, c := range cols {
			s = append(s, c+"::text")
		}
		return s
	}(), ", ") + " FROM alltypes ORDER BY id"
	got := query(t, cfg, sel)
	if len(got) != len(cases) {
		t.Fatalf("%d rows, want %d", len(got), len(cases))
	}
	for i, c := range cases {
		for j, w := range c.want {
			if got[i][j] != w {
				t.Errorf("row %d column %s = %q, want %q", i+1, cols[j], got[i][j], w)
			}
		}
	}
}

func TestApplyIdempotentAndApplied(t *testing.T) {
	cfg := testDB(t, ordersDDL)
	tg := openTarget(t, cfg)
	ctx := context.Background()
	if seq, err := tg.Applied(ctx, lane0); err != nil || seq != 0 {
		t.Fatalf("Applied before any batch = %d, %v", seq, err)
	}
	batch := items(
		ins(1, "ann", 1), ins(2, "bob", 2), ins(3, "cat", 3),
		upd(1, "ann", 10),
		del(2),
		partial(3, 30),
		ins(4, "dan", 4), del(4), ins(4, "dan", 44), // insert, delete, insert of one key
		del(1), ins(100, "ann", 10), // a key change as delete + insert
	)
	want := [][]string{{"3", "cat", "30"}, {"4", "dan", "44"}, {"100", "ann", "10"}}
	for round := 1; round <= 2; round++ {
		rej, err := tg.Apply(ctx, lane0, batch, 1000, nil)
		if err != nil || len(rej) != 0 {
			t.Fatalf("round %d: %v %v", round, rej, err)
		}
		if got := query(t, cfg, "SELECT id, customer, qty FROM orders ORDER BY id"); !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: rows %v, want %v", round, got, want)
		}
	}
	if seq, err := tg.Applied(ctx, lane0); err != nil || seq != 1000 {
		t.Errorf("Applied = %d, %v; want 1000", seq, err)
	}
	// Another lane and another target on the same database keep their own.
	if seq, err := tg.Applied(ctx, appliers.Lane{Source: "pg", Partition: 1}); err != nil || seq != 0 {
		t.Errorf("Applied(lane 1) = %d, %v; want 0", seq, err)
	}
	cfg2 := cfg
	cfg2.Name = "other"
	if seq, err := openTarget(t, cfg2).Applied(ctx, lane0); err != nil || seq != 0 {
		t.Errorf("other target Applied = %d, %v; want 0", seq, err)
	}
	// A reopened target reads the watermark back.
	if seq, err := openTarget(t, cfg).Applied(ctx, lane0); err != nil || seq != 1000 {
		t.Errorf("reopened Applied = %d, %v; want 1000", seq, err)
	}
	// Columns the events lack got their defaults.
	if got := query(t, cfg, "SELECT created::text FROM orders WHERE id = 3"); got[0][0] != "2000-01-01 00:00:00+00" {
		t.Errorf("default of created = %v", got)
	}
	// An empty batch still records its sequence.
	if _, err := tg.Apply(ctx, lane0, nil, 1001, nil); err != nil {
		t.Fatal(err)
	}
	if seq, _ := tg.Applied(ctx, lane0); seq != 1001 {
		t.Errorf("Applied after empty batch = %d", seq)
	}
}

func TestMissingTableAndColumnArePermanent(t *testing.T) {
	cfg := testDB(t, ordersDDL)
	tg := openTarget(t, cfg)
	ctx := context.Background()

	e := ins(1, "a", 1)
	e.Table = "public.nope"
	_, err := tg.Apply(ctx, lane0, items(e), 1, nil)
	if !errors.Is(err, appliers.ErrPermanent) || !strings.Contains(err.Error(), "target pgt: table public.nope does not exist (events from source pg)") {
		t.Errorf("missing table: %v", err)
	}

	e = ins(1, "a", 1)
	e.After.Names = append(e.After.Names, "colname")
	e.After.Values = append(e.After.Values, vInt(1))
	_, err = tg.Apply(ctx, lane0, items(ins(2, "b", 2), e), 2, nil)
	if !errors.Is(err, appliers.ErrPermanent) || !strings.Contains(err.Error(), "public.orders.colname") {
		t.Errorf("missing column: %v", err)
	}
	if got := query(t, cfg, "SELECT count(*) FROM orders"); got[0][0] != "0" {
		t.Errorf("a failed batch wrote rows: %v", got)
	}
	if seq, _ := tg.Applied(ctx, lane0); seq != 0 {
		t.Errorf("a failed batch recorded sequence %d", seq)
	}

	// Once the column is added the same batch goes through: the cached
	// definition is read again before the error is called permanent.
	db := dbName(cfg)
	if err := srv.Exec(ctx, db, "ALTER TABLE orders ADD COLUMN colname int"); err != nil {
		t.Fatal(err)
	}
	if _, err := tg.Apply(ctx, lane0, items(ins(2, "b", 2), e), 2, nil); err != nil {
		t.Fatalf("after ALTER TABLE: %v", err)
	}
	if got := query(t, cfg, "SELECT id, colname FROM orders ORDER BY id"); !reflect.DeepEqual(got, [][]string{{"1", "1"}, {"2", "NULL"}}) {
		t.Errorf("rows %v", got)
	}

	// A column dropped after the table was cached: the first attempt fails
	// (and may be retried), the retry reads the table again and reports the
	// column as missing for good.
	if err := srv.Exec(ctx, db, "ALTER TABLE orders DROP COLUMN note"); err != nil {
		t.Fatal(err)
	}
	_, err = tg.Apply(ctx, lane0, items(ins(3, "c", 3)), 3, nil)
	if err == nil || errors.Is(err, appliers.ErrPermanent) {
		t.Errorf("first attempt after DROP COLUMN: %v, want a retryable error", err)
	}
	_, err = tg.Apply(ctx, lane0, items(ins(3, "c", 3)), 3, nil)
	if !errors.Is(err, appliers.ErrPermanent) || !strings.Contains(err.Error(), "column public.orders.note does not exist") {
		t.Errorf("retry after DROP COLUMN: %v", err)
	}
}

func dbName(cfg config.Target) string {
	s := cfg.DSN[strings.LastIndex(cfg.DSN, "/")+1:]
	return s[:strings.Index(s, "?")]
}

func TestCheckViolationIsRejected(t *testing.T) {
	cfg := testDB(t, ordersDDL+"; CREATE TABLE public.lines (id bigint PRIMARY KEY, ip inet NOT NULL, n int)")
	tg := openTarget(t, cfg)
	ctx := context.Background()

	bad := ins(3, "cat", -1) // violates CHECK (qty >= 0)
	rej, err := tg.Apply(ctx, lane0, items(ins(1, "ann", 1), ins(2, "bob", 2), bad, ins(4, "dan", 4), upd(1, "ann", 11)), 50, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rej) != 1 || rej[0].Item.Event != bad || rej[0].Item.Seq != 3 {
		t.Fatalf("rejected = %+v, want exactly the row with id 3", rej)
	}
	t.Logf("reason: %s", rej[0].Reason)
	for _, s := range []string{"public.orders", "id=3", "check constraint", "SQLSTATE 23514"} {
		if !strings.Contains(rej[0].Reason, s) {
			t.Errorf("reason %q lacks %q", rej[0].Reason, s)
		}
	}
	if got := query(t, cfg, "SELECT id, qty FROM orders ORDER BY id"); !reflect.DeepEqual(got, [][]string{{"1", "11"}, {"2", "2"}, {"4", "4"}}) {
		t.Errorf("rows %v", got)
	}
	if seq, _ := tg.Applied(ctx, lane0); seq != 50 {
		t.Errorf("Applied = %d, want 50", seq)
	}

	// Other kinds of refusal in one batch: NOT NULL, text the type cannot
	// read, a value out of range; and an event that cannot be encoded.
	line := func(id int64, ip, n *pb.Value) *pb.Event {
		return &pb.Event{Source: "pg", Table: "public.lines", Op: pb.Op_OP_INSERT,
			Key: row("id", vInt(id)), After: row("id", vInt(id), "ip", ip, "n", n)}
	}
	batch := []*pb.Event{
		line(1, vNative("10.0.0.1"), vInt(1)),
		line(2, vNull(), vInt(1)),                     // 23502
		line(3, vNative("not an address"), vInt(1)),   // 22P02
		line(4, vNative("10.0.0.4"), vInt(1<<40)),     // 22003
		line(5, vNative("10.0.0.5"), vText("a\x00b")), // NUL: no text form
		line(6, vNative("10.0.0.6"), vInt(6)),
	}
	rej, err = tg.Apply(ctx, lane0, items(batch...), 60, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rej {
		got = append(got, fmt.Sprintf("%d", r.Item.Seq))
	}
	if want := []string{"2", "3", "4", "5"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("rejected seqs %v, want %v; %+v", got, want, rej)
	}
	for i, code := range []string{"23502", "22P02", "22003", "NUL"} {
		if !strings.Contains(rej[i].Reason, code) {
			t.Errorf("reason %q lacks %q", rej[i].Reason, code)
		}
	}
	if got := query(t, cfg, "SELECT id FROM lines ORDER BY id"); !reflect.DeepEqual(got, [][]string{{"1"}, {"6"}}) {
		t.Errorf("rows %v", got)
	}
}

func TestPartialUpdateKeepsUnchangedColumn(t *testing.T) {
	cfg := testDB(t, `CREATE TABLE public.docs (id bigint PRIMARY KEY, body text, n int, tag text)`)
	tg := openTarget(t, cfg)
	ctx := context.Background()
	body := strings.Repeat("large TOASTed body ", 10000)
	doc := func(op pb.Op, id int64, kv ...any) *pb.Event {
		return &pb.Event{Source: "pg", Table: "public.docs", Op: op, Key: row("id", vInt(id)), After: row(append([]any{"id", vInt(id)}, kv...)...)}
	}
	if _, err := tg.Apply(ctx, lane0, items(
		doc(pb.Op_OP_INSERT, 1, "body", vText(body), "n", vInt(1), "tag", vText("a")),
		doc(pb.Op_OP_INSERT, 2, "body", vText(body), "n", vInt(1), "tag", vText("a")),
	), 2, nil); err != nil {
		t.Fatal(err)
	}
	p1 := doc(pb.Op_OP_UPDATE, 1, "n", vInt(2), "tag", vText("b"))
	p1.Unchanged = []string{"body"}
	p2 := doc(pb.Op_OP_UPDATE, 1, "n", vInt(3), "tag", vText("c"))
	p2.Unchanged = []string{"body"}
	p3 := doc(pb.Op_OP_UPDATE, 2, "n", vInt(9), "tag", vNull())
	p3.Unchanged = []string{"body"}
	if _, err := tg.Apply(ctx, lane0, items(p1, p2, p3), 5, nil); err != nil {
		t.Fatal(err)
	}
	got := query(t, cfg, "SELECT id, body = repeat('large TOASTed body ', 10000), n, tag FROM docs ORDER BY id")
	if want := [][]string{{"1", "true", "3", "c"}, {"2", "true", "9", "NULL"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
	// A partial update that changes the key moves the row with its body.
	mv := doc(pb.Op_OP_UPDATE, 10, "n", vInt(4), "tag", vText("moved"))
	mv.Before = row("id", vInt(1))
	mv.Unchanged = []string{"body"}
	if _, err := tg.Apply(ctx, lane0, items(mv), 6, nil); err != nil {
		t.Fatal(err)
	}
	got = query(t, cfg, "SELECT id, body = repeat('large TOASTed body ', 10000), n, tag FROM docs ORDER BY id")
	if want := [][]string{{"2", "true", "9", "NULL"}, {"10", "true", "4", "moved"}}; !reflect.DeepEqual(got, want) {
		t.Errorf("after key change: rows %v, want %v", got, want)
	}
}

func TestSchemaOverrideAndCockroachTypeOnPostgres(t *testing.T) {
	cfg := testDB(t, "CREATE SCHEMA mig; "+strings.Replace(ordersDDL, "public.orders", "mig.orders", 1))
	cfg.Schema = "mig"
	cfg.Type = "cockroachdb" // the dialect follows the server, not the type
	tg, err := appliers.Open(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	if d := tg.(*Target).dialect; d != dialectPostgres {
		t.Errorf("dialect %v on a PostgreSQL server", d)
	}
	if _, err := tg.Apply(context.Background(), lane0, items(ins(1, "a", 1)), 1, nil); err != nil {
		t.Fatal(err)
	}
	if got := query(t, cfg, "SELECT id FROM mig.orders"); !reflect.DeepEqual(got, [][]string{{"1"}}) {
		t.Errorf("rows %v", got)
	}
	if err := tg.Ping(context.Background()); err != nil {
		t.Error(err)
	}
}

func TestIdentityAlwaysTakesSourceValues(t *testing.T) {
	cfg := testDB(t, `CREATE TABLE public.ids (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text,
        total int GENERATED ALWAYS AS (length(v)) STORED)`)
	tg := openTarget(t, cfg)
	e := &pb.Event{Source: "pg", Table: "public.ids", Op: pb.Op_OP_READ,
		After: row("id", vInt(42), "v", vText("abc"), "total", vInt(999))}
	if _, err := tg.Apply(context.Background(), lane0, items(e), 1, nil); err != nil {
		t.Fatal(err)
	}
	if got := query(t, cfg, "SELECT id, v, total FROM ids"); !reflect.DeepEqual(got, [][]string{{"42", "abc", "3"}}) {
		t.Errorf("rows %v", got)
	}
}

func TestConcurrentLanes(t *testing.T) {
	cfg := testDB(t, ordersDDL)
	tg := openTarget(t, cfg)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for l := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lane := appliers.Lane{Source: "pg", Partition: l}
			for b := range 10 {
				var evs []*pb.Event
				for i := range 20 {
					evs = append(evs, ins(int64(l*10000+b*100+i), "c", 1))
				}
				if _, err := tg.Apply(context.Background(), lane, items(evs...), uint64(b+1), nil); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := query(t, cfg, "SELECT count(*) FROM orders"); got[0][0] != "1600" {
		t.Errorf("%v rows, want 1600", got)
	}
	if got := query(t, cfg, "SELECT count(*), min(seq), max(seq) FROM ferry_state.applied"); !reflect.DeepEqual(got, [][]string{{"8", "10", "10"}}) {
		t.Errorf("applied lanes, min, max seq = %v, want 8 lanes at 10", got)
	}
}

func TestOpenUnreachableRedactsPassword(t *testing.T) {
	cfg := config.Target{Name: "bad", Type: "postgres", DSN: "postgres://ferry:s3cretpw@127.0.0.1:1/db?connect_timeout=2&sslmode=disable"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if strings.Contains(msg, "s3cretpw") || !strings.Contains(msg, "target bad") || !strings.Contains(msg, "@127.0.0.1:1/db") {
		t.Errorf("error %q", msg)
	}

	cfg.DSN = "host=127.0.0.1 port=notaport password=s3cretpw"
	_, err = Open(ctx, cfg, nil)
	if err == nil || strings.Contains(err.Error(), "s3cretpw") || !strings.Contains(err.Error(), "target bad") {
		t.Errorf("bad dsn error %v", err)
	}
}

// BenchmarkApplyUpsert writes 500-row batches of a 5-column table; half the
// keys of each batch are new, half update rows of the previous batch.
func BenchmarkApplyUpsert(b *testing.B) {
	cfg := testDB(b, `CREATE TABLE public.bench (id bigint PRIMARY KEY, name text, qty int, price numeric(12,2), at timestamptz)`)
	tg := openTarget(b, cfg)
	ctx := context.Background()
	const rows = 500
	batch := func(n int) []appliers.Item {
		its := make([]appliers.Item, rows)
		for i := range rows {
			id := int64(n*rows/2 + i)
			its[i] = appliers.Item{Seq: uint64(n + 1), Event: &pb.Event{Source: "pg", Table: "public.bench", Op: pb.Op_OP_INSERT,
				Key: row("id", vInt(id)),
				After: row("id", vInt(id), "name", vText(fmt.Sprintf("item %d", id)), "qty", vInt(int64(n)),
					"price", &pb.Value{Kind: &pb.Value_Decimal{Decimal: "19.99"}},
					"at", &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: &pb.Timestamp{UnixUs: 1700000000000000 + id, Zoned: true}}})}}
		}
		return its
	}
	pre := make([][]appliers.Item, 64)
	for i := range pre {
		pre[i] = batch(i)
	}
	b.ResetTimer()
	start := time.Now()
	for n := range b.N {
		if _, err := tg.Apply(ctx, lane0, pre[n%len(pre)], uint64(n+1), nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*rows)/time.Since(start).Seconds(), "rows/s")
}

// A segment larger than maxStatementRows is written in several executions.
func TestLargeSegment(t *testing.T) {
	cfg := testDB(t, ordersDDL)
	tg := openTarget(t, cfg)
	n := 2*maxStatementRows + 1
	evs := make([]*pb.Event, 0, n+1)
	for i := range n {
		evs = append(evs, ins(int64(i), "c", int64(i)))
	}
	evs = append(evs, upd(0, "last", 7)) // moves key 0 to the end of the segment
	if _, err := tg.Apply(context.Background(), lane0, items(evs...), 1, nil); err != nil {
		t.Fatal(err)
	}
	got := query(t, cfg, "SELECT count(*), sum(qty), min(customer) FILTER (WHERE id = 0) FROM orders")
	want := [][]string{{fmt.Sprint(n), fmt.Sprint(n*(n-1)/2 + 7), "last"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// A deferred foreign key fails at COMMIT; the refused row is still found and
// rejected, and a failed COMMIT is never taken for success.
func TestDeferredConstraintAtCommit(t *testing.T) {
	cfg := testDB(t, `CREATE TABLE public.parent (id bigint PRIMARY KEY);
CREATE TABLE public.child (id bigint PRIMARY KEY,
    parent_id bigint REFERENCES public.parent DEFERRABLE INITIALLY DEFERRED)`)
	tg := openTarget(t, cfg)
	ev := func(tbl string, kv ...any) *pb.Event {
		return &pb.Event{Source: "pg", Table: "public." + tbl, Op: pb.Op_OP_INSERT, Key: row(kv[:2]...), After: row(kv...)}
	}
	bad := ev("child", "id", vInt(11), "parent_id", vInt(999))
	rej, err := tg.Apply(context.Background(), lane0, items(
		ev("parent", "id", vInt(1)),
		ev("child", "id", vInt(10), "parent_id", vInt(1)),
		bad,
		ev("child", "id", vInt(12), "parent_id", vInt(1)),
	), 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rej) != 1 || rej[0].Item.Event != bad || !strings.Contains(rej[0].Reason, "23503") {
		t.Fatalf("rejected %+v, want child 11 for its foreign key", rej)
	}
	if got := query(t, cfg, "SELECT id FROM child ORDER BY id"); !reflect.DeepEqual(got, [][]string{{"10"}, {"12"}}) {
		t.Errorf("rows %v", got)
	}
	if seq, _ := tg.Applied(context.Background(), lane0); seq != 4 {
		t.Errorf("Applied = %d, want 4", seq)
	}
}

// A ferry user without CREATE privilege works when the state table was
// created for it.
func TestOpenWithoutCreatePrivilege(t *testing.T) {
	cfg := testDB(t, ordersDDL)
	db := dbName(cfg)
	if err := srv.Exec(context.Background(), db, `
CREATE ROLE ferry_user_`+db+` LOGIN;
REVOKE CREATE ON DATABASE `+db+` FROM PUBLIC;
CREATE SCHEMA ferry_state;
CREATE TABLE ferry_state.applied (target text, source text, lane int, seq bigint NOT NULL,
    updated_at timestamptz, PRIMARY KEY (target, source, lane));
GRANT USAGE ON SCHEMA ferry_state TO ferry_user_`+db+`;
GRANT SELECT, INSERT, UPDATE ON ferry_state.applied TO ferry_user_`+db+`;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.orders TO ferry_user_`+db); err != nil {
		t.Fatal(err)
	}
	cfg.DSN = strings.Replace(cfg.DSN, "//postgres@", "//ferry_user_"+db+"@", 1)
	tg := openTarget(t, cfg)
	if _, err := tg.Apply(context.Background(), lane0, items(ins(1, "a", 1)), 1, nil); err != nil {
		t.Fatal(err)
	}
	if seq, err := tg.Applied(context.Background(), lane0); err != nil || seq != 1 {
		t.Errorf("Applied = %d, %v", seq, err)
	}
}
