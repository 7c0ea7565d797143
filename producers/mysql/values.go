package mysql

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shopspring/decimal"

	"github.com/ferry-dev/ferry/streams/pb"
)

// errZeroDate marks a zero date ('0000-00-00', or one with a zero month or
// day) under zeroDates: error; the caller names the column and row.
var errZeroDate = errors.New("zero date")

func null() *pb.Value { return &pb.Value{Kind: &pb.Value_Null{Null: true}} }

// convert turns one column value into an event value. raw is what the
// reader got: nil, int64/uint64 (or narrower ints from the binlog),
// float32/float64, decimal.Decimal, string or []byte. fromBinlog says text
// is in the column's own character set (the snapshot reads it converted to
// utf8mb4 by the server) and ENUM/SET arrive as numbers.
func convert(c *column, raw any, fromBinlog, zeroNull bool) (*pb.Value, error) {
	if raw == nil {
		return null(), nil
	}
	switch c.DataType {
	case "tinyint", "smallint", "mediumint", "int", "integer", "bigint":
		return convertInt(c, raw)
	case "year":
		i, err := asInt(raw)
		if err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_Int{Int: i}}, nil
	case "bit":
		switch x := raw.(type) {
		case []byte: // the snapshot: big-endian bytes
			if len(x) > 8 {
				return nil, fmt.Errorf("BIT value of %d bytes", len(x))
			}
			var u uint64
			for _, b := range x {
				u = u<<8 | uint64(b)
			}
			return &pb.Value{Kind: &pb.Value_Uint{Uint: u}}, nil
		case string:
			return convert(c, []byte(x), fromBinlog, zeroNull)
		}
		i, err := asInt(raw)
		if err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_Uint{Uint: uint64(i)}}, nil
	case "decimal", "numeric":
		switch x := raw.(type) {
		case decimal.Decimal:
			return &pb.Value{Kind: &pb.Value_Decimal{Decimal: x.StringFixed(int32(c.Scale))}}, nil
		case []byte:
			return &pb.Value{Kind: &pb.Value_Decimal{Decimal: string(x)}}, nil
		case string:
			return &pb.Value{Kind: &pb.Value_Decimal{Decimal: x}}, nil
		}
		return nil, fmt.Errorf("DECIMAL arrived as %T", raw)
	case "float":
		switch x := raw.(type) {
		case float32:
			return &pb.Value{Kind: &pb.Value_Float32{Float32: x}}, nil
		case float64: // the binary protocol widens FLOAT exactly
			return &pb.Value{Kind: &pb.Value_Float32{Float32: float32(x)}}, nil
		}
		return nil, fmt.Errorf("FLOAT arrived as %T", raw)
	case "double", "real":
		switch x := raw.(type) {
		case float64:
			return &pb.Value{Kind: &pb.Value_Float64{Float64: x}}, nil
		case float32:
			return &pb.Value{Kind: &pb.Value_Float64{Float64: float64(x)}}, nil
		}
		return nil, fmt.Errorf("DOUBLE arrived as %T", raw)
	case "date":
		return convertDate(asString(raw), zeroNull)
	case "datetime", "timestamp":
		return convertDateTime(asString(raw), c.DataType == "timestamp", zeroNull)
	case "time":
		return convertTime(asString(raw))
	case "enum":
		if fromBinlog {
			i, err := asInt(raw)
			if err != nil {
				return nil, err
			}
			if i == 0 {
				return &pb.Value{Kind: &pb.Value_Text{Text: ""}}, nil // the invalid-value ''
			}
			if i < 0 || int(i) > len(c.Labels) {
				return nil, fmt.Errorf("ENUM index %d outside its %d labels", i, len(c.Labels))
			}
			return &pb.Value{Kind: &pb.Value_Text{Text: c.Labels[i-1]}}, nil
		}
		return textValue(c, raw, false)
	case "set":
		if fromBinlog {
			i, err := asInt(raw)
			if err != nil {
				return nil, err
			}
			var parts []string
			for b := 0; b < len(c.Labels) && b < 64; b++ {
				if uint64(i)&(1<<b) != 0 {
					parts = append(parts, c.Labels[b])
				}
			}
			return &pb.Value{Kind: &pb.Value_Text{Text: strings.Join(parts, ",")}}, nil
		}
		return textValue(c, raw, false)
	case "json":
		v, err := textValue(c, raw, false)
		if err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_Json{Json: v.GetText()}}, nil
	case "binary":
		// The binlog drops a BINARY(n)'s trailing zero bytes; the column
		// always holds n bytes.
		b := asBytes(raw)
		if n := typeLength(c.ColumnType); fromBinlog && len(b) < n {
			b = append(b, make([]byte, n-len(b))...)
		}
		return &pb.Value{Kind: &pb.Value_Bytes{Bytes: b}}, nil
	case "varbinary", "tinyblob", "blob", "mediumblob", "longblob", "geometry", "point", "linestring", "polygon",
		"multipoint", "multilinestring", "multipolygon", "geometrycollection":
		return &pb.Value{Kind: &pb.Value_Bytes{Bytes: asBytes(raw)}}, nil
	case "char", "varchar", "tinytext", "text", "mediumtext", "longtext":
		if c.Charset == "binary" {
			return &pb.Value{Kind: &pb.Value_Bytes{Bytes: asBytes(raw)}}, nil
		}
		return textValue(c, raw, fromBinlog)
	}
	return nil, fmt.Errorf("type %s is not supported", c.ColumnType)
}

func asBytes(raw any) []byte {
	switch x := raw.(type) {
	case []byte:
		return append([]byte(nil), x...)
	case string:
		return []byte(x)
	}
	return []byte(fmt.Sprint(raw))
}

func asString(raw any) string {
	switch x := raw.(type) {
	case []byte:
		return string(x)
	case string:
		return x
	}
	return fmt.Sprint(raw)
}

func asInt(raw any) (int64, error) {
	switch x := raw.(type) {
	case int8:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	case int:
		return int64(x), nil
	case uint8:
		return int64(x), nil
	case uint16:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case uint64:
		return int64(x), nil
	case []byte:
		return strconv.ParseInt(string(x), 10, 64)
	case string:
		return strconv.ParseInt(x, 10, 64)
	}
	return 0, fmt.Errorf("expected an integer, got %T", raw)
}

// convertInt keeps the column's signedness: the binlog sends unsigned
// columns as signed numbers of the column's width unless the server logs
// signedness, so a negative number in an unsigned column is re-read as the
// unsigned number of that width.
func convertInt(c *column, raw any) (*pb.Value, error) {
	if !c.Unsigned {
		i, err := asInt(raw)
		if err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_Int{Int: i}}, nil
	}
	var u uint64
	switch x := raw.(type) {
	case uint64:
		u = x
	case uint32:
		u = uint64(x)
	case uint16:
		u = uint64(x)
	case uint8:
		u = uint64(x)
	case int8:
		u = uint64(uint8(x))
	case int16:
		u = uint64(uint16(x))
	case int32:
		if c.DataType == "mediumint" {
			u = uint64(uint32(x) & 0xFFFFFF)
		} else {
			u = uint64(uint32(x))
		}
	case int64:
		u = uint64(x)
	case []byte, string:
		var err error
		if u, err = strconv.ParseUint(asString(raw), 10, 64); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("expected an unsigned integer, got %T", raw)
	}
	return &pb.Value{Kind: &pb.Value_Uint{Uint: u}}, nil
}

// textValue decodes text from the column's character set to UTF-8.
func textValue(c *column, raw any, fromBinlog bool) (*pb.Value, error) {
	b := asBytes(raw)
	if fromBinlog {
		switch strings.ToLower(c.Charset) {
		case "latin1":
			return &pb.Value{Kind: &pb.Value_Text{Text: decodeLatin1(b)}}, nil
		case "utf8mb4", "utf8mb3", "utf8", "ascii", "":
		default:
			return nil, fmt.Errorf("character set %s is not supported by the change stream (utf8mb4, utf8mb3, ascii and latin1 are)", c.Charset)
		}
	}
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("text is not valid %s", c.Charset)
	}
	return &pb.Value{Kind: &pb.Value_Text{Text: string(b)}}, nil
}

// midnight reads the date at the start of s ("YYYY-MM-DD…") as Unix
// seconds at midnight UTC. A zero date is NULL under zeroNull, else
// errZeroDate.
func midnight(s string, zeroNull bool) (sec int64, isNull bool, err error) {
	if len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return 0, false, fmt.Errorf("cannot read date %q", s)
	}
	y, e1 := strconv.Atoi(s[0:4])
	m, e2 := strconv.Atoi(s[5:7])
	d, e3 := strconv.Atoi(s[8:10])
	if e := errors.Join(e1, e2, e3); e != nil {
		return 0, false, fmt.Errorf("cannot read date %q", s)
	}
	if y == 0 || m == 0 || d == 0 {
		if zeroNull {
			return 0, true, nil
		}
		return 0, false, errZeroDate
	}
	return time.Date(y, time.Month(m), d, 0, 0, 0, 0, time.UTC).Unix(), false, nil
}

func convertDate(s string, zeroNull bool) (*pb.Value, error) {
	sec, isNull, err := midnight(s, zeroNull)
	if err != nil || isNull {
		return null(), err
	}
	return &pb.Value{Kind: &pb.Value_Date{Date: &pb.Date{Days: int32(sec / 86400)}}}, nil
}

func convertDateTime(s string, zoned, zeroNull bool) (*pb.Value, error) {
	sec, isNull, err := midnight(s, zeroNull)
	if err != nil || isNull {
		return null(), err
	}
	var us int64
	if rest := strings.TrimSpace(s[10:]); rest != "" {
		if us, err = parseClock(rest); err != nil {
			return nil, fmt.Errorf("cannot read date-time %q", s)
		}
	}
	return &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: &pb.Timestamp{UnixUs: sec*1_000_000 + us, Zoned: zoned}}}, nil
}

// parseClock reads "[-]H+:MM:SS[.ffffff]" as microseconds.
func parseClock(s string) (int64, error) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return 0, fmt.Errorf("cannot read time %q", s)
	}
	h, e1 := strconv.ParseInt(parts[0], 10, 64)
	mi, e2 := strconv.ParseInt(parts[1], 10, 64)
	sec, frac, _ := strings.Cut(parts[2], ".")
	se, e3 := strconv.ParseInt(sec, 10, 64)
	if e := errors.Join(e1, e2, e3); e != nil {
		return 0, fmt.Errorf("cannot read time %q", s)
	}
	var f int64
	if frac != "" {
		if len(frac) > 6 {
			frac = frac[:6]
		}
		fv, err := strconv.ParseInt(frac+strings.Repeat("0", 6-len(frac)), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("cannot read time %q", s)
		}
		f = fv
	}
	us := ((h*60+mi)*60+se)*1_000_000 + f
	if neg {
		us = -us
	}
	return us, nil
}

// convertTime keeps TIME within a day as a time of day; a TIME outside
// 00:00:00..23:59:59.999999 (MySQL allows -838:59:59..838:59:59) is a
// duration and travels as an interval, so that nothing wraps silently.
func convertTime(s string) (*pb.Value, error) {
	us, err := parseClock(s)
	if err != nil {
		return nil, err
	}
	if us >= 0 && us < 86_400_000_000 {
		return &pb.Value{Kind: &pb.Value_TimeUs{TimeUs: us}}, nil
	}
	return &pb.Value{Kind: &pb.Value_Interval{Interval: &pb.Interval{Micros: us}}}, nil
}

// latin1 is MySQL's latin1: Windows-1252, with the five bytes cp1252 leaves
// undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D) mapped to the C1 controls of
// the same number, as MySQL converts them.
var latin1 = func() [256]rune {
	var t [256]rune
	for i := range 256 {
		t[i] = rune(i)
	}
	hi := []rune{
		0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8D, 0x017D, 0x8F,
		0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
	}
	copy(t[0x80:0xA0], hi)
	return t
}()

func decodeLatin1(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b) + len(b)/4)
	for _, c := range b {
		sb.WriteRune(latin1[c])
	}
	return sb.String()
}

// typeLength reads n from "binary(n)".
func typeLength(ct string) int {
	open, closeP := strings.IndexByte(ct, '('), strings.IndexByte(ct, ')')
	if open < 0 || closeP < open {
		return 0
	}
	n, _ := strconv.Atoi(ct[open+1 : closeP])
	return n
}
