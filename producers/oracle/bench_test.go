package oracle

import (
	"fmt"
	"testing"

	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

// benchRows is a recorded-style stream of single-row insert transactions
// on a 6-column table (NUMBER key, VARCHAR2, NUMBER(12,2), DATE,
// TIMESTAMP(6) WITH TIME ZONE, RAW).
func benchRows(n int) []MinedRow {
	var rows []MinedRow
	for i := range n {
		xid := fmt.Sprintf("1.%d.%d", i%32, i)
		rows = append(rows,
			dml(uint64(2*i+1), xid, opcodeInsert, "WIDE", "R",
				fmt.Sprintf(`insert into "HR"."WIDE"("ID","NAME","PRICE","CREATED","SEEN","TAG") values ('%d','customer name %d','%d.25',TO_DATE('2024-05-06 07:08:09', 'SYYYY-MM-DD HH24:MI:SS'),TO_TIMESTAMP_TZ('2024-05-06 07:08:09.123456000 +02:00 +02:00', 'SYYYY-MM-DD HH24:MI:SS.FF9 TZH:TZM TZR'),HEXTORAW('0a0b0c0d'));`, i, i, i)),
			commit(uint64(2*i+2), xid))
	}
	return rows
}

func benchProcessor(b *testing.B, limit int) (*processor, *int) {
	wide, err := newTable("HR", "WIDE", []column{
		newColumn("ID", "NUMBER", 0), newColumn("NAME", "VARCHAR2", -1), newColumn("PRICE", "NUMBER", 2),
		newColumn("CREATED", "DATE", -1), newColumn("SEEN", "TIMESTAMP(6) WITH TIME ZONE", 6), newColumn("TAG", "RAW", -1),
	}, []string{"ID"})
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	p := &processor{tables: map[string]*table{wide.Name: wide}, buf: newTxBuffer(limit, b.TempDir())}
	p.emit = func(c committed) error {
		return p.buf.each(c.t, func(*pb.Event) error { n++; return nil })
	}
	return p, &n
}

// BenchmarkProcessRows: parse SQL_REDO, convert the values, group by
// transaction and hand over at commit, per change.
func BenchmarkProcessRows(b *testing.B) {
	rows := benchRows(1000)
	p, n := benchProcessor(b, 64<<20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, r := range rows {
			if err := p.handle(r); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(*n)/b.Elapsed().Seconds(), "changes/s")
}

// BenchmarkSpilledTransaction: one 10,000-change transaction through its
// spill file (memory budget 0).
func BenchmarkSpilledTransaction(b *testing.B) {
	rows := benchRows(10000)
	for i := range rows {
		rows[i].XID = "BIG"
	}
	var big []MinedRow
	for _, r := range rows {
		if r.Op != opcodeCommit {
			big = append(big, r)
		}
	}
	big = append(big, commit(1<<40, "BIG"))
	b.ResetTimer()
	total := 0
	for i := 0; i < b.N; i++ {
		p, n := benchProcessor(b, 0)
		for _, r := range big {
			if err := p.handle(r); err != nil {
				b.Fatal(err)
			}
		}
		total += *n
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "changes/s")
}

// BenchmarkBaselineEncode is the baseline beside BenchmarkProcessRows in
// the same run: encoding the resulting event for JetStream, which every
// change costs whatever the source.
func BenchmarkBaselineEncode(b *testing.B) {
	p, _ := benchProcessor(b, 64<<20)
	var ev *pb.Event
	p.emit = func(c committed) error {
		return p.buf.each(c.t, func(e *pb.Event) error { ev = e; return nil })
	}
	for _, r := range benchRows(1) {
		if err := p.handle(r); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := streams.Encode(ev); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "changes/s")
}
