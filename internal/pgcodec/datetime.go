package pgcodec

import (
	"errors"
	"math"
	"strconv"
	"strings"

	"github.com/ferry-dev/ferry/streams/pb"
)

const (
	usPerSec  = 1_000_000
	usPerMin  = 60 * usPerSec
	usPerHour = 60 * usPerMin
	usPerDay  = 24 * usPerHour
)

// PostgreSQL 17+ prints an infinite interval as 'infinity' / '-infinity' and
// stores it as all three fields at their maximum / minimum. Decode maps it to
// those same bits. Encode does not print "infinity" for them: older servers
// reject that word but hold such all-maximum values as finite ones, and 17+
// reads the finite spelling back as infinity (itmin2interval treats it so on
// purpose, for dump/reload from older versions), so the digits are right for
// both.
const (
	infMonths = math.MaxInt32
	infDays   = math.MaxInt32
	infMicros = math.MaxInt64
)

var (
	errSyntax   = errors.New("invalid syntax")
	errRange    = errors.New("out of range")
	errUnixUS   = errors.New("beyond 294247-01-10 04:00:54.775807, the last instant 64-bit microseconds since 1970 can hold")
	errBadField = errors.New("field out of range")
)

// daysFromCivil returns days since 1970-01-01 of a proleptic Gregorian date
// with an astronomical year (1 BC is year 0, 2 BC is -1), which is the
// calendar PostgreSQL uses for all dates. (H. Hinnant's algorithm.)
func daysFromCivil(y int64, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := floorDiv(y, 400)
	yoe := y - era*400
	mp := int64((m + 9) % 12)
	doy := (153*mp+2)/5 + int64(d) - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

// civilFromDays is the inverse of daysFromCivil.
func civilFromDays(z int64) (y int64, m, d int) {
	z += 719468
	era := floorDiv(z, 146097)
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = int(doy - (153*mp+2)/5 + 1)
	if mp < 10 {
		m = int(mp + 3)
	} else {
		m = int(mp - 9)
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func isLeap(y int64) bool {
	return y%4 == 0 && (y%100 != 0 || y%400 == 0)
}

func daysIn(y int64, m int) int {
	switch m {
	case 2:
		if isLeap(y) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// parseDate reads "YYYY-MM-DD" (four or more year digits) and returns days
// since 1970-01-01. bc marks a " BC" suffix the caller already stripped.
func parseDate(s string, bc bool) (int64, error) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	if i < 4 || i > 9 || len(s) != i+6 || s[i] != '-' || s[i+3] != '-' {
		return 0, errSyntax
	}
	y, _ := strconv.ParseInt(s[:i], 10, 64)
	m, ok1 := atoi2(s[i+1:])
	d, ok2 := atoi2(s[i+4:])
	if !ok1 || !ok2 {
		return 0, errSyntax
	}
	if bc {
		if y == 0 {
			return 0, errBadField
		}
		y = 1 - y
	}
	if m < 1 || m > 12 || d < 1 || d > daysIn(y, m) {
		return 0, errBadField
	}
	return daysFromCivil(y, m, d), nil
}

// parseClock reads "HH:MM:SS[.ffffff]" and returns microseconds since
// midnight. 24:00:00 is allowed only when allow24 (time and timetz print it).
func parseClock(s string, allow24 bool) (int64, error) {
	if len(s) < 8 || s[2] != ':' || s[5] != ':' {
		return 0, errSyntax
	}
	h, ok1 := atoi2(s)
	mi, ok2 := atoi2(s[3:])
	se, ok3 := atoi2(s[6:])
	if !ok1 || !ok2 || !ok3 {
		return 0, errSyntax
	}
	frac, err := parseFraction(s[8:])
	if err != nil {
		return 0, err
	}
	if mi > 59 || se > 59 || h > 24 || (h == 24 && (!allow24 || mi != 0 || se != 0 || frac != 0)) {
		return 0, errBadField
	}
	return int64(h)*usPerHour + int64(mi)*usPerMin + int64(se)*usPerSec + frac, nil
}

// parseFraction reads "" or ".d{1,6}" as microseconds.
func parseFraction(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	if s[0] != '.' || len(s) < 2 || len(s) > 7 {
		return 0, errSyntax
	}
	var us int64
	for i := 1; i < 7; i++ {
		us *= 10
		if i < len(s) {
			if !isDigit(s[i]) {
				return 0, errSyntax
			}
			us += int64(s[i] - '0')
		}
	}
	return us, nil
}

// parseOffset reads a UTC offset as PostgreSQL prints it: "+HH", "+HH:MM" or
// "+HH:MM:SS", and returns seconds east of UTC.
func parseOffset(s string) (int32, error) {
	if len(s) != 3 && len(s) != 6 && len(s) != 9 || (s[0] != '+' && s[0] != '-') {
		return 0, errSyntax
	}
	h, ok := atoi2(s[1:])
	if !ok {
		return 0, errSyntax
	}
	var mi, se int
	if len(s) >= 6 {
		if s[3] != ':' {
			return 0, errSyntax
		}
		if mi, ok = atoi2(s[4:]); !ok {
			return 0, errSyntax
		}
	}
	if len(s) == 9 {
		if s[6] != ':' {
			return 0, errSyntax
		}
		if se, ok = atoi2(s[7:]); !ok {
			return 0, errSyntax
		}
	}
	if mi > 59 || se > 59 {
		return 0, errBadField
	}
	off := int32(h*3600 + mi*60 + se)
	if s[0] == '-' {
		off = -off
	}
	return off, nil
}

// splitOffset splits "HH:MM:SS[.f]+HH[:MM[:SS]]" at the sign of the offset.
func splitOffset(s string) (clock, off string, err error) {
	i := strings.LastIndexAny(s, "+-")
	if i < 0 {
		return "", "", errSyntax
	}
	return s[:i], s[i:], nil
}

// parseTimestamp reads ISO-style timestamp text:
// "YYYY-MM-DD HH:MM:SS[.f][+HH[:MM[:SS]]][ BC]", or ±infinity.
// The offset must be present exactly when zoned.
func parseTimestamp(s string, zoned bool) (*pb.Timestamp, error) {
	us, inf, err := parseTimestampUs(s, zoned)
	if err != nil {
		return nil, err
	}
	return &pb.Timestamp{UnixUs: us, Zoned: zoned, Infinity: inf}, nil
}

// parseTimestampUs is parseTimestamp's work: microseconds since the epoch,
// or ±1 for ±infinity.
func parseTimestampUs(s string, zoned bool) (us int64, infinity int32, err error) {
	switch s {
	case "infinity":
		return 0, 1, nil
	case "-infinity":
		return 0, -1, nil
	}
	s, bc := strings.CutSuffix(s, " BC")
	date, clock, ok := strings.Cut(s, " ")
	if !ok {
		return 0, 0, errSyntax
	}
	days, err := parseDate(date, bc)
	if err != nil {
		return 0, 0, err
	}
	var off int32
	if zoned {
		var offText string
		if clock, offText, err = splitOffset(clock); err != nil {
			return 0, 0, err
		}
		if off, err = parseOffset(offText); err != nil {
			return 0, 0, err
		}
	}
	tod, err := parseClock(clock, false)
	if err != nil {
		return 0, 0, err
	}
	// days*usPerDay alone overflows int64 past about 292277 AD; PostgreSQL
	// goes to 294276 AD, so the far end does not fit (see errUnixUS).
	if days > math.MaxInt64/usPerDay || days < math.MinInt64/usPerDay {
		return 0, 0, errUnixUS
	}
	us, ok1 := addInt64(days*usPerDay, tod)
	us, ok2 := addInt64(us, -int64(off)*usPerSec)
	if !ok1 || !ok2 {
		return 0, 0, errUnixUS
	}
	return us, 0, nil
}

// formatTimestamp prints ts the way PostgreSQL does under SessionParams:
// fractional seconds without trailing zeros, "+00" for zoned values, " BC"
// for years before 1.
func formatTimestamp(b []byte, ts *pb.Timestamp) ([]byte, error) {
	switch {
	case ts.Infinity > 0:
		return append(b, "infinity"...), nil
	case ts.Infinity < 0:
		return append(b, "-infinity"...), nil
	}
	us := ts.UnixUs
	days, tod := us/usPerDay, us%usPerDay
	if tod < 0 {
		days--
		tod += usPerDay
	}
	y, m, d := civilFromDays(days)
	b, bc := appendDate(b, y, m, d)
	b = append(b, ' ')
	b = appendClock(b, tod)
	if ts.Zoned {
		b = append(b, "+00"...)
	}
	if bc {
		b = append(b, " BC"...)
	}
	return b, nil
}

// appendDate appends "YYYY-MM-DD" and reports whether " BC" must follow.
func appendDate(b []byte, y int64, m, d int) ([]byte, bool) {
	bc := y <= 0
	if bc {
		y = 1 - y
	}
	b = appendPadded(b, y, 4)
	b = append(b, '-')
	b = appendPadded(b, int64(m), 2)
	b = append(b, '-')
	b = appendPadded(b, int64(d), 2)
	return b, bc
}

// appendClock appends "HH:MM:SS[.f]" for tod microseconds since midnight,
// the fraction without trailing zeros as PostgreSQL prints it.
func appendClock(b []byte, tod int64) []byte {
	b = appendPadded(b, tod/usPerHour, 2)
	b = append(b, ':')
	b = appendPadded(b, tod/usPerMin%60, 2)
	b = append(b, ':')
	b = appendPadded(b, tod/usPerSec%60, 2)
	return appendFraction(b, tod%usPerSec)
}

// appendFraction appends ".ffffff" without trailing zeros, nothing for 0.
func appendFraction(b []byte, us int64) []byte {
	if us == 0 {
		return b
	}
	var buf [7]byte
	buf[0] = '.'
	for i := 6; i >= 1; i-- {
		buf[i] = byte('0' + us%10)
		us /= 10
	}
	n := 7
	for buf[n-1] == '0' {
		n--
	}
	return append(b, buf[:n]...)
}

func appendPadded(b []byte, v int64, width int) []byte {
	var buf [24]byte
	s := strconv.AppendInt(buf[:0], v, 10)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// parseDateValue reads "YYYY-MM-DD[ BC]" or ±infinity.
func parseDateValue(s string) (*pb.Date, error) {
	switch s {
	case "infinity":
		return &pb.Date{Infinity: 1}, nil
	case "-infinity":
		return &pb.Date{Infinity: -1}, nil
	}
	s, bc := strings.CutSuffix(s, " BC")
	days, err := parseDate(s, bc)
	if err != nil {
		return nil, err
	}
	if days < math.MinInt32 || days > math.MaxInt32 {
		return nil, errRange
	}
	return &pb.Date{Days: int32(days)}, nil
}

func formatDate(b []byte, d *pb.Date) []byte {
	switch {
	case d.Infinity > 0:
		return append(b, "infinity"...)
	case d.Infinity < 0:
		return append(b, "-infinity"...)
	}
	y, m, dd := civilFromDays(int64(d.Days))
	b, bc := appendDate(b, y, m, dd)
	if bc {
		b = append(b, " BC"...)
	}
	return b
}

// parseTimeTZ reads "HH:MM:SS[.f]+HH[:MM[:SS]]".
func parseTimeTZ(s string) (*pb.TimeTZ, error) {
	clock, offText, err := splitOffset(s)
	if err != nil {
		return nil, err
	}
	tod, err := parseClock(clock, true)
	if err != nil {
		return nil, err
	}
	off, err := parseOffset(offText)
	if err != nil {
		return nil, err
	}
	return &pb.TimeTZ{TimeUs: tod, OffsetSeconds: off}, nil
}

func formatTimeTZ(b []byte, t *pb.TimeTZ) []byte {
	b = appendClock(b, t.TimeUs)
	return appendOffset(b, t.OffsetSeconds)
}

// appendOffset prints an offset as PostgreSQL's EncodeTimezone does: hours
// always, minutes and seconds only when not zero.
func appendOffset(b []byte, off int32) []byte {
	sign := byte('+')
	a := int64(off)
	if a < 0 {
		sign = '-'
		a = -a
	}
	b = append(b, sign)
	b = appendPadded(b, a/3600, 2)
	if a%3600 != 0 {
		b = append(b, ':')
		b = appendPadded(b, a/60%60, 2)
	}
	if a%60 != 0 {
		b = append(b, ':')
		b = appendPadded(b, a%60, 2)
	}
	return b
}

// parseInterval reads an interval in IntervalStyle iso_8601 as PostgreSQL
// prints it: "P[nY][nM][nD][T[nH][nM][n[.f]S]]" where every n carries its
// own sign ("P-1Y-2M3DT-4H-5M-6.789S"), or "PT0S", or ±infinity (17+).
// Fractions are accepted only on seconds; PostgreSQL prints no others.
func parseInterval(s string) (*pb.Interval, error) {
	switch s {
	case "infinity":
		return &pb.Interval{Months: infMonths, Days: infDays, Micros: infMicros}, nil
	case "-infinity":
		return &pb.Interval{Months: math.MinInt32, Days: math.MinInt32, Micros: math.MinInt64}, nil
	}
	if len(s) < 3 || s[0] != 'P' {
		return nil, errSyntax
	}
	var months, days, micros int64
	timePart := false
	// order enforces the unit order PostgreSQL prints, each unit at most once.
	order := 0
	for i := 1; i < len(s); {
		if s[i] == 'T' {
			if timePart || i == len(s)-1 {
				return nil, errSyntax
			}
			timePart = true
			i++
			continue
		}
		j := i
		if s[j] == '-' || s[j] == '+' {
			j++
		}
		digits := j
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		if j == digits {
			return nil, errSyntax
		}
		intPart := s[i:j]
		frac := ""
		if j < len(s) && s[j] == '.' {
			k := j
			j++
			for j < len(s) && isDigit(s[j]) {
				j++
			}
			frac = s[k:j]
		}
		if j >= len(s) {
			return nil, errSyntax
		}
		unit := s[j]
		i = j + 1
		n, err := strconv.ParseInt(intPart, 10, 64)
		if err != nil {
			return nil, errRange
		}
		var rank int
		var ok bool
		switch {
		case !timePart && unit == 'Y':
			rank = 1
			n, ok = mulInt64(n, 12)
			if ok {
				months, ok = addInt64(months, n)
			}
		case !timePart && unit == 'M':
			rank = 2
			months, ok = addInt64(months, n)
		case !timePart && unit == 'D':
			rank = 3
			days, ok = addInt64(days, n)
		case timePart && unit == 'H':
			rank = 4
			n, ok = mulInt64(n, usPerHour)
			if ok {
				micros, ok = addInt64(micros, n)
			}
		case timePart && unit == 'M':
			rank = 5
			n, ok = mulInt64(n, usPerMin)
			if ok {
				micros, ok = addInt64(micros, n)
			}
		case timePart && unit == 'S':
			rank = 6
			var f int64
			if frac != "" {
				if f, err = parseFraction(frac); err != nil {
					return nil, err
				}
			}
			if strings.HasPrefix(intPart, "-") {
				f = -f
			}
			n, ok = mulInt64(n, usPerSec)
			if ok {
				n, ok = addInt64(n, f)
			}
			if ok {
				micros, ok = addInt64(micros, n)
			}
		default:
			return nil, errSyntax
		}
		if frac != "" && rank != 6 {
			return nil, errSyntax
		}
		if rank <= order {
			return nil, errSyntax
		}
		order = rank
		if !ok {
			return nil, errRange
		}
	}
	if order == 0 || months < math.MinInt32 || months > math.MaxInt32 || days < math.MinInt32 || days > math.MaxInt32 {
		return nil, errRange
	}
	return &pb.Interval{Months: int32(months), Days: int32(days), Micros: micros}, nil
}

// formatInterval prints iv exactly as PostgreSQL's EncodeInterval does for
// IntervalStyle iso_8601. That form reads back field for field: years and
// months fold into months, hours/minutes/seconds into microseconds, and days
// stay apart, with no normalisation between the three (P1DT-24H stays so).
// Hours are printed whole, so no float rounding touches large values (PG
// reads the seconds field through a double).
func formatInterval(b []byte, iv *pb.Interval) []byte {
	year, mon := iv.Months/12, iv.Months%12
	t := iv.Micros
	hour := t / usPerHour
	t -= hour * usPerHour
	min := t / usPerMin
	t -= min * usPerMin
	sec := t / usPerSec
	fsec := t - sec*usPerSec
	if year == 0 && mon == 0 && iv.Days == 0 && hour == 0 && min == 0 && sec == 0 && fsec == 0 {
		return append(b, "PT0S"...)
	}
	b = append(b, 'P')
	b = appendISOPart(b, int64(year), 'Y')
	b = appendISOPart(b, int64(mon), 'M')
	b = appendISOPart(b, int64(iv.Days), 'D')
	if hour != 0 || min != 0 || sec != 0 || fsec != 0 {
		b = append(b, 'T')
	}
	b = appendISOPart(b, hour, 'H')
	b = appendISOPart(b, min, 'M')
	if sec != 0 || fsec != 0 {
		if sec < 0 || fsec < 0 {
			b = append(b, '-')
		}
		if sec < 0 {
			sec = -sec
		}
		if fsec < 0 {
			fsec = -fsec
		}
		b = strconv.AppendInt(b, sec, 10)
		b = appendFraction(b, fsec)
		b = append(b, 'S')
	}
	return b
}

func appendISOPart(b []byte, v int64, unit byte) []byte {
	if v == 0 {
		return b
	}
	b = strconv.AppendInt(b, v, 10)
	return append(b, unit)
}

func addInt64(a, b int64) (int64, bool) {
	c := a + b
	if (c > a) != (b > 0) {
		return c, false
	}
	return c, true
}

func mulInt64(a, b int64) (int64, bool) {
	if a == 0 || b == 0 {
		return 0, true
	}
	c := a * b
	if c/b != a || (a == -1 && b == math.MinInt64) || (b == -1 && a == math.MinInt64) {
		return c, false
	}
	return c, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// atoi2 reads two decimal digits at the start of s.
func atoi2(s string) (int, bool) {
	if len(s) < 2 || !isDigit(s[0]) || !isDigit(s[1]) {
		return 0, false
	}
	return int(s[0]-'0')*10 + int(s[1]-'0'), true
}
