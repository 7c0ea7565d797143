package oracle

import (
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/ferry-dev/ferry/streams/pb"
)

// LogMiner's OPERATION_CODE values ferry acts on (V$LOGMNR_CONTENTS).
const (
	opcodeInsert      = 1
	opcodeDelete      = 2
	opcodeUpdate      = 3
	opcodeDDL         = 5
	opcodeStart       = 6
	opcodeCommit      = 7
	opcodeLOBLocator  = 9
	opcodeLOBWrite    = 10
	opcodeLOBTrim     = 11
	opcodeRollback    = 36
	opcodeUnsupported = 255
)

// MinedRow is one row of V$LOGMNR_CONTENTS, the columns ferry reads.
type MinedRow struct {
	SCN       uint64    // SCN
	Op        int       // OPERATION_CODE
	XID       string    // XIDUSN.XIDSLT.XIDSQN
	Owner     string    // SEG_OWNER
	Table     string    // TABLE_NAME
	SQLRedo   string    // SQL_REDO
	CSF       bool      // CSF = 1: SQL_REDO continues in the next row
	Rollback  bool      // ROLLBACK = 1: the undo of an earlier change
	RowID     string    // ROW_ID
	RSID      string    // RS_ID
	SSN       int64     // SSN
	Timestamp time.Time // TIMESTAMP
}

// table is one source table ferry moves.
type table struct {
	Name    string // OWNER.TABLE, as events name it
	Owner   string
	Table   string
	Columns []column
	Key     []int // indexes into Columns, in key order
	byName  map[string]int
	notNull map[string]bool
}

func newTable(owner, name string, cols []column, key []string) (*table, error) {
	t := &table{Name: owner + "." + name, Owner: owner, Table: name, Columns: cols, byName: map[string]int{}}
	for i, c := range cols {
		t.byName[c.Name] = i
	}
	for _, k := range key {
		i, ok := t.byName[k]
		if !ok {
			return nil, fmt.Errorf("table %s: key column %s is not a column", t.Name, k)
		}
		t.Key = append(t.Key, i)
	}
	return t, nil
}

func (t *table) keyNames() []string {
	out := make([]string, len(t.Key))
	for i, k := range t.Key {
		out[i] = t.Columns[k].Name
	}
	return out
}

func (t *table) ident() string { return quoteIdent(t.Owner) + "." + quoteIdent(t.Table) }

// checkpoint says what of the change stream is published. Commits below
// CommitSCN are; at CommitSCN, those in XIDs (or all of them when All).
// Mining resumes at RestartSCN: the start of the oldest transaction still
// open when the checkpoint was taken, so a long transaction is never cut.
type checkpoint struct {
	CommitSCN  uint64   `json:"commitScn"`
	XIDs       []string `json:"xids,omitempty"`
	All        bool     `json:"all,omitempty"`
	RestartSCN uint64   `json:"restartScn"`
	// CommitTimeUs is the commit time of the newest published transaction.
	CommitTimeUs int64 `json:"commitTimeUs,omitempty"`
	// MinedSCN: every transaction committed at or before it is published.
	// It is the position `ferry status --wait-caught-up` compares with the
	// database's current SCN.
	MinedSCN uint64 `json:"minedScn,omitempty"`
}

// published reports whether the commit of xid at scn is already out.
func (c *checkpoint) published(scn uint64, xid string) bool {
	if scn != c.CommitSCN {
		return scn < c.CommitSCN
	}
	return c.All || slices.Contains(c.XIDs, xid)
}

// committed is a transaction to publish, in commit order.
type committed struct {
	t          *txn
	commitSCN  uint64
	commitTime time.Time
}

// processor turns LogMiner rows into transactions: changes are buffered per
// XID, published at COMMIT in the order commits arrive (LogMiner returns
// rows in SCN order, so that is commit-SCN order), dropped at ROLLBACK.
// It does no I/O beyond the buffer's spill files.
type processor struct {
	tables map[string]*table
	buf    *txBuffer
	done   checkpoint
	emit   func(c committed) error
	// ddl is called on a DDL record for a table of the pipeline, to reload
	// its layout.
	ddl func(t *table) error
	// cont collects a SQL_REDO split over rows (CSF = 1).
	cont    []byte
	contKey string
}

// handle takes one mined row.
func (p *processor) handle(r MinedRow) error {
	if r.CSF || p.cont != nil {
		key := r.XID + "/" + r.RSID + "/" + fmt.Sprint(r.SSN)
		if p.cont != nil && key != p.contKey {
			return fmt.Errorf("SQL_REDO of transaction %s at SCN %d continues (CSF=1) but the next row belongs to another statement", r.XID, r.SCN)
		}
		p.cont = append(p.cont, r.SQLRedo...)
		p.contKey = key
		if r.CSF {
			return nil
		}
		r.SQLRedo = string(p.cont)
		p.cont, p.contKey = nil, ""
	}
	switch r.Op {
	case opcodeStart:
		// A transaction is tracked from its first change to a table of the
		// pipeline: resuming there sees everything of it that matters, and
		// transactions that touch none never hold the restart SCN back.
	case opcodeCommit:
		t := p.buf.open[r.XID]
		if t == nil {
			return nil // nothing of interest happened in it
		}
		defer p.buf.close(t)
		if p.done.published(r.SCN, r.XID) {
			return nil // published before a restart, or in the snapshot
		}
		return p.emit(committed{t: t, commitSCN: r.SCN, commitTime: r.Timestamp})
	case opcodeRollback:
		if t := p.buf.open[r.XID]; t != nil {
			p.buf.close(t)
		}
	case opcodeInsert, opcodeUpdate, opcodeDelete:
		tb := p.tables[r.Owner+"."+r.Table]
		if tb == nil {
			return nil
		}
		t := p.buf.get(r.XID, r.SCN)
		evs, err := p.events(tb, r)
		if err != nil {
			return err
		}
		if r.Rollback && p.buf.undo(t, r.RowID) {
			return nil
		}
		return p.buf.add(t, r.RowID, evs...)
	case opcodeLOBLocator, opcodeLOBWrite, opcodeLOBTrim:
		tb := p.tables[r.Owner+"."+r.Table]
		if tb == nil {
			return nil
		}
		t := p.buf.get(r.XID, r.SCN)
		if t.lobTables == nil {
			t.lobTables = map[string]bool{}
		}
		t.lobTables[tb.Name] = true
	case opcodeDDL:
		if tb := p.tables[r.Owner+"."+r.Table]; tb != nil && p.ddl != nil {
			return p.ddl(tb)
		}
	case opcodeUnsupported:
		if tb := p.tables[r.Owner+"."+r.Table]; tb != nil {
			return fmt.Errorf("LogMiner cannot reconstruct a change to %s at SCN %d (transaction %s, OPERATION UNSUPPORTED): the table uses a type or storage LogMiner does not support, or its supplemental logging is missing", tb.Name, r.SCN, r.XID)
		}
	}
	return nil
}

// events builds the change events of one DML row. An update that changes
// the primary key becomes a delete of the old key and an insert of the new
// row, since the two keys may live in different lanes.
func (p *processor) events(tb *table, r MinedRow) ([]*pb.Event, error) {
	where := func(err error) error {
		return fmt.Errorf("%s at SCN %d (transaction %s): %w", tb.Name, r.SCN, r.XID, err)
	}
	st, err := parseRedo(r.SQLRedo)
	if err != nil {
		return nil, where(err)
	}
	if st.Owner != "" && (st.Owner != tb.Owner || st.Table != tb.Table) {
		return nil, where(fmt.Errorf("SQL_REDO names %s.%s", st.Owner, st.Table))
	}
	set, setLOB, err := p.row(tb, st.Set)
	if err != nil {
		return nil, where(err)
	}
	old, _, err := p.row(tb, st.Where)
	if err != nil {
		return nil, where(err)
	}
	switch st.Op {
	case opInsert:
		ev := &pb.Event{Table: tb.Name, Op: pb.Op_OP_INSERT, After: set, Unchanged: missing(tb, set)}
		if ev.Key, err = keyOf(tb, set); err != nil {
			return nil, where(err)
		}
		return []*pb.Event{ev}, nil
	case opDelete:
		ev := &pb.Event{Table: tb.Name, Op: pb.Op_OP_DELETE, Before: old}
		if ev.Key, err = keyOf(tb, old); err != nil {
			return nil, where(fmt.Errorf("%w; enable supplemental logging of the key: ALTER TABLE %s ADD SUPPLEMENTAL LOG DATA (ALL) COLUMNS;", err, tb.ident()))
		}
		return []*pb.Event{ev}, nil
	}
	// An update: the new row is the SET values, plus the old values of the
	// columns it did not set (their current values). LOB columns a SET
	// assigned EMPTY_*() to are missing and read at commit.
	// The row is in table order.
	after := &pb.Row{}
	for _, c := range tb.Columns {
		if i := slices.Index(set.Names, c.Name); i >= 0 {
			after.Names = append(after.Names, c.Name)
			after.Values = append(after.Values, set.Values[i])
		} else if i := slices.Index(old.Names, c.Name); i >= 0 && !slices.Contains(setLOB, c.Name) {
			after.Names = append(after.Names, c.Name)
			after.Values = append(after.Values, old.Values[i])
		}
	}
	oldKey, err := keyOf(tb, old)
	if err != nil {
		return nil, where(fmt.Errorf("%w; enable supplemental logging: ALTER TABLE %s ADD SUPPLEMENTAL LOG DATA (ALL) COLUMNS;", err, tb.ident()))
	}
	newKey, err := keyOf(tb, after)
	if err != nil {
		return nil, where(err)
	}
	ev := &pb.Event{Table: tb.Name, Op: pb.Op_OP_UPDATE, Key: oldKey, After: after, Before: old, Unchanged: missing(tb, after)}
	if keysEqual(oldKey, newKey) {
		return []*pb.Event{ev}, nil
	}
	del := &pb.Event{Table: tb.Name, Op: pb.Op_OP_DELETE, Key: oldKey, Before: old}
	ev.Op, ev.Key, ev.Before = pb.Op_OP_INSERT, newKey, nil
	return []*pb.Event{del, ev}, nil
}

// row converts a statement's assignments into a row in statement order.
// EMPTY_CLOB()/EMPTY_BLOB() values are left out and named in lobs: their
// content arrives in LOB_WRITE records, so ferry reads it at commit.
func (p *processor) row(tb *table, as []assign) (*pb.Row, []string, error) {
	row := &pb.Row{}
	var lobs []string
	for _, a := range as {
		i, ok := tb.byName[a.Col]
		if !ok {
			return nil, nil, fmt.Errorf("column %s is not in the table's layout as ferry read it (a column added since? ferry reloads the layout on DDL)", a.Col)
		}
		c := tb.Columns[i]
		if a.Val.isEmptyLOB() {
			lobs = append(lobs, c.Name)
			continue
		}
		v, err := convert(c, a.Val)
		if err != nil {
			return nil, nil, fmt.Errorf("column %s (%s): %w", c.Name, c.Type, err)
		}
		row.Names = append(row.Names, c.Name)
		row.Values = append(row.Values, v)
	}
	return row, lobs, nil
}

// missing lists the table's columns a row lacks, in table order: a writer
// keeps their stored values.
func missing(tb *table, row *pb.Row) []string {
	var out []string
	for _, c := range tb.Columns {
		if !slices.Contains(row.Names, c.Name) {
			out = append(out, c.Name)
		}
	}
	return out
}

func keyOf(tb *table, row *pb.Row) (*pb.Row, error) {
	k := &pb.Row{}
	for _, i := range tb.Key {
		name := tb.Columns[i].Name
		j := slices.Index(row.GetNames(), name)
		if j < 0 {
			return nil, fmt.Errorf("the change does not carry key column %s", name)
		}
		k.Names = append(k.Names, name)
		k.Values = append(k.Values, row.Values[j])
	}
	return k, nil
}

func keysEqual(a, b *pb.Row) bool {
	if len(a.Values) != len(b.Values) {
		return false
	}
	for i := range a.Values {
		if !proto.Equal(a.Values[i], b.Values[i]) {
			return false
		}
	}
	return true
}

// restartSCN is where mining must resume for everything not yet published
// to be seen again: the oldest open transaction's start, or next (the first
// SCN not mined yet) when none is open.
func (p *processor) restartSCN(next uint64) uint64 {
	if s, ok := p.buf.oldestStart(); ok && s < next {
		return s
	}
	return next
}
