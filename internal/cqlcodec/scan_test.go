package cqlcodec

import (
	"math"
	"testing"
)

func TestRangeSpec(t *testing.T) {
	rs := SplitRing(3)
	if len(rs) != 3 || rs[0].Start != math.MinInt64 || rs[2].End != math.MaxInt64 || rs[0].End != rs[1].Start {
		t.Fatalf("ring: %v", rs)
	}
	for _, r := range rs {
		got, err := ParseRangeSpec(RangeSpec(r))
		if err != nil || got != r {
			t.Errorf("%v: round trip gave %v, %v", r, got, err)
		}
	}
	for _, bad := range []string{"", "1", "a_2", "5_1"} {
		if _, err := ParseRangeSpec(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
