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

// A resumed shard passes over the records the stream holds already. A
// record it lacks while later ones arrived (a hole: the client's reconnect
// buffer flushed after a reconnect) is passed over when the stream holds a
// later record of its key, and published otherwise; past the last stored
// record everything is published (found by the fault trials'
// nats-restart case: publishing every record from the hole on took keys
// back on the target).
func TestResumeSkip(t *testing.T) {
	// Stored: 2 (key a), 3 (b), 6 (a), 7 (c). Lacking: 4 (a), 5 (d).
	s := newResumeSkip(map[string]string{"2": "a", "3": "b", "6": "a", "7": "c"})
	var published []string
	for _, r := range [][2]string{{"2", "a"}, {"3", "b"}, {"4", "a"}, {"5", "d"}, {"6", "a"}, {"7", "c"}, {"8", "a"}, {"9", "b"}} {
		if !s.skip(r[0], r[1]) {
			published = append(published, r[0])
		}
	}
	if fmt.Sprint(published) != "[5 8 9]" || s.skipped != 4 || s.superseded != 1 {
		t.Errorf("published %v after passing over %d stored and %d superseded, want [5 8 9] after 4 and 1", published, s.skipped, s.superseded)
	}
	// Numbers of different lengths order as numbers.
	s = newResumeSkip(map[string]string{"1000": "a"})
	if !s.skip("999", "a") || !s.skip("1000", "a") || s.active() || s.skip("1001", "b") {
		t.Error("999 before 1000 (stored) is superseded, 1000 passed over, 1001 published")
	}
	var none *resumeSkip
	if none.skip("1", "a") {
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
		data, err := streams.Encode(&pb.Event{Source: "src", Table: table, Op: pb.Op_OP_UPDATE, Key: &pb.Row{Names: []string{"pk"}, Values: []*pb.Value{{Kind: &pb.Value_Text{Text: "x"}}}}, Position: seqPosition(seq), PositionText: shard + "/" + seq})
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
	if keys := sorted(got); fmt.Sprint(keys) != "[100 1000 103]" || got["100"] != string(key("x")) {
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

func key(pk string) []byte {
	b, _ := (&pb.Row{Names: []string{"pk"}, Values: []*pb.Value{{Kind: &pb.Value_Text{Text: pk}}}}).MarshalVT()
	return b
}

func sorted(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
