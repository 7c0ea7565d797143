package cassandra

import (
	"testing"
	"time"
)

// Rows are stamped with the time their page was read, not the time ferry
// got to them: rows of a page that waited keep the page's time, and the
// first row of the next page takes the time before the Scan that fetched it.
func TestPageClockStampsTheRead(t *testing.T) {
	pages := [][]byte{[]byte("p1"), []byte("p2"), nil}
	page := 0
	start := time.Now().Add(-time.Minute).UnixMicro()
	c := newPageClock(start, func() []byte { return pages[page] })
	for range 3 { // three rows of the first page, processed long after it came
		c.before()
		if got := c.row(); got != start {
			t.Fatalf("a row of the first page: %d, want the time before the query %d", got, start)
		}
	}
	c.before()
	fetched := c.prev
	page++ // this Scan fetched the second page
	time.Sleep(2 * time.Millisecond)
	if got := c.row(); got != fetched {
		t.Fatalf("the first row of the second page: %d, want %d", got, fetched)
	}
	c.before()
	if got := c.row(); got != fetched {
		t.Fatalf("the second row of the second page: %d, want %d", got, fetched)
	}
	c.before()
	last := c.prev
	page++ // the last page, with no paging state
	if got := c.row(); got != last {
		t.Fatalf("the first row of the last page: %d, want %d", got, last)
	}
}
