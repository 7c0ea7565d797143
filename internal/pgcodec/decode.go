package pgcodec

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"

	"github.com/ferry-dev/ferry/streams/pb"
)

// Decode turns the text form of a value of type t (as printed under
// SessionParams) into a Value. text == nil means SQL NULL and yields a Value
// whose kind is Null (an explicit kind, so it can sit inside a repeated
// field).
func Decode(t *Type, text []byte) (*pb.Value, error) {
	if text == nil {
		return nullValue(), nil
	}
	if t == nil {
		return nil, errors.New("pgcodec: decode: nil type")
	}
	v, err := decode(t, string(text))
	if err != nil {
		return nil, fmt.Errorf("pgcodec: decoding %s %s: %w", t.label(), quoteTrunc(text), err)
	}
	return v, nil
}

// DecodeSharedInto is Decode into v, for a value that is used only while
// text is unchanged (say, encoded into a message at once and dropped): its
// strings share text's memory instead of copying it. For the common scalar
// types it also reuses v's kind (and what it points to) when the kind stays the
// same, as it does for a reader that decodes each column of row after row
// into the same values; a value holding something else is replaced. On an
// error v is left in an unspecified state.
func DecodeSharedInto(v *pb.Value, t *Type, text []byte) error {
	if text == nil {
		if k, ok := v.Kind.(*pb.Value_Null); ok {
			k.Null = true
		} else {
			v.Kind = &pb.Value_Null{Null: true}
		}
		return nil
	}
	if t == nil {
		return errors.New("pgcodec: decode: nil type")
	}
	s := unsafe.String(unsafe.SliceData(text), len(text))
	handled, err := decodeScalarInto(v, t, s)
	if !handled {
		var nv *pb.Value
		if nv, err = decode(t, s); err == nil {
			v.Kind = nv.Kind
		}
	}
	if err != nil {
		return fmt.Errorf("pgcodec: decoding %s %s: %w", t.label(), quoteTrunc(text), err)
	}
	return nil
}

// decodeScalarInto is decode for the most common types, into v. handled is
// false for the other types.
func decodeScalarInto(v *pb.Value, t *Type, s string) (handled bool, err error) {
	switch t.kind() {
	case kInt:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return true, numErr(err)
		}
		if k, ok := v.Kind.(*pb.Value_Int); ok {
			k.Int = n
		} else {
			v.Kind = &pb.Value_Int{Int: n}
		}
	case kNumeric:
		if !validNumeric(s) {
			return true, errSyntax
		}
		if k, ok := v.Kind.(*pb.Value_Decimal); ok {
			k.Decimal = s
		} else {
			v.Kind = &pb.Value_Decimal{Decimal: s}
		}
	case kText:
		if err := checkText(s); err != nil {
			return true, err
		}
		if k, ok := v.Kind.(*pb.Value_Text); ok {
			k.Text = s
		} else {
			v.Kind = &pb.Value_Text{Text: s}
		}
	case kJSON:
		if err := checkText(s); err != nil {
			return true, err
		}
		if k, ok := v.Kind.(*pb.Value_Json); ok {
			k.Json = s
		} else {
			v.Kind = &pb.Value_Json{Json: s}
		}
	case kTimestamp, kTimestamptz:
		zoned := t.kind() == kTimestamptz
		us, inf, err := parseTimestampUs(s, zoned)
		if err != nil {
			return true, err
		}
		if k, ok := v.Kind.(*pb.Value_Timestamp); ok && k.Timestamp != nil {
			ts := k.Timestamp
			ts.UnixUs, ts.Zoned, ts.Infinity = us, zoned, inf
			ts.ExtraNanos, ts.OffsetSeconds, ts.Zone = 0, 0, ""
		} else {
			v.Kind = &pb.Value_Timestamp{Timestamp: &pb.Timestamp{UnixUs: us, Zoned: zoned, Infinity: inf}}
		}
	default:
		return false, nil
	}
	return true, nil
}

func nullValue() *pb.Value {
	return &pb.Value{Kind: &pb.Value_Null{Null: true}}
}

func decode(t *Type, s string) (*pb.Value, error) {
	switch t.kind() {
	case kBool:
		switch s {
		case "t":
			return &pb.Value{Kind: &pb.Value_Bool{Bool: true}}, nil
		case "f":
			return &pb.Value{Kind: &pb.Value_Bool{Bool: false}}, nil
		}
		return nil, errSyntax
	case kInt:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, numErr(err)
		}
		return &pb.Value{Kind: &pb.Value_Int{Int: n}}, nil
	case kOID:
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return nil, numErr(err)
		}
		return &pb.Value{Kind: &pb.Value_Int{Int: int64(n)}}, nil
	case kFloat4:
		f, err := parseFloat(s, 32)
		if err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_Float32{Float32: float32(f)}}, nil
	case kFloat8:
		f, err := parseFloat(s, 64)
		if err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_Float64{Float64: f}}, nil
	case kNumeric:
		if !validNumeric(s) {
			return nil, errSyntax
		}
		return &pb.Value{Kind: &pb.Value_Decimal{Decimal: s}}, nil
	case kText:
		if err := checkText(s); err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_Text{Text: s}}, nil
	case kBytea:
		b, err := decodeBytea(s)
		if err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_Bytes{Bytes: b}}, nil
	case kTimestamp, kTimestamptz:
		ts, err := parseTimestamp(s, t.kind() == kTimestamptz)
		if err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: ts}}, nil
	case kDate:
		d, err := parseDateValue(s)
		if err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_Date{Date: d}}, nil
	case kTime:
		us, err := parseClock(s, true)
		if err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_TimeUs{TimeUs: us}}, nil
	case kTimetz:
		tz, err := parseTimeTZ(s)
		if err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_TimeTz{TimeTz: tz}}, nil
	case kInterval:
		iv, err := parseInterval(s)
		if err != nil {
			if err == errSyntax {
				err = errors.New("not IntervalStyle iso_8601 as PostgreSQL prints it (is the session using SessionParams?)")
			}
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_Interval{Interval: iv}}, nil
	case kUUID:
		u, err := parseUUID(s)
		if err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_Uuid{Uuid: u}}, nil
	case kJSON:
		if err := checkText(s); err != nil {
			return nil, err
		}
		return &pb.Value{Kind: &pb.Value_Json{Json: s}}, nil
	case kArray:
		return decodeArray(t, s)
	}
	if err := checkText(s); err != nil {
		return nil, err
	}
	return &pb.Value{Kind: &pb.Value_Native{Native: s}}, nil
}

// checkText accepts what can travel as a protobuf string and come back
// through Encode: UTF-8 (a database in another encoding, say SQL_ASCII, can
// hold text that is not) without NUL bytes (PostgreSQL never prints one, and
// Encode refuses them).
func checkText(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8 (ferry needs a UTF8 database or client_encoding)")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return errors.New("contains a NUL byte")
	}
	return nil
}

func numErr(err error) error {
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		return ne.Err
	}
	return err
}

// parseFloat reads PostgreSQL's float output: shortest round-trip digits
// (extra_float_digits > 0), "NaN", "Infinity", "-Infinity". ParseFloat
// rounds correctly, so every finite value comes back bit for bit.
func parseFloat(s string, bits int) (float64, error) {
	switch s {
	case "NaN":
		return math.NaN(), nil
	case "Infinity":
		return math.Inf(1), nil
	case "-Infinity":
		return math.Inf(-1), nil
	}
	if s == "" || !(isDigit(s[0]) || s[0] == '-' || s[0] == '.') {
		// Keep ParseFloat's extra spellings ("inf", "0x1p3", "+1") out:
		// PostgreSQL never prints them.
		return 0, errSyntax
	}
	f, err := strconv.ParseFloat(s, bits)
	if err != nil {
		return 0, numErr(err)
	}
	return f, nil
}

// validNumeric accepts numeric_out's forms: NaN, ±Infinity, and plain
// notation [-]digits[.digits]. Anything else means the text is not what
// PostgreSQL printed.
func validNumeric(s string) bool {
	switch s {
	case "NaN", "Infinity", "-Infinity":
		return true
	}
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	start := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	if i == start {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		fs := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if i == fs {
			return false
		}
	}
	return i == len(s)
}

// decodeBytea reads bytea_output=hex ("\x0a0b"); the older escape format
// ("a\\b\012") is read too, as a session may predate SessionParams.
func decodeBytea(s string) ([]byte, error) {
	if len(s) >= 2 && s[0] == '\\' && s[1] == 'x' {
		b := make([]byte, (len(s)-2)/2)
		if _, err := hex.Decode(b, []byte(s[2:])); err != nil {
			return nil, err
		}
		return b, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b = append(b, c)
			continue
		}
		switch {
		case i+1 < len(s) && s[i+1] == '\\':
			b = append(b, '\\')
			i++
		case i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) && s[i+1] <= '3':
			b = append(b, (s[i+1]-'0')<<6|(s[i+2]-'0')<<3|(s[i+3]-'0'))
			i += 3
		default:
			return nil, errors.New("invalid bytea escape")
		}
	}
	return b, nil
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// parseUUID reads the canonical 8-4-4-4-12 form uuid_out prints.
func parseUUID(s string) ([]byte, error) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return nil, errSyntax
	}
	var src [32]byte
	n := 0
	for i := 0; i < len(s); i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			continue
		}
		src[n] = s[i]
		n++
	}
	u := make([]byte, 16)
	if _, err := hex.Decode(u, src[:]); err != nil {
		return nil, errSyntax
	}
	return u, nil
}

// quoteTrunc quotes text for an error message, cut to about 64 bytes.
func quoteTrunc[T string | []byte](text T) string {
	const max = 64
	if len(text) <= max {
		return strconv.Quote(string(text))
	}
	cut := max
	for cut > max-4 && !utf8.RuneStart(text[cut]) {
		cut--
	}
	return strconv.Quote(string(text[:cut])) + fmt.Sprintf("... (%d bytes)", len(text))
}
