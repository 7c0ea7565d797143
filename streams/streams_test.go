package streams

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/streams/pb"
)

func TestTokenRoundTrip(t *testing.T) {
	for _, name := range []string{"public.orders", "Weird Name.*>", "ünï.cödé", "a=b", "plain_name-1", ""} {
		tok := Token(name)
		if strings.ContainsAny(tok, ". *>%") {
			t.Errorf("Token(%q) = %q holds a character illegal in subjects or KV keys", name, tok)
		}
		back, err := Untoken(tok)
		if err != nil || back != name {
			t.Errorf("Untoken(Token(%q)) = %q, %v", name, back, err)
		}
	}
	if _, err := Untoken("abc=4"); err == nil {
		t.Error("a truncated escape must be an error")
	}
}

func TestSubjectParse(t *testing.T) {
	s := EventSubject("pg", "public.orders", 7)
	table, lane, err := TableFromSubject(s)
	if err != nil || table != "public.orders" || lane != 7 {
		t.Fatalf("TableFromSubject(%q) = %q, %d, %v", s, table, lane, err)
	}
}

func TestLaneIsStableAndSpreads(t *testing.T) {
	key := func(i int64) *pb.Row {
		return &pb.Row{Names: []string{"id"}, Values: []*pb.Value{{Kind: &pb.Value_Int{Int: i}}}}
	}
	seen := map[int]int{}
	for i := int64(0); i < 1000; i++ {
		l := Lane(key(i), 8)
		if l != Lane(key(i), 8) {
			t.Fatal("lane of the same key changed")
		}
		seen[l]++
	}
	if len(seen) != 8 {
		t.Fatalf("1000 keys used %d of 8 lanes: %v", len(seen), seen)
	}
	for l, n := range seen {
		if n < 60 {
			t.Errorf("lane %d got only %d of 1000 keys", l, n)
		}
	}
}

func embedded(t *testing.T) *Conn {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := config.NATS{Listen: addr, DataDir: filepath.Join(t.TempDir(), "nats"), Replicas: 1, MaxPayload: 1 << 20}
	c, err := Connect(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Checkpoints run only after every earlier publish is acknowledged, in
// order, and duplicates of a message id are stored once.
func TestCheckpointerAndDedup(t *testing.T) {
	c := embedded(t)
	ctx := context.Background()
	st, err := c.EnsureSourceStream(ctx, "src", 4)
	if err != nil {
		t.Fatal(err)
	}
	ck := NewCheckpointer(ctx, 100)
	var marks []uint64
	for round := 0; round < 3; round++ {
		for i := 0; i < 50; i++ {
			data, _ := Encode(&pb.Event{Source: "src", Table: "t", Op: pb.Op_OP_INSERT})
			f, err := c.PublishAsync(EventSubject("src", "t", i%4), fmt.Sprintf("id-%d-%d", round, i), data)
			if err != nil {
				t.Fatal(err)
			}
			ck.Add(f)
		}
		r := round
		ck.Mark(func() error {
			info, err := st.Info(ctx)
			if err != nil {
				return err
			}
			marks = append(marks, info.State.Msgs)
			if info.State.Msgs < uint64(50*(r+1)) {
				return fmt.Errorf("checkpoint %d ran with only %d messages stored", r, info.State.Msgs)
			}
			return nil
		})
	}
	if err := ck.Close(); err != nil {
		t.Fatal(err)
	}
	if len(marks) != 3 || marks[0] < 50 || marks[1] < 100 || marks[2] != 150 {
		t.Fatalf("checkpoints saw stream sizes %v, want >=50, >=100, 150", marks)
	}
	// Re-publishing the same ids stores nothing new.
	for i := 0; i < 50; i++ {
		data, _ := Encode(&pb.Event{})
		if _, err := c.JS.Publish(ctx, EventSubject("src", "t", i%4), data, jetstream.WithMsgID(fmt.Sprintf("id-0-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	info, _ := st.Info(ctx)
	if info.State.Msgs != 150 {
		t.Fatalf("stream holds %d messages after duplicates, want 150", info.State.Msgs)
	}
}

func TestPartitionsFixedOnceCreated(t *testing.T) {
	c := embedded(t)
	ctx := context.Background()
	if _, err := c.EnsureSourceStream(ctx, "src", 4); err != nil {
		t.Fatal(err)
	}
	if _, err := c.EnsureSourceStream(ctx, "src", 8); err == nil || !strings.Contains(err.Error(), "created with 4") {
		t.Fatalf("changing partitions: got %v, want an error naming the original 4", err)
	}
	if n, err := c.SourcePartitions(ctx, "src"); err != nil || n != 4 {
		t.Fatalf("SourcePartitions = %d, %v", n, err)
	}
}

func TestStateKV(t *testing.T) {
	c := embedded(t)
	ctx := context.Background()
	s, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var p Position
	if found, err := s.GetJSON(ctx, PositionKey("pg"), &p); err != nil || found {
		t.Fatalf("empty bucket: found=%v err=%v", found, err)
	}
	want := Position{Pos: []byte{0, 0, 0, 1, 2, 3, 4, 5}, Text: "1/2030405"}
	if err := s.PutJSON(ctx, PositionKey("pg"), want); err != nil {
		t.Fatal(err)
	}
	if found, err := s.GetJSON(ctx, PositionKey("pg"), &p); err != nil || !found || p.Text != want.Text || string(p.Pos) != string(want.Pos) {
		t.Fatalf("read back %+v, %v, %v", p, found, err)
	}
	for i := 0; i < 3; i++ {
		if err := s.PutJSON(ctx, ChunkKey("pg", "public.t", i), map[string]int{"rows": i}); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := s.Keys(ctx, ChunkPrefix("pg", "public.t"))
	if err != nil || len(keys) != 3 {
		t.Fatalf("chunk keys = %v, %v", keys, err)
	}
}

// A lane consumer left with deliveries nobody acknowledged (its process
// died) delivers again from its ack floor, in order, when reopened.
func TestLaneConsumerResumesAtAckFloor(t *testing.T) {
	c := embedded(t)
	ctx := context.Background()
	if _, err := c.EnsureSourceStream(ctx, "src", 2); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		if _, err := c.JS.Publish(ctx, EventSubject("src", "t", 0), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	fetch := func(cons jetstream.Consumer, n int) []jetstream.Msg {
		b, err := cons.Fetch(n)
		if err != nil {
			t.Fatal(err)
		}
		var out []jetstream.Msg
		for m := range b.Messages() {
			out = append(out, m)
		}
		return out
	}
	cons, err := c.EnsureLaneConsumer(ctx, "src", "dst", 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	first := fetch(cons, 5)
	if err := first[4].Ack(); err != nil { // AckAll: 1..5 done
		t.Fatal(err)
	}
	_ = first[4].DoubleAck(ctx)
	_ = fetch(cons, 5) // 6..10 delivered, never acknowledged: the process "dies"

	cons, err = c.EnsureLaneConsumer(ctx, "src", "dst", 0, 5)
	if err != nil {
		t.Fatal(err)
	}
	again := fetch(cons, 3)
	if len(again) != 3 {
		t.Fatalf("got %d messages after reopening", len(again))
	}
	for i, m := range again {
		md, _ := m.Metadata()
		if want := uint64(6 + i); md.Sequence.Stream != want {
			t.Fatalf("message %d after reopening has sequence %d, want %d (resume at the ack floor, in order)", i, md.Sequence.Stream, want)
		}
	}
}

// Lanes are part of the format's contract with other producers of the same
// source: the hash is over the deterministic protobuf encoding of each value.
func TestLaneMatchesDeterministicProto(t *testing.T) {
	key := &pb.Row{Values: []*pb.Value{{Kind: &pb.Value_Text{Text: "ünï"}}, {Kind: &pb.Value_Int{Int: -5}}, {Kind: &pb.Value_Timestamp{Timestamp: &pb.Timestamp{UnixUs: 12345, Zoned: true}}}}}
	h := fnv.New64a()
	for _, v := range key.Values {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
		h.Write([]byte{0})
	}
	if want := int(h.Sum64() % 16); Lane(key, 16) != want {
		t.Fatalf("Lane = %d, want %d", Lane(key, 16), want)
	}
	// The same through hashKey (the state stream's hash), also for a value
	// longer than Lane's stack buffer, and for many partition counts.
	key.Values = append(key.Values, &pb.Value{Kind: &pb.Value_Text{Text: strings.Repeat("long key ", 20)}})
	h = fnv.New64a()
	hashKey(h, key)
	for _, parts := range []int{1, 2, 3, 7, 8, 16, 1000} {
		if want := int(h.Sum64() % uint64(parts)); Lane(key, parts) != want {
			t.Fatalf("Lane(%d partitions) = %d, want %d", parts, Lane(key, parts), want)
		}
	}
}

// Two embedded servers never share a data dir.
func TestDataDirLocked(t *testing.T) {
	c := embedded(t)
	cfg := c.cfg
	cfg.Listen = "127.0.0.1:-1"
	if _, err := StartEmbedded(cfg); err == nil || !strings.Contains(err.Error(), "in use by another ferry") {
		t.Fatalf("second server on the same data dir: %v", err)
	}
}
