package postgres

import (
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
	"strings"
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
	switch k := v.GetKind().(type) {
	case *pb.Value_Int:
		return intFor(cast, new(big.Int).SetInt64(k.Int))
	case *pb.Value_Uint:
		return intFor(cast, new(big.Int).SetUint64(k.Uint))
	case *pb.Value_Bytes:
		switch cast {
		case "text", "character varying", "character", "bpchar", "citext":
			if !utf8.Valid(k.Bytes) || strings.IndexByte(string(k.Bytes), 0) >= 0 {
				return "", false, fmt.Errorf("%d bytes that are not UTF-8 text cannot go into a %s column", len(k.Bytes), cast)
			}
			return string(k.Bytes), true, nil
		}
	case *pb.Value_Text:
		if cast == "bytea" {
			// Cast from text, bytea would read backslashes as escapes.
			return `\x` + hex.EncodeToString([]byte(k.Text)), true, nil
		}
	}
	return "", false, nil
}

var intRanges = map[string][2]*big.Int{
	"smallint": {big.NewInt(math.MinInt16), big.NewInt(math.MaxInt16)},
	"integer":  {big.NewInt(math.MinInt32), big.NewInt(math.MaxInt32)},
	"bigint":   {big.NewInt(math.MinInt64), big.NewInt(math.MaxInt64)},
}

func intFor(cast string, n *big.Int) (string, bool, error) {
	switch cast {
	case "boolean":
		switch n.Int64() {
		case 0:
			if n.IsInt64() {
				return "f", true, nil
			}
		case 1:
			if n.IsInt64() {
				return "t", true, nil
			}
		}
		return "", false, fmt.Errorf("value %s does not fit a boolean column, which takes 0 and 1 (SQLSTATE 22P02)", n)
	case "smallint", "integer", "bigint":
		r := intRanges[cast]
		if n.Cmp(r[0]) < 0 || n.Cmp(r[1]) > 0 {
			return "", false, fmt.Errorf("value %s is out of range for type %s (SQLSTATE 22003)", n, cast)
		}
	case "real", "double precision":
		// Only integers the float type holds exactly: 2^24 and 2^53.
		limit := int64(1) << 53
		if cast == "real" {
			limit = 1 << 24
		}
		if n.CmpAbs(big.NewInt(limit)) > 0 {
			return "", false, fmt.Errorf("value %s cannot be held exactly by type %s (SQLSTATE 22003)", n, cast)
		}
	case "text", "character varying", "character", "numeric":
	default:
		return "", false, nil
	}
	return n.String(), true, nil
}
