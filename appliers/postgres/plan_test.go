package postgres

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ferry-dev/ferry/appliers"
	"github.com/ferry-dev/ferry/streams/pb"
)

func vInt(i int64) *pb.Value     { return &pb.Value{Kind: &pb.Value_Int{Int: i}} }
func vText(s string) *pb.Value   { return &pb.Value{Kind: &pb.Value_Text{Text: s}} }
func vNull() *pb.Value           { return &pb.Value{Kind: &pb.Value_Null{Null: true}} }
func vNative(s string) *pb.Value { return &pb.Value{Kind: &pb.Value_Native{Native: s}} }

// row builds a pb.Row from name, value pairs.
func row(kv ...any) *pb.Row {
	r := &pb.Row{}
	for i := 0; i < len(kv); i += 2 {
		r.Names = append(r.Names, kv[i].(string))
		r.Values = append(r.Values, kv[i+1].(*pb.Value))
	}
	return r
}

func ins(id int64, customer string, qty int64) *pb.Event {
	return &pb.Event{Source: "pg", Table: "public.orders", Op: pb.Op_OP_INSERT,
		Key:   row("id", vInt(id)),
		After: row("id", vInt(id), "customer", vText(customer), "qty", vInt(qty), "note", vNull())}
}

func upd(id int64, customer string, qty int64) *pb.Event {
	e := ins(id, customer, qty)
	e.Op = pb.Op_OP_UPDATE
	return e
}

func del(id int64) *pb.Event {
	return &pb.Event{Source: "pg", Table: "public.orders", Op: pb.Op_OP_DELETE, Key: row("id", vInt(id))}
}

// partial is an UPDATE that sent qty and left customer and note unchanged.
func partial(id, qty int64) *pb.Event {
	return &pb.Event{Source: "pg", Table: "public.orders", Op: pb.Op_OP_UPDATE,
		Key:       row("id", vInt(id)),
		After:     row("id", vInt(id), "qty", vInt(qty)),
		Unchanged: []string{"customer", "note"}}
}

// planOps runs eventOps over events against one table, failing on errors.
func planOps(t *testing.T, tb *table, events ...*pb.Event) []*segment {
	t.Helper()
	var ops []op
	for _, e := range events {
		o, err := eventOps(tb, e, schemaError{target: "pgt", source: "pg"})
		if err != nil {
			t.Fatalf("eventOps(%v): %v", e, err)
		}
		ops = append(ops, o...)
	}
	return segmentOps(ops)
}

// model is an in-memory table that executes segments with the meaning of
// their SQL, to check that a batch ends in the state its events describe.
type model map[string]map[string]string // key text -> column -> value

func (m model) apply(segs []*segment) {
	for _, s := range segs {
		tb := s.table
		for _, r := range s.rows {
			if r == nil {
				continue
			}
			switch s.kind {
			case kindUpsert, kindPartial:
				vals := map[string]string{}
				key := make([]pgtype.Text, len(tb.pk))
				for i, c := range s.cols {
					vals[tb.cols[c].name] = show(r[i])
					if j := slices.Index(tb.pk, c); j >= 0 {
						key[j] = r[i]
					}
				}
				stored, ok := m[keyString(key)]
				if !ok {
					if s.kind == kindPartial {
						continue // UPDATE finds no row
					}
					stored = map[string]string{}
					m[keyString(key)] = stored
				}
				maps.Copy(stored, vals)
			case kindDelete:
				delete(m, keyString(r))
			case kindRekey:
				n := len(tb.pk)
				if stored, ok := m[keyString(r[:n])]; ok {
					delete(m, keyString(r[:n]))
					for i, k := range tb.pk {
						stored[tb.cols[k].name] = show(r[n+i])
					}
					m[keyString(r[n:])] = stored
				}
			}
		}
	}
}

func show(v pgtype.Text) string {
	if !v.Valid {
		return "NULL"
	}
	return v.String
}

func (m model) String() string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		r := m[k]
		var cols []string
		for _, c := range slices.Sorted(maps.Keys(r)) {
			cols = append(cols, c+"="+r[c])
		}
		out = append(out, "{"+strings.Join(cols, " ")+"}")
	}
	return strings.Join(out, " ")
}

// describe summarises segments as "kind:rows" for comparisons.
func describe(segs []*segment) []string {
	var out []string
	for _, s := range segs {
		var rows []string
		for _, r := range s.rows {
			if r == nil {
				continue
			}
			var vs []string
			for _, v := range r {
				vs = append(vs, show(v))
			}
			rows = append(rows, strings.Join(vs, ","))
		}
		out = append(out, fmt.Sprintf("%s[%s]", s.kind, strings.Join(rows, " | ")))
	}
	return out
}

func TestSegmentsInsertUpdateDeleteInsertSameKey(t *testing.T) {
	tb := ordersTable(t)
	segs := planOps(t, tb,
		ins(1, "ann", 1),
		upd(1, "ann", 2),
		ins(2, "bob", 5),
		del(1),
		ins(1, "cat", 3),
	)
	want := []string{
		"upsert[1,ann,2,NULL | 2,bob,5,NULL]", // the update superseded the insert
		"delete[1]",
		"upsert[1,cat,3,NULL]",
	}
	if got := describe(segs); !reflect.DeepEqual(got, want) {
		t.Fatalf("segments:\n got %q\nwant %q", got, want)
	}
	m := model{}
	m.apply(segs)
	if got, want := m.String(), "{customer=cat id=1 note=NULL qty=3} {customer=bob id=2 note=NULL qty=5}"; got != want {
		t.Errorf("state:\n got %s\nwant %s", got, want)
	}
}

// A superseding row moves to its later position, so rows stay in the order
// the source last wrote them.
func TestSegmentsSupersedeKeepsLastPosition(t *testing.T) {
	segs := planOps(t, ordersTable(t), ins(1, "a", 1), ins(2, "b", 1), upd(1, "a", 9))
	want := []string{"upsert[2,b,1,NULL | 1,a,9,NULL]"}
	if got := describe(segs); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q want %q", got, want)
	}
	if segs[0].live != 2 {
		t.Errorf("live = %d, want 2", segs[0].live)
	}
	chunks := segs[0].argChunks(maxStatementRows)
	if len(chunks) != 1 {
		t.Fatalf("%d chunks, want 1", len(chunks))
	}
	args := chunks[0]
	if len(args) != 4 {
		t.Fatalf("%d args, want 4", len(args))
	}
	ids := args[0].(pgtype.FlatArray[pgtype.Text])
	if len(ids) != 2 || ids[0].String != "2" || ids[1].String != "1" {
		t.Errorf("id array = %v", ids)
	}
	if notes := args[3].(pgtype.FlatArray[pgtype.Text]); notes[0].Valid || notes[1].Valid {
		t.Errorf("NULL note must travel as a NULL array element, got %v", notes)
	}
}

func TestArgChunks(t *testing.T) {
	var evs []*pb.Event
	for i := range 5 {
		evs = append(evs, ins(int64(i), "c", 1))
	}
	evs = append(evs, upd(0, "c", 2)) // supersedes row 0
	segs := planOps(t, ordersTable(t), evs...)
	chunks := segs[0].argChunks(2)
	var ids []string
	for _, c := range chunks {
		if len(c) != 4 {
			t.Fatalf("chunk of %d args", len(c))
		}
		var part []string
		for _, v := range c[0].(pgtype.FlatArray[pgtype.Text]) {
			part = append(part, v.String)
		}
		ids = append(ids, strings.Join(part, ","))
	}
	if want := []string{"1,2", "3,4", "0"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("chunks of ids %q, want %q", ids, want)
	}
}

func TestSegmentsDeleteDedup(t *testing.T) {
	segs := planOps(t, ordersTable(t), del(1), del(2), del(1))
	if got, want := describe(segs), []string{"delete[1 | 2]"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q want %q", got, want)
	}
}

// A primary-key change sent as DELETE of the old key and INSERT of the new
// row.
func TestSegmentsKeyChangeAsDeleteInsert(t *testing.T) {
	tb := ordersTable(t)
	m := model{}
	m.apply(planOps(t, tb, ins(1, "ann", 1), ins(2, "bob", 2)))
	segs := planOps(t, tb, del(1), ins(10, "ann", 1))
	if got, want := describe(segs), []string{"delete[1]", "upsert[10,ann,1,NULL]"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q want %q", got, want)
	}
	m.apply(segs)
	// (The model lists rows by key text: "1:2" sorts before "2:10".)
	if got, want := m.String(), "{customer=bob id=2 note=NULL qty=2} {customer=ann id=10 note=NULL qty=1}"; got != want {
		t.Errorf("state:\n got %s\nwant %s", got, want)
	}
}

// An UPDATE whose before row names another key: the full row replaces the
// old one (delete + upsert); a partial one moves the row, keeping the
// unchanged columns.
func TestSegmentsUpdateWithKeyChange(t *testing.T) {
	tb := ordersTable(t)
	m := model{}
	m.apply(planOps(t, tb, ins(1, "ann", 1)))

	full := upd(5, "ann", 2)
	full.Before = row("id", vInt(1))
	segs := planOps(t, tb, full)
	if got, want := describe(segs), []string{"delete[1]", "upsert[5,ann,2,NULL]"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("full: got %q want %q", got, want)
	}
	m.apply(segs)

	p := partial(7, 3)
	p.Before = row("id", vInt(5))
	segs = planOps(t, tb, p)
	if got, want := describe(segs), []string{"key change[5,7]", "partial update[7,3]"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("partial: got %q want %q", got, want)
	}
	m.apply(segs)
	if got, want := m.String(), "{customer=ann id=7 note=NULL qty=3}"; got != want {
		t.Errorf("state:\n got %s\nwant %s", got, want)
	}

	// A before row with the same key is an ordinary update.
	same := upd(7, "ann", 4)
	same.Before = row("id", vInt(7), "qty", vInt(3))
	if got, want := describe(planOps(t, tb, same)), []string{"upsert[7,ann,4,NULL]"}; !reflect.DeepEqual(got, want) {
		t.Errorf("same key: got %q want %q", got, want)
	}
}

func TestSegmentsPartialUpdates(t *testing.T) {
	tb := ordersTable(t)
	m := model{}
	m.apply(planOps(t, tb, ins(1, "ann", 1), ins(2, "bob", 2)))

	noteOnly := &pb.Event{Source: "pg", Table: "public.orders", Op: pb.Op_OP_UPDATE,
		Key:       row("id", vInt(2)),
		After:     row("id", vInt(2), "note", vText("hi")),
		Unchanged: []string{"customer", "qty"}}
	segs := planOps(t, tb,
		partial(1, 10),
		partial(2, 20),
		partial(1, 11), // same columns: merged, later wins
		noteOnly,       // other columns: a new segment
		upd(2, "bob", 30),
		partial(3, 1), // no such row: updates nothing, inserts nothing
	)
	want := []string{
		"partial update[2,20 | 1,11]",
		"partial update[2,hi]",
		"upsert[2,bob,30,NULL]",
		"partial update[3,1]",
	}
	if got := describe(segs); !reflect.DeepEqual(got, want) {
		t.Fatalf("segments:\n got %q\nwant %q", got, want)
	}
	if got := segs[0].cols; !reflect.DeepEqual(got, []int{0, 2}) {
		t.Errorf("partial columns = %v, want id, qty", got)
	}
	m.apply(segs)
	if got, want := m.String(), "{customer=ann id=1 note=NULL qty=11} {customer=bob id=2 note=NULL qty=30}"; got != want {
		t.Errorf("state:\n got %s\nwant %s", got, want)
	}
}

// Columns are written in the table's order whatever order the event names
// them in, so statements do not multiply; a different column set is a new
// segment.
func TestSegmentsColumnOrderAndSets(t *testing.T) {
	tb := ordersTable(t)
	a := &pb.Event{Table: "public.orders", Op: pb.Op_OP_READ,
		After: row("qty", vInt(1), "id", vInt(1), "customer", vText("x"), "note", vNull())}
	b := ins(2, "y", 2)
	c := &pb.Event{Table: "public.orders", Op: pb.Op_OP_READ, After: row("id", vInt(3), "qty", vInt(3))}
	segs := planOps(t, tb, a, b, c)
	if got, want := describe(segs), []string{"upsert[1,x,1,NULL | 2,y,2,NULL]", "upsert[3,3]"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q want %q", got, want)
	}
}

// Segments never span tables, even with the same kind and columns.
func TestSegmentsTableBoundaries(t *testing.T) {
	t1 := ordersTable(t)
	t2, err := newTable("public", "orders2", t1.cols, []string{"id"})
	if err != nil {
		t.Fatal(err)
	}
	var ops []op
	for i, tb := range []*table{t1, t2, t1} {
		o, err := eventOps(tb, ins(int64(i), "c", 1), schemaError{})
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, o...)
	}
	if n := len(segmentOps(ops)); n != 3 {
		t.Errorf("%d segments, want 3", n)
	}
}

func TestEventOpsErrors(t *testing.T) {
	tb := ordersTable(t)
	se := schemaError{target: "crdb", source: "pg"}

	extra := ins(1, "a", 1)
	extra.After.Names = append(extra.After.Names, "colname")
	extra.After.Values = append(extra.After.Values, vInt(1))
	_, err := eventOps(tb, extra, se)
	if !errors.Is(err, appliers.ErrPermanent) || !strings.Contains(err.Error(), "public.orders.colname") ||
		!strings.Contains(err.Error(), "target crdb") || !strings.Contains(err.Error(), "source pg") {
		t.Errorf("extra column: %v", err)
	}

	noKey := &pb.Event{Table: "public.orders", Op: pb.Op_OP_INSERT, After: row("qty", vInt(1))}
	if _, err := eventOps(tb, noKey, se); !errors.Is(err, appliers.ErrPermanent) || !strings.Contains(err.Error(), "primary key column id") {
		t.Errorf("row without key: %v", err)
	}

	delNoKey := &pb.Event{Table: "public.orders", Op: pb.Op_OP_DELETE, Key: row("other", vInt(1))}
	if _, err := eventOps(tb, delNoKey, se); !errors.Is(err, appliers.ErrPermanent) {
		t.Errorf("delete without key: %v", err)
	}
	// A delete may take its key from before.
	delBefore := &pb.Event{Table: "public.orders", Op: pb.Op_OP_DELETE, Before: row("id", vInt(4), "qty", vInt(1))}
	if ops, err := eventOps(tb, delBefore, se); err != nil || len(ops) != 1 || ops[0].vals[0].String != "4" {
		t.Errorf("delete from before: %v %v", ops, err)
	}

	// The event's own faults are rejections, not permanent errors.
	var rj *rejectError
	nul := ins(1, "a\x00b", 1)
	if _, err := eventOps(tb, nul, se); !errors.As(err, &rj) || !strings.Contains(err.Error(), "customer") {
		t.Errorf("NUL in text: %v", err)
	}
	noRow := &pb.Event{Table: "public.orders", Op: pb.Op_OP_UPDATE, Key: row("id", vInt(1))}
	if _, err := eventOps(tb, noRow, se); !errors.As(err, &rj) {
		t.Errorf("update without row: %v", err)
	}

	keyless, _ := newTable("public", "log", tb.cols, nil)
	if _, err := eventOps(keyless, ins(1, "a", 1), se); !errors.Is(err, appliers.ErrPermanent) || !strings.Contains(err.Error(), "no primary key") {
		t.Errorf("table without key: %v", err)
	}
}

// A generated column on the target is not written even when the event
// carries it.
func TestEventOpsSkipsGenerated(t *testing.T) {
	tb := ordersTable(t)
	tb.cols[3].generated = true
	e := ins(1, "a", 1)
	e.After.Values[3] = vNative("x")
	ops, err := eventOps(tb, e, schemaError{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ops[0].cols, []int{0, 1, 2}) {
		t.Errorf("cols = %v, want the generated note left out", ops[0].cols)
	}
}

func TestKeyString(t *testing.T) {
	a := keyString([]pgtype.Text{{String: "1:2", Valid: true}, {String: "3", Valid: true}})
	b := keyString([]pgtype.Text{{String: "1", Valid: true}, {String: "2:3", Valid: true}})
	if a == b {
		t.Errorf("keys collide: %q", a)
	}
}

func TestRejectReasonIsOneLine(t *testing.T) {
	ip := itemPlan{item: appliers.Item{Event: ins(7, "a", 1)}}
	r := rejectReason(ip, errors.New("line one\nline two"))
	if strings.ContainsAny(r, "\r\n") || !strings.Contains(r, "public.orders key id=7") {
		t.Errorf("reason %q", r)
	}
	if got := truncate("ééé", 3); got != "é…" {
		t.Errorf("truncate = %q", got)
	}
}

// Strings carved from the arena keep their contents whatever follows: small
// values, values longer than a block, blocks filled and replaced.
func TestTextArenaKeepsStrings(t *testing.T) {
	var a textArena
	var got, want []string
	for i := range 3000 {
		v := strconv.Itoa(i)
		if i%500 == 7 {
			v = strings.Repeat("long value ", 10000) + v
		}
		b := a.open(i % 5)
		got = append(got, a.close(append(b, v...)))
		want = append(want, v)
		if i%3 == 0 {
			got = append(got, a.close(a.open(1))) // an empty value
			want = append(want, "")
		}
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("string %d = %.40q, want %.40q", i, got[i], want[i])
		}
	}
}
