package validate

import (
	"math"
	"testing"

	"github.com/ferry-dev/ferry/streams/pb"
)

func vInt(i int64) *pb.Value    { return &pb.Value{Kind: &pb.Value_Int{Int: i}} }
func vUint(u uint64) *pb.Value  { return &pb.Value{Kind: &pb.Value_Uint{Uint: u}} }
func vDec(s string) *pb.Value   { return &pb.Value{Kind: &pb.Value_Decimal{Decimal: s}} }
func vF64(f float64) *pb.Value  { return &pb.Value{Kind: &pb.Value_Float64{Float64: f}} }
func vF32(f float32) *pb.Value  { return &pb.Value{Kind: &pb.Value_Float32{Float32: f}} }
func vBool(b bool) *pb.Value    { return &pb.Value{Kind: &pb.Value_Bool{Bool: b}} }
func vText(s string) *pb.Value  { return &pb.Value{Kind: &pb.Value_Text{Text: s}} }
func vBytes(b []byte) *pb.Value { return &pb.Value{Kind: &pb.Value_Bytes{Bytes: b}} }
func vJSON(s string) *pb.Value  { return &pb.Value{Kind: &pb.Value_Json{Json: s}} }
func vNull() *pb.Value          { return &pb.Value{Kind: &pb.Value_Null{Null: true}} }
func vTS(us int64) *pb.Value {
	return &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: &pb.Timestamp{UnixUs: us, Zoned: true}}}
}
func vTSLocal(us int64) *pb.Value {
	return &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: &pb.Timestamp{UnixUs: us}}}
}
func vSet(vs ...*pb.Value) *pb.Value {
	return &pb.Value{Kind: &pb.Value_Set{Set: &pb.Elements{Values: vs}}}
}
func vList(vs ...*pb.Value) *pb.Value {
	return &pb.Value{Kind: &pb.Value_List{List: &pb.Elements{Values: vs}}}
}
func vMap(kv ...*pb.Value) *pb.Value {
	m := &pb.Map{}
	for i := 0; i < len(kv); i += 2 {
		m.Keys = append(m.Keys, kv[i])
		m.Values = append(m.Values, kv[i+1])
	}
	return &pb.Value{Kind: &pb.Value_Map{Map: m}}
}

// Variables, not constants: constant arithmetic is exact.
var tenth, fifth = 0.1, 0.2

var uuidBytes = []byte{0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11}

func TestValidateEqualAcrossKinds(t *testing.T) {
	exactTol := Tolerances{}
	loose := Tolerances{Float: 1e-9, TimestampMs: 1}
	cases := []struct {
		name string
		tol  Tolerances
		a, b *pb.Value
		want bool
	}{
		{"int = decimal with scale", exactTol, vInt(5), vDec("5.00"), true},
		{"uint = int", exactTol, vUint(5), vInt(5), true},
		{"big uint = decimal", exactTol, vUint(math.MaxUint64), vDec("18446744073709551615"), true},
		{"decimal trailing zeros", exactTol, vDec("1.50"), vDec("1.5"), true},
		{"decimal differs", exactTol, vDec("1.50"), vDec("1.51"), false},
		{"decimal = float", exactTol, vDec("1.5"), vF64(1.5), true},
		{"float sum without tolerance", exactTol, vF64(tenth + fifth), vF64(0.3), false},
		{"float sum within tolerance", loose, vF64(tenth + fifth), vF64(0.3), true},
		{"real on one side", exactTol, vF32(0.1), vF64(0.1), true},
		{"NaN = NaN", exactTol, vF64(math.NaN()), vDec("NaN"), true},
		{"inf", exactTol, vF64(math.Inf(1)), vDec("Infinity"), true},
		{"-inf vs inf", exactTol, vF64(math.Inf(-1)), vF64(math.Inf(1)), false},
		{"bool true = 1", exactTol, vBool(true), vInt(1), true},
		{"bool false = decimal 0", exactTol, vDec("0"), vBool(false), true},
		{"bool true != 2", exactTol, vBool(true), vInt(2), false},
		{"bool true != false", exactTol, vBool(true), vBool(false), false},
		{"text = same bytes", exactTol, vText("héllo"), vBytes([]byte("héllo")), true},
		{"text != other bytes", exactTol, vText("hello"), vBytes([]byte("hellO")), false},
		{"uuid = its text, any case", exactTol, &pb.Value{Kind: &pb.Value_Uuid{Uuid: uuidBytes}}, vText("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"), true},
		{"json by value", exactTol, vJSON(`{"a": 1, "b": [1, 2]}`), vJSON(`{"b":[1,2.0],"a":1}`), true},
		{"json differs", exactTol, vJSON(`{"a": 1}`), vJSON(`{"a": 2}`), false},
		{"json = text of it", exactTol, vJSON(`{"a": 1}`), vText(`{ "a":1 }`), true},
		{"timestamps equal", exactTol, vTS(1_000_000), vTSLocal(1_000_000), true},
		{"timestamps 1ms apart, tolerance 1ms", loose, vTS(1_000_000), vTS(1_001_000), true},
		{"timestamps 2ms apart, tolerance 1ms", loose, vTS(1_000_000), vTS(1_002_000), false},
		{"timestamps 1µs apart, no tolerance", exactTol, vTS(1_000_000), vTS(1_000_001), false},
		{"null = null", exactTol, vNull(), nil, true},
		{"null != empty text", exactTol, vNull(), vText(""), false},
		{"set in any order", exactTol, vSet(vInt(1), vInt(2)), vSet(vInt(2), vDec("1")), true},
		{"set differs", exactTol, vSet(vInt(1), vInt(2)), vSet(vInt(2), vInt(3)), false},
		{"list keeps order", exactTol, vList(vInt(1), vInt(2)), vList(vInt(2), vInt(1)), false},
		{"map in any order", exactTol, vMap(vText("a"), vInt(1), vText("b"), vInt(2)), vMap(vText("b"), vInt(2), vText("a"), vInt(1)), true},
		{"map value differs", exactTol, vMap(vText("a"), vInt(1)), vMap(vText("a"), vInt(3)), false},
		{"time µs = ns", exactTol, &pb.Value{Kind: &pb.Value_TimeUs{TimeUs: 5}}, &pb.Value{Kind: &pb.Value_TimeNs{TimeNs: 5000}}, true},
		{"dates", exactTol, &pb.Value{Kind: &pb.Value_Date{Date: &pb.Date{Days: 3}}}, &pb.Value{Kind: &pb.Value_Date{Date: &pb.Date{Days: 4}}}, false},
		{"text != int", exactTol, vText("5"), vInt(5), false},
	}
	for _, c := range cases {
		if got := c.tol.Equal(c.a, c.b); got != c.want {
			t.Errorf("%s: Equal(%s, %s) = %v, want %v", c.name, Text(c.a), Text(c.b), got, c.want)
		}
		if got := c.tol.Equal(c.b, c.a); got != c.want {
			t.Errorf("%s (reversed): Equal = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestValidateKeyStringAcrossKinds(t *testing.T) {
	same := [][]*pb.Value{
		{vInt(5), vDec("5.0"), vUint(5), vF64(5)},
		{vText("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), {Kind: &pb.Value_Uuid{Uuid: uuidBytes}}},
	}
	for _, group := range same {
		for _, v := range group[1:] {
			if keyString([]*pb.Value{group[0]}) != keyString([]*pb.Value{v}) {
				t.Errorf("keys %s and %s differ", Text(group[0]), Text(v))
			}
		}
	}
	if keyString([]*pb.Value{vText("5")}) == keyString([]*pb.Value{vInt(5)}) {
		t.Error("text 5 and int 5 give the same key")
	}
	if keyString([]*pb.Value{vText("a:"), vText("b")}) == keyString([]*pb.Value{vText("a"), vText(":b")}) {
		t.Error("composite keys collide")
	}
}

func TestValidateMetaEqual(t *testing.T) {
	tol := Tolerances{CompareTimestamps: true, WritetimeMs: 1, TTLMs: 2000}
	wt, ttl := tol.MetaEqual(&pb.CellMeta{WritetimeUs: 1000, TtlSeconds: 100}, &pb.CellMeta{WritetimeUs: 1900, TtlSeconds: 98})
	if !wt || !ttl {
		t.Errorf("within tolerance: writetime %v ttl %v", wt, ttl)
	}
	wt, ttl = tol.MetaEqual(&pb.CellMeta{WritetimeUs: 1000, TtlSeconds: 100}, &pb.CellMeta{WritetimeUs: 3000, TtlSeconds: 90})
	if wt || ttl {
		t.Errorf("beyond tolerance: writetime %v ttl %v", wt, ttl)
	}
	wt, ttl = Tolerances{}.MetaEqual(&pb.CellMeta{WritetimeUs: 1}, &pb.CellMeta{WritetimeUs: 9})
	if !wt || !ttl {
		t.Error("compareTimestamps off must not compare")
	}
}

func TestValidateCompareKeysOrder(t *testing.T) {
	if compareKeys([]*pb.Value{vInt(2)}, []*pb.Value{vDec("10")}) >= 0 {
		t.Error("2 < 10 across kinds")
	}
	if compareKeys([]*pb.Value{vInt(1), vText("b")}, []*pb.Value{vInt(1), vText("a")}) <= 0 {
		t.Error("composite order")
	}
}

func TestValidateShortCutsLongValues(t *testing.T) {
	s := short(string(make([]byte, 1000)))
	if len(s) > 230 {
		t.Errorf("short left %d bytes", len(s))
	}
}
