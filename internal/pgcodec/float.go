package pgcodec

import (
	"math"
	"math/big"
	"strconv"
	"strings"
)

// appendFloat prints f as float4out/float8out do with extra_float_digits > 0,
// so Encode gives the server's own text:
//
//   - the shortest digits that read back to the same bits, except that
//     PostgreSQL's Ryū never prints a decimal lying exactly halfway to a
//     neighbouring float (it would rely on the reader rounding ties to
//     even), where Go's shortest output may: 1e23 is such a tie, and the
//     server prints the double nearest to it as 1.0000000000000001e+23;
//   - fixed notation when the decimal exponent is in [-4, P), exponent
//     notation otherwise, where P is 15 for float8 and 6 for float4 (the %g
//     rule with DBL_DIG / FLT_DIG).
//
// Every output reads back exactly either way; matching the server also lets
// texts be compared.
func appendFloat(b []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, 1):
		return append(b, "Infinity"...)
	case math.IsInf(f, -1):
		return append(b, "-Infinity"...)
	case f == 0:
		if math.Signbit(f) {
			return append(b, "-0"...)
		}
		return append(b, '0')
	}
	if f < 0 {
		b = append(b, '-')
		f = -f
	}
	digits, exp := shortestDigits(f, bits)
	limit := 15
	if bits == 32 {
		limit = 6
	}
	if exp < -4 || exp >= limit {
		b = append(b, digits[0])
		if len(digits) > 1 {
			b = append(b, '.')
			b = append(b, digits[1:]...)
		}
		b = append(b, 'e')
		if exp < 0 {
			b = append(b, '-')
			exp = -exp
		} else {
			b = append(b, '+')
		}
		if exp < 10 {
			b = append(b, '0')
		}
		return strconv.AppendInt(b, int64(exp), 10)
	}
	if exp < 0 {
		b = append(b, "0."...)
		for i := -1; i > exp; i-- {
			b = append(b, '0')
		}
		return append(b, digits...)
	}
	if len(digits) <= exp+1 {
		b = append(b, digits...)
		for i := len(digits); i <= exp; i++ {
			b = append(b, '0')
		}
		return b
	}
	b = append(b, digits[:exp+1]...)
	b = append(b, '.')
	return append(b, digits[exp+1:]...)
}

// shortestDigits returns the significant digits (no trailing zeros) and the
// decimal exponent of finite f > 0 as PostgreSQL prints them.
func shortestDigits(f float64, bits int) (string, int) {
	digits, exp := splitE(strconv.FormatFloat(f, 'e', -1, bits))
	// A halfway point is odd×2^q with an odd part of 54 bits (25 for float4).
	// Below 2^52 (2^22) it needs more decimals than the shortest form's 17
	// (9) digits, and above 2^134 (2^69) more significant digits than that,
	// as at most 23 (11) of its trailing decimal zeros can come from powers
	// of 5 in the odd part. Outside that band Go cannot have picked one, and
	// the exact check below (slow, big.Rat) is skipped. The band is widened
	// a little for safety.
	if bits == 32 && (f < 0x1p20 || f >= 0x1p72) || bits == 64 && (f < 0x1p50 || f >= 0x1p140) {
		return digits, exp
	}
	// Go includes the halfway points in the shortest search only when the
	// mantissa is even (round-half-even reads them back to f); with an odd
	// mantissa both agree.
	var odd bool
	if bits == 32 {
		odd = math.Float32bits(float32(f))&1 == 1
	} else {
		odd = math.Float64bits(f)&1 == 1
	}
	if odd {
		return digits, exp
	}
	lo, hi := halfwayPoints(f, bits)
	if c := decimalRat(digits, exp); c.Cmp(lo) != 0 && c.Cmp(hi) != 0 {
		return digits, exp
	}
	// Rare: Go picked a halfway point. Find what Ryū with exclusive bounds
	// prints: at the shortest length with a candidate strictly between the
	// halfway points, the candidate nearest f.
	v := new(big.Rat).SetFloat64(f)
	maxDigits := 17
	if bits == 32 {
		maxDigits = 9
	}
	for p := len(digits); p <= maxDigits; p++ {
		d, e := splitE(strconv.FormatFloat(f, 'e', p-1, bits))
		// d is the p-digit decimal nearest f; where the bounds are lopsided
		// (f a power of two) a neighbour may be inside when it is not.
		k, _ := new(big.Int).SetString(padDigits(d, p), 10)
		var best *big.Rat
		var bestDist *big.Rat
		var bestK *big.Int
		for _, delta := range []int64{0, -1, 1} {
			kk := new(big.Int).Add(k, big.NewInt(delta))
			c := scaledRat(kk, e-(p-1))
			if c.Cmp(lo) <= 0 || c.Cmp(hi) >= 0 {
				continue
			}
			dist := new(big.Rat).Sub(c, v)
			dist.Abs(dist)
			if best == nil || dist.Cmp(bestDist) < 0 {
				best, bestDist, bestK = c, dist, kk
			}
		}
		if best != nil {
			s := bestK.String()
			exp := e - (p - 1) + len(s) - 1
			return strings.TrimRight(s, "0"), exp
		}
	}
	return digits, exp // unreachable: 17 (9) digits always identify f
}

// splitE splits strconv's 'e' format of a positive number ("1.25e+07") into
// its digits without trailing zeros ("125") and exponent (7).
func splitE(s string) (string, int) {
	i := strings.IndexByte(s, 'e')
	exp, _ := strconv.Atoi(s[i+1:])
	digits := strings.Replace(s[:i], ".", "", 1)
	digits = strings.TrimRight(digits, "0")
	if digits == "" {
		digits = "0"
	}
	return digits, exp
}

// padDigits restores trailing zeros splitE removed, to p digits.
func padDigits(d string, p int) string {
	if len(d) < p {
		return d + strings.Repeat("0", p-len(d))
	}
	return d
}

// decimalRat is the exact value of 0.d1d2d3... × 10^(exp+1).
func decimalRat(digits string, exp int) *big.Rat {
	k, _ := new(big.Int).SetString(digits, 10)
	return scaledRat(k, exp-(len(digits)-1))
}

// scaledRat is k × 10^e.
func scaledRat(k *big.Int, e int) *big.Rat {
	p := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(e))), nil)
	r := new(big.Rat).SetInt(k)
	if e >= 0 {
		return r.Mul(r, new(big.Rat).SetInt(p))
	}
	return r.Quo(r, new(big.Rat).SetInt(p))
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// halfwayPoints returns the exact midpoints between finite f > 0 and its
// neighbouring floats of the given size.
func halfwayPoints(f float64, bits int) (lo, hi *big.Rat) {
	var prev, next float64
	if bits == 32 {
		f32 := float32(f)
		prev = float64(math.Nextafter32(f32, 0))
		next = float64(math.Nextafter32(f32, float32(math.Inf(1))))
		if math.IsInf(next, 1) {
			next = f + (f - prev) // past the largest float: same spacing
		}
	} else {
		prev = math.Nextafter(f, 0)
		next = math.Nextafter(f, math.Inf(1))
		if math.IsInf(next, 1) {
			next = 0 // handled below, f+(f-prev) overflows float64
		}
	}
	rf := new(big.Rat).SetFloat64(f)
	half := big.NewRat(1, 2)
	lo = new(big.Rat).Add(rf, new(big.Rat).SetFloat64(prev))
	lo.Mul(lo, half)
	if next == 0 {
		gap := new(big.Rat).Sub(rf, new(big.Rat).SetFloat64(prev))
		hi = new(big.Rat).Add(rf, gap.Mul(gap, half))
	} else {
		hi = new(big.Rat).Add(rf, new(big.Rat).SetFloat64(next))
		hi.Mul(hi, half)
	}
	return lo, hi
}
