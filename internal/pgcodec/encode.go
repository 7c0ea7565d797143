package pgcodec

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ferry-dev/ferry/streams/pb"
	"google.golang.org/protobuf/encoding/prototext"
)

// Encode returns the PostgreSQL text input form of v, suitable for
// `$1::<type>` casts from a text parameter under SessionParams. null is true
// for SQL NULL (v == nil, kind unset, or the Null kind). For values PostgreSQL
// prints itself, the text is exactly what PostgreSQL would print.
//
// Arrays are written with ',' between elements; box[] (whose delimiter is
// ';') needs EncodeFor.
func Encode(v *pb.Value) (text string, null bool, err error) {
	return EncodeFor(nil, v)
}

// EncodeFor is Encode for a value of a known column type: arrays use the
// type's delimiter. t may be nil.
func EncodeFor(t *Type, v *pb.Value) (text string, null bool, err error) {
	b, null, err := AppendFor(nil, t, v)
	if null || err != nil {
		return "", null, err
	}
	return string(b), false, nil
}

// AppendFor is EncodeFor appending the text to b, for writers that render
// many values into one buffer. On NULL or an error it returns b unchanged.
func AppendFor(b []byte, t *Type, v *pb.Value) (out []byte, null bool, err error) {
	if isNull(v) {
		return b, true, nil
	}
	out, err = appendValue(b, v, t.delim())
	if err != nil {
		label := kindName(v)
		if t != nil {
			label = t.label() + " (" + label + ")"
		}
		return b, false, fmt.Errorf("pgcodec: encoding %s value %s: %w", label, quoteTrunc(prototext.Format(v)), err)
	}
	return out, false, nil
}

func isNull(v *pb.Value) bool {
	if v == nil || v.Kind == nil {
		return true
	}
	_, ok := v.Kind.(*pb.Value_Null)
	return ok
}

// appendValue appends the text form of a non-null v.
func appendValue(b []byte, v *pb.Value, delim byte) ([]byte, error) {
	switch k := v.Kind.(type) {
	case *pb.Value_Bool:
		if k.Bool {
			return append(b, 't'), nil
		}
		return append(b, 'f'), nil
	case *pb.Value_Int:
		return strconv.AppendInt(b, k.Int, 10), nil
	case *pb.Value_Uint:
		return strconv.AppendUint(b, k.Uint, 10), nil
	case *pb.Value_Float64:
		return appendFloat(b, k.Float64, 64), nil
	case *pb.Value_Float32:
		return appendFloat(b, float64(k.Float32), 32), nil
	case *pb.Value_Decimal:
		if k.Decimal == "" {
			return nil, errors.New("empty decimal")
		}
		return appendString(b, k.Decimal)
	case *pb.Value_Text:
		return appendString(b, k.Text)
	case *pb.Value_Bytes:
		b = append(b, '\\', 'x')
		return hex.AppendEncode(b, k.Bytes), nil
	case *pb.Value_Timestamp:
		if k.Timestamp == nil {
			return nil, errors.New("timestamp kind with nil timestamp")
		}
		return formatTimestamp(b, k.Timestamp)
	case *pb.Value_Date:
		if k.Date == nil {
			return nil, errors.New("date kind with nil date")
		}
		return formatDate(b, k.Date), nil
	case *pb.Value_TimeUs:
		if k.TimeUs < 0 || k.TimeUs > usPerDay {
			return nil, fmt.Errorf("time of day %d µs outside 00:00:00 to 24:00:00", k.TimeUs)
		}
		return appendClock(b, k.TimeUs), nil
	case *pb.Value_TimeTz:
		tz := k.TimeTz
		if tz == nil {
			return nil, errors.New("time_tz kind with nil value")
		}
		if tz.TimeUs < 0 || tz.TimeUs > usPerDay {
			return nil, fmt.Errorf("time of day %d µs outside 00:00:00 to 24:00:00", tz.TimeUs)
		}
		return formatTimeTZ(b, tz), nil
	case *pb.Value_Interval:
		if k.Interval == nil {
			return nil, errors.New("interval kind with nil interval")
		}
		return formatInterval(b, k.Interval), nil
	case *pb.Value_Uuid:
		u := k.Uuid
		if len(u) != 16 {
			return nil, fmt.Errorf("uuid of %d bytes, want 16", len(u))
		}
		b = hex.AppendEncode(b, u[0:4])
		b = append(b, '-')
		b = hex.AppendEncode(b, u[4:6])
		b = append(b, '-')
		b = hex.AppendEncode(b, u[6:8])
		b = append(b, '-')
		b = hex.AppendEncode(b, u[8:10])
		b = append(b, '-')
		return hex.AppendEncode(b, u[10:16]), nil
	case *pb.Value_Json:
		return appendString(b, k.Json)
	case *pb.Value_Native:
		return appendString(b, k.Native)
	case *pb.Value_Array:
		return appendArray(b, k.Array, delim)
	}
	return nil, fmt.Errorf("unknown value kind %T", v.Kind)
}

// appendString refuses NUL bytes: no PostgreSQL text can hold one, and the
// server's complaint would not say which column it came from.
func appendString(b []byte, s string) ([]byte, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, errors.New("text contains a NUL byte, which PostgreSQL cannot store")
	}
	return append(b, s...), nil
}

func kindName(v *pb.Value) string {
	switch v.Kind.(type) {
	case *pb.Value_Bool:
		return "bool"
	case *pb.Value_Int:
		return "int"
	case *pb.Value_Uint:
		return "uint"
	case *pb.Value_Float64:
		return "float64"
	case *pb.Value_Float32:
		return "float32"
	case *pb.Value_Decimal:
		return "decimal"
	case *pb.Value_Text:
		return "text"
	case *pb.Value_Bytes:
		return "bytes"
	case *pb.Value_Timestamp:
		return "timestamp"
	case *pb.Value_Date:
		return "date"
	case *pb.Value_TimeUs:
		return "time_us"
	case *pb.Value_TimeTz:
		return "time_tz"
	case *pb.Value_Interval:
		return "interval"
	case *pb.Value_Uuid:
		return "uuid"
	case *pb.Value_Json:
		return "json"
	case *pb.Value_Array:
		return "array"
	case *pb.Value_Native:
		return "native"
	}
	return fmt.Sprintf("%T", v.Kind)
}
