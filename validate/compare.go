package validate

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"math"
	"math/big"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/streams/pb"
)

// Tolerances say how far two values may be apart and still count as equal.
type Tolerances struct {
	// Float is the largest absolute difference between floating-point
	// values.
	Float float64
	// TimestampMs is the largest difference between timestamps.
	TimestampMs int64
	// CompareTimestamps compares per-cell write times and TTLs (CQL) where
	// both sides have them, within WritetimeMs and TTLMs.
	CompareTimestamps bool
	WritetimeMs       int64
	TTLMs             int64
}

// TolerancesFrom reads the validation section of the config.
func TolerancesFrom(v config.Validation) Tolerances {
	return Tolerances{
		Float:             v.FloatingPointTolerance,
		TimestampMs:       v.TimestampMsTolerance,
		CompareTimestamps: v.CompareTimestamps,
		WritetimeMs:       v.WritetimeToleranceMillis,
		TTLMs:             v.TTLToleranceMillis,
	}
}

// Equal reports whether a source value and a target value hold the same
// datum, across engines: numbers compare by value whatever their kind (int,
// uint, decimal "1.50" and 1.5, within Float for floating point); a bool
// equals 0 or 1; text equals the same bytes, a UUID its text form, JSON the
// same document whatever its spacing and key order; timestamps compare as
// instants within TimestampMs; collections element by element (sets in any
// order).
func (tol Tolerances) Equal(a, b *pb.Value) bool {
	an, bn := isNull(a), isNull(b)
	if an || bn {
		return an == bn
	}
	// Fast paths for the kinds most columns hold.
	switch x := a.Kind.(type) {
	case *pb.Value_Int:
		if y, ok := b.Kind.(*pb.Value_Int); ok {
			return x.Int == y.Int
		}
	case *pb.Value_Text:
		if y, ok := b.Kind.(*pb.Value_Text); ok {
			return x.Text == y.Text
		}
	case *pb.Value_Bool:
		if y, ok := b.Kind.(*pb.Value_Bool); ok {
			return x.Bool == y.Bool
		}
	case *pb.Value_Decimal:
		if y, ok := b.Kind.(*pb.Value_Decimal); ok && x.Decimal == y.Decimal {
			return true
		}
	}
	if isNumeric(a) && isNumeric(b) {
		return tol.numbersEqual(a, b)
	}
	if ta, ok := a.Kind.(*pb.Value_Timestamp); ok {
		if tb, ok := b.Kind.(*pb.Value_Timestamp); ok {
			return timestampsEqual(ta.Timestamp, tb.Timestamp, tol.TimestampMs)
		}
	}
	if ns, ok := timeNanos(a); ok {
		if nt, ok := timeNanos(b); ok {
			return ns == nt
		}
	}
	if isJSON(a) || isJSON(b) {
		if sa, ok := stringOf(a); ok {
			if sb, ok := stringOf(b); ok {
				return jsonEqual(sa, sb)
			}
		}
	}
	if sa, ok := stringOf(a); ok {
		if sb, ok := stringOf(b); ok {
			if sa == sb {
				return true
			}
			// A UUID's text may be upper-case on one side.
			_, ua := a.Kind.(*pb.Value_Uuid)
			_, ub := b.Kind.(*pb.Value_Uuid)
			return (ua || ub) && strings.EqualFold(sa, sb)
		}
	}
	if ea, oka := elements(a); oka {
		if eb, okb := elements(b); okb {
			if _, set := a.Kind.(*pb.Value_Set); set {
				return tol.sameSet(ea, eb)
			}
			return tol.sameList(ea, eb)
		}
	}
	switch x := a.Kind.(type) {
	case *pb.Value_Map:
		y, ok := b.Kind.(*pb.Value_Map)
		return ok && tol.sameMap(x.Map, y.Map)
	case *pb.Value_Record:
		y, ok := b.Kind.(*pb.Value_Record)
		return ok && tol.sameRecord(x.Record, y.Record)
	case *pb.Value_Array:
		if y, ok := b.Kind.(*pb.Value_Array); ok {
			return sameDims(x.Array, y.Array) && tol.sameList(x.Array.GetElements(), y.Array.GetElements())
		}
	}
	// The same kind with the same content (dates, intervals, ...).
	ma, err1 := a.MarshalVT()
	mb, err2 := b.MarshalVT()
	return err1 == nil && err2 == nil && bytes.Equal(ma, mb)
}

func isNull(v *pb.Value) bool {
	if v == nil || v.Kind == nil {
		return true
	}
	_, ok := v.Kind.(*pb.Value_Null)
	return ok
}

func isNumeric(v *pb.Value) bool {
	switch v.Kind.(type) {
	case *pb.Value_Int, *pb.Value_Uint, *pb.Value_Decimal, *pb.Value_Float64, *pb.Value_Float32, *pb.Value_Bool:
		return true
	}
	return false
}

func isFloat(v *pb.Value) bool {
	switch v.Kind.(type) {
	case *pb.Value_Float64, *pb.Value_Float32:
		return true
	}
	return false
}

// exact returns an integer or decimal value as a rational number; ok is
// false for floats and for decimals that are NaN or infinite.
func exact(v *pb.Value) (*big.Rat, bool) {
	switch k := v.Kind.(type) {
	case *pb.Value_Int:
		return new(big.Rat).SetInt64(k.Int), true
	case *pb.Value_Uint:
		return new(big.Rat).SetUint64(k.Uint), true
	case *pb.Value_Bool:
		if k.Bool {
			return big.NewRat(1, 1), true
		}
		return new(big.Rat), true
	case *pb.Value_Decimal:
		r, ok := new(big.Rat).SetString(k.Decimal)
		return r, ok
	}
	return nil, false
}

// float returns any numeric value as a float64.
func float(v *pb.Value) float64 {
	switch k := v.Kind.(type) {
	case *pb.Value_Float64:
		return k.Float64
	case *pb.Value_Float32:
		return float64(k.Float32)
	case *pb.Value_Decimal:
		switch k.Decimal {
		case "NaN":
			return math.NaN()
		case "Infinity":
			return math.Inf(1)
		case "-Infinity":
			return math.Inf(-1)
		}
	}
	if r, ok := exact(v); ok {
		f, _ := r.Float64()
		return f
	}
	return math.NaN()
}

func (tol Tolerances) numbersEqual(a, b *pb.Value) bool {
	_, ba := a.Kind.(*pb.Value_Bool)
	_, bb := b.Kind.(*pb.Value_Bool)
	if ra, ok := exact(a); ok {
		if rb, ok := exact(b); ok {
			if ba != bb {
				// A bool stored as a number (TINYINT(1), 0/1) is only 0 or 1.
				one := big.NewRat(1, 1)
				n := rb
				if bb {
					n = ra
				}
				if n.Sign() != 0 && n.Cmp(one) != 0 {
					return false
				}
			}
			return ra.Cmp(rb) == 0
		}
	}
	if ba || bb {
		return false
	}
	fa, fb := float(a), float(b)
	if math.IsNaN(fa) || math.IsNaN(fb) {
		return math.IsNaN(fa) && math.IsNaN(fb)
	}
	if math.IsInf(fa, 0) || math.IsInf(fb, 0) {
		return fa == fb
	}
	// A real (float32) on one side carries only float32's precision.
	_, f32a := a.Kind.(*pb.Value_Float32)
	_, f32b := b.Kind.(*pb.Value_Float32)
	if f32a != f32b {
		fa, fb = float64(float32(fa)), float64(float32(fb))
	}
	return math.Abs(fa-fb) <= tol.Float
}

func timestampsEqual(a, b *pb.Timestamp, tolMs int64) bool {
	if a.GetInfinity() != 0 || b.GetInfinity() != 0 {
		return a.GetInfinity() == b.GetInfinity()
	}
	na := a.GetUnixUs()*1000 + int64(a.GetExtraNanos())
	nb := b.GetUnixUs()*1000 + int64(b.GetExtraNanos())
	d := na - nb
	if d < 0 {
		d = -d
	}
	return d <= tolMs*1_000_000
}

func timeNanos(v *pb.Value) (int64, bool) {
	switch k := v.Kind.(type) {
	case *pb.Value_TimeUs:
		return k.TimeUs * 1000, true
	case *pb.Value_TimeNs:
		return k.TimeNs, true
	}
	return 0, false
}

func isJSON(v *pb.Value) bool {
	_, ok := v.Kind.(*pb.Value_Json)
	return ok
}

// stringOf returns the text of string-like values: text, native, JSON,
// UUID (canonical form), inet (address form) and bytes (as raw bytes, so
// text stored as a blob compares equal).
func stringOf(v *pb.Value) (string, bool) {
	switch k := v.Kind.(type) {
	case *pb.Value_Text:
		return k.Text, true
	case *pb.Value_Native:
		return k.Native, true
	case *pb.Value_Json:
		return k.Json, true
	case *pb.Value_Bytes:
		return string(k.Bytes), true
	case *pb.Value_Uuid:
		return uuidText(k.Uuid), true
	case *pb.Value_Inet:
		return net.IP(k.Inet).String(), true
	}
	return "", false
}

func uuidText(u []byte) string {
	if len(u) != 16 {
		return hex.EncodeToString(u)
	}
	h := hex.EncodeToString(u)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// jsonEqual compares two JSON documents by value: key order, spacing and
// number spelling (1.0 and 1) do not matter. Text that is not JSON compares
// byte for byte.
func jsonEqual(a, b string) bool {
	if a == b {
		return true
	}
	var va, vb any
	da, db := json.NewDecoder(strings.NewReader(a)), json.NewDecoder(strings.NewReader(b))
	da.UseNumber()
	db.UseNumber()
	if da.Decode(&va) != nil || db.Decode(&vb) != nil {
		return false
	}
	return jsonValuesEqual(va, vb)
}

func jsonValuesEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !jsonValuesEqual(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonValuesEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		ra, ok1 := new(big.Rat).SetString(string(x))
		rb, ok2 := new(big.Rat).SetString(string(y))
		if ok1 && ok2 {
			return ra.Cmp(rb) == 0
		}
		return x == y
	}
	return a == b
}

func elements(v *pb.Value) ([]*pb.Value, bool) {
	switch k := v.Kind.(type) {
	case *pb.Value_List:
		return k.List.GetValues(), true
	case *pb.Value_Set:
		return k.Set.GetValues(), true
	case *pb.Value_Tuple:
		return k.Tuple.GetValues(), true
	}
	return nil, false
}

func (tol Tolerances) sameList(a, b []*pb.Value) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !tol.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// sameSet matches every element of a with a distinct equal element of b.
func (tol Tolerances) sameSet(a, b []*pb.Value) bool {
	if len(a) != len(b) {
		return false
	}
	used := make([]bool, len(b))
outer:
	for _, x := range a {
		for j, y := range b {
			if !used[j] && tol.Equal(x, y) {
				used[j] = true
				continue outer
			}
		}
		return false
	}
	return true
}

func (tol Tolerances) sameMap(a, b *pb.Map) bool {
	if len(a.GetKeys()) != len(b.GetKeys()) {
		return false
	}
	used := make([]bool, len(b.GetKeys()))
outer:
	for i, k := range a.GetKeys() {
		for j, l := range b.GetKeys() {
			if !used[j] && tol.Equal(k, l) {
				used[j] = true
				if !tol.Equal(at(a.GetValues(), i), at(b.GetValues(), j)) {
					return false
				}
				continue outer
			}
		}
		return false
	}
	return true
}

func (tol Tolerances) sameRecord(a, b *pb.Record) bool {
	bv := map[string]*pb.Value{}
	for i, n := range b.GetNames() {
		bv[n] = at(b.GetValues(), i)
	}
	for i, n := range a.GetNames() {
		if !tol.Equal(at(a.GetValues(), i), bv[n]) {
			return false
		}
		delete(bv, n)
	}
	for _, v := range bv {
		if !isNull(v) {
			return false
		}
	}
	return true
}

func sameDims(a, b *pb.Array) bool {
	lb := func(x *pb.Array, i int) int32 {
		if i < len(x.GetLowerBounds()) {
			return x.GetLowerBounds()[i]
		}
		return 1
	}
	if len(a.GetDims()) != len(b.GetDims()) {
		return false
	}
	for i := range a.GetDims() {
		if a.GetDims()[i] != b.GetDims()[i] || lb(a, i) != lb(b, i) {
			return false
		}
	}
	return true
}

func at(vs []*pb.Value, i int) *pb.Value {
	if i < len(vs) {
		return vs[i]
	}
	return nil
}

// MetaEqual compares one cell's write time and TTL within the tolerances;
// a side without metadata for the cell (zeros) is not compared.
func (tol Tolerances) MetaEqual(a, b *pb.CellMeta) (writetimeOK, ttlOK bool) {
	writetimeOK, ttlOK = true, true
	if !tol.CompareTimestamps || a == nil || b == nil {
		return
	}
	if a.WritetimeUs != 0 && b.WritetimeUs != 0 {
		d := a.WritetimeUs - b.WritetimeUs
		if d < 0 {
			d = -d
		}
		writetimeOK = d <= tol.WritetimeMs*1000
	}
	if a.TtlSeconds != 0 || b.TtlSeconds != 0 {
		d := int64(a.TtlSeconds-b.TtlSeconds) * 1000
		if d < 0 {
			d = -d
		}
		ttlOK = d <= tol.TTLMs
	}
	return
}

// keyString renders key values canonically, so that the same key read on
// two engines (an int and a decimal, a UUID and its text) gives the same
// string; it indexes rows by key.
func keyString(vals []*pb.Value) string {
	var b strings.Builder
	for _, v := range vals {
		c := canon(v)
		b.WriteString(strconv.Itoa(len(c)))
		b.WriteByte(':')
		b.WriteString(c)
	}
	return b.String()
}

func canon(v *pb.Value) string {
	if isNull(v) {
		return "z"
	}
	switch k := v.Kind.(type) {
	case *pb.Value_Int:
		return "n" + strconv.FormatInt(k.Int, 10)
	case *pb.Value_Text:
		return "s" + k.Text
	case *pb.Value_Float64, *pb.Value_Float32:
		f := float(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return "f" + strconv.FormatFloat(f, 'g', -1, 64)
		}
		return "n" + ratString(new(big.Rat).SetFloat64(f))
	case *pb.Value_Timestamp:
		return "t" + strconv.FormatInt(k.Timestamp.GetUnixUs(), 10) + "." + strconv.Itoa(int(k.Timestamp.GetExtraNanos())) + "." + strconv.Itoa(int(k.Timestamp.GetInfinity()))
	case *pb.Value_Bytes:
		return "b" + hex.EncodeToString(k.Bytes)
	}
	if r, ok := exact(v); ok {
		return "n" + ratString(r)
	}
	if s, ok := stringOf(v); ok {
		if _, u := v.Kind.(*pb.Value_Uuid); u {
			s = strings.ToLower(s)
		}
		return "s" + s
	}
	m, _ := v.MarshalVT()
	return "x" + hex.EncodeToString(m)
}

func ratString(r *big.Rat) string {
	if r.IsInt() {
		return r.Num().String()
	}
	return r.RatString()
}

// compareKeys orders two keys the way databases order them for the common
// key types (numbers by value, text byte-wise, times by instant). The merge
// does not depend on it being right: a side whose order differs (a text
// collation) costs memory, not correctness (see mergeRange).
func compareKeys(a, b []*pb.Value) int {
	for i := range a {
		if i >= len(b) {
			return 1
		}
		if c := compareValues(a[i], b[i]); c != 0 {
			return c
		}
	}
	if len(a) < len(b) {
		return -1
	}
	return 0
}

func compareValues(a, b *pb.Value) int {
	an, bn := isNull(a), isNull(b)
	switch {
	case an && bn:
		return 0
	case an:
		return -1
	case bn:
		return 1
	}
	if x, ok := a.Kind.(*pb.Value_Int); ok {
		if y, ok := b.Kind.(*pb.Value_Int); ok {
			return cmpInt(x.Int, y.Int)
		}
	}
	if isNumeric(a) && isNumeric(b) {
		if ra, ok := exact(a); ok {
			if rb, ok := exact(b); ok {
				return ra.Cmp(rb)
			}
		}
		fa, fb := float(a), float(b)
		switch {
		case fa < fb:
			return -1
		case fa > fb:
			return 1
		}
		return 0
	}
	if x, ok := a.Kind.(*pb.Value_Timestamp); ok {
		if y, ok := b.Kind.(*pb.Value_Timestamp); ok {
			if c := cmpInt(int64(x.Timestamp.GetInfinity()), int64(y.Timestamp.GetInfinity())); c != 0 {
				return c
			}
			if c := cmpInt(x.Timestamp.GetUnixUs(), y.Timestamp.GetUnixUs()); c != 0 {
				return c
			}
			return cmpInt(int64(x.Timestamp.GetExtraNanos()), int64(y.Timestamp.GetExtraNanos()))
		}
	}
	if sa, ok := stringOf(a); ok {
		if sb, ok := stringOf(b); ok {
			return strings.Compare(sa, sb)
		}
	}
	return strings.Compare(canon(a), canon(b))
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Text renders a value for reports: numbers and text as they are, other
// kinds in a short readable form.
func Text(v *pb.Value) string {
	if isNull(v) {
		return "NULL"
	}
	switch k := v.Kind.(type) {
	case *pb.Value_Int:
		return strconv.FormatInt(k.Int, 10)
	case *pb.Value_Uint:
		return strconv.FormatUint(k.Uint, 10)
	case *pb.Value_Bool:
		return strconv.FormatBool(k.Bool)
	case *pb.Value_Decimal:
		return k.Decimal
	case *pb.Value_Float64:
		return strconv.FormatFloat(k.Float64, 'g', -1, 64)
	case *pb.Value_Float32:
		return strconv.FormatFloat(float64(k.Float32), 'g', -1, 32)
	case *pb.Value_Text:
		return k.Text
	case *pb.Value_Bytes:
		return `\x` + hex.EncodeToString(k.Bytes)
	case *pb.Value_Timestamp:
		ts := k.Timestamp
		switch {
		case ts.GetInfinity() > 0:
			return "infinity"
		case ts.GetInfinity() < 0:
			return "-infinity"
		}
		t := time.UnixMicro(ts.GetUnixUs()).UTC().Add(time.Duration(ts.GetExtraNanos()))
		if ts.GetZoned() {
			return t.Format("2006-01-02 15:04:05.999999999Z07:00")
		}
		return t.Format("2006-01-02 15:04:05.999999999")
	}
	if s, ok := stringOf(v); ok {
		return s
	}
	return protojson.MarshalOptions{}.Format(v)
}

// short cuts long values in reports (and in the progress kept in KV),
// saying how long they were.
func short(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	n := max
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "… (" + strconv.Itoa(len(s)) + " bytes)"
}
