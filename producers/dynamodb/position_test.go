package dynamodb

import (
	"bytes"
	"testing"
	"time"

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
