package dynamodb

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

// A resumed shard passes over the records the stream holds already, and
// stops passing over at the first one it lacks: from there on everything
// is published again, in order.
func TestResumeSkip(t *testing.T) {
	s := &resumeSkip{stored: map[string]bool{"2": true, "3": true, "5": true}}
	var published []string
	for _, seq := range []string{"2", "3", "4", "5", "6"} {
		if !s.skip(seq) {
			published = append(published, seq)
		}
	}
	if fmt.Sprint(published) != "[4 5 6]" || s.skipped != 2 {
		t.Errorf("published %v after skipping %d, want [4 5 6] after 2", published, s.skipped)
	}
	var none resumeSkip
	if none.skip("1") {
		t.Error("skipped a record with nothing stored")
	}
}

// storedRecords finds, among a table's messages after a stream sequence,
// the records of one shard after a sequence number: the records a crashed
// run published beyond its saved position (found by the fault trials:
// republishing them took keys back to older images on the target).
func TestStoredRecords(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: filepath.Join(t.TempDir(), "js"), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if got, err := storedRecords(ctx, js, "src", "t1", "shA", "", 0); err != nil || len(got) != 0 {
		t.Fatalf("without a stream: %v, %v", got, err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: streams.StreamName("src"), Subjects: []string{streams.EventSubjects("src")}}); err != nil {
		t.Fatal(err)
	}
	publish := func(table, shard, seq string, lane int) uint64 {
		data, err := streams.Encode(&pb.Event{Source: "src", Table: table, Op: pb.Op_OP_UPDATE, Position: seqPosition(seq), PositionText: shard + "/" + seq})
		if err != nil {
			t.Fatal(err)
		}
		ack, err := js.Publish(ctx, streams.EventSubject("src", table, lane), data)
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	first := publish("t1", "shA", "99", 0)
	publish("t1", "shA", "100", 1)
	publish("t1", "shB", "101", 0)  // another shard
	publish("t10", "shA", "102", 0) // another table whose name starts alike
	publish("t1", "shA", "1000", 2) // a longer number orders after
	publish("t1", "shA", "103", 3)
	got, err := storedRecords(ctx, js, "src", "t1", "shA", "99", 0)
	if err != nil {
		t.Fatal(err)
	}
	if keys := sorted(got); fmt.Sprint(keys) != "[100 1000 103]" {
		t.Errorf("stored after 99: %v, want [100 1000 103]", keys)
	}
	got, err = storedRecords(ctx, js, "src", "t1", "shA", "", first+1)
	if err != nil {
		t.Fatal(err)
	}
	if keys := sorted(got); fmt.Sprint(keys) != "[1000 103]" {
		t.Errorf("stored beyond stream sequence %d: %v, want [1000 103]", first+1, keys)
	}
}

func sorted(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
