package dynamodb

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	stypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
)

func TestTipsPosition(t *testing.T) {
	var tp tips
	t0 := time.Unix(1000, 0)
	if _, ok := tp.position([]string{"a"}); ok {
		t.Fatal("a position before any shard is read")
	}
	tp.start("a", "s1")
	tp.pending("a", "s2") // a child waiting for its parent
	tp.reached("a", "s1", t0)
	if _, ok := tp.position([]string{"a"}); ok {
		t.Fatal("a position while a waiting child has not reached its tip")
	}
	tp.start("a", "s2")
	tp.reached("a", "s2", t0.Add(time.Second))
	tp.pending("a", "s2") // listing again must not reset it
	at, ok := tp.position([]string{"a"})
	if !ok || !at.Equal(t0) {
		t.Fatalf("position %v %v, want %v (the earliest tip)", at, ok, t0)
	}
	tp.end("a", "s1")
	if at, _ := tp.position([]string{"a"}); !at.Equal(t0.Add(time.Second)) {
		t.Fatalf("after s1 closed: %v", at)
	}
	if _, ok := tp.position([]string{"a", "b"}); ok {
		t.Fatal("a position while table b has no shard")
	}
	if bytes.Compare(timePosition(t0).Pos, timePosition(t0.Add(time.Microsecond)).Pos) >= 0 {
		t.Fatal("time positions do not order byte-wise")
	}
}

func TestSeqPositionOrders(t *testing.T) {
	if bytes.Compare(seqPosition("999"), seqPosition("1000")) >= 0 {
		t.Fatal("sequence numbers of different lengths do not order byte-wise")
	}
}

func TestFromStream(t *testing.T) {
	in := map[string]stypes.AttributeValue{
		"l": &stypes.AttributeValueMemberL{Value: []stypes.AttributeValue{&stypes.AttributeValueMemberBS{Value: [][]byte{{1}}}, &stypes.AttributeValueMemberNULL{Value: true}}},
		"m": &stypes.AttributeValueMemberM{Value: map[string]stypes.AttributeValue{"n": &stypes.AttributeValueMemberN{Value: "1.5"}, "b": &stypes.AttributeValueMemberBOOL{Value: true}}},
	}
	out := fromStreamItem(in)
	l := out["l"].(*types.AttributeValueMemberL).Value
	if _, ok := l[0].(*types.AttributeValueMemberBS); !ok {
		t.Errorf("list element %T", l[0])
	}
	m := out["m"].(*types.AttributeValueMemberM).Value
	if m["n"].(*types.AttributeValueMemberN).Value != "1.5" || !m["b"].(*types.AttributeValueMemberBOOL).Value {
		t.Errorf("map %v", m)
	}
}

// Shards start parents first, through a split (P → C1, C2) and a further
// close (C1 → G); a child whose parent was trimmed away starts at once.
func TestReadyParentsFirst(t *testing.T) {
	sh := func(id, parent string) stypes.Shard {
		s := stypes.Shard{ShardId: aws.String(id)}
		if parent != "" {
			s.ParentShardId = aws.String(parent)
		}
		return s
	}
	shards := []stypes.Shard{sh("P", "gone"), sh("C1", "P"), sh("C2", "P"), sh("G", "C1")}
	states := map[string]*shardState{}
	running := map[string]bool{}
	check := func(step string, wantStart, wantWait []string) {
		t.Helper()
		start, wait := ready(shards, states, running)
		if fmt.Sprint(start) != fmt.Sprint(wantStart) || fmt.Sprint(wait) != fmt.Sprint(wantWait) {
			t.Errorf("%s: start %v wait %v, want start %v wait %v", step, start, wait, wantStart, wantWait)
		}
		for _, id := range start {
			running[id] = true
		}
	}
	check("first listing", []string{"P"}, []string{"C1", "C2", "G"})
	check("P running", nil, []string{"C1", "C2", "G"})
	running["P"], states["P"].Done = false, true
	check("P read to its end", []string{"C1", "C2"}, []string{"G"})
	running["C2"], states["C2"].Done = false, true
	check("C2 done, C1 still open", nil, []string{"G"})
	running["C1"], states["C1"].Done = false, true
	check("C1 closed", []string{"G"}, nil)
	// After a restart, P and C1 were trimmed from the stream: G starts.
	shards = []stypes.Shard{sh("G", "C1")}
	states, running = map[string]*shardState{}, map[string]bool{}
	check("parent trimmed", []string{"G"}, nil)
}
