package streams

import (
	"bytes"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ferry-dev/ferry/streams/pb"
)

// Float bit patterns the round trip must keep exactly. proto.Equal treats
// every NaN as equal to every other and -0 as equal to +0, so these are
// checked bit by bit as well.
var (
	testFloat64Bits = []uint64{
		0x7ff8000000000001, // math.NaN() as Go builds it
		0x7ff0000000000abc, // signalling NaN with a payload
		0xfff800000000dead, // negative quiet NaN with a payload
		0x7ff0000000000000, // +Inf
		0xfff0000000000000, // -Inf
		0x8000000000000000, // -0.0
		0x0000000000000001, // smallest subnormal
		0x7fefffffffffffff, // math.MaxFloat64
	}
	testFloat32Bits = []uint32{
		0x7fc00000, // quiet NaN
		0x7f800001, // signalling NaN with a payload
		0xffc0beef, // negative quiet NaN with a payload
		0x7f800000, // +Inf
		0xff800000, // -Inf
		0x80000000, // -0.0
		0x00000001, // smallest subnormal
	}
)

func valInt(i int64) *pb.Value     { return &pb.Value{Kind: &pb.Value_Int{Int: i}} }
func valText(s string) *pb.Value   { return &pb.Value{Kind: &pb.Value_Text{Text: s}} }
func valDec(s string) *pb.Value    { return &pb.Value{Kind: &pb.Value_Decimal{Decimal: s}} }
func valNative(s string) *pb.Value { return &pb.Value{Kind: &pb.Value_Native{Native: s}} }
func valNull() *pb.Value           { return &pb.Value{Kind: &pb.Value_Null{Null: true}} }
func valTS(us int64, zoned bool) *pb.Value {
	return &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: &pb.Timestamp{UnixUs: us, Zoned: zoned}}}
}

// testColumn is one column of the every-kind row.
type testColumn struct {
	name, typ string
	v         *pb.Value
}

// everyKindColumns returns one or more columns of each Value kind, chosen
// at the edges where a format is most likely to lose something.
func everyKindColumns() []testColumn {
	all256 := make([]byte, 256)
	for i := range all256 {
		all256[i] = byte(i)
	}
	// 60 integer digits and 40 fraction digits: beyond float64, int64 and
	// PostgreSQL's default numeric display, but a legal numeric value.
	digits := strings.Repeat("1234567890", 10)
	dec100 := "-" + digits[:60] + "." + digits[60:]

	cols := []testColumn{
		{"unset", "int4", &pb.Value{}}, // no kind set: SQL NULL
		{"null", "int4", valNull()},
		// Default values inside the oneof must keep their presence, or
		// false/0/"" would come back as NULL.
		{"bool_false", "bool", &pb.Value{Kind: &pb.Value_Bool{Bool: false}}},
		{"bool_true", "bool", &pb.Value{Kind: &pb.Value_Bool{Bool: true}}},
		{"int_zero", "int8", valInt(0)},
		{"int_min", "int8", valInt(math.MinInt64)},
		{"int_max", "int8", valInt(math.MaxInt64)},
		{"int_neg1", "int8", valInt(-1)},
		{"uint_zero", "bigint unsigned", &pb.Value{Kind: &pb.Value_Uint{Uint: 0}}},
		{"uint_max", "bigint unsigned", &pb.Value{Kind: &pb.Value_Uint{Uint: math.MaxUint64}}},
		{"dec_nan", "numeric", valDec("NaN")},
		{"dec_inf", "numeric", valDec("Infinity")},
		{"dec_ninf", "numeric", valDec("-Infinity")},
		{"dec_scale", "numeric(18,4)", valDec("-12.3400")},
		{"dec_zero", "numeric(5,3)", valDec("0.000")},
		{"dec_100", "numeric", valDec(dec100)},
		{"text_empty", "text", valText("")},
		{"text_emoji", "text", valText("family 👩‍👩‍👧‍👦 flag 🇺🇦 max \U0010FFFF")},
		{"text_rtl", "text", valText("\u200fשלום עולם — مرحبا بالعالم\u200e (mixed)")},
		{"text_combining", "text", valText("e\u0301 vs \u00e9, BOM \ufeff, LS \u2028")},
		// PostgreSQL text cannot hold NUL, other sources' can; it is valid
		// UTF-8 and must survive.
		{"text_nul", "varchar(10)", valText("a\x00b")},
		{"bytes_empty", "bytea", &pb.Value{Kind: &pb.Value_Bytes{Bytes: []byte{}}}},
		{"bytes_all", "bytea", &pb.Value{Kind: &pb.Value_Bytes{Bytes: all256}}},
		{"ts_zoned", "timestamptz", valTS(1767225600123456, true)},
		{"ts_local", "timestamp", valTS(1767225600123456, false)},
		{"ts_year1", "timestamp", valTS(-62135596800000000, false)},
		{"ts_inf", "timestamptz", &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: &pb.Timestamp{Zoned: true, Infinity: 1}}}},
		{"ts_ninf", "timestamp", &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: &pb.Timestamp{Infinity: -1}}}},
		{"date_epoch", "date", &pb.Value{Kind: &pb.Value_Date{Date: &pb.Date{}}}},
		{"date_year1", "date", &pb.Value{Kind: &pb.Value_Date{Date: &pb.Date{Days: -719162}}}},
		{"date_inf", "date", &pb.Value{Kind: &pb.Value_Date{Date: &pb.Date{Infinity: 1}}}},
		{"date_ninf", "date", &pb.Value{Kind: &pb.Value_Date{Date: &pb.Date{Infinity: -1}}}},
		{"time_midnight", "time", &pb.Value{Kind: &pb.Value_TimeUs{TimeUs: 0}}},
		// PostgreSQL accepts 24:00:00.
		{"time_24h", "time", &pb.Value{Kind: &pb.Value_TimeUs{TimeUs: 86_400_000_000}}},
		{"timetz_west", "timetz", &pb.Value{Kind: &pb.Value_TimeTz{TimeTz: &pb.TimeTZ{TimeUs: 45_296_789_012, OffsetSeconds: -(3*3600 + 30*60)}}}},
		{"timetz_east", "timetz", &pb.Value{Kind: &pb.Value_TimeTz{TimeTz: &pb.TimeTZ{TimeUs: 1, OffsetSeconds: 14 * 3600}}}},
		{"interval_neg", "interval", &pb.Value{Kind: &pb.Value_Interval{Interval: &pb.Interval{Months: -14, Days: -3, Micros: -1}}}},
		{"interval_mixed", "interval", &pb.Value{Kind: &pb.Value_Interval{Interval: &pb.Interval{Months: 1, Days: -2, Micros: 3_600_000_000}}}},
		{"uuid", "uuid", &pb.Value{Kind: &pb.Value_Uuid{Uuid: []byte{
			0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11}}}},
		// Key order, spacing, a duplicate key and a number no float holds:
		// all must come back byte for byte.
		{"json", "jsonb", &pb.Value{Kind: &pb.Value_Json{Json: `{"b": 1,  "a":[1, 2.50, 1e400], "a": "dup"}`}}},
		{"json_scalar", "json", &pb.Value{Kind: &pb.Value_Json{Json: `null`}}},
		// int4[][] '[0:1][-2:0]={{1,2,3},{4,NULL,6}}'.
		{"array_2d", "int4[]", &pb.Value{Kind: &pb.Value_Array{Array: &pb.Array{
			Dims:        []int32{2, 3},
			LowerBounds: []int32{0, -2},
			Elements:    []*pb.Value{valInt(1), valInt(2), valInt(3), valInt(4), valNull(), valInt(6)},
		}}}},
		{"array_empty", "text[]", &pb.Value{Kind: &pb.Value_Array{Array: &pb.Array{}}}},
		// The string "NULL" and a NULL element are different things.
		{"array_text", "text[]", &pb.Value{Kind: &pb.Value_Array{Array: &pb.Array{
			Dims:     []int32{3},
			Elements: []*pb.Value{valText("NULL"), valNull(), valText("")},
		}}}},
		{"native_enum", "public.mood", valNative("happy")},
		{"native_cidr", "cidr", valNative("192.168.0.0/24")},
		{"native_range", "int4range", valNative("[1,10)")},
		{"native_money", "money", valNative("$1,234.56")},
		// Collections of the CQL and DynamoDB sources: nesting, NULL elements,
		// empty collections and non-text map keys must survive.
		{"list_nested", "list<frozen<list<int>>>", &pb.Value{Kind: &pb.Value_List{List: &pb.Elements{Values: []*pb.Value{
			{Kind: &pb.Value_List{List: &pb.Elements{Values: []*pb.Value{valInt(1), valNull()}}}},
			{Kind: &pb.Value_List{List: &pb.Elements{}}},
		}}}}},
		{"set_text", "SS", &pb.Value{Kind: &pb.Value_Set{Set: &pb.Elements{Values: []*pb.Value{valText("a"), valText("")}}}}},
		{"map_int_dec", "map<int, decimal>", &pb.Value{Kind: &pb.Value_Map{Map: &pb.Map{
			Keys:   []*pb.Value{valInt(-1), valInt(2)},
			Values: []*pb.Value{valDec("1.50"), valDec("12345678901234567890123456789012345678")},
		}}}},
		{"map_empty", "M", &pb.Value{Kind: &pb.Value_Map{Map: &pb.Map{}}}},
		{"tuple", "tuple<int, text, blob>", &pb.Value{Kind: &pb.Value_Tuple{Tuple: &pb.Elements{Values: []*pb.Value{
			valInt(7), valNull(), {Kind: &pb.Value_Bytes{Bytes: []byte{0, 0xff}}},
		}}}}},
		{"udt", "ks.address", &pb.Value{Kind: &pb.Value_Record{Record: &pb.Record{
			Names:  []string{"street", "zip"},
			Values: []*pb.Value{valText("Main St"), valNull()},
		}}}},
		{"inet4", "inet", &pb.Value{Kind: &pb.Value_Inet{Inet: []byte{127, 0, 0, 1}}}},
		{"inet6", "inet", &pb.Value{Kind: &pb.Value_Inet{Inet: make([]byte, 16)}}},
		{"duration", "duration", &pb.Value{Kind: &pb.Value_Duration{Duration: &pb.Duration{Months: -1, Days: 2, Nanos: -3}}}},
		{"time_ns", "time", &pb.Value{Kind: &pb.Value_TimeNs{TimeNs: 86_399_999_999_999}}},
		{"ts_tz_region", "TIMESTAMP(9) WITH TIME ZONE", &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: &pb.Timestamp{
			UnixUs: 1767225600123456, Zoned: true, ExtraNanos: 789, OffsetSeconds: 3600, Zone: "Europe/Paris",
		}}}},
	}
	var f64 []*pb.Value
	for i, bits := range testFloat64Bits {
		v := &pb.Value{Kind: &pb.Value_Float64{Float64: math.Float64frombits(bits)}}
		cols = append(cols, testColumn{fmt.Sprintf("float64_%d", i), "float8", v})
		f64 = append(f64, &pb.Value{Kind: &pb.Value_Float64{Float64: math.Float64frombits(bits)}})
	}
	for i, bits := range testFloat32Bits {
		v := &pb.Value{Kind: &pb.Value_Float32{Float32: math.Float32frombits(bits)}}
		cols = append(cols, testColumn{fmt.Sprintf("float32_%d", i), "float4", v})
	}
	// Floats inside an array take the same path and must keep their bits too.
	cols = append(cols, testColumn{"array_float", "float8[]", &pb.Value{Kind: &pb.Value_Array{Array: &pb.Array{
		Dims:     []int32{int32(len(f64))},
		Elements: f64,
	}}}})
	return cols
}

// everyKindEvents returns a change event whose after-image holds every Value
// kind, a delete, and a snapshot read, so that the optional Event fields are
// exercised both set and unset.
func everyKindEvents() []*pb.Event {
	after := &pb.Row{}
	for _, c := range everyKindColumns() {
		after.Names = append(after.Names, c.name)
		after.Types = append(after.Types, c.typ)
		after.Values = append(after.Values, c.v)
	}
	key := func(id int64) *pb.Row {
		return &pb.Row{Names: []string{"id"}, Types: []string{"int8"}, Values: []*pb.Value{valInt(id)}}
	}
	after.Meta = make([]*pb.CellMeta, len(after.Values))
	for i := range after.Meta {
		after.Meta[i] = &pb.CellMeta{WritetimeUs: int64(i) - 3, TtlSeconds: int32(i % 2)}
	}
	return []*pb.Event{
		{
			PartitionKeyCount: 1,
			Source:            "pg-main",
			Table:             "public.every kind",
			Op:                pb.Op_OP_UPDATE,
			Key:               key(1),
			After:             after,
			Before:            key(1),
			Unchanged:         []string{"big_toasted_doc"},
			// Zero and 0xff bytes inside the position must survive.
			Position:     []byte{0, 0, 0, 0, 0x01, 0x6b, 0x37, 0x48, 0xff, 0, 0, 0x02},
			PositionText: "0/16B3748",
			CommitTimeUs: 1767225600123456,
			TxId:         "4294967297",
			TxIndex:      2,
		},
		{
			Source:       "pg-main",
			Table:        "public.every kind",
			Op:           pb.Op_OP_DELETE,
			Key:          key(math.MinInt64),
			Position:     []byte{0, 0, 0, 0, 0x01, 0x6b, 0x37, 0x48, 0xff, 0, 0, 0x03},
			PositionText: "0/16B3748",
			CommitTimeUs: -1, // before the epoch is legal
			TxId:         "4294967297",
			TxIndex:      3,
		},
		{Source: "pg-main", Table: "public.every kind", Op: pb.Op_OP_READ, Key: key(2), After: key(2)},
	}
}

func TestRoundTripEveryKind(t *testing.T) {
	events := everyKindEvents()
	payload, err := Encode(events...)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(payload)
	if err != nil {
		t.Fatal(err)
	}
	if got.GetVersion() != FormatVersion {
		t.Errorf("version = %d, want %d", got.GetVersion(), FormatVersion)
	}
	want := &pb.Batch{Version: FormatVersion, Events: events}
	if !proto.Equal(want, got) {
		t.Fatalf("round trip changed the batch:\nwant %v\ngot  %v", want, got)
	}
	// proto.Equal already checks which oneof field is set; checking the Go
	// types too gives a clearer message (and guards default values such as
	// Int 0 or Bool false against coming back as NULL).
	wantVals := events[0].GetAfter().GetValues()
	gotVals := got.GetEvents()[0].GetAfter().GetValues()
	names := events[0].GetAfter().GetNames()
	for i := range wantVals {
		compareValueBits(t, names[i], wantVals[i], gotVals[i])
	}
}

// compareValueBits checks that got holds the same kind as want and, for
// floats, the same IEEE 754 bits, which proto.Equal does not check.
func compareValueBits(t *testing.T, where string, want, got *pb.Value) {
	t.Helper()
	if wt, gt := reflect.TypeOf(want.GetKind()), reflect.TypeOf(got.GetKind()); wt != gt {
		t.Errorf("%s: kind %v came back as %v", where, wt, gt)
		return
	}
	switch k := want.GetKind().(type) {
	case *pb.Value_Float64:
		if w, g := math.Float64bits(k.Float64), math.Float64bits(got.GetFloat64()); w != g {
			t.Errorf("%s: float64 bits %#016x came back as %#016x", where, w, g)
		}
	case *pb.Value_Float32:
		if w, g := math.Float32bits(k.Float32), math.Float32bits(got.GetFloat32()); w != g {
			t.Errorf("%s: float32 bits %#08x came back as %#08x", where, w, g)
		}
	case *pb.Value_Array:
		ga := got.GetArray()
		if len(ga.GetElements()) != len(k.Array.GetElements()) {
			t.Errorf("%s: %d elements came back as %d", where, len(k.Array.GetElements()), len(ga.GetElements()))
			return
		}
		for i, e := range k.Array.GetElements() {
			compareValueBits(t, fmt.Sprintf("%s[%d]", where, i), e, ga.GetElements()[i])
		}
	}
}

// Sanity check of the test itself: the table must really contain the
// bit patterns it claims to check.
func TestEveryKindCoversFloatEdges(t *testing.T) {
	seen64 := map[uint64]bool{}
	seen32 := map[uint32]bool{}
	kinds := map[reflect.Type]bool{}
	for _, c := range everyKindColumns() {
		kinds[reflect.TypeOf(c.v.GetKind())] = true
		switch k := c.v.GetKind().(type) {
		case *pb.Value_Float64:
			seen64[math.Float64bits(k.Float64)] = true
		case *pb.Value_Float32:
			seen32[math.Float32bits(k.Float32)] = true
		}
	}
	for _, b := range testFloat64Bits {
		if !seen64[b] {
			t.Errorf("float64 %#016x lost before encoding", b)
		}
	}
	for _, b := range testFloat32Bits {
		if !seen32[b] {
			t.Errorf("float32 %#08x lost before encoding", b)
		}
	}
	// Every oneof member plus the unset kind: counted from the descriptor so
	// a new member without a test case fails here.
	want := (&pb.Value{}).ProtoReflect().Descriptor().Oneofs().ByName("kind").Fields().Len() + 1
	if len(kinds) != want {
		t.Errorf("every-kind row has %d kinds, want %d (all oneof members and unset)", len(kinds), want)
	}
	if !math.Signbit(math.Float64frombits(testFloat64Bits[5])) {
		t.Error("-0.0 lost its sign")
	}
}

// Proto3 string fields must be valid UTF-8, and the Go runtime enforces it
// on both sides. A text value with invalid UTF-8 (from a SQL_ASCII database,
// say) therefore cannot travel as `text`: Encode fails rather than replacing
// bytes, and the same bytes do travel as `bytes`. docs/FORMAT.md says so.
func TestInvalidUTF8(t *testing.T) {
	bad := "caf\xe9" // Latin-1 é, not UTF-8
	for name, v := range map[string]*pb.Value{
		"text":    valText(bad),
		"json":    {Kind: &pb.Value_Json{Json: `"` + bad + `"`}},
		"native":  valNative(bad),
		"decimal": valDec("1\xff"),
	} {
		ev := &pb.Event{Source: "s", Table: "t", Op: pb.Op_OP_INSERT,
			After: &pb.Row{Names: []string{"c"}, Values: []*pb.Value{v}}}
		_, err := Encode(ev)
		if err == nil || !strings.Contains(err.Error(), "UTF-8") {
			t.Errorf("%s: Encode of invalid UTF-8 gave error %v, want one about UTF-8", name, err)
		}
	}
	// Column and table names are strings too.
	_, err := Encode(&pb.Event{Source: "s", Table: bad})
	if err == nil {
		t.Error("Encode accepted a table name with invalid UTF-8")
	}

	// The lossless way: the same bytes as a bytes value.
	ev := &pb.Event{Source: "s", Table: "t", Op: pb.Op_OP_INSERT,
		After: &pb.Row{Names: []string{"c"}, Types: []string{"text"},
			Values: []*pb.Value{{Kind: &pb.Value_Bytes{Bytes: []byte(bad)}}}}}
	payload, err := Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(payload)
	if err != nil {
		t.Fatal(err)
	}
	if b := got.GetEvents()[0].GetAfter().GetValues()[0].GetBytes(); !bytes.Equal(b, []byte(bad)) {
		t.Errorf("bytes came back as %q", b)
	}

	// A payload written by another producer with invalid UTF-8 in a text
	// field is refused by Decode, not passed on.
	value := protowire.AppendTag(nil, 8, protowire.BytesType) // Value.text
	value = protowire.AppendString(value, bad)
	row := protowire.AppendTag(nil, 3, protowire.BytesType) // Row.values
	row = protowire.AppendBytes(row, value)
	event := protowire.AppendTag(nil, 5, protowire.BytesType) // Event.after
	event = protowire.AppendBytes(event, row)
	if _, err := Decode(rawBatch(1, event)); err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Errorf("Decode of invalid UTF-8 text gave error %v, want one about UTF-8", err)
	}
}

// rawBatch builds a Batch by hand, so that tests can write what Encode
// never would.
func rawBatch(version uint64, events ...[]byte) []byte {
	var b []byte
	if version != 0 {
		b = protowire.AppendTag(b, 1, protowire.VarintType)
		b = protowire.AppendVarint(b, version)
	}
	for _, e := range events {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, e)
	}
	return b
}

func TestDecodeRejectsUnknownVersions(t *testing.T) {
	ev, err := proto.Marshal(everyKindEvents()[1])
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []uint64{0, 2, math.MaxUint32} {
		_, err := Decode(rawBatch(v, ev))
		if err == nil {
			t.Errorf("version %d: Decode succeeded", v)
			continue
		}
		if want := fmt.Sprintf("version %d ", v); !strings.Contains(err.Error(), want) {
			t.Errorf("version %d: error %q does not name the version", v, err)
		}
	}
	// An empty payload is a Batch with version 0, not an empty batch.
	if _, err := Decode(nil); err == nil || !strings.Contains(err.Error(), "version 0 ") {
		t.Errorf("Decode(nil) gave error %v, want version 0 refused", err)
	}
	if _, err := Decode(rawBatch(1, ev)); err != nil {
		t.Errorf("version 1: %v", err)
	}
}

func TestDecodeGarbage(t *testing.T) {
	valid, err := Encode(everyKindEvents()...)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		// The last bytes of a Batch belong to a length-delimited event, so
		// any cut leaves a length that runs past the end.
		"truncated":       valid[:len(valid)-1],
		"half":            valid[:len(valid)/2],
		"text":            []byte("not a protobuf message"),
		"json":            []byte(`{"version":1,"events":[]}`),
		"gzip header":     {0x1f, 0x8b, 0x08, 0x00},
		"wire type 7":     {0x0f},
		"varint too big":  bytes.Repeat([]byte{0xff}, 11),
		"length past end": {0x12, 0x64, 0x01},
		"version as string": append(protowire.AppendTag(nil, 1, protowire.BytesType),
			0x01, 0x01),
	} {
		if b, err := Decode(data); err == nil {
			t.Errorf("%s: Decode returned %v and no error", name, b)
		}
	}
}

// Readers of version 1 must accept fields added later without a version
// bump, and keep them when they re-encode (a relay must not strip them).
func TestDecodeKeepsUnknownFields(t *testing.T) {
	ev, err := proto.Marshal(everyKindEvents()[2])
	if err != nil {
		t.Fatal(err)
	}
	ev = protowire.AppendTag(ev, 99, protowire.VarintType) // a future Event field
	ev = protowire.AppendVarint(ev, 7)
	payload := rawBatch(1, ev)
	payload = protowire.AppendTag(payload, 15, protowire.BytesType) // a future Batch field
	payload = protowire.AppendString(payload, "later")

	got, err := Decode(payload)
	if err != nil {
		t.Fatalf("Decode refused a version 1 payload with new fields: %v", err)
	}
	if len(got.GetEvents()) != 1 || got.GetEvents()[0].GetOp() != pb.Op_OP_READ {
		t.Fatalf("known fields misread: %v", got)
	}
	if len(got.GetEvents()[0].ProtoReflect().GetUnknown()) == 0 || len(got.ProtoReflect().GetUnknown()) == 0 {
		t.Error("unknown fields were dropped")
	}
	again, err := proto.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != len(payload) {
		t.Errorf("re-encoded %d bytes, want %d (unknown fields lost?)", len(again), len(payload))
	}
}

// A Value kind added in a later release reaches an old reader as a Value with
// no kind and an unknown field. Since "no kind" also spells NULL, readers
// must look at the unknown fields before taking it for NULL; docs/FORMAT.md
// states that rule, and this test shows why it is needed.
func TestNewValueKindLooksLikeNullWithUnknownFields(t *testing.T) {
	value := protowire.AppendTag(nil, 40, protowire.BytesType) // a future kind
	value = protowire.AppendString(value, "future")
	row := protowire.AppendTag(nil, 3, protowire.BytesType)
	row = protowire.AppendBytes(row, value)
	event := protowire.AppendTag(nil, 5, protowire.BytesType)
	event = protowire.AppendBytes(event, row)

	got, err := Decode(rawBatch(1, event))
	if err != nil {
		t.Fatal(err)
	}
	v := got.GetEvents()[0].GetAfter().GetValues()[0]
	if v.GetKind() != nil {
		t.Fatalf("kind = %T, want none", v.GetKind())
	}
	if len(v.ProtoReflect().GetUnknown()) == 0 {
		t.Error("the future kind left no unknown field; a reader could not tell it from NULL")
	}
}

// A payload built event by event is the same bytes as Encode of the
// events, and refuses invalid UTF-8 the same way.
func TestAppendEventMatchesEncode(t *testing.T) {
	events := everyKindEvents()
	want, err := Encode(events...)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for _, e := range events {
		if got, err = AppendEvent(got, e, e.SizeVT()); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendEvent wrote %x, Encode %x", got, want)
	}
	bad := &pb.Event{Source: "s", Table: "t", Op: pb.Op_OP_INSERT,
		After: &pb.Row{Names: []string{"c"}, Values: []*pb.Value{valText("caf\xe9")}}}
	if after, err := AppendEvent(got, bad, bad.SizeVT()); err == nil || !strings.Contains(err.Error(), "UTF-8") || len(after) != len(got) {
		t.Errorf("AppendEvent of invalid UTF-8: error %v, payload grew by %d bytes", err, len(after)-len(got))
	}
}
