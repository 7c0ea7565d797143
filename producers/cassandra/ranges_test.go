package cassandra

import (
	"math"
	"math/rand/v2"
	"testing"
)

// covered reports whether token t is in one of rs.
func covered(rs []tokenRange, t int64) bool {
	for _, r := range rs {
		if t > r.Start && t <= r.End {
			return true
		}
	}
	return false
}

func TestSplitRingCoversRingOnce(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 256, 1000} {
		rs := splitRing(n)
		if len(rs) != n {
			t.Fatalf("split %d: %d ranges", n, len(rs))
		}
		if rs[0].Start != math.MinInt64 || rs[len(rs)-1].End != math.MaxInt64 {
			t.Fatalf("split %d: ends %d..%d", n, rs[0].Start, rs[len(rs)-1].End)
		}
		for i := 1; i < len(rs); i++ {
			if rs[i].Start != rs[i-1].End {
				t.Fatalf("split %d: gap or overlap at %d", n, i)
			}
		}
	}
}

// TestPlanAfterSplitChange finishes some ranges of one split, plans with
// another, and checks token by token that every token is either done or
// planned, never both.
func TestPlanAfterSplitChange(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 50 {
		first := splitRing(1 + r.IntN(300))
		var done []tokenRange
		for _, x := range first {
			if r.IntN(3) == 0 {
				done = append(done, x)
			}
		}
		// A skipTokenRanges entry of arbitrary bounds, overlapping others.
		a, b := int64(r.Uint64()), int64(r.Uint64())
		if a > b {
			a, b = b, a
		}
		done = append(done, tokenRange{Start: a, End: b})
		left := plan(1+r.IntN(300), done)
		probes := []int64{math.MaxInt64, math.MinInt64 + 1, a, a + 1, b, b + 1}
		for _, d := range done {
			probes = append(probes, d.Start, d.Start+1, d.End, d.End-1)
		}
		for range 2000 {
			probes = append(probes, int64(r.Uint64()))
		}
		for _, p := range probes {
			if p == math.MinInt64 {
				continue // no key has the minimum token
			}
			d, l := covered(done, p), covered(left, p)
			if d == l {
				t.Fatalf("trial %d: token %d done=%v planned=%v", trial, p, d, l)
			}
		}
		for i := 1; i < len(left); i++ {
			if left[i].Start < left[i-1].End {
				t.Fatalf("trial %d: planned ranges overlap", trial)
			}
		}
	}
}

func TestPlanAllDone(t *testing.T) {
	if left := plan(16, splitRing(5)); len(left) != 0 {
		t.Fatalf("left %v", left)
	}
	if left := plan(4, nil); len(left) != 4 {
		t.Fatalf("left %v", left)
	}
}

func TestIntersect(t *testing.T) {
	a := normalize([]tokenRange{{Start: 0, End: 10}, {Start: 20, End: 30}})
	b := normalize([]tokenRange{{Start: 5, End: 25}})
	got := intersect(a, b)
	if len(got) != 2 || got[0] != (tokenRange{Start: 5, End: 10}) || got[1] != (tokenRange{Start: 20, End: 25}) {
		t.Fatalf("got %v", got)
	}
}
