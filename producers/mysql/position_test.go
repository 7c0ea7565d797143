package mysql

import (
	"bytes"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
)

const (
	uuidA = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
	uuidB = "4a6b3c2d-0000-11ee-8000-000000000001"
)

func mustSet(t *testing.T, flavor, s string) gomysql.GTIDSet {
	t.Helper()
	set, err := parseGTIDSet(flavor, s)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func TestMySQLGTIDSetParseMergeCompare(t *testing.T) {
	set := mustSet(t, gomysql.MySQLFlavor, uuidA+":1-5:7-9,"+uuidB+":1-3")
	// A transaction filling the hole merges the intervals.
	if err := addGTID(set, uuidA+":6"); err != nil {
		t.Fatal(err)
	}
	if got, want := set.String(), uuidA+":1-9,"+uuidB+":1-3"; got != want {
		t.Fatalf("after merge %q, want %q", got, want)
	}
	// The next one of a server extends its interval; a new server is added.
	if err := addGTID(set, uuidB+":4"); err != nil {
		t.Fatal(err)
	}
	uuidC := "00000000-0000-0000-0000-00000000000c"
	if err := addGTID(set, uuidC+":1"); err != nil {
		t.Fatal(err)
	}
	want := mustSet(t, gomysql.MySQLFlavor, uuidC+":1,"+uuidB+":1-4,"+uuidA+":1-9")
	if !set.Equal(want) {
		t.Fatalf("set %s != %s (order of servers must not matter)", set, want)
	}
	// Containment is the resume comparison: a set holds every transaction
	// of a smaller one, and not one with a later transaction.
	older := mustSet(t, gomysql.MySQLFlavor, uuidA+":1-8,"+uuidB+":1-4")
	if !set.Contain(older) {
		t.Fatalf("%s should contain %s", set, older)
	}
	if older.Contain(set) {
		t.Fatalf("%s should not contain %s", older, set)
	}
	gap := mustSet(t, gomysql.MySQLFlavor, uuidA+":1-3:5-9")
	if gap.Contain(mustSet(t, gomysql.MySQLFlavor, uuidA+":4")) {
		t.Fatalf("a set with a gap claims the missing transaction")
	}
	// Upper-case UUIDs and spaces parse to the same set.
	if !mustSet(t, gomysql.MySQLFlavor, " 3E11FA47-71CA-11E1-9E33-C80AA9429562:1-9 ").Equal(mustSet(t, gomysql.MySQLFlavor, uuidA+":1-9")) {
		t.Fatal("case or spaces changed the set")
	}
	for _, bad := range []string{"not-a-uuid:1-3", uuidA + ":x", uuidA + ":5-1x"} {
		if _, err := parseGTIDSet(gomysql.MySQLFlavor, bad); err == nil {
			t.Errorf("parsed bad set %q", bad)
		}
	}
	empty := mustSet(t, gomysql.MySQLFlavor, "")
	if !empty.IsEmpty() || !set.Contain(empty) {
		t.Fatal("the empty set")
	}
}

func TestMariaDBGTIDSet(t *testing.T) {
	set := mustSet(t, gomysql.MariaDBFlavor, "0-1-100,1-2-7")
	if err := addGTID(set, "0-1-101"); err != nil {
		t.Fatal(err)
	}
	if err := addGTID(set, "2-1-1"); err != nil {
		t.Fatal(err)
	}
	if !set.Equal(mustSet(t, gomysql.MariaDBFlavor, "1-2-7,2-1-1,0-1-101")) {
		t.Fatalf("set %s", set)
	}
	if !set.Contain(mustSet(t, gomysql.MariaDBFlavor, "0-1-50")) || set.Contain(mustSet(t, gomysql.MariaDBFlavor, "0-1-102")) {
		t.Fatalf("containment of %s", set)
	}
	if _, err := parseGTIDSet(gomysql.MariaDBFlavor, "0-1"); err == nil {
		t.Fatal("parsed a GTID without a sequence number")
	}
}

func TestPositionOrder(t *testing.T) {
	a := position{File: "binlog.000002", Offset: 900}.order()
	b := position{File: "binlog.000010", Offset: 4}.order()
	c := position{File: "binlog.000010", Offset: 5000}.order()
	if bytes.Compare(a, b) >= 0 || bytes.Compare(b, c) >= 0 {
		t.Fatal("positions do not order by file number, then offset")
	}
}

// A resumed snapshot's catch-up ends once the stream has passed the fresh
// snapshot's position: by binlog coordinates across file rotations, or by
// GTID set.
func TestReached(t *testing.T) {
	at := func(file string, off uint32, gtid string) position {
		return position{Flavor: gomysql.MariaDBFlavor, UseGTID: gtid != "", File: file, Offset: off, GTID: gtid}
	}
	for _, c := range []struct {
		cur, stop position
		want      bool
	}{
		{at("binlog.000001", 100, ""), at("binlog.000001", 200, ""), false},
		{at("binlog.000001", 200, ""), at("binlog.000001", 200, ""), true},
		{at("binlog.000001", 300, ""), at("binlog.000001", 200, ""), true},
		{at("binlog.000002", 4, ""), at("binlog.000001", 900, ""), true},
		{at("binlog.000001", 900, ""), at("binlog.000002", 4, ""), false},
		// Started from defaultGTIDSet, before any file was seen.
		{at("", 0, "0-1-10"), at("binlog.000001", 200, "0-1-12"), false},
		{at("", 0, "0-1-12"), at("binlog.000001", 200, "0-1-12"), true},
		{at("binlog.000001", 150, "0-1-13,1-2-5"), at("binlog.000001", 200, "0-1-12,1-2-5"), true},
		{at("binlog.000001", 150, "0-1-13"), at("binlog.000001", 200, "0-1-12,1-2-5"), false},
	} {
		if got := reached(c.cur, c.stop); got != c.want {
			t.Errorf("reached(%+v, %+v) = %v, want %v", c.cur, c.stop, got, c.want)
		}
	}
}
