package streams

import (
	"testing"

	"github.com/ferry-dev/ferry/streams/pb"
)

func TestKeyText(t *testing.T) {
	k := &pb.Row{Names: []string{"id", "name", "b"}, Values: []*pb.Value{
		{Kind: &pb.Value_Int{Int: 7}}, {Kind: &pb.Value_Text{Text: `a"b`}}, {Kind: &pb.Value_Bytes{Bytes: []byte{1, 0xff}}},
	}}
	if got, want := KeyText(k), `id=7,name="a\"b",b=\x01ff`; got != want {
		t.Fatalf("KeyText = %s, want %s", got, want)
	}
	if got := KeyText(nil); got != "" {
		t.Fatalf("KeyText(nil) = %q", got)
	}
}
