package oracle

import (
	"reflect"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

// The SQL ferry sends to Oracle, checked as text: it cannot be run here.

func TestSessionSQL(t *testing.T) {
	want := `BEGIN EXECUTE IMMEDIATE 'ALTER SESSION SET NLS_DATE_FORMAT = ''SYYYY-MM-DD HH24:MI:SS'''; ` +
		`EXECUTE IMMEDIATE 'ALTER SESSION SET NLS_TIMESTAMP_FORMAT = ''SYYYY-MM-DD HH24:MI:SS.FF9'''; ` +
		`EXECUTE IMMEDIATE 'ALTER SESSION SET NLS_TIMESTAMP_TZ_FORMAT = ''SYYYY-MM-DD HH24:MI:SS.FF9 TZH:TZM TZR'''; ` +
		`EXECUTE IMMEDIATE 'ALTER SESSION SET NLS_NUMERIC_CHARACTERS = ''.,'''; ` +
		`EXECUTE IMMEDIATE 'ALTER SESSION SET TIME_ZONE = ''+00:00'''; END;`
	if got := sessionSQL(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func compositeTable(t *testing.T) *table {
	tb, err := newTable("HR", "EVENTS", []column{
		newColumn("REGION", "VARCHAR2", -1), newColumn("AT", "TIMESTAMP(6)", 6), newColumn("SEQ", "NUMBER", 0),
		newColumn("PAYLOAD", "BLOB", -1), newColumn("FLAGS", "RAW", -1), newColumn("D", "DATE", -1),
		newColumn("TZ", "TIMESTAMP(3) WITH TIME ZONE", 3),
	}, []string{"REGION", "AT", "SEQ"})
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestBoundsQuery(t *testing.T) {
	q, args := boundsQuery(compositeTable(t), 4242, 1000)
	want := `SELECT "REGION", TO_CHAR("AT", 'SYYYY-MM-DD HH24:MI:SS.FF9'), TO_CHAR("SEQ") FROM (` +
		`SELECT "REGION", "AT", "SEQ", ROW_NUMBER() OVER (ORDER BY "REGION", "AT", "SEQ") AS FERRY_RN FROM "HR"."EVENTS" AS OF SCN TO_NUMBER(:1)` +
		`) WHERE MOD(FERRY_RN, :2) = 0 ORDER BY FERRY_RN`
	if q != want {
		t.Errorf("got\n%s\nwant\n%s", q, want)
	}
	if !reflect.DeepEqual(args, []any{"4242", 1000}) {
		t.Errorf("args %v", args)
	}
}

func TestChunkQueryComposite(t *testing.T) {
	tb := compositeTable(t)
	pl := &streams.ChunkPlan{Bounds: [][]string{{"eu", "2024-01-01 00:00:00.000000000", "5"}, {"us", "2024-02-01 00:00:00.000000000", "9"}}}
	sel := `SELECT "REGION", TO_CHAR("AT", 'SYYYY-MM-DD HH24:MI:SS.FF9'), TO_CHAR("SEQ"), "PAYLOAD", RAWTOHEX("FLAGS"), TO_CHAR("D", 'SYYYY-MM-DD HH24:MI:SS'), TO_CHAR("TZ", 'SYYYY-MM-DD HH24:MI:SS.FF9 TZH:TZM TZR') FROM "HR"."EVENTS" AS OF SCN TO_NUMBER(:1)`
	ts := func(p string) string { return "TO_TIMESTAMP(" + p + ", 'SYYYY-MM-DD HH24:MI:SS.FF9')" }

	q, args := chunkQuery(tb, pl, 0, 77)
	want := sel + ` WHERE (("REGION" < :2) OR ("REGION" = :3 AND "AT" < ` + ts(":4") + `) OR ("REGION" = :5 AND "AT" = ` + ts(":6") + ` AND "SEQ" <= TO_NUMBER(:7)))`
	if q != want {
		t.Errorf("first chunk:\n got %s\nwant %s", q, want)
	}
	if !reflect.DeepEqual(args, []any{"77", "eu", "eu", "2024-01-01 00:00:00.000000000", "eu", "2024-01-01 00:00:00.000000000", "5"}) {
		t.Errorf("first chunk args %v", args)
	}

	q, args = chunkQuery(tb, pl, 1, 77)
	lower := `(("REGION" > :2) OR ("REGION" = :3 AND "AT" > ` + ts(":4") + `) OR ("REGION" = :5 AND "AT" = ` + ts(":6") + ` AND "SEQ" > TO_NUMBER(:7)))`
	upper := `(("REGION" < :8) OR ("REGION" = :9 AND "AT" < ` + ts(":10") + `) OR ("REGION" = :11 AND "AT" = ` + ts(":12") + ` AND "SEQ" <= TO_NUMBER(:13)))`
	if q != sel+" WHERE "+lower+" AND "+upper {
		t.Errorf("middle chunk:\n got %s\nwant %s", q, sel+" WHERE "+lower+" AND "+upper)
	}
	if len(args) != 13 || args[7] != "us" || args[12] != "9" {
		t.Errorf("middle chunk args %v", args)
	}

	q, _ = chunkQuery(tb, pl, 2, 77)
	if !strings.HasSuffix(q, `"SEQ" > TO_NUMBER(:7)))`) || strings.Contains(q, "<") {
		t.Errorf("last chunk has an upper bound: %s", q)
	}
	q, args = chunkQuery(tb, &streams.ChunkPlan{}, 0, 77)
	if q != sel || len(args) != 1 {
		t.Errorf("single chunk: %s %v", q, args)
	}
}

func TestLOBQuery(t *testing.T) {
	tb := compositeTable(t)
	key := &pb.Row{Names: []string{"REGION", "AT", "SEQ"}, Values: []*pb.Value{
		{Kind: &pb.Value_Text{Text: "eu"}},
		{Kind: &pb.Value_Timestamp{Timestamp: &pb.Timestamp{UnixUs: 1_700_000_000_123_456, ExtraNanos: 7}}},
		{Kind: &pb.Value_Int{Int: 5}},
	}}
	q, args, err := lobQuery(tb, []string{"PAYLOAD"}, key, 900)
	if err != nil {
		t.Fatal(err)
	}
	want := `SELECT "PAYLOAD" FROM "HR"."EVENTS" AS OF SCN TO_NUMBER(:1) WHERE "REGION" = :2 AND "AT" = TO_TIMESTAMP(:3, 'SYYYY-MM-DD HH24:MI:SS.FF9') AND "SEQ" = TO_NUMBER(:4)`
	if q != want {
		t.Errorf("got\n%s\nwant\n%s", q, want)
	}
	if !reflect.DeepEqual(args, []any{"900", "eu", "2023-11-14 22:13:20.123456007", "5"}) {
		t.Errorf("args %v", args)
	}
}

func TestContentsQuery(t *testing.T) {
	q, args := contentsQuery(10, 20, []string{"HR", "SALES"}, "")
	if !strings.Contains(q, "SEG_OWNER IN (:3, :4)") || strings.Contains(q, "SRC_CON_NAME") {
		t.Errorf("query: %s", q)
	}
	if !reflect.DeepEqual(args, []any{"10", "20", "HR", "SALES"}) {
		t.Errorf("args %v", args)
	}
	for _, col := range []string{"SQL_REDO", "CSF", "ROLLBACK", "ROW_ID", "RS_ID", "SSN", "OPERATION_CODE", "XIDUSN", "XIDSLT", "XIDSQN"} {
		if !strings.Contains(q, col) {
			t.Errorf("query does not read %s", col)
		}
	}
	q, args = contentsQuery(10, 20, []string{"HR"}, "PDB1")
	if !strings.HasSuffix(q, " AND SRC_CON_NAME = :4") || args[3] != "PDB1" {
		t.Errorf("PDB filter: %s %v", q, args)
	}
	for _, part := range []string{"V$ARCHIVED_LOG", "DELETED = 'NO'", "V$LOGFILE", "l.STATUS = 'CURRENT'", "ORDER BY THREAD#, SEQUENCE#, PREF"} {
		if !strings.Contains(logFilesSQL, part) {
			t.Errorf("log file query lacks %q", part)
		}
	}
	if !strings.Contains(startLogMinerSQL, "DICT_FROM_ONLINE_CATALOG") || strings.Contains(startLogMinerSQL, "CONTINUOUS_MINE") || strings.Contains(startLogMinerSQL, "COMMITTED_DATA_ONLY") {
		t.Errorf("START_LOGMNR options: %s", startLogMinerSQL)
	}
}

func TestMinedRowAndLogFiles(t *testing.T) {
	r, err := minedRow([]any{"12345", "3", "5.17.2290", "HR", "ORDERS", `update "HR"."ORDERS" set "NAME" = 'x' where "ID" = '1';`, "0", "1", "AAAR3sAAEAAAACXAAA", " 0x00000a.000001b2.0010 ", "1", "2024-05-06 07:08:09"})
	if err != nil {
		t.Fatal(err)
	}
	if r.SCN != 12345 || r.Op != opcodeUpdate || r.XID != "5.17.2290" || !r.Rollback || r.CSF || r.RSID != "0x00000a.000001b2.0010" || r.SSN != 1 || r.Timestamp.Unix() != 1714979289 {
		t.Errorf("got %+v", r)
	}
	if _, err := minedRow([]any{nil, "7", "", nil, nil, nil, "0", "0", nil, nil, "0", nil}); err == nil {
		t.Error("a row without SCN was accepted")
	}
	got := pickLogFiles([]logFile{
		{"/arch/1_10.arc", "1", "10"}, {"/arch2/1_10.arc", "1", "10"}, {"/redo/g1.log", "1", "10"},
		{"/redo/g2.log", "1", "11"}, {"/arch/2_4.arc", "2", "4"},
	})
	if !reflect.DeepEqual(got, []string{"/arch/1_10.arc", "/redo/g2.log", "/arch/2_4.arc"}) {
		t.Errorf("picked %v", got)
	}
}
