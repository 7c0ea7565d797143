package cqlcodec

import (
	"errors"
	"math"
	"testing"

	"github.com/gocql/gocql"
	"google.golang.org/protobuf/proto"

	"github.com/ferry-dev/ferry/streams/pb"
)

func nt(t gocql.Type) gocql.TypeInfo { return gocql.NewNativeType(4, t, "") }

func coll(t gocql.Type, key, elem gocql.TypeInfo) gocql.TypeInfo {
	return gocql.CollectionType{NativeType: gocql.NewNativeType(4, t, ""), Key: key, Elem: elem}
}

func i(n int64) *pb.Value     { return &pb.Value{Kind: &pb.Value_Int{Int: n}} }
func txt(s string) *pb.Value  { return &pb.Value{Kind: &pb.Value_Text{Text: s}} }
func dec(s string) *pb.Value  { return &pb.Value{Kind: &pb.Value_Decimal{Decimal: s}} }
func f64(f float64) *pb.Value { return &pb.Value{Kind: &pb.Value_Float64{Float64: f}} }
func nullV() *pb.Value        { return &pb.Value{Kind: &pb.Value_Null{Null: true}} }
func list(vs ...*pb.Value) *pb.Value {
	return &pb.Value{Kind: &pb.Value_List{List: &pb.Elements{Values: vs}}}
}

// TestRoundTrip encodes and decodes one value of every CQL type, the 3.x
// types (date, time, smallint, tinyint, duration) included, which the
// Cassandra 2.1 of the end-to-end tests lacks.
func TestRoundTrip(t *testing.T) {
	udt := gocql.UDTTypeInfo{NativeType: gocql.NewNativeType(4, gocql.TypeUDT, ""), KeySpace: "ks", Name: "addr",
		Elements: []gocql.UDTField{{Name: "street", Type: nt(gocql.TypeText)}, {Name: "zip", Type: nt(gocql.TypeInt)}}}
	tup := gocql.TupleTypeInfo{NativeType: gocql.NewNativeType(4, gocql.TypeTuple, ""), Elems: []gocql.TypeInfo{nt(gocql.TypeInt), nt(gocql.TypeText)}}
	nan := math.Float64frombits(0x7ff8000000000123)
	cases := []struct {
		name string
		typ  gocql.TypeInfo
		v    *pb.Value
	}{
		{"ascii", nt(gocql.TypeAscii), txt("abc")},
		{"text empty", nt(gocql.TypeText), txt("")},
		{"varchar", nt(gocql.TypeVarchar), txt("héllo ☃")},
		{"int", nt(gocql.TypeInt), i(math.MinInt32)},
		{"bigint", nt(gocql.TypeBigInt), i(math.MaxInt64)},
		{"counter", nt(gocql.TypeCounter), i(-5)},
		{"smallint", nt(gocql.TypeSmallInt), i(-32768)},
		{"tinyint", nt(gocql.TypeTinyInt), i(127)},
		{"varint", nt(gocql.TypeVarint), dec("-123456789012345678901234567890")},
		{"decimal", nt(gocql.TypeDecimal), dec("-12.3400")},
		{"decimal tiny", nt(gocql.TypeDecimal), dec("0.000000000000000000001")},
		{"float", nt(gocql.TypeFloat), &pb.Value{Kind: &pb.Value_Float32{Float32: float32(math.Inf(-1))}}},
		{"double nan", nt(gocql.TypeDouble), f64(nan)},
		{"double -0", nt(gocql.TypeDouble), f64(math.Copysign(0, -1))},
		{"boolean", nt(gocql.TypeBoolean), &pb.Value{Kind: &pb.Value_Bool{Bool: false}}},
		{"blob", nt(gocql.TypeBlob), &pb.Value{Kind: &pb.Value_Bytes{Bytes: []byte{0, 0xff, 1}}}},
		{"blob empty", nt(gocql.TypeBlob), &pb.Value{Kind: &pb.Value_Bytes{Bytes: []byte{}}}},
		{"timestamp", nt(gocql.TypeTimestamp), &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: &pb.Timestamp{UnixUs: -86400123000, Zoned: true}}}},
		{"uuid", nt(gocql.TypeUUID), &pb.Value{Kind: &pb.Value_Uuid{Uuid: []byte("0123456789abcdef")}}},
		{"inet4", nt(gocql.TypeInet), &pb.Value{Kind: &pb.Value_Inet{Inet: []byte{10, 0, 0, 1}}}},
		{"inet6", nt(gocql.TypeInet), &pb.Value{Kind: &pb.Value_Inet{Inet: make([]byte, 16)}}},
		{"date", nt(gocql.TypeDate), &pb.Value{Kind: &pb.Value_Date{Date: &pb.Date{Days: -719162}}}},
		{"time", nt(gocql.TypeTime), &pb.Value{Kind: &pb.Value_TimeNs{TimeNs: 86399999999999}}},
		{"duration", nt(gocql.TypeDuration), &pb.Value{Kind: &pb.Value_Duration{Duration: &pb.Duration{Months: -14, Days: 3, Nanos: -1}}}},
		{"list", coll(gocql.TypeList, nil, nt(gocql.TypeInt)), list(i(1), i(1), i(-2))},
		{"list empty", coll(gocql.TypeList, nil, nt(gocql.TypeInt)), list()},
		{"set", coll(gocql.TypeSet, nil, nt(gocql.TypeText)), &pb.Value{Kind: &pb.Value_Set{Set: &pb.Elements{Values: []*pb.Value{txt("a"), txt("")}}}}},
		{"map", coll(gocql.TypeMap, nt(gocql.TypeBlob), coll(gocql.TypeList, nil, nt(gocql.TypeDouble))),
			&pb.Value{Kind: &pb.Value_Map{Map: &pb.Map{Keys: []*pb.Value{{Kind: &pb.Value_Bytes{Bytes: []byte{1}}}}, Values: []*pb.Value{list(f64(1.5))}}}}},
		{"tuple with null", tup, &pb.Value{Kind: &pb.Value_Tuple{Tuple: &pb.Elements{Values: []*pb.Value{nullV(), txt("")}}}}},
		{"udt", udt, &pb.Value{Kind: &pb.Value_Record{Record: &pb.Record{Names: []string{"street", "zip"}, Values: []*pb.Value{txt("Main"), nullV()}}}}},
		{"list of udt", coll(gocql.TypeList, nil, udt), list(&pb.Value{Kind: &pb.Value_Record{Record: &pb.Record{Names: []string{"street", "zip"}, Values: []*pb.Value{nullV(), i(7)}}}})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := Encode(c.typ, c.v)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if b == nil {
				t.Fatal("encoded a value as NULL")
			}
			got, err := Decode(c.typ, b)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !proto.Equal(got, c.v) {
				if c.name == "double nan" && math.Float64bits(got.GetFloat64()) == math.Float64bits(nan) {
					return
				}
				t.Fatalf("round trip: got %v, want %v", got, c.v)
			}
		})
	}
}

func TestNull(t *testing.T) {
	for _, v := range []*pb.Value{nil, {}, nullV()} {
		b, err := Encode(nt(gocql.TypeInt), v)
		if err != nil || b != nil {
			t.Fatalf("NULL encoded as %v, %v", b, err)
		}
	}
	if v, err := Decode(nt(gocql.TypeText), nil); v != nil || err != nil {
		t.Fatalf("NULL decoded as %v, %v", v, err)
	}
}

func TestRejects(t *testing.T) {
	cases := []struct {
		typ gocql.TypeInfo
		v   *pb.Value
	}{
		{nt(gocql.TypeInt), i(math.MaxInt32 + 1)},
		{nt(gocql.TypeTinyInt), i(200)},
		{nt(gocql.TypeInt), txt("1")},
		{nt(gocql.TypeDecimal), dec("NaN")},
		{coll(gocql.TypeList, nil, nt(gocql.TypeInt)), list(nullV())},
		{nt(gocql.TypeUUID), &pb.Value{Kind: &pb.Value_Uuid{Uuid: []byte{1}}}},
	}
	for _, c := range cases {
		if _, err := Encode(c.typ, c.v); err == nil {
			t.Errorf("%s from %v: no error", TypeName(c.typ), c.v)
		}
	}
	custom := gocql.NewNativeType(3, gocql.TypeCustom, "org.example.Weird")
	if _, err := Decode(custom, []byte{1}); !errors.Is(err, ErrUnmappable) {
		t.Fatalf("custom type: %v", err)
	}
	if err := Check(coll(gocql.TypeList, nil, custom)); !errors.Is(err, ErrUnmappable) {
		t.Fatalf("nested custom type: %v", err)
	}
}

func TestTypeName(t *testing.T) {
	tup := gocql.TupleTypeInfo{NativeType: gocql.NewNativeType(4, gocql.TypeTuple, ""), Elems: []gocql.TypeInfo{nt(gocql.TypeInt), coll(gocql.TypeSet, nil, nt(gocql.TypeText))}}
	if got, want := TypeName(coll(gocql.TypeMap, nt(gocql.TypeText), tup)), "map<text, frozen<tuple<int, frozen<set<text>>>>>"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}
