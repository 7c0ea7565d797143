package postgres

import "testing"

func TestXidSnapshotVisibility(t *testing.T) {
	// Epoch 1 in the high half; xids compare modulo 2^32.
	x, err := parseXidSnapshot("4294968296:4294968310:4294968300,4294968305")
	if err != nil {
		t.Fatal(err)
	}
	for xid, want := range map[uint32]bool{
		999:  true,  // before xmin
		1000: false, // xmin itself was running
		1001: true,  // finished between xmin and xmax
		1004: false, // in xip
		1009: false, // in xip
		1013: true,
		1014: false, // xmax and later had not started
		1100: false,
	} {
		if got := x.visible(xid); got != want {
			t.Errorf("xid %d visible = %v, want %v", xid, got, want)
		}
	}
	// Around wraparound: xmin just below 2^32, xmax past it.
	w, err := parseXidSnapshot("4294967290:4294967306:")
	if err != nil {
		t.Fatal(err)
	}
	if !w.visible(4294967291) || !w.visible(5) || w.visible(10) || !w.visible(4294967000) {
		t.Error("visibility across xid wraparound is wrong")
	}
	for _, bad := range []string{"", "1:2", "a:2:", "1:2:x"} {
		if _, err := parseXidSnapshot(bad); err == nil {
			t.Errorf("parseXidSnapshot(%q) accepted", bad)
		}
	}
}
