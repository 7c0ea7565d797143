package postgres

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/ferry-dev/ferry/streams/pb"
)

// convertFor renders a value for a target column of another type where
// PostgreSQL's own cast from text would change it silently or fail without
// naming the column: integers into boolean (a MySQL TINYINT(1)), integers
// into narrower integers or floats, bytes into text, text into bytea. A
// value the column cannot hold is an error (the caller rejects the row,
// naming the column). handled is false when the default text form is right.
func convertFor(cast string, v *pb.Value) (text string, handled bool, err error) {
	b, handled, err := appendConverted(nil, cast, v)
	return string(b), handled, err
}

// appendConverted is convertFor appending to b. When not handled, or on an
// error, it returns b unchanged.
func appendConverted(b []byte, cast string, v *pb.Value) (out []byte, handled bool, err error) {
	switch k := v.GetKind().(type) {
	case *pb.Value_Int:
		return appendInt(b, cast, k.Int)
	case *pb.Value_Uint:
		if k.Uint <= math.MaxInt64 {
			return appendInt(b, cast, int64(k.Uint))
		}
		return appendHugeUint(b, cast, k.Uint)
	case *pb.Value_Bytes:
		switch cast {
		case "text", "character varying", "character", "bpchar", "citext":
			if !utf8.Valid(k.Bytes) || bytes.IndexByte(k.Bytes, 0) >= 0 {
				return b, false, fmt.Errorf("%d bytes that are not UTF-8 text cannot go into a %s column", len(k.Bytes), cast)
			}
			return append(b, k.Bytes...), true, nil
		}
	case *pb.Value_Text:
		if cast == "bytea" {
			// Cast from text, bytea would read backslashes as escapes.
			return hex.AppendEncode(append(b, '\\', 'x'), []byte(k.Text)), true, nil
		}
	}
	return b, false, nil
}

// intRanges are the integer types' bounds.
var intRanges = map[string][2]int64{
	"smallint": {math.MinInt16, math.MaxInt16},
	"integer":  {math.MinInt32, math.MaxInt32},
	"bigint":   {math.MinInt64, math.MaxInt64},
}

// appendInt renders an integer for a column of type cast, refusing what
// the column cannot hold exactly.
func appendInt(b []byte, cast string, n int64) ([]byte, bool, error) {
	switch cast {
	case "boolean":
		switch n {
		case 0:
			return append(b, 'f'), true, nil
		case 1:
			return append(b, 't'), true, nil
		}
		return b, false, fmt.Errorf("value %d does not fit a boolean column, which takes 0 and 1 (SQLSTATE 22P02)", n)
	case "smallint", "integer", "bigint":
		r := intRanges[cast]
		if n < r[0] || n > r[1] {
			return b, false, fmt.Errorf("value %d is out of range for type %s (SQLSTATE 22003)", n, cast)
		}
	case "real", "double precision":
		// Only integers the float type holds exactly: 2^24 and 2^53.
		if limit := floatExact(cast); n > limit || n < -limit {
			return b, false, fmt.Errorf("value %d cannot be held exactly by type %s (SQLSTATE 22003)", n, cast)
		}
	case "text", "character varying", "character", "numeric":
	default:
		return b, false, nil
	}
	return strconv.AppendInt(b, n, 10), true, nil
}

// appendHugeUint is appendInt for unsigned values above the int64 range,
// which only text and numeric columns hold.
func appendHugeUint(b []byte, cast string, n uint64) ([]byte, bool, error) {
	switch cast {
	case "boolean":
		return b, false, fmt.Errorf("value %d does not fit a boolean column, which takes 0 and 1 (SQLSTATE 22P02)", n)
	case "smallint", "integer", "bigint":
		return b, false, fmt.Errorf("value %d is out of range for type %s (SQLSTATE 22003)", n, cast)
	case "real", "double precision":
		return b, false, fmt.Errorf("value %d cannot be held exactly by type %s (SQLSTATE 22003)", n, cast)
	case "text", "character varying", "character", "numeric":
		return strconv.AppendUint(b, n, 10), true, nil
	}
	return b, false, nil
}

// floatExact is the largest integer magnitude a float column holds exactly.
func floatExact(cast string) int64 {
	if cast == "real" {
		return 1 << 24
	}
	return 1 << 53
}
