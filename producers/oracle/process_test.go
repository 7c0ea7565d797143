package oracle

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/streams/pb"
)

func testTables(t *testing.T) map[string]*table {
	t.Helper()
	orders, err := newTable("HR", "ORDERS", []column{
		newColumn("ID", "NUMBER", 0), newColumn("NAME", "VARCHAR2", -1),
		newColumn("AMOUNT", "NUMBER", 2), newColumn("NOTE", "CLOB", -1),
	}, []string{"ID"})
	if err != nil {
		t.Fatal(err)
	}
	items, err := newTable("HR", "ITEMS", []column{
		newColumn("ORDER_ID", "NUMBER", 0), newColumn("LINE", "NUMBER", 0), newColumn("SKU", "VARCHAR2", -1),
	}, []string{"ORDER_ID", "LINE"})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*table{orders.Name: orders, items.Name: items}
}

// emitted is a transaction as the processor handed it over.
type emitted struct {
	xid    string
	commit uint64
	events []*pb.Event
}

func newTestProcessor(t *testing.T, limit int) (*processor, *[]emitted) {
	var out []emitted
	p := &processor{tables: testTables(t), buf: newTxBuffer(limit, t.TempDir())}
	p.emit = func(c committed) error {
		e := emitted{xid: c.t.xid, commit: c.commitSCN}
		err := p.buf.each(c.t, func(ev *pb.Event) error { e.events = append(e.events, ev); return nil })
		out = append(out, e)
		return err
	}
	return p, &out
}

// Recorded LogMiner rows, as V$LOGMNR_CONTENTS gives them (SQL_REDO with
// NO_ROWID_IN_STMT and ferry's session formats).
func start(scn uint64, xid string) MinedRow { return MinedRow{SCN: scn, Op: opcodeStart, XID: xid} }
func commit(scn uint64, xid string) MinedRow {
	return MinedRow{SCN: scn, Op: opcodeCommit, XID: xid}
}
func rollback(scn uint64, xid string) MinedRow {
	return MinedRow{SCN: scn, Op: opcodeRollback, XID: xid}
}
func dml(scn uint64, xid string, op int, tbl, rowid, redo string) MinedRow {
	return MinedRow{SCN: scn, Op: op, XID: xid, Owner: "HR", Table: tbl, RowID: rowid, SQLRedo: redo}
}
func insOrder(scn uint64, xid string, id int, name string) MinedRow {
	return dml(scn, xid, opcodeInsert, "ORDERS", fmt.Sprintf("ROW%d", id),
		fmt.Sprintf(`insert into "HR"."ORDERS"("ID","NAME","AMOUNT","NOTE") values ('%d','%s','10.50',NULL);`, id, name))
}
func updOrder(scn uint64, xid string, id int, oldName, newName string) MinedRow {
	return dml(scn, xid, opcodeUpdate, "ORDERS", fmt.Sprintf("ROW%d", id),
		fmt.Sprintf(`update "HR"."ORDERS" set "NAME" = '%s' where "ID" = '%d' and "NAME" = '%s' and "AMOUNT" = '10.50';`, newName, id, oldName))
}

func run(t *testing.T, p *processor, rows ...MinedRow) {
	t.Helper()
	for _, r := range rows {
		if err := p.handle(r); err != nil {
			t.Fatalf("row at SCN %d: %v", r.SCN, err)
		}
	}
}

func summary(es []emitted) string {
	var parts []string
	for _, e := range es {
		var evs []string
		for _, ev := range e.events {
			evs = append(evs, fmt.Sprintf("%s %s %v", strings.TrimPrefix(ev.Op.String(), "OP_"), ev.Table, keyText(ev.Key)))
		}
		parts = append(parts, fmt.Sprintf("%s@%d[%s]", e.xid, e.commit, strings.Join(evs, "; ")))
	}
	return strings.Join(parts, "\n")
}

func keyText(k *pb.Row) string {
	var s []string
	for _, v := range k.GetValues() {
		s = append(s, fmt.Sprint(v.GetInt()))
	}
	return strings.Join(s, ",")
}

// Interleaved transactions come out whole, in commit order; a rolled-back
// one not at all; a multi-table transaction keeps its order.
func TestGroupingAndCommitOrder(t *testing.T) {
	p, out := newTestProcessor(t, 1<<20)
	run(t, p,
		start(100, "5.1.100"),
		insOrder(101, "5.1.100", 1, "a"),
		start(102, "6.2.200"),
		insOrder(103, "6.2.200", 2, "b"),
		dml(104, "5.1.100", opcodeInsert, "ITEMS", "IROW1", `insert into "HR"."ITEMS"("ORDER_ID","LINE","SKU") values ('1','1','X-1');`),
		commit(105, "6.2.200"),
		updOrder(106, "5.1.100", 1, "a", "a2"),
		start(107, "7.3.300"),
		insOrder(108, "7.3.300", 3, "c"),
		commit(109, "5.1.100"),
		rollback(110, "7.3.300"),
		// A change to a table outside the pipeline is ignored.
		dml(111, "8.1.1", opcodeInsert, "OTHER", "X", `insert into "HR"."OTHER"("A") values ('1');`),
		commit(112, "8.1.1"),
	)
	want := "6.2.200@105[INSERT HR.ORDERS 2]\n5.1.100@109[INSERT HR.ORDERS 1; INSERT HR.ITEMS 1,1; UPDATE HR.ORDERS 1]"
	if got := summary(*out); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if len(p.buf.open) != 0 || p.buf.bytes != 0 {
		t.Errorf("buffer not empty: %d open, %d bytes", len(p.buf.open), p.buf.bytes)
	}
	upd := (*out)[1].events[2]
	if got := rowText(upd.After); got != "ID=1 NAME=a2 AMOUNT=10.50" {
		t.Errorf("update after = %s", got)
	}
	if got := rowText(upd.Before); got != "ID=1 NAME=a AMOUNT=10.50" {
		t.Errorf("update before = %s", got)
	}
	if len(upd.Unchanged) != 1 || upd.Unchanged[0] != "NOTE" {
		t.Errorf("update unchanged = %v, want the LOB column it did not carry", upd.Unchanged)
	}
}

func rowText(r *pb.Row) string {
	var s []string
	for i, n := range r.GetNames() {
		v := r.Values[i]
		var x any
		switch k := v.Kind.(type) {
		case *pb.Value_Int:
			x = k.Int
		case *pb.Value_Decimal:
			x = k.Decimal
		case *pb.Value_Text:
			x = k.Text
		case *pb.Value_Null:
			x = "NULL"
		default:
			x = v
		}
		s = append(s, fmt.Sprintf("%s=%v", n, x))
	}
	return strings.Join(s, " ")
}

// A rollback to a savepoint shows as records with ROLLBACK=1 that undo
// earlier changes of the same row: those changes are dropped.
func TestPartialRollback(t *testing.T) {
	p, out := newTestProcessor(t, 1<<20)
	undoUpdate := updOrder(104, "9.9.9", 4, "d2", "d")
	undoUpdate.Rollback = true
	undoInsert := dml(105, "9.9.9", opcodeDelete, "ORDERS", "ROW5", `delete from "HR"."ORDERS" where "ID" = '5' and "NAME" = 'e' and "AMOUNT" = '10.50';`)
	undoInsert.Rollback = true
	run(t, p,
		insOrder(101, "9.9.9", 4, "d"),
		updOrder(102, "9.9.9", 4, "d", "d2"),
		insOrder(103, "9.9.9", 5, "e"),
		// ROLLBACK TO SAVEPOINT: undo, newest first.
		undoInsert, undoUpdate,
		updOrder(106, "9.9.9", 4, "d", "d3"),
		commit(107, "9.9.9"),
	)
	want := "9.9.9@107[INSERT HR.ORDERS 4; UPDATE HR.ORDERS 4]"
	if got := summary(*out); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if got := rowText((*out)[0].events[1].After); got != "ID=4 NAME=d3 AMOUNT=10.50" {
		t.Errorf("surviving update = %s", got)
	}
}

// An undo record whose change is no longer in memory (spilled) is published
// as a change of its own: the state it leaves is the same.
func TestPartialRollbackOfSpilledChange(t *testing.T) {
	p, out := newTestProcessor(t, 1) // everything spills
	undo := dml(102, "1.1.1", opcodeDelete, "ORDERS", "ROW1", `delete from "HR"."ORDERS" where "ID" = '1' and "NAME" = 'a' and "AMOUNT" = '10.50';`)
	undo.Rollback = true
	run(t, p, insOrder(101, "1.1.1", 1, "a"), undo, commit(103, "1.1.1"))
	if got, want := summary(*out), "1.1.1@103[INSERT HR.ORDERS 1; DELETE HR.ORDERS 1]"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestKeyChangeBecomesDeleteAndInsert(t *testing.T) {
	p, out := newTestProcessor(t, 1<<20)
	run(t, p,
		dml(101, "1.1.1", opcodeUpdate, "ORDERS", "ROW1", `update "HR"."ORDERS" set "ID" = '9' where "ID" = '1' and "NAME" = 'a' and "AMOUNT" IS NULL;`),
		commit(102, "1.1.1"))
	if got, want := summary(*out), "1.1.1@102[DELETE HR.ORDERS 1; INSERT HR.ORDERS 9]"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
	ins := (*out)[0].events[1]
	if got := rowText(ins.After); got != "ID=9 NAME=a AMOUNT=NULL" {
		t.Errorf("insert of the new key = %s", got)
	}
}

// SQL_REDO longer than a row holds continues in the next rows (CSF = 1).
func TestContinuedRedo(t *testing.T) {
	p, out := newTestProcessor(t, 1<<20)
	full := fmt.Sprintf(`insert into "HR"."ORDERS"("ID","NAME","AMOUNT","NOTE") values ('1','%s','1',NULL);`, strings.Repeat("x", 9000))
	var rows []MinedRow
	for i := 0; i < len(full); i += 4000 {
		r := dml(101, "1.1.1", opcodeInsert, "ORDERS", "ROW1", full[i:min(i+4000, len(full))])
		r.RSID, r.SSN = " 0x000001.00000002.0010 ", 7
		r.CSF = i+4000 < len(full)
		rows = append(rows, r)
	}
	if len(rows) != 3 {
		t.Fatalf("test setup: %d parts", len(rows))
	}
	run(t, p, append(rows, commit(102, "1.1.1"))...)
	if len(*out) != 1 || len((*out)[0].events) != 1 {
		t.Fatalf("got %s", summary(*out))
	}
	if n := (*out)[0].events[0].After.Values[1].GetText(); len(n) != 9000 {
		t.Errorf("NAME has %d characters, want 9000", len(n))
	}
}

// Restart-SCN choice: with a long transaction open, mining must resume at
// its start, not at the last commit or window end.
func TestRestartSCNWithOpenLongTransaction(t *testing.T) {
	p, out := newTestProcessor(t, 1<<20)
	run(t, p,
		insOrder(100, "LONG.1.1", 1, "long"),
		insOrder(150, "2.2.2", 2, "short"),
		commit(160, "2.2.2"),
	)
	if got := p.restartSCN(201); got != 100 {
		t.Fatalf("restart SCN = %d, want 100 (the open transaction's start)", got)
	}
	// Resume from a checkpoint taken there: the short transaction is out,
	// the long one is mined again from its start and published whole.
	cp := checkpoint{CommitSCN: 160, XIDs: []string{"2.2.2"}, RestartSCN: 100}
	p2, out2 := newTestProcessor(t, 1<<20)
	p2.done = cp
	run(t, p2,
		insOrder(100, "LONG.1.1", 1, "long"),
		insOrder(150, "2.2.2", 2, "short"),
		commit(160, "2.2.2"),
		updOrder(300, "LONG.1.1", 1, "long", "longer"),
		commit(301, "LONG.1.1"),
	)
	if got, want := summary(*out2), "LONG.1.1@301[INSERT HR.ORDERS 1; UPDATE HR.ORDERS 1]"; got != want {
		t.Fatalf("after restart got\n%s\nwant\n%s", got, want)
	}
	if len(*out) != 1 {
		t.Fatalf("first run emitted %d", len(*out))
	}
	if got := p2.restartSCN(302); got != 302 {
		t.Errorf("with nothing open, restart SCN = %d, want the next SCN 302", got)
	}
}

func TestCheckpointPublished(t *testing.T) {
	cp := checkpoint{CommitSCN: 50, XIDs: []string{"a"}}
	for _, c := range []struct {
		scn  uint64
		xid  string
		want bool
	}{{49, "z", true}, {50, "a", true}, {50, "b", false}, {51, "a", false}} {
		if got := cp.published(c.scn, c.xid); got != c.want {
			t.Errorf("published(%d, %s) = %v", c.scn, c.xid, got)
		}
	}
	all := checkpoint{CommitSCN: 50, All: true}
	if !all.published(50, "b") || all.published(51, "b") {
		t.Error("an scn start publishes nothing at or before it")
	}
}

// A transaction bigger than the memory budget goes to a spill file and
// comes back whole and in order; memory stays under the budget.
func TestLargeTransactionSpills(t *testing.T) {
	const limit = 4096
	p, out := newTestProcessor(t, limit)
	var rows []MinedRow
	rows = append(rows, insOrder(99, "SMALL", 999999, "s"))
	for i := range 2000 {
		rows = append(rows, insOrder(uint64(100+i), "BIG", i, "row"))
	}
	for _, r := range rows {
		if err := p.handle(r); err != nil {
			t.Fatal(err)
		}
		if p.buf.bytes > limit {
			t.Fatalf("held %d bytes in memory, over the %d budget", p.buf.bytes, limit)
		}
	}
	if p.buf.spills == 0 || p.buf.open["BIG"].spill == nil {
		t.Fatal("the big transaction did not spill")
	}
	spill := p.buf.open["BIG"].spill.Name()
	run(t, p, commit(5000, "BIG"), commit(5001, "SMALL"))
	if len(*out) != 2 || len((*out)[0].events) != 2000 {
		t.Fatalf("got %d transactions", len(*out))
	}
	for i, ev := range (*out)[0].events {
		if ev.Key.Values[0].GetInt() != int64(i) {
			t.Fatalf("event %d has key %v", i, ev.Key)
		}
	}
	if _, err := os.Stat(spill); !os.IsNotExist(err) {
		t.Errorf("spill file %s still there after commit", spill)
	}
	left, _ := filepath.Glob(filepath.Join(p.buf.dir, "*"))
	if len(left) != 0 {
		t.Errorf("spill dir holds %v", left)
	}
}

func TestLOBRecordsAndEmptyLOB(t *testing.T) {
	p, out := newTestProcessor(t, 1<<20)
	run(t, p,
		dml(101, "1.1.1", opcodeInsert, "ORDERS", "ROW1", `insert into "HR"."ORDERS"("ID","NAME","AMOUNT","NOTE") values ('1','a','1',EMPTY_CLOB());`),
		MinedRow{SCN: 102, Op: opcodeLOBWrite, XID: "1.1.1", Owner: "HR", Table: "ORDERS", SQLRedo: "DECLARE ... dbms_lob.write(...)"},
		commit(103, "1.1.1"))
	ev := (*out)[0].events[0]
	if len(ev.Unchanged) != 1 || ev.Unchanged[0] != "NOTE" {
		t.Errorf("EMPTY_CLOB column: unchanged = %v, after = %s", ev.Unchanged, rowText(ev.After))
	}
}

func TestUnsupportedAndBadRedoStop(t *testing.T) {
	p, _ := newTestProcessor(t, 1<<20)
	err := p.handle(MinedRow{SCN: 5, Op: opcodeUnsupported, XID: "1.1.1", Owner: "HR", Table: "ORDERS"})
	if err == nil || !strings.Contains(err.Error(), "HR.ORDERS") {
		t.Errorf("unsupported record: %v", err)
	}
	err = p.handle(dml(6, "1.1.1", opcodeInsert, "ORDERS", "R", `insert into "HR"."ORDERS"("ID","GHOST") values ('1','x');`))
	if err == nil || !strings.Contains(err.Error(), "GHOST") || !strings.Contains(err.Error(), "HR.ORDERS") {
		t.Errorf("unknown column: %v", err)
	}
	err = p.handle(dml(7, "1.1.1", opcodeDelete, "ORDERS", "R", `delete from "HR"."ORDERS" where "NAME" = 'x';`))
	if err == nil || !strings.Contains(err.Error(), "SUPPLEMENTAL LOG DATA") {
		t.Errorf("delete without key: %v", err)
	}
	err = p.handle(dml(8, "1.1.1", opcodeInsert, "ORDERS", "R", `insert into "HR"."ORDERS"("ID","AMOUNT") values ('1','abc');`))
	if err == nil || !strings.Contains(err.Error(), "AMOUNT") {
		t.Errorf("bad number: %v", err)
	}
}

func TestDDLReloadsLayout(t *testing.T) {
	p, _ := newTestProcessor(t, 1<<20)
	var reloaded []string
	p.ddl = func(tb *table) error { reloaded = append(reloaded, tb.Name); return nil }
	run(t, p,
		MinedRow{SCN: 1, Op: opcodeDDL, XID: "1.1.1", Owner: "HR", Table: "ORDERS", SQLRedo: `alter table orders add (x number);`},
		MinedRow{SCN: 2, Op: opcodeDDL, XID: "1.1.2", Owner: "HR", Table: "OTHER"})
	if len(reloaded) != 1 || reloaded[0] != "HR.ORDERS" {
		t.Errorf("reloaded %v", reloaded)
	}
}
