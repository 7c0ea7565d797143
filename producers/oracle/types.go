package oracle

import (
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-dev/ferry/streams/pb"
)

// Session formats ferry sets on every connection it reads with (ALTER
// SESSION). LogMiner renders DATE and TIMESTAMP values in SQL_REDO with the
// mining session's NLS formats, and the snapshot reads values through
// TO_CHAR with the same formats, so one converter reads both.
const (
	dateFormat = "SYYYY-MM-DD HH24:MI:SS"
	tsFormat   = "SYYYY-MM-DD HH24:MI:SS.FF9"
	// The offset is always printed, so the instant is known without a time
	// zone database; TZR adds the region name when the value has one (and
	// repeats the offset when it does not).
	tstzFormat = "SYYYY-MM-DD HH24:MI:SS.FF9 TZH:TZM TZR"
)

// sessionSetup is run on every connection before reading: fixed formats
// for dates, timestamps and numbers, and UTC for TIMESTAMP WITH LOCAL TIME
// ZONE values.
var sessionSetup = []string{
	"ALTER SESSION SET NLS_DATE_FORMAT = '" + dateFormat + "'",
	"ALTER SESSION SET NLS_TIMESTAMP_FORMAT = '" + tsFormat + "'",
	"ALTER SESSION SET NLS_TIMESTAMP_TZ_FORMAT = '" + tstzFormat + "'",
	"ALTER SESSION SET NLS_NUMERIC_CHARACTERS = '.,'",
	"ALTER SESSION SET TIME_ZONE = '+00:00'",
}

// kind is how a column's values are converted.
type kind int

const (
	kNumber kind = iota
	kFloat32
	kFloat64
	kText
	kBytes
	kDate
	kTimestamp
	kTimestampTZ
	kTimestampLTZ
	kIntervalYM
	kIntervalDS
	kNative
)

// column is one column of a source table as ALL_TAB_COLUMNS describes it.
type column struct {
	Name  string
	Type  string // DATA_TYPE, e.g. NUMBER, TIMESTAMP(6) WITH TIME ZONE
	Scale int    // DATA_SCALE, -1 when NULL
	kind  kind
	lob   bool
}

// kindOf maps an Oracle DATA_TYPE to how ferry converts it.
func kindOf(dataType string) (k kind, lob bool) {
	t := strings.ToUpper(dataType)
	switch {
	case t == "NUMBER" || t == "FLOAT" || t == "INTEGER":
		return kNumber, false
	case t == "BINARY_FLOAT":
		return kFloat32, false
	case t == "BINARY_DOUBLE":
		return kFloat64, false
	case t == "VARCHAR2" || t == "NVARCHAR2" || t == "CHAR" || t == "NCHAR" || t == "VARCHAR" || t == "LONG":
		return kText, false
	case t == "CLOB" || t == "NCLOB":
		return kText, true
	case t == "BLOB":
		return kBytes, true
	case t == "RAW" || t == "LONG RAW":
		return kBytes, false
	case t == "DATE":
		return kDate, false
	case strings.HasPrefix(t, "TIMESTAMP") && strings.HasSuffix(t, "WITH LOCAL TIME ZONE"):
		return kTimestampLTZ, false
	case strings.HasPrefix(t, "TIMESTAMP") && strings.HasSuffix(t, "WITH TIME ZONE"):
		return kTimestampTZ, false
	case strings.HasPrefix(t, "TIMESTAMP"):
		return kTimestamp, false
	case strings.HasPrefix(t, "INTERVAL YEAR"):
		return kIntervalYM, false
	case strings.HasPrefix(t, "INTERVAL DAY"):
		return kIntervalDS, false
	}
	return kNative, false
}

func newColumn(name, dataType string, scale int) column {
	k, lob := kindOf(dataType)
	return column{Name: name, Type: dataType, Scale: scale, kind: k, lob: lob}
}

// selectExpr is the snapshot's SELECT expression for a column: every value
// comes back as text in the form the redo converter reads, except LOBs,
// which the driver streams as they are.
func (c column) selectExpr() string {
	q := quoteIdent(c.Name)
	switch c.kind {
	case kNumber, kFloat32, kFloat64, kIntervalYM, kIntervalDS:
		return "TO_CHAR(" + q + ")"
	case kDate:
		return "TO_CHAR(" + q + ", '" + dateFormat + "')"
	case kTimestamp:
		return "TO_CHAR(" + q + ", '" + tsFormat + "')"
	case kTimestampTZ:
		return "TO_CHAR(" + q + ", '" + tstzFormat + "')"
	case kTimestampLTZ:
		// Rendered in the session time zone, which ferry sets to UTC.
		return "TO_CHAR(" + q + ", '" + tsFormat + "')"
	case kBytes:
		if c.lob {
			return q
		}
		return "RAWTOHEX(" + q + ")"
	case kNative:
		return "TO_CHAR(" + q + ")"
	}
	return q
}

// bindExpr is the inverse of selectExpr for a key column: a chunk bound in
// text form bound as parameter p, turned back into the column's type.
func (c column) bindExpr(p string) string {
	switch c.kind {
	case kNumber, kFloat32, kFloat64:
		return "TO_NUMBER(" + p + ")"
	case kDate:
		return "TO_DATE(" + p + ", '" + dateFormat + "')"
	case kTimestamp, kTimestampLTZ:
		return "TO_TIMESTAMP(" + p + ", '" + tsFormat + "')"
	case kBytes:
		return "HEXTORAW(" + p + ")"
	}
	return p
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// litKind says what form a value had in SQL_REDO.
type litKind int

const (
	litNull   litKind = iota
	litString         // a quoted string, or the snapshot's text
	litNumber         // an unquoted number
	litFunc           // NAME('arg', ...): TO_DATE, HEXTORAW, EMPTY_CLOB, ...
	litBytes          // raw bytes (a LOB read by the snapshot)
)

// literal is one value as SQL_REDO writes it.
type literal struct {
	Kind  litKind
	Text  string   // litString, litNumber; the function name for litFunc
	Args  []string // litFunc: its string arguments
	Bytes []byte
}

func (l literal) String() string {
	switch l.Kind {
	case litNull:
		return "NULL"
	case litString:
		return "'" + l.Text + "'"
	case litFunc:
		return l.Text + "('" + strings.Join(l.Args, "', '") + "')"
	case litBytes:
		return fmt.Sprintf("%d bytes", len(l.Bytes))
	}
	return l.Text
}

// isEmptyLOB reports EMPTY_CLOB() / EMPTY_BLOB(): a LOB whose content
// LogMiner writes in later LOB_WRITE records, not in this statement.
func (l literal) isEmptyLOB() bool {
	return l.Kind == litFunc && (l.Text == "EMPTY_CLOB" || l.Text == "EMPTY_BLOB")
}

func null() *pb.Value { return &pb.Value{Kind: &pb.Value_Null{Null: true}} }

// convert turns one literal into a Value for column c.
func convert(c column, l literal) (*pb.Value, error) {
	if l.Kind == litNull {
		return null(), nil
	}
	if l.Kind == litBytes {
		if c.kind == kText {
			return &pb.Value{Kind: &pb.Value_Text{Text: string(l.Bytes)}}, nil
		}
		return &pb.Value{Kind: &pb.Value_Bytes{Bytes: l.Bytes}}, nil
	}
	s, fn, err := unwrap(l)
	if err != nil {
		return nil, err
	}
	switch c.kind {
	case kNumber:
		return number(s)
	case kFloat32, kFloat64:
		f, err := binaryFloat(s, c.kind == kFloat32)
		if err != nil {
			return nil, err
		}
		if c.kind == kFloat32 {
			return &pb.Value{Kind: &pb.Value_Float32{Float32: float32(f)}}, nil
		}
		return &pb.Value{Kind: &pb.Value_Float64{Float64: f}}, nil
	case kText:
		if fn == "UNISTR" {
			if s, err = unistr(s); err != nil {
				return nil, err
			}
		}
		return &pb.Value{Kind: &pb.Value_Text{Text: s}}, nil
	case kBytes:
		b, err := hex.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%s is not hexadecimal", l)
		}
		return &pb.Value{Kind: &pb.Value_Bytes{Bytes: b}}, nil
	case kDate:
		t, _, err := parseTimestamp(s, false)
		if err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: tsValue(t, false)}}, nil
	case kTimestamp, kTimestampLTZ:
		t, _, err := parseTimestamp(s, false)
		if err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: tsValue(t, c.kind == kTimestampLTZ)}}, nil
	case kTimestampTZ:
		t, zone, err := parseTimestamp(s, true)
		if err != nil {
			return nil, err
		}
		ts := tsValue(t, true)
		_, off := t.Zone()
		ts.OffsetSeconds, ts.Zone = int32(off), zone
		return &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: ts}}, nil
	case kIntervalYM:
		m, err := intervalYM(s)
		if err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_Interval{Interval: &pb.Interval{Months: m}}}, nil
	case kIntervalDS:
		d, err := intervalDS(s)
		if err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_Duration{Duration: d}}, nil
	}
	return &pb.Value{Kind: &pb.Value_Native{Native: s}}, nil
}

var sessionFormats = map[string]string{"TO_DATE": dateFormat, "TO_TIMESTAMP": tsFormat, "TO_TIMESTAMP_TZ": tstzFormat}

// unwrap takes the text out of a literal: a string, a number, or the first
// argument of a conversion function ferry knows. The function's format
// argument must be the one ferry's session set, or the text cannot be read.
func unwrap(l literal) (text, fn string, err error) {
	if l.Kind != litFunc {
		return l.Text, "", nil
	}
	switch l.Text {
	case "TO_DATE", "TO_TIMESTAMP", "TO_TIMESTAMP_TZ":
		if len(l.Args) != 2 {
			return "", "", fmt.Errorf("%s: expected a value and a format", l)
		}
		if want := sessionFormats[l.Text]; !strings.EqualFold(l.Args[1], want) {
			return "", "", fmt.Errorf("%s: format %q is not the session format %q ferry sets (was the session's NLS setting changed?)", l, l.Args[1], want)
		}
		return l.Args[0], l.Text, nil
	case "HEXTORAW", "UNISTR", "TO_YMINTERVAL", "TO_DSINTERVAL", "TO_BINARY_FLOAT", "TO_BINARY_DOUBLE", "TO_NUMBER":
		if len(l.Args) != 1 {
			return "", "", fmt.Errorf("%s: expected one argument", l)
		}
		return l.Args[0], l.Text, nil
	}
	return "", "", fmt.Errorf("%s: ferry cannot read this form of value", l)
}

// number converts NUMBER text: an integer that fits int64 becomes an int,
// anything else a decimal in plain notation (exponents expanded).
func number(s string) (*pb.Value, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("empty NUMBER")
	}
	if strings.ContainsAny(s, "eE") {
		r, ok := new(big.Rat).SetString(s)
		if !ok {
			return nil, fmt.Errorf("%q is not a NUMBER", s)
		}
		if r.IsInt() {
			s = r.Num().String()
		} else {
			// A terminating decimal: enough digits to be exact.
			s = strings.TrimRight(r.FloatString(200), "0")
		}
	}
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return &pb.Value{Kind: &pb.Value_Int{Int: i}}, nil
	}
	neg := strings.HasPrefix(s, "-")
	body := strings.TrimPrefix(s, "-")
	if body == "" || strings.Count(body, ".") > 1 || strings.Trim(body, "0123456789.") != "" || body == "." {
		return nil, fmt.Errorf("%q is not a NUMBER", s)
	}
	if strings.HasPrefix(body, ".") { // Oracle writes .5
		body = "0" + body
	}
	if strings.HasSuffix(body, ".") {
		body = strings.TrimSuffix(body, ".")
	}
	if neg {
		body = "-" + body
	}
	return &pb.Value{Kind: &pb.Value_Decimal{Decimal: body}}, nil
}

// binaryFloat reads BINARY_FLOAT/BINARY_DOUBLE text, including Oracle's
// spellings of NaN and the infinities.
func binaryFloat(s string, single bool) (float64, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "NAN":
		return math.NaN(), nil
	case "INF", "+INF", "INFINITY", "~", "BINARY_DOUBLE_INFINITY", "BINARY_FLOAT_INFINITY":
		return math.Inf(1), nil
	case "-INF", "-INFINITY", "-~", "-BINARY_DOUBLE_INFINITY", "-BINARY_FLOAT_INFINITY":
		return math.Inf(-1), nil
	}
	bits := 64
	if single {
		bits = 32
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), bits)
	if err != nil {
		return 0, fmt.Errorf("%q is not a binary floating-point number", s)
	}
	return f, nil
}

// unistr decodes UNISTR's \XXXX escapes (UTF-16 code units) and \\.
func unistr(s string) (string, error) {
	var units []uint16
	var b strings.Builder
	flush := func() {
		if len(units) > 0 {
			b.WriteString(string(utf16Decode(units)))
			units = units[:0]
		}
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			flush()
			b.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '\\' {
			flush()
			b.WriteByte('\\')
			i++
			continue
		}
		if i+5 > len(s) {
			return "", fmt.Errorf("UNISTR %q: truncated escape", s)
		}
		v, err := strconv.ParseUint(s[i+1:i+5], 16, 16)
		if err != nil {
			return "", fmt.Errorf("UNISTR %q: bad escape %q", s, s[i:i+5])
		}
		units = append(units, uint16(v))
		i += 4
	}
	flush()
	return b.String(), nil
}

func utf16Decode(u []uint16) []rune {
	var out []rune
	for i := 0; i < len(u); i++ {
		r := rune(u[i])
		if r >= 0xD800 && r < 0xDC00 && i+1 < len(u) && u[i+1] >= 0xDC00 && u[i+1] < 0xE000 {
			r = (r-0xD800)<<10 + (rune(u[i+1]) - 0xDC00) + 0x10000
			i++
		}
		out = append(out, r)
	}
	return out
}

// parseTimestamp reads "[-]YYYY-MM-DD HH24:MI:SS[.FFFFFFFFF][ +HH:MM REGION]".
// Oracle's year -1 is 1 BC, which is year 0 in Go's astronomical count.
// zone is the region name when the value has one.
func parseTimestamp(s string, zoned bool) (time.Time, string, error) {
	orig := s
	s = strings.TrimSpace(s)
	bad := func() (time.Time, string, error) {
		return time.Time{}, "", fmt.Errorf("%q is not a date/time in the form %s", orig, map[bool]string{false: tsFormat, true: tstzFormat}[zoned])
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
	fields := strings.Fields(s)
	if len(fields) < 2 {
		return bad()
	}
	dp := strings.Split(fields[0], "-")
	tp := strings.Split(fields[1], ":")
	if len(dp) != 3 || len(tp) != 3 {
		return bad()
	}
	year, e1 := strconv.Atoi(dp[0])
	month, e2 := strconv.Atoi(dp[1])
	day, e3 := strconv.Atoi(dp[2])
	hour, e4 := strconv.Atoi(tp[0])
	minute, e5 := strconv.Atoi(tp[1])
	secText, frac, _ := strings.Cut(tp[2], ".")
	sec, e6 := strconv.Atoi(secText)
	if e1 != nil || e2 != nil || e3 != nil || e4 != nil || e5 != nil || e6 != nil {
		return bad()
	}
	nanos := 0
	if frac != "" {
		if len(frac) > 9 {
			return bad()
		}
		n, err := strconv.Atoi(frac + strings.Repeat("0", 9-len(frac)))
		if err != nil {
			return bad()
		}
		nanos = n
	}
	if neg {
		year = -year + 1
	}
	loc := time.UTC
	zone := ""
	if zoned {
		if len(fields) < 3 {
			return bad()
		}
		off, ok := parseOffset(fields[2])
		if !ok {
			return bad()
		}
		if len(fields) > 3 {
			if _, isOff := parseOffset(fields[3]); !isOff {
				zone = fields[3]
			}
		}
		loc = time.FixedZone(fields[2], off)
	} else if len(fields) != 2 {
		return bad()
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nanos, loc), zone, nil
}

func parseOffset(s string) (int, bool) {
	if len(s) < 2 || (s[0] != '+' && s[0] != '-') {
		return 0, false
	}
	h, m, _ := strings.Cut(s[1:], ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if err1 != nil || (m != "" && err2 != nil) {
		return 0, false
	}
	off := hh*3600 + mm*60
	if s[0] == '-' {
		off = -off
	}
	return off, true
}

func tsValue(t time.Time, zoned bool) *pb.Timestamp {
	// Wall-clock values count as if they were UTC.
	if !zoned {
		t = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
	}
	sec := t.Unix()
	ns := t.Nanosecond()
	return &pb.Timestamp{UnixUs: sec*1_000_000 + int64(ns/1000), Zoned: zoned, ExtraNanos: uint32(ns % 1000)}
}

// intervalYM reads "+YY-MM" / "-YY-MM" into months.
func intervalYM(s string) (int32, error) {
	s = strings.TrimSpace(s)
	neg := strings.HasPrefix(s, "-")
	y, m, ok := strings.Cut(strings.TrimLeft(s, "+-"), "-")
	yy, err1 := strconv.Atoi(y)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%q is not an INTERVAL YEAR TO MONTH (+YY-MM)", s)
	}
	v := int32(yy*12 + mm)
	if neg {
		v = -v
	}
	return v, nil
}

// intervalDS reads "+DD HH:MI:SS[.FFFFFFFFF]" into days and nanoseconds.
func intervalDS(s string) (*pb.Duration, error) {
	s = strings.TrimSpace(s)
	bad := fmt.Errorf("%q is not an INTERVAL DAY TO SECOND (+DD HH:MI:SS.FF)", s)
	neg := strings.HasPrefix(s, "-")
	d, rest, ok := strings.Cut(strings.TrimLeft(s, "+-"), " ")
	if !ok {
		return nil, bad
	}
	days, err := strconv.Atoi(d)
	if err != nil {
		return nil, bad
	}
	tp := strings.Split(rest, ":")
	if len(tp) != 3 {
		return nil, bad
	}
	h, err1 := strconv.Atoi(tp[0])
	mi, err2 := strconv.Atoi(tp[1])
	secText, frac, _ := strings.Cut(tp[2], ".")
	sec, err3 := strconv.Atoi(secText)
	if err1 != nil || err2 != nil || err3 != nil || len(frac) > 9 {
		return nil, bad
	}
	nanos := int64(0)
	if frac != "" {
		n, err := strconv.Atoi(frac + strings.Repeat("0", 9-len(frac)))
		if err != nil {
			return nil, bad
		}
		nanos = int64(n)
	}
	total := ((int64(h)*60+int64(mi))*60+int64(sec))*1_000_000_000 + nanos
	out := &pb.Duration{Days: int32(days), Nanos: total}
	if neg {
		out.Days, out.Nanos = -out.Days, -out.Nanos
	}
	return out, nil
}
