package scylla

import (
	"testing"

	"github.com/ferry-dev/ferry/config"

	"github.com/ferry-dev/ferry/streams/pb"
)

// The target's meta follows the source reader's rules: key columns and
// NULL cells have none, non-frozen collections take the row's newest
// cell's (ties: the longer TTL; no TTL is the longest), lists without the
// write time.
func TestTargetMeta(t *testing.T) {
	r := &vreader{
		names:   []string{"k", "a", "b", "set", "list", "gone"},
		wt:      []int{-1, 6, 8, -1, -1, 10},
		ttl:     []int{-1, 7, 9, -1, -1, 11},
		inherit: []bool{false, false, false, true, true, false},
		list:    []bool{false, false, false, false, true, false},
	}
	row := []*pb.Value{iv(1), iv(2), iv(3), tv("s"), tv("l"), {}}
	vals := append(append([]*pb.Value{}, row...), iv(100), iv(50), iv(100), iv(0), iv(200), iv(0))
	m := r.meta(vals, row)
	want := []*pb.CellMeta{{}, {WritetimeUs: 100, TtlSeconds: 50}, {WritetimeUs: 100}, {WritetimeUs: 100}, {}, {}}
	for i := range want {
		if m[i].WritetimeUs != want[i].WritetimeUs || m[i].TtlSeconds != want[i].TtlSeconds {
			t.Errorf("%s: got %v, want %v", r.names[i], m[i], want[i])
		}
	}
}

func TestNoTuple(t *testing.T) {
	nulls := &pb.Value{Kind: &pb.Value_Tuple{Tuple: &pb.Elements{Values: []*pb.Value{{Kind: &pb.Value_Null{Null: true}}}}}}
	some := &pb.Value{Kind: &pb.Value_Tuple{Tuple: &pb.Elements{Values: []*pb.Value{iv(1)}}}}
	if !noTuple(nulls, nil) || !noTuple(nulls, iv(0)) || noTuple(nulls, iv(5)) || noTuple(some, nil) {
		t.Error("noTuple")
	}
}

// Table names reach the validator as the engine renamed them: the source's
// own name (its table in the target keyspace) or a targets[].tables value
// (with a keyspace: that keyspace), as the applier maps them.
func TestValidateName(t *testing.T) {
	cfg := config.Target{CQLKeyspace: "dst", Tables: map[string]string{"src.a": "other.b", "c": "d"}}
	for name, want := range map[string]string{"src.x": "dst.x", "other.b": "other.b", "d": "dst.d", "src.c": "dst.c"} {
		if ks, tb := validateName(cfg, name); ks+"."+tb != want {
			t.Errorf("%s: got %s.%s, want %s", name, ks, tb, want)
		}
	}
}
