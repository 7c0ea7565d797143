package oracle

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseRedoInsert(t *testing.T) {
	st, err := parseRedo(`insert into "HR"."EMP"("ID","NAME","HIRED","PHOTO","NOTE","N2") values ('7','O''Hara; said "hi"',TO_DATE('2024-02-29 13:14:15', 'SYYYY-MM-DD HH24:MI:SS'),HEXTORAW('0aff'),EMPTY_CLOB(),NULL);`)
	if err != nil {
		t.Fatal(err)
	}
	if st.Op != opInsert || st.Owner != "HR" || st.Table != "EMP" {
		t.Fatalf("got %+v", st)
	}
	want := []assign{
		{"ID", literal{Kind: litString, Text: "7"}},
		{"NAME", literal{Kind: litString, Text: `O'Hara; said "hi"`}},
		{"HIRED", literal{Kind: litFunc, Text: "TO_DATE", Args: []string{"2024-02-29 13:14:15", "SYYYY-MM-DD HH24:MI:SS"}}},
		{"PHOTO", literal{Kind: litFunc, Text: "HEXTORAW", Args: []string{"0aff"}}},
		{"NOTE", literal{Kind: litFunc, Text: "EMPTY_CLOB"}},
		{"N2", literal{Kind: litNull}},
	}
	if !reflect.DeepEqual(st.Set, want) {
		t.Fatalf("set:\n got %+v\nwant %+v", st.Set, want)
	}
}

func TestParseRedoUpdateAndDelete(t *testing.T) {
	st, err := parseRedo(`update "HR"."EMP" set "NAME" = 'new', "SAL" = NULL, "F" = -1.5E+10 where "ID" = '7' and "NAME" = 'old' and "SAL" IS NULL and "F" = 2 and ROWID = 'AAASu2AAEAAAAJ1AAA';`)
	if err != nil {
		t.Fatal(err)
	}
	if st.Op != opUpdate || len(st.Set) != 3 || len(st.Where) != 4 {
		t.Fatalf("got %+v", st)
	}
	if st.Set[1].Val.Kind != litNull || !reflect.DeepEqual(st.Set[2].Val, literal{Kind: litNumber, Text: "-1.5E+10"}) {
		t.Errorf("set values: %+v", st.Set)
	}
	if st.Where[2].Col != "SAL" || st.Where[2].Val.Kind != litNull {
		t.Errorf("IS NULL condition: %+v", st.Where[2])
	}
	for _, a := range st.Where {
		if a.Col == "ROWID" {
			t.Error("ROWID condition kept")
		}
	}

	st, err = parseRedo("delete from \"HR\".\"EMP\"\n where \"ID\" = '7' and \"NOTE\" = 'line1\nline2'")
	if err != nil {
		t.Fatal(err)
	}
	if st.Op != opDelete || len(st.Where) != 2 || st.Where[1].Val.Text != "line1\nline2" {
		t.Fatalf("got %+v", st)
	}
}

func TestParseRedoTimestampTZAndUnistr(t *testing.T) {
	st, err := parseRedo(`insert into "A"."B"("T","U") values (TO_TIMESTAMP_TZ('2024-01-02 03:04:05.123456789 +02:00 EUROPE/PARIS', 'SYYYY-MM-DD HH24:MI:SS.FF9 TZH:TZM TZR'),UNISTR('caf\00e9 \d83d\de00'))`)
	if err != nil {
		t.Fatal(err)
	}
	if st.Set[0].Val.Text != "TO_TIMESTAMP_TZ" || st.Set[1].Val.Args[0] != `caf\00e9 \d83d\de00` {
		t.Fatalf("got %+v", st.Set)
	}
}

func TestParseRedoErrors(t *testing.T) {
	for _, sql := range []string{
		`insert into "A"."B"("X") values ('unterminated)`,
		`insert into "A"."B"("X","Y") values ('1')`,
		`update "A"."B" set "X" = 'a' where "Y" = 'b' garbage`,
		`select 1 from dual`,
		`delete from "A"."B" where "X" > '1'`,
		`insert into "A"."B"("X") values (SOMETHING)`,
	} {
		if _, err := parseRedo(sql); err == nil {
			t.Errorf("parseRedo(%q) succeeded", sql)
		} else if !strings.Contains(err.Error(), "SQL_REDO") {
			t.Errorf("error does not say what it parsed: %v", err)
		}
	}
}
