package cassandra

import (
	"sort"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/cqlcodec"
)

// tokenRange is a range of Murmur3 tokens (Start, End].
type tokenRange = config.TokenRange

// splitRing cuts the whole ring into n ranges of (nearly) equal width.
func splitRing(n int) []tokenRange { return cqlcodec.SplitRing(n) }

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
