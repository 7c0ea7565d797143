package cassandra

import (
	"testing"

	"github.com/gocql/gocql"

	"github.com/ferry-dev/ferry/streams/pb"
)

// TestCollectionRule: a non-frozen set takes the writetime and TTL of the
// row's newest cell; a list only its TTL; NULL cells and key columns none.
func TestCollectionRule(t *testing.T) {
	nt := func(ty gocql.Type) gocql.TypeInfo { return gocql.NewNativeType(3, ty, "") }
	// Columns: key, a, b, set, list, nullcol; select list: 6 values, then
	// writetime/ttl of a (6, 7), b (8, 9) and nullcol (10, 11).
	tb := &table{nKey: 1,
		cols:    make([]*gocql.ColumnMetadata, 6),
		types:   []gocql.TypeInfo{nt(gocql.TypeInt), nt(gocql.TypeText), nt(gocql.TypeText), nt(gocql.TypeSet), nt(gocql.TypeList), nt(gocql.TypeText)},
		wt:      []int{-1, 6, 8, -1, -1, 10},
		ttl:     []int{-1, 7, 9, -1, -1, 11},
		inherit: []bool{false, false, false, true, true, false},
	}
	i := func(n int64) *pb.Value { return &pb.Value{Kind: &pb.Value_Int{Int: n}} }
	coll := &pb.Value{Kind: &pb.Value_Set{Set: &pb.Elements{}}}
	after := []*pb.Value{i(1), i(2), i(3), coll, coll, {}}
	vals := append(append([]*pb.Value{}, after...), i(100), i(50), i(300), nil, nil, nil)
	m := cellMeta(tb, vals, after)
	want := []*pb.CellMeta{{}, {WritetimeUs: 100, TtlSeconds: 50}, {WritetimeUs: 300}, {WritetimeUs: 300}, {}, {}}
	for k := range want {
		if m[k].WritetimeUs != want[k].WritetimeUs || m[k].TtlSeconds != want[k].TtlSeconds {
			t.Fatalf("column %d: %v, want %v", k, m[k], want[k])
		}
	}
	// Ties on writetime: the longer TTL, and no TTL outlives any.
	vals[7], vals[8], vals[9] = i(50), i(100), i(0)
	if m := cellMeta(tb, vals, after); m[3].TtlSeconds != 0 || m[3].WritetimeUs != 100 {
		t.Fatalf("tie: %v", m[3])
	}
}
