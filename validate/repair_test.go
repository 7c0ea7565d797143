package validate

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

func embeddedNATS(t *testing.T) *streams.Conn {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := config.NATS{Listen: addr, DataDir: filepath.Join(t.TempDir(), "nats"), Replicas: 1, MaxPayload: 1 << 20, DuplicateWindow: config.Duration(time.Minute)}
	c, err := streams.Connect(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func readEvent(name string, n int64) *pb.Event {
	return &pb.Event{Source: "src", Table: "public.t", Op: pb.Op_OP_READ,
		Key:   &pb.Row{Names: []string{"id"}, Values: []*pb.Value{vInt(1)}},
		After: &pb.Row{Names: []string{"id", "v"}, Values: []*pb.Value{vInt(1), vInt(n)}}}
}

// A change the producer publishes between the repair's look at the lane and
// its publish makes the repair read the row again, so the lane never holds
// an older read after a newer change.
func TestValidateStreamRepairRereadsAfterAConcurrentChange(t *testing.T) {
	c := embeddedNATS(t)
	ctx := context.Background()
	if _, err := c.EnsureSourceStream(ctx, "src", 2); err != nil {
		t.Fatal(err)
	}
	r := &StreamRepairer{Conn: c, Source: "src", Target: "dst", RunID: "r1"}
	if err := r.Open(ctx); err != nil {
		t.Fatal(err)
	}
	key := &pb.Row{Names: []string{"id"}, Values: []*pb.Value{vInt(1)}}
	subject := streams.EventSubject("src", "public.t", streams.Lane(key, 2))
	reads := 0
	fresh := func(ctx context.Context, keys []*pb.Row) ([]*pb.Event, error) {
		reads++
		if reads == 1 {
			// The producer publishes a change right after this read.
			data, _ := streams.Encode(readEvent("change", 100))
			if _, err := c.PublishSync(ctx, subject, "producer-1", data); err != nil {
				return nil, err
			}
		}
		return []*pb.Event{readEvent("repair", int64(100+reads))}, nil
	}
	if err := r.Repair(ctx, "public.t", []*pb.Row{key}, fresh); err != nil {
		t.Fatal(err)
	}
	if reads != 2 {
		t.Fatalf("fresh read %d times, want 2 (the first publish must be refused)", reads)
	}
	st, _ := c.JS.Stream(ctx, streams.StreamName("src"))
	m, err := st.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	b, err := streams.Decode(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.Events[0].After.Values[1].GetInt(); got != 102 || m.Sequence != 2 {
		t.Fatalf("last message of the lane: seq %d value %d, want seq 2 value 102 (the second read)", m.Sequence, got)
	}
	// The same run repairing the key again is deduplicated.
	reads = 10
	if err := r.Repair(ctx, "public.t", []*pb.Row{key}, fresh); err != nil {
		t.Fatal(err)
	}
	info, _ := st.Info(ctx)
	if info.State.Msgs != 2 {
		t.Fatalf("stream holds %d messages after a repeated repair, want 2", info.State.Msgs)
	}
	// Nobody applies them: Settle says so.
	r.NoApplierWait = 300 * time.Millisecond
	if err := r.Settle(ctx); err == nil || !strings.Contains(err.Error(), "no applier of target dst") {
		t.Fatalf("Settle without an applier: %v", err)
	}
}

// A run killed halfway is resumed with its plan and finished ranges; a
// finished run is not.
func TestValidateProgressResumesUnfinishedRuns(t *testing.T) {
	c := embeddedNATS(t)
	ctx := context.Background()
	state, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pr := &Progress{State: state, Target: "dst"}
	id1, err := pr.begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs := []Range{{Hi: &pb.Row{Names: []string{"id"}, Values: []*pb.Value{vInt(5)}}}, {Lo: &pb.Row{Names: []string{"id"}, Values: []*pb.Value{vInt(5)}}}}
	if err := pr.savePlan(ctx, "public.t", "fwd", rs); err != nil {
		t.Fatal(err)
	}
	if err := pr.save(ctx, "public.t", "fwd", 1, &rangeResult{SourceRows: 7, Missing: 1}); err != nil {
		t.Fatal(err)
	}
	id2, err := pr.begin(ctx)
	if err != nil || id2 != id1 {
		t.Fatalf("unfinished run not resumed: %s vs %s (%v)", id2, id1, err)
	}
	got, ok, err := pr.plan(ctx, "public.t", "fwd")
	if err != nil || !ok || len(got) != 2 || got[0].Lo != nil || got[0].Hi.Values[0].GetInt() != 5 || got[1].Hi != nil {
		t.Fatalf("plan: %+v %v %v", got, ok, err)
	}
	done, err := pr.done(ctx, "public.t", "fwd")
	if err != nil || len(done) != 1 || done[1].SourceRows != 7 {
		t.Fatalf("done: %+v %v", done, err)
	}
	if err := pr.finish(ctx); err != nil {
		t.Fatal(err)
	}
	id3, err := pr.begin(ctx)
	if err != nil || id3 == id1 {
		t.Fatalf("finished run resumed: %v", err)
	}
	if done, _ := pr.done(ctx, "public.t", "fwd"); len(done) != 0 {
		t.Fatalf("a new run found %d finished ranges of the old one", len(done))
	}
}
