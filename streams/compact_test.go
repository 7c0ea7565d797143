package streams

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/streams/pb"
)

func idRow(id int64) *pb.Row {
	return &pb.Row{Names: []string{"id"}, Values: []*pb.Value{valInt(id)}}
}

func fullRow(id int64, name, doc string) *pb.Row {
	return &pb.Row{Names: []string{"id", "name", "doc"}, Types: []string{"int8", "text", "text"},
		Values: []*pb.Value{valInt(id), valText(name), valText(doc)}}
}

// publishEvent stores one event on its lane's subject and returns its
// sequence.
func publishEvent(t *testing.T, c *Conn, parts int, e *pb.Event) uint64 {
	t.Helper()
	data, err := Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := c.JS.Publish(context.Background(), EventSubject("s", "t", Lane(e.GetKey(), parts)), data)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// stateOf reads a key's state event and the sequence it reflects; nil when
// the state stream holds nothing for it.
func stateOf(t *testing.T, c *Conn, parts int, key *pb.Row) (*pb.Event, uint64) {
	t.Helper()
	st, err := c.JS.Stream(context.Background(), StateStreamName("s"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(context.Background(), StateSubject("s", "t", Lane(key, parts), key))
	if err != nil {
		return nil, 0
	}
	b, err := Decode(m.Data)
	if err != nil || len(b.Events) != 1 {
		t.Fatalf("state message: %v", err)
	}
	seq, _ := strconv.ParseUint(m.Header.Get(SeqHeader), 10, 64)
	return proto.Clone(b.Events[0]).(*pb.Event), seq
}

// The compactor keeps the newest full row of every key (merging an update
// that left a column unchanged), marks deleted and moved keys, records its
// progress, and trims the change stream by the retention, recording each
// lane's last removed event.
func TestCompactorFoldsAndTrims(t *testing.T) {
	c := embedded(t)
	ctx := context.Background()
	const parts = 4
	if _, err := c.EnsureSourceStream(ctx, "s", parts); err != nil {
		t.Fatal(err)
	}
	laneLast := make([]uint64, parts)
	pub := func(e *pb.Event) uint64 {
		e.Source, e.Table = "s", "t"
		seq := publishEvent(t, c, parts, e)
		laneLast[Lane(e.GetKey(), parts)] = seq
		return seq
	}
	for i := int64(1); i <= 20; i++ {
		pub(&pb.Event{Op: pb.Op_OP_READ, Key: idRow(i), After: fullRow(i, "n"+strconv.FormatInt(i, 10), "doc")})
	}
	partial := pub(&pb.Event{Op: pb.Op_OP_UPDATE, Key: idRow(3),
		After: &pb.Row{Names: []string{"id", "name"}, Values: []*pb.Value{valInt(3), valText("renamed")}}, Unchanged: []string{"doc"}})
	del := pub(&pb.Event{Op: pb.Op_OP_DELETE, Key: idRow(4)})
	moved := pub(&pb.Event{Op: pb.Op_OP_UPDATE, Key: idRow(105), Before: idRow(5), After: fullRow(105, "moved", "d5")})

	state, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	src := config.Source{Name: "s"}
	runCompactor := func(src config.Source) context.CancelFunc {
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = NewCompactor(c, state, src, slog.New(slog.NewTextHandler(io.Discard, nil))).Run(cctx)
		}()
		return func() { cancel(); <-done }
	}
	stop := runCompactor(src)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.WaitCompacted(wctx, state, "s"); err != nil {
		t.Fatal(err)
	}
	stop()

	if e, seq := stateOf(t, c, parts, idRow(3)); e == nil || seq != partial || e.GetOp() != pb.Op_OP_READ ||
		len(e.GetUnchanged()) != 0 || !proto.Equal(e.GetAfter(), fullRow(3, "renamed", "doc")) {
		t.Fatalf("state of key 3 = %v at %d, want the merged row at %d", e, seq, partial)
	}
	if e, seq := stateOf(t, c, parts, idRow(4)); e != nil {
		t.Fatalf("state of deleted key 4 = %v at %d (deleted at %d), want none", e, seq, del)
	}
	if e, seq := stateOf(t, c, parts, idRow(5)); e != nil {
		t.Fatalf("state of moved-away key 5 = %v at %d, want none", e, seq)
	}
	if e, _ := stateOf(t, c, parts, idRow(105)); e == nil || e.GetAfter().GetValues()[1].GetText() != "moved" {
		t.Fatalf("state of key 105 = %v", e)
	}
	if e, _ := stateOf(t, c, parts, idRow(7)); e == nil || !proto.Equal(e.GetAfter(), fullRow(7, "n7", "doc")) {
		t.Fatalf("state of key 7 = %v", e)
	}
	var prog Compacted
	if _, err := state.GetJSON(ctx, CompactedKey("s"), &prog); err != nil || prog.Seq != moved {
		t.Fatalf("compacted = %+v (%v), want %d", prog, err, moved)
	}

	// A retention of 1 ms trims everything folded, and says per lane what.
	src.Retention.MaxAge = config.Duration(time.Millisecond)
	stop = runCompactor(src)
	defer stop()
	st, _ := c.JS.Stream(ctx, StreamName("s"))
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := st.Info(ctx)
		if err == nil && info.State.Msgs == 0 && info.State.FirstSeq == moved+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("change stream not trimmed: %+v", info.State)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var tr Trim
	if _, err := state.GetJSON(ctx, TrimKey("s"), &tr); err != nil || tr.Cut != moved+1 {
		t.Fatalf("trim record %+v (%v)", tr, err)
	}
	for l := range parts {
		if tr.LaneLast[l] != laneLast[l] {
			t.Fatalf("trim record says lane %d last removed %d, want %d", l, tr.LaneLast[l], laneLast[l])
		}
	}
	// The state survives the trim.
	if e, _ := stateOf(t, c, parts, idRow(7)); e == nil {
		t.Fatal("state of key 7 gone with the trim")
	}
}

// Only one compactor of a source folds at a time.
func TestCompactorLease(t *testing.T) {
	c := embedded(t)
	ctx := context.Background()
	state, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := NewCompactor(c, state, config.Source{Name: "s"}, log)
	b := NewCompactor(c, state, config.Source{Name: "s"}, log)
	if err := a.acquire(ctx); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := b.acquire(short); err == nil {
		t.Fatal("a second compactor took the lease while the first holds it")
	}
	a.release()
	if err := b.acquire(ctx); err != nil {
		t.Fatalf("the lease was not free after release: %v", err)
	}
	if _, err := state.KV.Get(ctx, LeaseKey("s")); err != nil {
		t.Fatal(err)
	}
}

func TestMergeRow(t *testing.T) {
	base := fullRow(1, "a", "big")
	upd := &pb.Row{Names: []string{"id", "name", "extra"}, Types: []string{"int8", "text", "int4"},
		Values: []*pb.Value{valInt(1), valText("b"), valInt(9)}}
	got := mergeRow(base, upd)
	want := &pb.Row{Names: []string{"id", "name", "doc", "extra"}, Types: []string{"int8", "text", "text", "int4"},
		Values: []*pb.Value{valInt(1), valText("b"), valText("big"), valInt(9)}}
	if !proto.Equal(got, want) {
		t.Fatalf("mergeRow = %v, want %v", got, want)
	}
}
