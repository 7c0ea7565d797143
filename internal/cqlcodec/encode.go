package cqlcodec

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"net"
	"strings"

	"github.com/gocql/gocql"
	"gopkg.in/inf.v0"

	"github.com/ferry-dev/ferry/streams/pb"
)

// Bound is a bind value for gocql: it encodes V for the bind marker's type
// as the server reports it, so a value is checked against the target
// column rather than the source's. A nil or NULL V binds NULL.
// Col names the column in errors.
type Bound struct {
	V   *pb.Value
	Col string
}

// MarshalCQL implements gocql.Marshaler.
func (b Bound) MarshalCQL(info gocql.TypeInfo) ([]byte, error) {
	out, err := Encode(info, b.V)
	if err != nil {
		return nil, fmt.Errorf("column %s: %w", b.Col, err)
	}
	return out, nil
}

// IsNull reports whether v is SQL NULL (no kind, or null set).
func IsNull(v *pb.Value) bool {
	if v == nil || v.Kind == nil {
		return true
	}
	_, ok := v.Kind.(*pb.Value_Null)
	return ok
}

// Encode converts v to the protocol bytes of type info; NULL gives nil.
func Encode(info gocql.TypeInfo, v *pb.Value) ([]byte, error) {
	if IsNull(v) {
		return nil, nil
	}
	switch info.Type() {
	case gocql.TypeAscii, gocql.TypeText, gocql.TypeVarchar:
		switch k := v.Kind.(type) {
		case *pb.Value_Text:
			return []byte(k.Text), nil
		case *pb.Value_Native:
			return []byte(k.Native), nil
		case *pb.Value_Json:
			return []byte(k.Json), nil
		case *pb.Value_Decimal:
			return []byte(k.Decimal), nil
		}
	case gocql.TypeBlob:
		switch k := v.Kind.(type) {
		case *pb.Value_Bytes:
			return nonNil(k.Bytes), nil
		case *pb.Value_Text:
			return []byte(k.Text), nil
		}
	case gocql.TypeBoolean:
		if k, ok := v.Kind.(*pb.Value_Bool); ok {
			if k.Bool {
				return []byte{1}, nil
			}
			return []byte{0}, nil
		}
	case gocql.TypeInt, gocql.TypeBigInt, gocql.TypeCounter, gocql.TypeSmallInt, gocql.TypeTinyInt:
		n, err := asInt64(v)
		if err != nil {
			return nil, err
		}
		return encFixed(info, n)
	case gocql.TypeVarint:
		n, err := asBigInt(v)
		if err != nil {
			return nil, err
		}
		return gocql.Marshal(info, n)
	case gocql.TypeDecimal:
		var s string
		switch k := v.Kind.(type) {
		case *pb.Value_Decimal:
			s = k.Decimal
		case *pb.Value_Int:
			s = fmt.Sprint(k.Int)
		case *pb.Value_Uint:
			s = fmt.Sprint(k.Uint)
		default:
			return nil, mismatch(info, v)
		}
		d, ok := new(inf.Dec).SetString(s)
		if !ok {
			return nil, fmt.Errorf("%q is not a decimal number CQL decimal can hold", s)
		}
		return gocql.Marshal(info, d)
	case gocql.TypeFloat:
		switch k := v.Kind.(type) {
		case *pb.Value_Float32:
			return binary.BigEndian.AppendUint32(nil, math.Float32bits(k.Float32)), nil
		case *pb.Value_Float64:
			f := float32(k.Float64)
			if float64(f) != k.Float64 && !math.IsNaN(k.Float64) {
				return nil, fmt.Errorf("%v does not fit a CQL float exactly", k.Float64)
			}
			return binary.BigEndian.AppendUint32(nil, math.Float32bits(f)), nil
		}
	case gocql.TypeDouble:
		switch k := v.Kind.(type) {
		case *pb.Value_Float64:
			return binary.BigEndian.AppendUint64(nil, math.Float64bits(k.Float64)), nil
		case *pb.Value_Float32:
			return binary.BigEndian.AppendUint64(nil, math.Float64bits(float64(k.Float32))), nil
		case *pb.Value_Int:
			return binary.BigEndian.AppendUint64(nil, math.Float64bits(float64(k.Int))), nil
		}
	case gocql.TypeTimestamp:
		switch k := v.Kind.(type) {
		case *pb.Value_Timestamp:
			if k.Timestamp.Infinity != 0 {
				return nil, fmt.Errorf("an infinite timestamp has no CQL form")
			}
			// CQL timestamps are milliseconds; finer parts are cut (floor).
			ms := floorDiv(k.Timestamp.UnixUs, 1000)
			return binary.BigEndian.AppendUint64(nil, uint64(ms)), nil
		case *pb.Value_Date:
			return binary.BigEndian.AppendUint64(nil, uint64(int64(k.Date.Days)*86400000)), nil
		case *pb.Value_Int:
			return binary.BigEndian.AppendUint64(nil, uint64(k.Int)), nil
		}
	case gocql.TypeUUID, gocql.TypeTimeUUID:
		switch k := v.Kind.(type) {
		case *pb.Value_Uuid:
			if len(k.Uuid) != 16 {
				return nil, fmt.Errorf("uuid of %d bytes", len(k.Uuid))
			}
			return k.Uuid, nil
		case *pb.Value_Text:
			u, err := gocql.ParseUUID(k.Text)
			if err != nil {
				return nil, err
			}
			return u.Bytes(), nil
		}
	case gocql.TypeInet:
		switch k := v.Kind.(type) {
		case *pb.Value_Inet:
			if len(k.Inet) != 4 && len(k.Inet) != 16 {
				return nil, fmt.Errorf("inet of %d bytes", len(k.Inet))
			}
			return k.Inet, nil
		case *pb.Value_Text, *pb.Value_Native:
			s := v.GetText() + v.GetNative()
			ip := net.ParseIP(strings.TrimSuffix(strings.TrimSuffix(s, "/32"), "/128"))
			if ip == nil {
				return nil, fmt.Errorf("%q is not an IP address", s)
			}
			if ip4 := ip.To4(); ip4 != nil {
				return ip4, nil
			}
			return ip, nil
		}
	case gocql.TypeDate:
		switch k := v.Kind.(type) {
		case *pb.Value_Date:
			if k.Date.Infinity != 0 {
				return nil, fmt.Errorf("an infinite date has no CQL form")
			}
			return binary.BigEndian.AppendUint32(nil, uint32(int64(k.Date.Days)+(1<<31))), nil
		case *pb.Value_Timestamp:
			days := floorDiv(k.Timestamp.UnixUs, 86400e6)
			return binary.BigEndian.AppendUint32(nil, uint32(days+(1<<31))), nil
		}
	case gocql.TypeTime:
		switch k := v.Kind.(type) {
		case *pb.Value_TimeNs:
			return binary.BigEndian.AppendUint64(nil, uint64(k.TimeNs)), nil
		case *pb.Value_TimeUs:
			return binary.BigEndian.AppendUint64(nil, uint64(k.TimeUs*1000)), nil
		}
	case gocql.TypeDuration:
		switch k := v.Kind.(type) {
		case *pb.Value_Duration:
			return gocql.Marshal(info, gocql.Duration{Months: k.Duration.Months, Days: k.Duration.Days, Nanoseconds: k.Duration.Nanos})
		case *pb.Value_Interval:
			return gocql.Marshal(info, gocql.Duration{Months: k.Interval.Months, Days: k.Interval.Days, Nanoseconds: k.Interval.Micros * 1000})
		}
	case gocql.TypeList, gocql.TypeSet:
		var elems []*pb.Value
		switch k := v.Kind.(type) {
		case *pb.Value_List:
			elems = k.List.GetValues()
		case *pb.Value_Set:
			elems = k.Set.GetValues()
		case *pb.Value_Array:
			if len(k.Array.Dims) > 1 {
				return nil, fmt.Errorf("a %d-dimensional array has no %s form", len(k.Array.Dims), TypeName(info))
			}
			elems = k.Array.Elements
		default:
			return nil, mismatch(info, v)
		}
		et := info.(gocql.CollectionType).Elem
		out := binary.BigEndian.AppendUint32(nil, uint32(len(elems)))
		for i, e := range elems {
			if IsNull(e) {
				return nil, fmt.Errorf("element %d is NULL; CQL collections cannot hold NULL", i)
			}
			var err error
			if out, err = appendChild(out, et, e); err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
		}
		return out, nil
	case gocql.TypeMap:
		k, ok := v.Kind.(*pb.Value_Map)
		if !ok {
			return nil, mismatch(info, v)
		}
		ct := info.(gocql.CollectionType)
		m := k.Map
		if len(m.Keys) != len(m.Values) {
			return nil, fmt.Errorf("map with %d keys and %d values", len(m.Keys), len(m.Values))
		}
		out := binary.BigEndian.AppendUint32(nil, uint32(len(m.Keys)))
		for i := range m.Keys {
			if IsNull(m.Keys[i]) || IsNull(m.Values[i]) {
				return nil, fmt.Errorf("entry %d holds NULL; CQL maps cannot", i)
			}
			var err error
			if out, err = appendChild(out, ct.Key, m.Keys[i]); err != nil {
				return nil, fmt.Errorf("key %d: %w", i, err)
			}
			if out, err = appendChild(out, ct.Elem, m.Values[i]); err != nil {
				return nil, fmt.Errorf("value %d: %w", i, err)
			}
		}
		return out, nil
	case gocql.TypeTuple:
		elems, err := TupleMembers(info, v)
		if err != nil {
			return nil, err
		}
		tt := info.(gocql.TupleTypeInfo)
		var out []byte
		for i, et := range tt.Elems {
			var e *pb.Value
			if i < len(elems) {
				e = elems[i]
			}
			var err error
			if out, err = appendChild(out, et, e); err != nil {
				return nil, fmt.Errorf("tuple member %d: %w", i, err)
			}
		}
		return nonNil(out), nil
	case gocql.TypeUDT:
		k, ok := v.Kind.(*pb.Value_Record)
		if !ok {
			return nil, mismatch(info, v)
		}
		ut := info.(gocql.UDTTypeInfo)
		byName := make(map[string]*pb.Value, len(k.Record.Names))
		for i, n := range k.Record.Names {
			if i < len(k.Record.Values) {
				byName[n] = k.Record.Values[i]
			}
		}
		known := map[string]bool{}
		var out []byte
		for _, f := range ut.Elements {
			known[f.Name] = true
			var err error
			if out, err = appendChild(out, f.Type, byName[f.Name]); err != nil {
				return nil, fmt.Errorf("field %s: %w", f.Name, err)
			}
		}
		for _, n := range k.Record.Names {
			if !known[n] && !IsNull(byName[n]) {
				return nil, fmt.Errorf("field %s is not in type %s", n, TypeName(info))
			}
		}
		return nonNil(out), nil
	case gocql.TypeCustom:
		return nil, fmt.Errorf("%w: custom type %s", ErrUnmappable, TypeName(info))
	}
	return nil, mismatch(info, v)
}

// TupleMembers returns the members of a value stored in a tuple type (a
// tuple, or a list of the same length or shorter).
func TupleMembers(info gocql.TypeInfo, v *pb.Value) ([]*pb.Value, error) {
	var elems []*pb.Value
	switch k := v.Kind.(type) {
	case *pb.Value_Tuple:
		elems = k.Tuple.GetValues()
	case *pb.Value_List:
		elems = k.List.GetValues()
	default:
		return nil, mismatch(info, v)
	}
	if n := len(info.(gocql.TupleTypeInfo).Elems); len(elems) > n {
		return nil, fmt.Errorf("a tuple of %d members for %s", len(elems), TypeName(info))
	}
	return elems, nil
}

// appendChild appends a length-prefixed member ([int] -1 for NULL).
func appendChild(out []byte, t gocql.TypeInfo, v *pb.Value) ([]byte, error) {
	b, err := Encode(t, v)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return binary.BigEndian.AppendUint32(out, math.MaxUint32), nil
	}
	out = binary.BigEndian.AppendUint32(out, uint32(len(b)))
	return append(out, b...), nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func mismatch(info gocql.TypeInfo, v *pb.Value) error {
	return fmt.Errorf("a %s value cannot be stored in a %s column", KindName(v), TypeName(info))
}

// KindName names a value's kind for messages.
func KindName(v *pb.Value) string {
	if IsNull(v) {
		return "NULL"
	}
	n := fmt.Sprintf("%T", v.Kind)
	return strings.ToLower(strings.TrimPrefix(n, "*pb.Value_"))
}

func asInt64(v *pb.Value) (int64, error) {
	switch k := v.Kind.(type) {
	case *pb.Value_Int:
		return k.Int, nil
	case *pb.Value_Uint:
		if k.Uint > math.MaxInt64 {
			return 0, fmt.Errorf("%d is out of range", k.Uint)
		}
		return int64(k.Uint), nil
	case *pb.Value_Decimal:
		b, ok := new(big.Int).SetString(k.Decimal, 10)
		if !ok || !b.IsInt64() {
			return 0, fmt.Errorf("%q is not a 64-bit integer", k.Decimal)
		}
		return b.Int64(), nil
	case *pb.Value_Bool:
		if k.Bool {
			return 1, nil
		}
		return 0, nil
	}
	return 0, fmt.Errorf("a %s value is not an integer", KindName(v))
}

func asBigInt(v *pb.Value) (*big.Int, error) {
	switch k := v.Kind.(type) {
	case *pb.Value_Int:
		return big.NewInt(k.Int), nil
	case *pb.Value_Uint:
		return new(big.Int).SetUint64(k.Uint), nil
	case *pb.Value_Decimal:
		b, ok := new(big.Int).SetString(k.Decimal, 10)
		if !ok {
			return nil, fmt.Errorf("%q is not an integer", k.Decimal)
		}
		return b, nil
	}
	return nil, fmt.Errorf("a %s value is not an integer", KindName(v))
}

func encFixed(info gocql.TypeInfo, n int64) ([]byte, error) {
	switch info.Type() {
	case gocql.TypeTinyInt:
		if n < math.MinInt8 || n > math.MaxInt8 {
			return nil, fmt.Errorf("%d is out of range for tinyint", n)
		}
		return []byte{byte(n)}, nil
	case gocql.TypeSmallInt:
		if n < math.MinInt16 || n > math.MaxInt16 {
			return nil, fmt.Errorf("%d is out of range for smallint", n)
		}
		return binary.BigEndian.AppendUint16(nil, uint16(n)), nil
	case gocql.TypeInt:
		if n < math.MinInt32 || n > math.MaxInt32 {
			return nil, fmt.Errorf("%d is out of range for int", n)
		}
		return binary.BigEndian.AppendUint32(nil, uint32(n)), nil
	}
	return binary.BigEndian.AppendUint64(nil, uint64(n)), nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
