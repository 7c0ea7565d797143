package mysql

import (
	"errors"
	"testing"

	"github.com/shopspring/decimal"
	"google.golang.org/protobuf/proto"

	"github.com/ferry-dev/ferry/streams/pb"
)

func TestConvertValues(t *testing.T) {
	col := func(dataType, columnType string) *column {
		return &column{DataType: dataType, ColumnType: columnType, Charset: "utf8mb4"}
	}
	uns := func(c *column) *column { c.Unsigned = true; return c }
	enum := &column{DataType: "enum", ColumnType: "enum('a','b''c')", Labels: []string{"a", "b'c"}}
	set := &column{DataType: "set", ColumnType: "set('x','y','z')", Labels: []string{"x", "y", "z"}}
	latin := &column{DataType: "varchar", ColumnType: "varchar(10)", Charset: "latin1"}
	i := func(n int64) *pb.Value { return &pb.Value{Kind: &pb.Value_Int{Int: n}} }
	u := func(n uint64) *pb.Value { return &pb.Value{Kind: &pb.Value_Uint{Uint: n}} }
	txt := func(s string) *pb.Value { return &pb.Value{Kind: &pb.Value_Text{Text: s}} }
	for _, c := range []struct {
		name    string
		col     *column
		raw     any
		binlog  bool
		want    *pb.Value
		wantErr error
	}{
		{"tinyint(1)", col("tinyint", "tinyint(1)"), int8(1), true, i(1), nil},
		{"unsigned tinyint from the binlog's signed byte", uns(col("tinyint", "tinyint unsigned")), int8(-1), true, u(255), nil},
		{"unsigned mediumint", uns(col("mediumint", "mediumint unsigned")), int32(-1), true, u(16777215), nil},
		{"unsigned int", uns(col("int", "int unsigned")), int32(-1), true, u(4294967295), nil},
		{"unsigned bigint", uns(col("bigint", "bigint unsigned")), int64(-1), true, u(18446744073709551615), nil},
		{"unsigned bigint snapshot", uns(col("bigint", "bigint unsigned")), uint64(18446744073709551615), false, u(18446744073709551615), nil},
		{"decimal keeps its scale", &column{DataType: "decimal", Scale: 4}, decimal.RequireFromString("1.5"), true, &pb.Value{Kind: &pb.Value_Decimal{Decimal: "1.5000"}}, nil},
		{"float", col("float", "float"), float64(float32(3.14159)), false, &pb.Value{Kind: &pb.Value_Float32{Float32: 3.14159}}, nil},
		{"bit snapshot", col("bit", "bit(10)"), []byte{0x02, 0xAA}, false, u(682), nil},
		{"bit binlog", col("bit", "bit(10)"), int64(682), true, u(682), nil},
		{"binary padded", col("binary", "binary(4)"), "\x01", true, &pb.Value{Kind: &pb.Value_Bytes{Bytes: []byte{1, 0, 0, 0}}}, nil},
		{"blob", col("blob", "blob"), []byte{0xff, 0}, true, &pb.Value{Kind: &pb.Value_Bytes{Bytes: []byte{0xff, 0}}}, nil},
		{"enum index", enum, int64(2), true, txt("b'c"), nil},
		{"enum empty", enum, int64(0), true, txt(""), nil},
		{"enum snapshot", enum, []byte("a"), false, txt("a"), nil},
		{"enum NULL", enum, nil, true, null(), nil},
		{"set bits", set, int64(5), true, txt("x,z"), nil},
		{"latin1 from the binlog", latin, []byte{'c', 'a', 'f', 0xE9, ' ', 0x80, 0x81}, true, txt("café €\u0081"), nil},
		{"utf8 not valid", col("varchar", "varchar(5)"), []byte{0xff}, true, nil, errors.New("not valid")},
		{"date", col("date", "date"), "1970-01-02", true, &pb.Value{Kind: &pb.Value_Date{Date: &pb.Date{Days: 1}}}, nil},
		{"zero date", col("date", "date"), "0000-00-00", true, nil, errZeroDate},
		{"zero month", col("datetime", "datetime"), "2020-00-10 00:00:00", true, nil, errZeroDate},
		{"datetime(6)", col("datetime", "datetime(6)"), "1970-01-01 00:00:01.000002", true, &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: &pb.Timestamp{UnixUs: 1000002}}}, nil},
		{"timestamp is zoned", col("timestamp", "timestamp(3)"), "1970-01-01 00:00:00.5", true, &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: &pb.Timestamp{UnixUs: 500000, Zoned: true}}}, nil},
		{"time of day", col("time", "time(6)"), "23:59:59.999999", true, &pb.Value{Kind: &pb.Value_TimeUs{TimeUs: 86399999999}}, nil},
		{"negative time", col("time", "time"), "-838:59:59", true, &pb.Value{Kind: &pb.Value_Interval{Interval: &pb.Interval{Micros: -3020399000000}}}, nil},
		{"year", col("year", "year(4)"), 2155, true, i(2155), nil},
		{"json", col("json", "json"), []byte(`{"a":1}`), true, &pb.Value{Kind: &pb.Value_Json{Json: `{"a":1}`}}, nil},
	} {
		got, err := convert(c.col, c.raw, c.binlog, false)
		if c.wantErr != nil {
			if err == nil || (errors.Is(c.wantErr, errZeroDate) && !errors.Is(err, errZeroDate)) {
				t.Errorf("%s: err %v, want %v", c.name, err, c.wantErr)
			}
			continue
		}
		if err != nil || !proto.Equal(got, c.want) {
			t.Errorf("%s: got %v, %v; want %v", c.name, got, err, c.want)
		}
	}
	// zeroDates: null turns zero dates into NULL.
	if v, err := convert(col("date", "date"), "0000-00-00", true, true); err != nil || !proto.Equal(v, null()) {
		t.Errorf("zero date under null policy: %v, %v", v, err)
	}
}

func TestParseLabels(t *testing.T) {
	got, err := parseLabels(`enum('a','it''s','c,d','')`)
	want := []string{"a", "it's", "c,d", ""}
	if err != nil || len(got) != len(want) {
		t.Fatalf("got %q, %v", got, err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}

func TestDDLClassification(t *testing.T) {
	for spec, ok := range map[string]bool{
		"ADD COLUMN note VARCHAR(20) DEFAULT 'n'":        true,
		"ADD note INT, ADD INDEX (note)":                 true,
		"DROP COLUMN note":                               true,
		"ALTER COLUMN v SET DEFAULT 'x'":                 true,
		"ADD COLUMN a INT, ALGORITHM=INPLACE, LOCK=NONE": true,
		"MODIFY v VARCHAR(40)":                           false,
		"CHANGE v w INT":                                 false,
		"RENAME COLUMN v TO w":                           false,
		"DROP PRIMARY KEY, ADD PRIMARY KEY (id, v)":      false,
		"ADD COLUMN e ENUM('a,b', 'c'), DROP COLUMN x":   true,
		"ENGINE=MyISAM":                                  false,
	} {
		if got := layoutChangeSupported(spec); got != ok {
			t.Errorf("layoutChangeSupported(%q) = %v, want %v", spec, got, ok)
		}
	}
	for in, want := range map[string][2]string{
		"t":            {"app", "t"},
		"`t`":          {"app", "t"},
		"other.t":      {"other", "t"},
		"`oth.er`.`t`": {"oth.er", "t"},
	} {
		db, name := splitQualified(in, "app")
		if db != want[0] || name != want[1] {
			t.Errorf("splitQualified(%q) = %q, %q; want %q", in, db, name, want)
		}
	}
}
