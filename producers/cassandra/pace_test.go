package cassandra

import (
	"context"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// Every row read is charged to the read limit, including the last rows of
// each range that do not fill a step of 256: three ranges of 470 rows cost
// 1410 rows of the limit, not 768.
func TestPaceRowsChargesEveryRow(t *testing.T) {
	l := rate.NewLimiter(rate.Every(time.Hour), 10_000) // no refill during the test
	now := time.Now()
	for range 3 {
		var n int64
		for range 470 {
			n++
			if err := paceRows(context.Background(), l, n, false); err != nil {
				t.Fatal(err)
			}
		}
		if err := paceRows(context.Background(), l, n, true); err != nil {
			t.Fatal(err)
		}
	}
	if got := 10_000 - l.TokensAt(now); got < 1409.9 || got > 1410.1 {
		t.Fatalf("charged %.1f rows to the limit, want 1410", got)
	}
	if err := paceRows(context.Background(), nil, 256, false); err != nil {
		t.Fatalf("no limit: %v", err)
	}
}
