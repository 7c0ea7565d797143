package oracle

import (
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/ferry-dev/ferry/streams/pb"
)

func str1(s string) literal { return literal{Kind: litString, Text: s} }
func fn(name string, args ...string) literal {
	return literal{Kind: litFunc, Text: name, Args: args}
}

func ts(t time.Time, zoned bool) *pb.Value {
	return &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: tsValue(t, zoned)}}
}

// TestConvertEveryType converts each Oracle type from the forms SQL_REDO
// writes (and the snapshot's TO_CHAR text, which is the same).
func TestConvertEveryType(t *testing.T) {
	paris := time.FixedZone("+02:00", 7200)
	cases := []struct {
		typ  string
		lit  literal
		want *pb.Value
	}{
		{"NUMBER", str1("42"), &pb.Value{Kind: &pb.Value_Int{Int: 42}}},
		{"NUMBER", literal{Kind: litNumber, Text: "-9223372036854775808"}, &pb.Value{Kind: &pb.Value_Int{Int: math.MinInt64}}},
		{"NUMBER", str1("9223372036854775808"), &pb.Value{Kind: &pb.Value_Decimal{Decimal: "9223372036854775808"}}},
		{"NUMBER", str1("12345678901234567890123456789012345678"), &pb.Value{Kind: &pb.Value_Decimal{Decimal: "12345678901234567890123456789012345678"}}},
		{"NUMBER", str1("-.5"), &pb.Value{Kind: &pb.Value_Decimal{Decimal: "-0.5"}}},
		{"NUMBER", str1("3.14159"), &pb.Value{Kind: &pb.Value_Decimal{Decimal: "3.14159"}}},
		{"NUMBER", str1("1.5E+20"), &pb.Value{Kind: &pb.Value_Decimal{Decimal: "150000000000000000000"}}},
		{"NUMBER", str1("1E+3"), &pb.Value{Kind: &pb.Value_Int{Int: 1000}}},
		{"NUMBER", str1("1.25E-3"), &pb.Value{Kind: &pb.Value_Decimal{Decimal: "0.00125"}}},
		{"FLOAT", str1("0.1"), &pb.Value{Kind: &pb.Value_Decimal{Decimal: "0.1"}}},
		{"BINARY_DOUBLE", str1("1.5E+000"), &pb.Value{Kind: &pb.Value_Float64{Float64: 1.5}}},
		{"BINARY_DOUBLE", str1("Inf"), &pb.Value{Kind: &pb.Value_Float64{Float64: math.Inf(1)}}},
		{"BINARY_DOUBLE", str1("-Inf"), &pb.Value{Kind: &pb.Value_Float64{Float64: math.Inf(-1)}}},
		{"BINARY_FLOAT", str1("3.4028235E+038"), &pb.Value{Kind: &pb.Value_Float32{Float32: math.MaxFloat32}}},
		{"BINARY_FLOAT", fn("TO_BINARY_FLOAT", "-2.5"), &pb.Value{Kind: &pb.Value_Float32{Float32: -2.5}}},
		{"VARCHAR2", str1("it's"), &pb.Value{Kind: &pb.Value_Text{Text: "it's"}}},
		{"CHAR", str1("ab  "), &pb.Value{Kind: &pb.Value_Text{Text: "ab  "}}},
		{"NVARCHAR2", fn("UNISTR", `caf\00e9 \d83d\de00 \\`), &pb.Value{Kind: &pb.Value_Text{Text: "café 😀 \\"}}},
		{"NCHAR", str1("ü"), &pb.Value{Kind: &pb.Value_Text{Text: "ü"}}},
		{"CLOB", str1("long text"), &pb.Value{Kind: &pb.Value_Text{Text: "long text"}}},
		{"NCLOB", literal{Kind: litBytes, Bytes: []byte("snap")}, &pb.Value{Kind: &pb.Value_Text{Text: "snap"}}},
		{"BLOB", fn("HEXTORAW", "00ff10"), &pb.Value{Kind: &pb.Value_Bytes{Bytes: []byte{0, 0xff, 0x10}}}},
		{"BLOB", literal{Kind: litBytes, Bytes: []byte{1, 2}}, &pb.Value{Kind: &pb.Value_Bytes{Bytes: []byte{1, 2}}}},
		{"RAW", fn("HEXTORAW", "DEADBEEF"), &pb.Value{Kind: &pb.Value_Bytes{Bytes: []byte{0xde, 0xad, 0xbe, 0xef}}}},
		{"RAW", str1("0A0B"), &pb.Value{Kind: &pb.Value_Bytes{Bytes: []byte{10, 11}}}},
		{"DATE", fn("TO_DATE", "2024-02-29 13:14:15", dateFormat), ts(time.Date(2024, 2, 29, 13, 14, 15, 0, time.UTC), false)},
		{"DATE", str1(" 2024-02-29 13:14:15"), ts(time.Date(2024, 2, 29, 13, 14, 15, 0, time.UTC), false)},
		{"DATE", fn("TO_DATE", "-0044-03-15 12:00:00", dateFormat), ts(time.Date(-43, 3, 15, 12, 0, 0, 0, time.UTC), false)},
		{"TIMESTAMP(9)", fn("TO_TIMESTAMP", "2024-01-02 03:04:05.123456789", tsFormat), &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: &pb.Timestamp{
			UnixUs: time.Date(2024, 1, 2, 3, 4, 5, 123456000, time.UTC).UnixMicro(), ExtraNanos: 789}}}},
		{"TIMESTAMP(6)", fn("TO_TIMESTAMP", "1969-12-31 23:59:59.000001", tsFormat), &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: &pb.Timestamp{UnixUs: -999999}}}},
		{"TIMESTAMP(9) WITH TIME ZONE", fn("TO_TIMESTAMP_TZ", "2024-01-02 03:04:05.000000500 +02:00 Europe/Paris", tstzFormat), &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: &pb.Timestamp{
			UnixUs: time.Date(2024, 1, 2, 3, 4, 5, 0, paris).UnixMicro(), Zoned: true, ExtraNanos: 500, OffsetSeconds: 7200, Zone: "Europe/Paris"}}}},
		{"TIMESTAMP(6) WITH TIME ZONE", fn("TO_TIMESTAMP_TZ", "2024-01-02 03:04:05.000000000 -03:30 -03:30", tstzFormat), &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: &pb.Timestamp{
			UnixUs: time.Date(2024, 1, 2, 6, 34, 5, 0, time.UTC).UnixMicro(), Zoned: true, OffsetSeconds: -12600}}}},
		{"TIMESTAMP(6) WITH LOCAL TIME ZONE", str1("2024-01-02 03:04:05.000000000"), ts(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), true)},
		{"INTERVAL YEAR(2) TO MONTH", fn("TO_YMINTERVAL", "+02-03"), &pb.Value{Kind: &pb.Value_Interval{Interval: &pb.Interval{Months: 27}}}},
		{"INTERVAL YEAR(2) TO MONTH", str1("-01-11"), &pb.Value{Kind: &pb.Value_Interval{Interval: &pb.Interval{Months: -23}}}},
		{"INTERVAL DAY(2) TO SECOND(9)", fn("TO_DSINTERVAL", "+05 04:03:02.123456789"), &pb.Value{Kind: &pb.Value_Duration{Duration: &pb.Duration{Days: 5, Nanos: ((4*60+3)*60+2)*1e9 + 123456789}}}},
		{"INTERVAL DAY(2) TO SECOND(6)", str1("-00 00:00:01.5"), &pb.Value{Kind: &pb.Value_Duration{Duration: &pb.Duration{Nanos: -1500000000}}}},
		{"VARCHAR2", literal{Kind: litNull}, null()},
		{"XMLTYPE", str1("<a/>"), &pb.Value{Kind: &pb.Value_Native{Native: "<a/>"}}},
	}
	for _, c := range cases {
		got, err := convert(newColumn("C", c.typ, -1), c.lit)
		if err != nil {
			t.Errorf("%s %s: %v", c.typ, c.lit, err)
			continue
		}
		if !proto.Equal(got, c.want) {
			t.Errorf("%s %s:\n got %v\nwant %v", c.typ, c.lit, got, c.want)
		}
	}
}

func TestConvertNaN(t *testing.T) {
	for _, typ := range []string{"BINARY_FLOAT", "BINARY_DOUBLE"} {
		for _, s := range []string{"Nan", "NaN"} {
			v, err := convert(newColumn("C", typ, -1), str1(s))
			if err != nil {
				t.Fatal(err)
			}
			switch k := v.Kind.(type) {
			case *pb.Value_Float32:
				if !math.IsNaN(float64(k.Float32)) {
					t.Errorf("%s %s = %v", typ, s, k.Float32)
				}
			case *pb.Value_Float64:
				if !math.IsNaN(k.Float64) {
					t.Errorf("%s %s = %v", typ, s, k.Float64)
				}
			default:
				t.Errorf("%s %s: kind %T", typ, s, v.Kind)
			}
		}
	}
}

func TestConvertErrors(t *testing.T) {
	for _, c := range []struct {
		typ string
		lit literal
	}{
		{"NUMBER", str1("12a")},
		{"NUMBER", str1("1.2.3")},
		{"DATE", fn("TO_DATE", "02/29/2024", "MM/DD/YYYY")},
		{"DATE", str1("2024-13-01")},
		{"TIMESTAMP(6) WITH TIME ZONE", str1("2024-01-02 03:04:05")},
		{"RAW", str1("xyz")},
		{"INTERVAL YEAR(2) TO MONTH", str1("2 years")},
		{"INTERVAL DAY(2) TO SECOND(6)", str1("+1 2:3")},
		{"BINARY_DOUBLE", str1("one")},
		{"VARCHAR2", fn("SOME_FUNC", "x")},
		{"NVARCHAR2", fn("UNISTR", `\00`)},
	} {
		if v, err := convert(newColumn("C", c.typ, -1), c.lit); err == nil {
			t.Errorf("%s %s converted to %v", c.typ, c.lit, v)
		}
	}
}

// TestBindTextRoundTrip: a key value converted from text and written back
// gives the same text, which the chunk and LOB queries bind.
func TestBindTextRoundTrip(t *testing.T) {
	for _, c := range []struct{ typ, text string }{
		{"NUMBER", "42"}, {"NUMBER", "12345678901234567890.5"}, {"VARCHAR2", "a b"},
		{"RAW", "0AFF"}, {"DATE", "2024-02-29 13:14:15"}, {"DATE", "-0044-03-15 12:00:00"},
		{"TIMESTAMP(9)", "2024-01-02 03:04:05.123456789"},
	} {
		col := newColumn("K", c.typ, -1)
		v, err := convert(col, str1(c.text))
		if err != nil {
			t.Fatal(err)
		}
		back, err := bindText(col, v)
		if err != nil || back != c.text {
			t.Errorf("%s %q: back as %q, %v", c.typ, c.text, back, err)
		}
	}
}
