// Package cqlcodec converts CQL values (the native protocol's bytes, v3 and
// later) to ferry's event values and back. The CQL source decodes with it and
// the ScyllaDB/Cassandra target encodes with it; both work on the raw
// protocol bytes so that NULL stays distinct from an empty or zero value at
// every nesting level (inside tuples, UDTs and collections too), which the
// driver's Go-value mapping cannot promise.
package cqlcodec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"unicode/utf8"

	"github.com/gocql/gocql"
	"gopkg.in/inf.v0"

	"github.com/ferry-dev/ferry/streams/pb"
)

// ErrUnmappable marks a type ferry has no mapping for (a custom type).
var ErrUnmappable = errors.New("type has no ferry mapping")

// Cell is a gocql scan destination that decodes one column straight from
// its protocol bytes into an event value. After a Scan, V holds the value
// (nil for NULL) or Err the reason it could not be decoded.
type Cell struct {
	V   *pb.Value
	Err error
}

// UnmarshalCQL implements gocql.Unmarshaler. data is only valid during the
// call, so it is decoded (copied) here.
func (c *Cell) UnmarshalCQL(info gocql.TypeInfo, data []byte) error {
	c.V, c.Err = Decode(info, data)
	return nil // the caller reports Err with the column's name
}

// Decode converts one value in protocol form; nil data is NULL (nil result).
func Decode(info gocql.TypeInfo, data []byte) (*pb.Value, error) {
	if data == nil {
		return nil, nil
	}
	switch info.Type() {
	case gocql.TypeAscii, gocql.TypeText, gocql.TypeVarchar:
		if !utf8.Valid(data) {
			return nil, fmt.Errorf("%s value is not valid UTF-8", TypeName(info))
		}
		return &pb.Value{Kind: &pb.Value_Text{Text: string(data)}}, nil
	case gocql.TypeBlob:
		return &pb.Value{Kind: &pb.Value_Bytes{Bytes: append([]byte{}, data...)}}, nil
	case gocql.TypeBoolean:
		if len(data) != 1 {
			return nil, fmt.Errorf("boolean of %d bytes", len(data))
		}
		return &pb.Value{Kind: &pb.Value_Bool{Bool: data[0] != 0}}, nil
	case gocql.TypeInt, gocql.TypeBigInt, gocql.TypeCounter, gocql.TypeSmallInt, gocql.TypeTinyInt:
		n, err := fixedInt(info, data)
		if err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_Int{Int: n}}, nil
	case gocql.TypeVarint:
		// A varint travels as an integer in decimal notation: it may be
		// wider than 64 bits.
		var b big.Int
		if err := gocql.Unmarshal(info, data, &b); err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_Decimal{Decimal: b.String()}}, nil
	case gocql.TypeDecimal:
		d := new(inf.Dec)
		if err := gocql.Unmarshal(info, data, d); err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_Decimal{Decimal: PlainDecimal(d)}}, nil
	case gocql.TypeFloat:
		if len(data) != 4 {
			return nil, fmt.Errorf("float of %d bytes", len(data))
		}
		return &pb.Value{Kind: &pb.Value_Float32{Float32: math.Float32frombits(binary.BigEndian.Uint32(data))}}, nil
	case gocql.TypeDouble:
		if len(data) != 8 {
			return nil, fmt.Errorf("double of %d bytes", len(data))
		}
		return &pb.Value{Kind: &pb.Value_Float64{Float64: math.Float64frombits(binary.BigEndian.Uint64(data))}}, nil
	case gocql.TypeTimestamp:
		if len(data) != 8 {
			return nil, fmt.Errorf("timestamp of %d bytes", len(data))
		}
		ms := int64(binary.BigEndian.Uint64(data))
		return &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: &pb.Timestamp{UnixUs: ms * 1000, Zoned: true}}}, nil
	case gocql.TypeUUID, gocql.TypeTimeUUID:
		if len(data) != 16 {
			return nil, fmt.Errorf("uuid of %d bytes", len(data))
		}
		return &pb.Value{Kind: &pb.Value_Uuid{Uuid: append([]byte{}, data...)}}, nil
	case gocql.TypeInet:
		if len(data) != 4 && len(data) != 16 {
			return nil, fmt.Errorf("inet of %d bytes", len(data))
		}
		return &pb.Value{Kind: &pb.Value_Inet{Inet: append([]byte{}, data...)}}, nil
	case gocql.TypeDate:
		if len(data) != 4 {
			return nil, fmt.Errorf("date of %d bytes", len(data))
		}
		days := int64(binary.BigEndian.Uint32(data)) - (1 << 31)
		return &pb.Value{Kind: &pb.Value_Date{Date: &pb.Date{Days: int32(days)}}}, nil
	case gocql.TypeTime:
		if len(data) != 8 {
			return nil, fmt.Errorf("time of %d bytes", len(data))
		}
		return &pb.Value{Kind: &pb.Value_TimeNs{TimeNs: int64(binary.BigEndian.Uint64(data))}}, nil
	case gocql.TypeDuration:
		var d gocql.Duration
		if err := gocql.Unmarshal(info, data, &d); err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_Duration{Duration: &pb.Duration{Months: d.Months, Days: d.Days, Nanos: d.Nanoseconds}}}, nil
	case gocql.TypeList, gocql.TypeSet:
		ct := info.(gocql.CollectionType)
		elems, err := decodeElems(ct.Elem, data, 1)
		if err != nil {
			return nil, err
		}
		if info.Type() == gocql.TypeList {
			return &pb.Value{Kind: &pb.Value_List{List: &pb.Elements{Values: elems}}}, nil
		}
		return &pb.Value{Kind: &pb.Value_Set{Set: &pb.Elements{Values: elems}}}, nil
	case gocql.TypeMap:
		ct := info.(gocql.CollectionType)
		r := reader{b: data}
		n := r.int32()
		if r.err != nil || n < 0 {
			return nil, fmt.Errorf("map: bad element count")
		}
		m := &pb.Map{Keys: make([]*pb.Value, 0, n), Values: make([]*pb.Value, 0, n)}
		for range n {
			k, err := decodeChild(ct.Key, &r)
			if err != nil {
				return nil, fmt.Errorf("map key: %w", err)
			}
			v, err := decodeChild(ct.Elem, &r)
			if err != nil {
				return nil, fmt.Errorf("map value: %w", err)
			}
			m.Keys, m.Values = append(m.Keys, k), append(m.Values, v)
		}
		return &pb.Value{Kind: &pb.Value_Map{Map: m}}, nil
	case gocql.TypeTuple:
		tt := info.(gocql.TupleTypeInfo)
		r := reader{b: data}
		vals := make([]*pb.Value, len(tt.Elems))
		for i, et := range tt.Elems {
			if len(r.b) == 0 {
				break // trailing members left out are NULL
			}
			v, err := decodeChild(et, &r)
			if err != nil {
				return nil, fmt.Errorf("tuple member %d: %w", i, err)
			}
			vals[i] = v
		}
		return &pb.Value{Kind: &pb.Value_Tuple{Tuple: &pb.Elements{Values: nullFill(vals)}}}, nil
	case gocql.TypeUDT:
		ut := info.(gocql.UDTTypeInfo)
		r := reader{b: data}
		rec := &pb.Record{Names: make([]string, len(ut.Elements)), Values: make([]*pb.Value, len(ut.Elements))}
		for i, f := range ut.Elements {
			rec.Names[i] = f.Name
			if len(r.b) == 0 {
				continue // fields added to the type after the value was written
			}
			v, err := decodeChild(f.Type, &r)
			if err != nil {
				return nil, fmt.Errorf("field %s: %w", f.Name, err)
			}
			rec.Values[i] = v
		}
		rec.Values = nullFill(rec.Values)
		return &pb.Value{Kind: &pb.Value_Record{Record: rec}}, nil
	}
	return nil, fmt.Errorf("%w: %s", ErrUnmappable, TypeName(info))
}

var null = &pb.Value{Kind: &pb.Value_Null{Null: true}}

// nullFill makes NULL members explicit: a nil in a repeated message field
// cannot be encoded.
func nullFill(vs []*pb.Value) []*pb.Value {
	for i, v := range vs {
		if v == nil {
			vs[i] = &pb.Value{Kind: &pb.Value_Null{Null: true}}
		}
	}
	return vs
}

func decodeElems(et gocql.TypeInfo, data []byte, _ int) ([]*pb.Value, error) {
	r := reader{b: data}
	n := r.int32()
	if r.err != nil || n < 0 {
		return nil, fmt.Errorf("collection: bad element count")
	}
	out := make([]*pb.Value, 0, n)
	for range n {
		v, err := decodeChild(et, &r)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return nullFill(out), nil
}

// decodeChild reads one length-prefixed member and decodes it; a NULL
// member comes back as an explicit null value.
func decodeChild(t gocql.TypeInfo, r *reader) (*pb.Value, error) {
	b, isNull := r.bytes()
	if r.err != nil {
		return nil, r.err
	}
	if isNull {
		return null, nil
	}
	v, err := Decode(t, b)
	if err != nil {
		return nil, err
	}
	return v, nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) int32() int32 {
	if len(r.b) < 4 {
		r.err = errors.New("value truncated")
		return 0
	}
	n := int32(binary.BigEndian.Uint32(r.b))
	r.b = r.b[4:]
	return n
}

func (r *reader) bytes() ([]byte, bool) {
	n := r.int32()
	if r.err != nil {
		return nil, false
	}
	if n < 0 {
		return nil, true
	}
	if int(n) > len(r.b) {
		r.err = errors.New("value truncated")
		return nil, false
	}
	b := r.b[:n:n]
	r.b = r.b[n:]
	// An empty, non-NULL member must not read as NULL.
	if b == nil {
		b = []byte{}
	}
	return b, false
}

func fixedInt(info gocql.TypeInfo, data []byte) (int64, error) {
	switch len(data) {
	case 1:
		return int64(int8(data[0])), nil
	case 2:
		return int64(int16(binary.BigEndian.Uint16(data))), nil
	case 4:
		return int64(int32(binary.BigEndian.Uint32(data))), nil
	case 8:
		return int64(binary.BigEndian.Uint64(data)), nil
	}
	return 0, fmt.Errorf("%s of %d bytes", TypeName(info), len(data))
}

// PlainDecimal writes d in plain notation, keeping its scale. A negative
// scale (1E+3) has no plain form with that scale and is written as the
// integer it equals.
func PlainDecimal(d *inf.Dec) string {
	if d.Scale() >= 0 {
		return d.String()
	}
	u := new(big.Int).Set(d.UnscaledBig())
	u.Mul(u, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(-d.Scale())), nil))
	return u.String()
}

// TypeName is a CQL type in CQL syntax (list<frozen<tuple<int, text>>>).
func TypeName(info gocql.TypeInfo) string {
	switch t := info.(type) {
	case gocql.CollectionType:
		switch t.Type() {
		case gocql.TypeList:
			return "list<" + frozen(t.Elem) + ">"
		case gocql.TypeSet:
			return "set<" + frozen(t.Elem) + ">"
		case gocql.TypeMap:
			return "map<" + frozen(t.Key) + ", " + frozen(t.Elem) + ">"
		}
	case gocql.TupleTypeInfo:
		parts := make([]string, len(t.Elems))
		for i, e := range t.Elems {
			parts[i] = frozen(e)
		}
		return "tuple<" + strings.Join(parts, ", ") + ">"
	case gocql.UDTTypeInfo:
		return t.KeySpace + "." + t.Name
	}
	if info.Type() == gocql.TypeCustom {
		return "'" + info.Custom() + "'"
	}
	return strings.ToLower(info.Type().String())
}

func frozen(t gocql.TypeInfo) string {
	switch t.Type() {
	case gocql.TypeList, gocql.TypeSet, gocql.TypeMap, gocql.TypeTuple, gocql.TypeUDT:
		return "frozen<" + TypeName(t) + ">"
	}
	return TypeName(t)
}

// Check reports the first part of a type that has no mapping (a custom
// type, possibly nested), or nil.
func Check(info gocql.TypeInfo) error {
	switch t := info.(type) {
	case gocql.CollectionType:
		if t.Key != nil {
			if err := Check(t.Key); err != nil {
				return err
			}
		}
		if t.Elem != nil {
			return Check(t.Elem)
		}
		return nil
	case gocql.TupleTypeInfo:
		for _, e := range t.Elems {
			if err := Check(e); err != nil {
				return err
			}
		}
		return nil
	case gocql.UDTTypeInfo:
		for _, e := range t.Elements {
			if err := Check(e.Type); err != nil {
				return err
			}
		}
		return nil
	}
	if info.Type() == gocql.TypeCustom {
		return fmt.Errorf("%w: custom type %s", ErrUnmappable, TypeName(info))
	}
	return nil
}

// RowScanner scans result rows into event values. The driver hands a
// top-level tuple column to as many scan destinations as the tuple has
// members (and gives every member NULL for a NULL tuple), so such a column
// takes one Cell per member here and is put back together; callers that
// must tell a NULL tuple from a tuple of NULLs select a null indicator
// (the cell's writetime()) beside it.
type RowScanner struct {
	cols  []gocql.ColumnInfo
	cells []Cell
	dest  []any
}

// NewRowScanner prepares destinations for a result's columns.
func NewRowScanner(cols []gocql.ColumnInfo) *RowScanner {
	s := &RowScanner{cols: cols}
	n := 0
	for _, c := range cols {
		if tt, ok := c.TypeInfo.(gocql.TupleTypeInfo); ok {
			n += len(tt.Elems)
		} else {
			n++
		}
	}
	s.cells = make([]Cell, n)
	s.dest = make([]any, n)
	for i := range s.cells {
		s.dest[i] = &s.cells[i]
	}
	return s
}

// Dest is what to pass to Iter.Scan.
func (s *RowScanner) Dest() []any { return s.dest }

// Values returns the scanned row, one value per column (nil for NULL); out
// is reused when large enough.
func (s *RowScanner) Values(out []*pb.Value) ([]*pb.Value, error) {
	out = out[:0]
	j := 0
	for _, c := range s.cols {
		tt, ok := c.TypeInfo.(gocql.TupleTypeInfo)
		if !ok {
			cell := &s.cells[j]
			j++
			if cell.Err != nil {
				return nil, fmt.Errorf("%s: %w", c.Name, cell.Err)
			}
			out = append(out, cell.V)
			*cell = Cell{}
			continue
		}
		vals := make([]*pb.Value, len(tt.Elems))
		for k := range tt.Elems {
			cell := &s.cells[j]
			j++
			if cell.Err != nil {
				return nil, fmt.Errorf("%s member %d: %w", c.Name, k, cell.Err)
			}
			vals[k] = cell.V
			*cell = Cell{}
		}
		out = append(out, &pb.Value{Kind: &pb.Value_Tuple{Tuple: &pb.Elements{Values: nullFill(vals)}}})
	}
	return out, nil
}
