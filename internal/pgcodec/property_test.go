package pgcodec

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/streams/pb"
	"github.com/jackc/pgx/v5"
)

// PostgreSQL's timestamp range in microseconds since 1970, as far as int64
// reaches: 4714-11-24 00:00:00 BC up to the last representable instant.
var (
	pgMinTimestampUS = ts(-4713, 11, 24, 0, 0, 0, 0)
	maxTimestampUS   = int64(math.MaxInt64)
)

func TestFloatBitsRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		f := math.Float64frombits(r.Uint64())
		s := string(appendFloat(nil, f, 64))
		g, err := parseFloat(s, 64)
		if err != nil || math.Float64bits(g) != math.Float64bits(f) && !(math.IsNaN(f) && math.IsNaN(g)) {
			t.Fatalf("float64 %b -> %q -> %b, %v", math.Float64bits(f), s, math.Float64bits(g), err)
		}
		f32 := math.Float32frombits(r.Uint32())
		s = string(appendFloat(nil, float64(f32), 32))
		g, err = parseFloat(s, 32)
		if err != nil || math.Float32bits(float32(g)) != math.Float32bits(f32) && !(f32 != f32 && g != g) {
			t.Fatalf("float32 %b -> %q -> %b, %v", math.Float32bits(f32), s, math.Float32bits(float32(g)), err)
		}
	}
}

// TestFloatNeverHalfway checks the rule PostgreSQL's Ryū follows and Go's
// shortest formatting does not: no output lies exactly halfway between two
// floats. Values are drawn where such ties occur (see shortestDigits), with
// few mantissa bits, which makes them common.
func TestFloatNeverHalfway(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for i := 0; i < 20000; i++ {
		k := r.IntN(40)
		m := (r.Int64N(1<<52) | 1<<52) >> k << k
		f := math.Ldexp(float64(m), r.IntN(85)-1)
		s := string(appendFloat(nil, f, 64))
		if g, err := parseFloat(s, 64); err != nil || g != f {
			t.Fatalf("%v printed %q, reads back as %v (%v)", f, s, g, err)
		}
		d, e := shortestDigits(f, 64)
		lo, hi := halfwayPoints(f, 64)
		if c := decimalRat(d, e); c.Cmp(lo) <= 0 || c.Cmp(hi) >= 0 {
			t.Fatalf("%v printed %q, not strictly between its halfway points", f, s)
		}
	}
}

func TestTimestampRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 100000; i++ {
		var us int64
		switch i % 3 {
		case 0: // anywhere in PostgreSQL's range
			// The span exceeds int64; two's complement wraps it right.
			us = pgMinTimestampUS + int64(r.Uint64N(uint64(maxTimestampUS)-uint64(pgMinTimestampUS)))
		case 1: // years 1..9999, where package time can check the calendar
			us = ts(1, 1, 1, 0, 0, 0, 0) + r.Int64N(ts(10000, 1, 1, 0, 0, 0, 0)-ts(1, 1, 1, 0, 0, 0, 0))
		default: // near the epoch, sub-second detail
			us = r.Int64N(2*usPerDay) - usPerDay
		}
		for _, zoned := range []bool{false, true} {
			b, err := formatTimestamp(nil, &pb.Timestamp{UnixUs: us, Zoned: zoned})
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseTimestamp(string(b), zoned)
			if err != nil || got.UnixUs != us || got.Zoned != zoned {
				t.Fatalf("%d -> %q -> %v, %v", us, b, got, err)
			}
			if i%3 == 1 && !zoned {
				want := time.UnixMicro(us).UTC().Format("2006-01-02 15:04:05.999999")
				if string(b) != want {
					t.Fatalf("%d printed %q, package time says %q", us, b, want)
				}
			}
		}
		days := int32(floorDiv(us, usPerDay))
		b := formatDate(nil, &pb.Date{Days: days})
		d, err := parseDateValue(string(b))
		if err != nil || d.Days != days {
			t.Fatalf("date %d -> %q -> %v, %v", days, b, d, err)
		}
	}
}

func TestTimestampBeyondInt64(t *testing.T) {
	// One microsecond past what unix_us can hold, and PostgreSQL's maximum.
	for _, s := range []string{"294247-01-10 04:00:54.775808", "294276-12-31 23:59:59.999999"} {
		if _, err := parseTimestamp(s, false); !errors.Is(err, errUnixUS) {
			t.Errorf("parseTimestamp(%q) error = %v, want errUnixUS", s, err)
		}
	}
}

func TestIntervalRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	pick32 := func() int32 {
		switch r.IntN(4) {
		case 0:
			return 0
		case 1:
			return []int32{math.MinInt32, math.MaxInt32, -1, 1, 11, 12, -12, -13}[r.IntN(8)]
		case 2:
			return int32(r.IntN(200) - 100)
		}
		return int32(r.Uint32())
	}
	pick64 := func() int64 {
		switch r.IntN(4) {
		case 0:
			return 0
		case 1:
			return []int64{math.MinInt64, math.MaxInt64, -1, 1, usPerDay, -usPerHour, usPerSec - 1}[r.IntN(7)]
		case 2:
			return r.Int64N(2*usPerDay) - usPerDay
		}
		return int64(r.Uint64())
	}
	for i := 0; i < 100000; i++ {
		iv := &pb.Interval{Months: pick32(), Days: pick32(), Micros: pick64()}
		b := formatInterval(nil, iv)
		got, err := parseInterval(string(b))
		if err != nil || got.Months != iv.Months || got.Days != iv.Days || got.Micros != iv.Micros {
			t.Fatalf("%v -> %q -> %v, %v", iv, b, got, err)
		}
	}
}

func TestTimeTZRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const maxOff = 15*3600 + 59*60 + 59
	for i := 0; i < 50000; i++ {
		v := &pb.TimeTZ{TimeUs: r.Int64N(usPerDay + 1), OffsetSeconds: int32(r.IntN(2*maxOff+1) - maxOff)}
		b := formatTimeTZ(nil, v)
		got, err := parseTimeTZ(string(b))
		if err != nil || got.TimeUs != v.TimeUs || got.OffsetSeconds != v.OffsetSeconds {
			t.Fatalf("%v -> %q -> %v, %v", v, b, got, err)
		}
	}
}

// FuzzArrayRoundTrip builds a text array from fuzz input, encodes it and
// parses it back; the elements, shape and bounds must survive unchanged.
// data is split into elements at NUL bytes (which PostgreSQL text cannot
// hold); an element that is exactly "\x01" stands for NULL.
func FuzzArrayRoundTrip(f *testing.F) {
	f.Add([]byte("a\x00b c\x00\x01\x00NULL"), uint8(0), int32(1), false)
	f.Add([]byte("\"\x00\\\x00{\x00}\x00,\x00;\x00 \x00\t\x00"), uint8(2), int32(0), true)
	f.Add([]byte("x"), uint8(1), int32(-5), false)
	f.Add([]byte(""), uint8(0), int32(1), false)
	f.Add([]byte("null\x00nULl\x00 NULL \x00\\N\x00\x0b"), uint8(3), int32(math.MaxInt32-1), false)
	f.Fuzz(func(t *testing.T, data []byte, shape uint8, lb int32, semicolon bool) {
		parts := strings.Split(string(data), "\x00")
		elems := make([]*pb.Value, len(parts))
		for i, p := range parts {
			if !utf8Valid(p) {
				t.Skip("protobuf text must be UTF-8")
			}
			if p == "\x01" {
				elems[i] = vNull()
			} else {
				elems[i] = vText(p)
			}
		}
		dims := []int32{int32(len(elems))}
		// Fold into 2-D or 3-D when the count allows, to exercise nesting.
		if n := int32(len(elems)); shape%3 == 1 && n%2 == 0 && n > 0 {
			dims = []int32{2, n / 2}
		} else if shape%3 == 2 && n%4 == 0 && n > 0 {
			dims = []int32{2, 2, n / 4}
		}
		var lbs []int32
		if lb != 1 && int64(lb)+int64(dims[0])-1 <= math.MaxInt32 {
			lbs = make([]int32, len(dims))
			for k := range lbs {
				lbs[k] = 1
			}
			lbs[0] = lb
		}
		typ := tTextArr
		if semicolon {
			typ = &Type{Name: "text[]", Base: "_text", Category: 'A', Elem: tText, Delim: ';'}
		}
		in := vArr(dims, lbs, elems...)
		text, null, err := EncodeFor(typ, in)
		if err != nil || null {
			t.Fatalf("EncodeFor(%s): %v", show(in), err)
		}
		out, err := Decode(typ, []byte(text))
		if err != nil {
			t.Fatalf("Decode(%q): %v", text, err)
		}
		if !identical(in, out) {
			t.Fatalf("%q: round trip changed\n%s\nto\n%s", text, show(in), show(out))
		}
	})
}

// FuzzArrayParse feeds arbitrary literals to the parser: it must not panic,
// and whatever it accepts must re-encode to a canonical literal that parses
// to the same value and encodes to itself.
func FuzzArrayParse(f *testing.F) {
	for _, s := range []string{
		`{}`, `{1,2}`, `{{1,2},{3,4}}`, `[0:1]={a,b}`, `[0:1][-1:0]={{a,b},{c,d}}`,
		`{"a b","",NULL,"NULL","x\"y","back\\slash"}`, ` { a , b } `, `{a\,b,\ x\ }`, `{{}}`, `{"a}`,
		`{(1,2),(0,0);(3,4),(1,1)}`, `[1:1]={x}`, `{{{{{{1}}}}}}`,
	} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, lit string, semicolon bool) {
		typ := tTextArr
		if semicolon {
			typ = tBoxArr
		}
		v, err := Decode(typ, []byte(lit))
		if err != nil {
			return
		}
		enc, _, err := EncodeFor(typ, v)
		if err != nil {
			t.Fatalf("EncodeFor(Decode(%q)): %v", lit, err)
		}
		v2, err := Decode(typ, []byte(enc))
		if err != nil {
			t.Fatalf("Decode(%q) (from %q): %v", enc, lit, err)
		}
		if !identical(v, v2) {
			t.Fatalf("%q -> %q changed\n%s\nto\n%s", lit, enc, show(v), show(v2))
		}
		if enc2, _, _ := EncodeFor(typ, v2); enc2 != enc {
			t.Fatalf("not canonical: %q -> %q -> %q", lit, enc, enc2)
		}
	})
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

func BenchmarkDecodeRow(b *testing.B) {
	types := []*Type{tInt8, tText, tNumeric, tTimestamptz, tJSONB}
	row := [][]byte{
		[]byte("9007199254740993"),
		[]byte("Ada Lovelace, 12 St James's Square, London"),
		[]byte("12345.67"),
		[]byte("2024-06-30 12:34:56.789012+00"),
		[]byte(`{"id": 42, "tags": ["a", "b"], "active": true}`),
	}
	var size int
	for _, c := range row {
		size += len(c)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		for i, t := range types {
			if _, err := Decode(t, row[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkEncodeRow(b *testing.B) {
	row := []*pb.Value{
		vInt(9007199254740993),
		vText("Ada Lovelace, 12 St James's Square, London"),
		vDec("12345.67"),
		vTS(ts(2024, 6, 30, 12, 34, 56, 789012), true),
		vJSON(`{"id": 42, "tags": ["a", "b"], "active": true}`),
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, v := range row {
			if _, _, err := Encode(v); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// fakeRows serves fixed rows through the part of pgx.Rows ScanTypes uses;
// the embedded nil interface makes any other call panic.
type fakeRows struct {
	pgx.Rows
	rows   [][]any
	i      int
	closed bool
}

func (r *fakeRows) Next() bool {
	if r.i >= len(r.rows) {
		r.closed = true
		return false
	}
	r.i++
	return true
}

func (r *fakeRows) Scan(dest ...any) error {
	row := r.rows[r.i-1]
	if len(dest) != len(row) {
		return errors.New("column count mismatch")
	}
	for i, d := range dest {
		switch d := d.(type) {
		case *string:
			*d = row[i].(string)
		case *int64:
			*d = row[i].(int64)
		case *bool:
			*d = row[i].(bool)
		default:
			return errors.New("unexpected destination type")
		}
	}
	return nil
}

func (r *fakeRows) Err() error { return nil }
func (r *fakeRows) Close()     { r.closed = true }

func TestScanTypes(t *testing.T) {
	rows := &fakeRows{rows: [][]any{
		{"id", "bigint", true, int64(20), "int8", "N", ",", int64(0), "", "", "", ""},
		{"amount", "app.posint", false, int64(23), "int4", "N", ",", int64(0), "", "", "", ""},
		{"boxes", "box[]", false, int64(1020), "_box", "A", ";", int64(603), "box", "box", "G", ";"},
		{"moods", "app.mood[]", false, int64(16401), "_mood", "A", ",", int64(16400), "app.mood", "mood", "E", ","},
	}}
	cols, err := ScanTypes(rows)
	if err != nil {
		t.Fatal(err)
	}
	if !rows.closed {
		t.Error("rows not closed")
	}
	if len(cols) != 4 || cols[0].Name != "id" || !cols[0].NotNull || cols[0].Type.kind() != kInt {
		t.Fatalf("cols[0] = %+v", cols[0])
	}
	if c := cols[1]; c.NotNull || c.Type.Name != "app.posint" || c.Type.Base != "int4" || c.Type.kind() != kInt || c.Type.Elem != nil {
		t.Errorf("domain column = %+v", c.Type)
	}
	if c := cols[2].Type; c.delim() != ';' || c.Elem == nil || c.Elem.Base != "box" || c.kind() != kArray {
		t.Errorf("box[] column = %+v", c)
	}
	if c := cols[3].Type; c.Elem == nil || c.Elem.Category != 'E' || c.Elem.Name != "app.mood" || c.Category != 'A' {
		t.Errorf("enum[] column = %+v", c)
	}
	v, err := Decode(cols[3].Type, []byte("{happy,NULL}"))
	if err != nil || !identical(v, vArr([]int32{2}, nil, vNat("happy"), vNull())) {
		t.Errorf("Decode enum[] = %s, %v", show(v), err)
	}
}

// BenchmarkEncodeFloat64 covers the halfway-point check, which costs exact
// arithmetic for every float with an even mantissa.
func BenchmarkEncodeFloat64(b *testing.B) {
	r := rand.New(rand.NewPCG(9, 10))
	vals := make([]*pb.Value, 1024)
	for i := range vals {
		vals[i] = vF64(r.NormFloat64() * 1e6)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, _, err := Encode(vals[i%len(vals)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
