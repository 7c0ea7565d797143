package oracle

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/producers"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

// These tests run the producer against real JetStream (the embedded
// server) with a fake Oracle: recorded LogMiner rows and canned query
// results.

func embedded(t *testing.T) *streams.Conn {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := config.NATS{Listen: addr, DataDir: filepath.Join(t.TempDir(), "nats"), Replicas: 1, MaxPayload: 1 << 20, DuplicateWindow: config.Duration(10 * time.Minute)}
	c, err := streams.Connect(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// fakeMiner serves recorded rows by SCN window.
type fakeMiner struct {
	mu      sync.Mutex
	rows    []MinedRow
	head    uint64
	windows [][2]uint64
}

func (m *fakeMiner) CurrentSCN(context.Context) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.head, nil
}

func (m *fakeMiner) Mine(ctx context.Context, from, to uint64, owners []string, fn func(MinedRow) error) error {
	m.mu.Lock()
	rows := append([]MinedRow(nil), m.rows...)
	m.windows = append(m.windows, [2]uint64{from, to})
	m.mu.Unlock()
	for _, r := range rows {
		if r.SCN >= from && r.SCN <= to {
			if err := fn(r); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *fakeMiner) firstWindowFrom() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.windows) == 0 {
		return 0
	}
	return m.windows[0][0]
}

// fakeQuerier answers the catalog, SCN, chunk-plan and chunk queries for
// HR.ORDERS (ID NUMBER primary key, NAME, AMOUNT, NOTE CLOB) holding ids
// 1..n.
type fakeQuerier struct {
	n          int
	scn, since uint64
	mu         sync.Mutex
	seen       []string
}

func (q *fakeQuerier) Query(_ context.Context, sql string, args []any, fn func([]any) error) error {
	q.mu.Lock()
	q.seen = append(q.seen, sql)
	q.mu.Unlock()
	rows := [][]any{}
	switch {
	case sql == columnsSQL:
		rows = [][]any{{"ID", "NUMBER", "0", "N"}, {"NAME", "VARCHAR2", nil, "Y"}, {"AMOUNT", "NUMBER", "2", "Y"}, {"NOTE", "CLOB", nil, "Y"}}
	case sql == keySQL:
		rows = [][]any{{"ID"}}
	case sql == currentSCNSQL:
		rows = [][]any{{fmt.Sprint(q.scn), fmt.Sprint(q.since)}}
	case strings.Contains(sql, "FERRY_RN"):
		every := args[1].(int)
		for id := every; id <= q.n; id += every {
			rows = append(rows, []any{fmt.Sprint(id)})
		}
	case strings.HasPrefix(sql, `SELECT TO_CHAR("ID"), "NAME", TO_CHAR("AMOUNT"), "NOTE" FROM "HR"."ORDERS" AS OF SCN`):
		if args[0] != fmt.Sprint(q.scn) {
			return fmt.Errorf("chunk read AS OF SCN %v, want the snapshot SCN %d", args[0], q.scn)
		}
		lo, hi := 0, q.n
		i := 1
		if strings.Contains(sql, `"ID" > TO_NUMBER`) {
			fmt.Sscan(args[i].(string), &lo)
			i++
		}
		if strings.Contains(sql, `"ID" <= TO_NUMBER`) {
			fmt.Sscan(args[i].(string), &hi)
		}
		for id := lo + 1; id <= hi; id++ {
			rows = append(rows, []any{fmt.Sprint(id), fmt.Sprintf("row %d", id), "10.5", nil})
		}
	default:
		return fmt.Errorf("fake Oracle: unexpected query %s", sql)
	}
	for _, r := range rows {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// dropKV loses the writes of some keys: a producer that dies before it
// saves its position.
type dropKV struct {
	jetstream.KeyValue
	drop func(key string) bool
}

func (d dropKV) Put(ctx context.Context, key string, value []byte) (uint64, error) {
	if d.drop(key) {
		return 1, nil
	}
	return d.KeyValue.Put(ctx, key, value)
}

func testSource(mode string) config.Source {
	return config.Source{Name: "ora", Type: "oracle", DSN: "oracle://u@h/s", Tables: []string{"HR.ORDERS"}, Mode: mode,
		Partitions: 4, ChunkRows: 2, SnapshotWorkers: 2, SCNWindow: 25, PollInterval: config.Duration(20 * time.Millisecond), TxBufferBytes: 1 << 20}
}

// runProducer runs a producer until the stream holds want messages, then
// stops it and returns its error.
func runProducer(t *testing.T, conn *streams.Conn, state *streams.State, cfg config.Source, m Miner, q Querier, want uint64) {
	t.Helper()
	runProducerUntil(t, conn, state, cfg, m, q, want, nil)
}

// runProducerUntil is runProducer that also waits, before stopping it, for
// done to hold (nil: no more than the messages).
func runProducerUntil(t *testing.T, conn *streams.Conn, state *streams.State, cfg config.Source, m Miner, q Querier, want uint64, done func() bool) {
	t.Helper()
	cfg.SpillDir = t.TempDir()
	p := newProducer(cfg, producers.Env{Conn: conn, State: state, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, m, q, q)
	p.flushLag = 0 // the fake's redo is all there
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- p.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := conn.JS.Stream(context.Background(), streams.StreamName(cfg.Name))
		if err == nil {
			info, err := st.Info(context.Background())
			if err == nil && info.State.Msgs >= want && (done == nil || done()) {
				break
			}
		}
		select {
		case err := <-errc:
			t.Fatalf("producer stopped before the stream held %d messages: %v", want, err)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("the stream did not reach %d messages", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("producer: %v", err)
	}
}

// streamEvents reads every event of the source's stream, in stream order.
func streamEvents(t *testing.T, conn *streams.Conn) []*pb.Event {
	t.Helper()
	ctx := context.Background()
	st, err := conn.JS.Stream(ctx, streams.StreamName("ora"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*pb.Event
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		b, err := streams.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b.Events...)
	}
	return out
}

func changeSummary(evs []*pb.Event) string {
	var s []string
	for _, ev := range evs {
		if ev.Op == pb.Op_OP_READ {
			continue
		}
		s = append(s, fmt.Sprintf("%s %s id=%d tx=%s/%d pos=%s", strings.TrimPrefix(ev.Op.String(), "OP_"), ev.Table, ev.Key.Values[0].GetInt(), ev.TxId, ev.TxIndex, ev.PositionText))
	}
	return strings.Join(s, "\n")
}

// The snapshot reads AS OF one SCN in chunks; the change stream starts at
// the oldest transaction open then, skips what the snapshot already holds,
// and publishes a transaction that began before the snapshot and committed
// after it whole.
func TestSnapshotThenChanges(t *testing.T) {
	conn := embedded(t)
	state, err := conn.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	q := &fakeQuerier{n: 5, scn: 1000, since: 990}
	m := &fakeMiner{head: 1020, rows: []MinedRow{
		insOrder(990, "OPEN.1.1", 6, "six"), // open at the snapshot
		insOrder(995, "DONE.1.1", 7, "seven"),
		commit(998, "DONE.1.1"), // committed before the snapshot SCN: in the snapshot
		updOrder(1003, "OPEN.1.1", 6, "six", "six!"),
		commit(1005, "OPEN.1.1"),
		updOrder(1010, "LATE.1.1", 1, "row 1", "one"),
		commit(1011, "LATE.1.1"),
	}}
	cfg := testSource(config.ModeSnapshotCDC)
	cfg.Tables = nil // every table of the user's schema
	q2 := &userTablesQuerier{q}
	runProducer(t, conn, state, cfg, m, q2, 3+3+2)

	evs := streamEvents(t, conn)
	reads := map[int64]bool{}
	for _, ev := range evs {
		if ev.Op == pb.Op_OP_READ {
			reads[ev.Key.Values[0].GetInt()] = true
		}
	}
	if len(reads) != 5 {
		t.Errorf("snapshot read ids %v, want 1..5", reads)
	}
	want := "INSERT HR.ORDERS id=6 tx=OPEN.1.1/0 pos=1005/0/0\nUPDATE HR.ORDERS id=6 tx=OPEN.1.1/1 pos=1005/0/1\nUPDATE HR.ORDERS id=1 tx=LATE.1.1/0 pos=1011/0/0"
	if got := changeSummary(evs); got != want {
		t.Errorf("changes:\n%s\nwant\n%s", got, want)
	}
	if from := m.firstWindowFrom(); from != 990 {
		t.Errorf("mining began at SCN %d, want 990 (the oldest transaction open at the snapshot)", from)
	}
	var cp checkpoint
	if _, err := state.GetJSON(context.Background(), lmKey("ora"), &cp); err != nil {
		t.Fatal(err)
	}
	if cp.CommitSCN != 1011 || cp.RestartSCN != 1021 {
		t.Errorf("saved checkpoint %+v, want commit 1011 and restart 1021", cp)
	}
	var snap streams.SnapshotState
	if _, err := state.GetJSON(context.Background(), streams.SnapshotKey("ora"), &snap); err != nil || !snap.Done || snap.Consistent != "1000" {
		t.Errorf("snapshot state %+v, %v", snap, err)
	}
}

// userTablesQuerier also lists the user's tables.
type userTablesQuerier struct{ *fakeQuerier }

func (q *userTablesQuerier) Query(ctx context.Context, sql string, args []any, fn func([]any) error) error {
	if sql == userTablesSQL {
		return fn([]any{"HR", "ORDERS"})
	}
	return q.fakeQuerier.Query(ctx, sql, args, fn)
}

// A producer dies after publishing but before saving its position. The
// next run mines the same transactions again; JetStream drops the repeats
// by message id, so the stream holds every change once, in commit order,
// and the long transaction still open at the crash is published whole.
func TestResumeAfterCrashBetweenPublishAndSave(t *testing.T) {
	conn := embedded(t)
	ctx := context.Background()
	state, err := conn.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testSource(config.ModeCDC)
	cfg.SCN = 100
	q := &fakeQuerier{}
	m := &fakeMiner{head: 130, rows: []MinedRow{
		insOrder(101, "A.1.1", 1, "a"),
		insOrder(105, "LONG.1.1", 9, "long"),
		dml(106, "A.1.1", opcodeInsert, "ITEMS", "I1", `insert into "HR"."ITEMS"("ORDER_ID","LINE","SKU") values ('1','1','X');`),
		commit(110, "A.1.1"),
		insOrder(115, "B.1.1", 2, "b"),
		commit(120, "B.1.1"),
	}}
	// ITEMS is in the pipeline too.
	cfg.Tables = []string{"HR.ORDERS", "HR.ITEMS"}
	iq := &itemsQuerier{q}
	lost := &streams.State{KV: dropKV{KeyValue: state.KV, drop: func(k string) bool {
		return k == lmKey("ora") || k == streams.PositionKey("ora")
	}}}
	runProducer(t, conn, lost, cfg, m, iq, 3)
	if found, _ := state.GetJSON(ctx, lmKey("ora"), &checkpoint{}); found {
		t.Fatal("the first run's checkpoint was saved; the crash was not simulated")
	}

	// Meanwhile C commits and the long transaction ends.
	m.mu.Lock()
	m.rows = append(m.rows,
		insOrder(125, "C.1.1", 3, "c"),
		commit(126, "C.1.1"),
		updOrder(135, "LONG.1.1", 9, "long", "longer"),
		commit(140, "LONG.1.1"),
	)
	m.head = 150
	m.mu.Unlock()
	// Stop only once the last window is mined and saved, which the
	// assertions below are about; the messages alone arrive before that.
	runProducerUntil(t, conn, state, cfg, m, iq, 6, func() bool {
		var pos streams.Position
		found, err := state.GetJSON(ctx, streams.PositionKey("ora"), &pos)
		return err == nil && found && pos.Text == "150"
	})

	want := strings.Join([]string{
		"INSERT HR.ORDERS id=1 tx=A.1.1/0 pos=110/0/0",
		"INSERT HR.ITEMS id=1 tx=A.1.1/1 pos=110/0/1",
		"INSERT HR.ORDERS id=2 tx=B.1.1/0 pos=120/0/0",
		"INSERT HR.ORDERS id=3 tx=C.1.1/0 pos=126/0/0",
		"INSERT HR.ORDERS id=9 tx=LONG.1.1/0 pos=140/0/0",
		"UPDATE HR.ORDERS id=9 tx=LONG.1.1/1 pos=140/0/1",
	}, "\n")
	if got := changeSummary(streamEvents(t, conn)); got != want {
		t.Fatalf("stream after the restart:\n%s\nwant\n%s", got, want)
	}
	var cp checkpoint
	if _, err := state.GetJSON(ctx, lmKey("ora"), &cp); err != nil {
		t.Fatal(err)
	}
	if cp.CommitSCN != 140 || len(cp.XIDs) != 1 || cp.XIDs[0] != "LONG.1.1" || cp.RestartSCN != 151 {
		t.Errorf("checkpoint %+v, want commit 140 by LONG.1.1, restart 151", cp)
	}
	var pos streams.Position
	if _, err := state.GetJSON(ctx, streams.PositionKey("ora"), &pos); err != nil || pos.Text != "150" {
		t.Errorf("position %+v, %v; want 150, the last SCN mined", pos, err)
	}
	p := newProducer(cfg, producers.Env{Conn: conn, State: state, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, m, iq, iq)
	cur, err := p.CurrentPosition(ctx)
	if err != nil || cur.Text != "150" || string(cur.Pos) > string(pos.Pos) {
		t.Errorf("current position %+v, %v: the saved position must have reached it", cur, err)
	}
}

// itemsQuerier adds HR.ITEMS (ORDER_ID, LINE) to the catalog.
type itemsQuerier struct{ *fakeQuerier }

func (q *itemsQuerier) Query(ctx context.Context, sql string, args []any, fn func([]any) error) error {
	if (sql == columnsSQL || sql == keySQL) && args[1] == "ITEMS" {
		rows := [][]any{{"ORDER_ID", "NUMBER", "0", "N"}, {"LINE", "NUMBER", "0", "N"}, {"SKU", "VARCHAR2", nil, "Y"}}
		if sql == keySQL {
			rows = [][]any{{"ORDER_ID"}, {"LINE"}}
		}
		for _, r := range rows {
			if err := fn(r); err != nil {
				return err
			}
		}
		return nil
	}
	return q.fakeQuerier.Query(ctx, sql, args, fn)
}

func TestFlushWatch(t *testing.T) {
	f := &flushWatch{lag: 5 * time.Second}
	t0 := time.Unix(1000, 0)
	if got := f.observe(t0, 100); got != 0 {
		t.Errorf("at once: %d, want 0 (nothing is old enough)", got)
	}
	if got := f.observe(t0.Add(3*time.Second), 130); got != 0 {
		t.Errorf("after 3s: %d", got)
	}
	if got := f.observe(t0.Add(6*time.Second), 160); got != 100 {
		t.Errorf("after 6s: %d, want 100, the SCN current 5s or more before", got)
	}
	if got := f.observe(t0.Add(9*time.Second), 190); got != 130 {
		t.Errorf("after 9s: %d, want 130", got)
	}
	if len(f.samples) > 3 {
		t.Errorf("kept %d samples", len(f.samples))
	}
	if got := (&flushWatch{}).observe(t0, 42); got != 42 {
		t.Errorf("without lag: %d", got)
	}
}

// lobQuerier answers the read-back of LOB columns written through a
// locator, and records it.
type lobQuerier struct {
	*fakeQuerier
	asked [][]any
}

func (q *lobQuerier) Query(ctx context.Context, sql string, args []any, fn func([]any) error) error {
	if sql == `SELECT "NOTE" FROM "HR"."ORDERS" AS OF SCN TO_NUMBER(:1) WHERE "ID" = TO_NUMBER(:2)` {
		q.mu.Lock()
		q.asked = append(q.asked, args)
		q.mu.Unlock()
		return fn([]any{"a long note written through a locator"})
	}
	return q.fakeQuerier.Query(ctx, sql, args, fn)
}

// A CLOB inserted as EMPTY_CLOB() and written through its locator is read
// back as of the commit; an update that leaves it alone keeps it unchanged.
func TestLOBReadAtCommit(t *testing.T) {
	conn := embedded(t)
	state, err := conn.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cfg := testSource(config.ModeCDC)
	cfg.SCN = 10
	q := &lobQuerier{fakeQuerier: &fakeQuerier{}}
	m := &fakeMiner{head: 40, rows: []MinedRow{
		dml(11, "L.1.1", opcodeInsert, "ORDERS", "ROW1", `insert into "HR"."ORDERS"("ID","NAME","AMOUNT","NOTE") values ('1','a','10.50',EMPTY_CLOB());`),
		{SCN: 12, Op: opcodeLOBLocator, XID: "L.1.1", Owner: "HR", Table: "ORDERS", SQLRedo: `DECLARE loc_c CLOB; BEGIN select "NOTE" into loc_c from "HR"."ORDERS" where "ID" = '1' for update;`},
		{SCN: 13, Op: opcodeLOBWrite, XID: "L.1.1", Owner: "HR", Table: "ORDERS", SQLRedo: `buf_c := 'a long note'; dbms_lob.write(loc_c, 11, 1, buf_c); END;`},
		commit(14, "L.1.1"),
		updOrder(20, "U.1.1", 1, "a", "b"),
		commit(21, "U.1.1"),
	}}
	runProducer(t, conn, state, cfg, m, q, 2)
	evs := streamEvents(t, conn)
	if len(evs) != 2 {
		t.Fatalf("%d events", len(evs))
	}
	ins, upd := evs[0], evs[1]
	if got := rowText(ins.After); got != "ID=1 NAME=a AMOUNT=10.50 NOTE=a long note written through a locator" || len(ins.Unchanged) != 0 {
		t.Errorf("insert after = %s, unchanged %v", got, ins.Unchanged)
	}
	if len(q.asked) != 1 || q.asked[0][0] != "14" || q.asked[0][1] != "1" {
		t.Errorf("LOB reads %v, want one AS OF the commit SCN 14 for ID 1", q.asked)
	}
	if len(upd.Unchanged) != 1 || upd.Unchanged[0] != "NOTE" {
		t.Errorf("update unchanged = %v, want NOTE kept", upd.Unchanged)
	}
}

// A snapshot resumes per chunk: a chunk recorded as done in KV (by an
// earlier run that died) is not read again, and mode snapshot ends by
// itself once every chunk is acknowledged.
func TestSnapshotResumesPerChunk(t *testing.T) {
	conn := embedded(t)
	ctx := context.Background()
	state, err := conn.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	q := &fakeQuerier{n: 6, scn: 777}
	// The earlier run: SCN chosen and saved, plan made, chunk 1 (ids 3-4) done.
	if err := state.PutJSON(ctx, lmKey("ora"), checkpoint{CommitSCN: 777, All: true, RestartSCN: 777}); err != nil {
		t.Fatal(err)
	}
	if err := state.PutJSON(ctx, streams.PlanKey("ora", "HR.ORDERS"), streams.ChunkPlan{Bounds: [][]string{{"2"}, {"4"}}}); err != nil {
		t.Fatal(err)
	}
	if err := state.PutJSON(ctx, streams.ChunkKey("ora", "HR.ORDERS", 1), streams.ChunkDone{Rows: 2}); err != nil {
		t.Fatal(err)
	}
	cfg := testSource(config.ModeSnapshot)
	cfg.SpillDir = t.TempDir()
	p := newProducer(cfg, producers.Env{Conn: conn, State: state, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, &fakeMiner{head: 999}, q, q)
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := p.Run(rctx); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, ev := range streamEvents(t, conn) {
		ids = append(ids, ev.Key.Values[0].GetInt())
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []int64{1, 2, 5, 6}) {
		t.Errorf("read ids %v, want 1 2 5 6 (chunk 1 was done)", ids)
	}
	var snap streams.SnapshotState
	if _, err := state.GetJSON(ctx, streams.SnapshotKey("ora"), &snap); err != nil || !snap.Done || snap.Consistent != "777" {
		t.Errorf("snapshot state %+v, %v", snap, err)
	}
	for _, c := range []int{0, 2} {
		var d streams.ChunkDone
		if ok, _ := state.GetJSON(ctx, streams.ChunkKey("ora", "HR.ORDERS", c), &d); !ok || d.Rows != 2 {
			t.Errorf("chunk %d: recorded %v, %+v", c, ok, d)
		}
	}
}

// When a change the stream should hold is missing (a lost publish), the
// rest of the run is published again under fresh ids, so every key's
// changes end in source order.
func TestResumeAfterLostPublish(t *testing.T) {
	conn := embedded(t)
	ctx := context.Background()
	state, err := conn.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := testSource(config.ModeCDC)
	cfg.SCN = 100
	q := &fakeQuerier{}
	// The first run's publish of A was lost while B's went through: it
	// saw only B.
	bOnly := &fakeMiner{head: 130, rows: []MinedRow{
		updOrder(115, "B.1.1", 1, "a", "b"), commit(120, "B.1.1"),
	}}
	lost := &streams.State{KV: dropKV{KeyValue: state.KV, drop: func(k string) bool {
		return k == lmKey("ora") || k == streams.PositionKey("ora")
	}}}
	runProducer(t, conn, lost, cfg, bOnly, q, 1)
	m := &fakeMiner{head: 130, rows: []MinedRow{
		insOrder(101, "A.1.1", 1, "a"), commit(110, "A.1.1"),
		updOrder(115, "B.1.1", 1, "a", "b"), commit(120, "B.1.1"),
	}}
	runProducer(t, conn, state, cfg, m, q, 3)
	want := "UPDATE HR.ORDERS id=1 tx=B.1.1/0 pos=120/0/0\nINSERT HR.ORDERS id=1 tx=A.1.1/0 pos=110/0/0\nUPDATE HR.ORDERS id=1 tx=B.1.1/0 pos=120/0/0"
	if got := changeSummary(streamEvents(t, conn)); got != want {
		t.Fatalf("stream:\n%s\nwant\n%s", got, want)
	}
}
