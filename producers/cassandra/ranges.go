package cassandra

import (
	"math"
	"math/big"
	"sort"

	"github.com/ferry-dev/ferry/config"
)

// tokenRange is a range of Murmur3 tokens (Start, End].
type tokenRange = config.TokenRange

// splitRing cuts the whole ring into n ranges of (nearly) equal width.
func splitRing(n int) []tokenRange {
	if n < 1 {
		n = 1
	}
	width := new(big.Int).Sub(big.NewInt(math.MaxInt64), big.NewInt(math.MinInt64))
	out := make([]tokenRange, 0, n)
	prev := int64(math.MinInt64)
	for i := 1; i <= n; i++ {
		end := int64(math.MaxInt64)
		if i < n {
			b := new(big.Int).Mul(width, big.NewInt(int64(i)))
			b.Div(b, big.NewInt(int64(n)))
			b.Add(b, big.NewInt(math.MinInt64))
			end = b.Int64()
		}
		if end > prev {
			out = append(out, tokenRange{Start: prev, End: end})
		}
		prev = end
	}
	return out
}

// normalize sorts ranges and merges the ones that overlap or touch.
func normalize(rs []tokenRange) []tokenRange {
	rs = append([]tokenRange(nil), rs...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].Start < rs[j].Start })
	var out []tokenRange
	for _, r := range rs {
		if r.End <= r.Start {
			continue
		}
		if n := len(out); n > 0 && r.Start <= out[n-1].End {
			if r.End > out[n-1].End {
				out[n-1].End = r.End
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// subtract returns the parts of r not covered by the normalized ranges
// cover.
func subtract(r tokenRange, cover []tokenRange) []tokenRange {
	var out []tokenRange
	cur := r.Start
	for _, c := range cover {
		if c.End <= cur {
			continue
		}
		if c.Start >= r.End {
			break
		}
		if c.Start > cur {
			out = append(out, tokenRange{Start: cur, End: c.Start})
		}
		cur = c.End
		if cur >= r.End {
			return out
		}
	}
	if cur < r.End {
		out = append(out, tokenRange{Start: cur, End: r.End})
	}
	return out
}

// plan is what is left to read: the ring split into splitCount ranges, each
// less what is already done or skipped. Done ranges may come from a run
// with another split count; only the arithmetic of the ranges matters, so a
// changed split count neither loses nor repeats finished work.
func plan(splitCount int, done []tokenRange) []tokenRange {
	cover := normalize(done)
	var out []tokenRange
	for _, r := range splitRing(splitCount) {
		out = append(out, subtract(r, cover)...)
	}
	return out
}

// intersect returns what every list covers (each normalized).
func intersect(a, b []tokenRange) []tokenRange {
	var out []tokenRange
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		s, e := max(a[i].Start, b[j].Start), min(a[i].End, b[j].End)
		if s < e {
			out = append(out, tokenRange{Start: s, End: e})
		}
		if a[i].End < b[j].End {
			i++
		} else {
			j++
		}
	}
	return out
}
