package appliers

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

// memTarget is a target in memory: the events it applied in order, and each
// lane's applied sequence, committed together.
type memTarget struct {
	mu      sync.Mutex
	applied map[int]uint64
	keys    []int64
}

func (m *memTarget) Applied(_ context.Context, lane Lane) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.applied[lane.Partition], nil
}

func (m *memTarget) Apply(_ context.Context, lane Lane, items []Item, lastSeq uint64, _ DeadLetterFunc) ([]Rejected, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, it := range items {
		m.keys = append(m.keys, it.Event.GetKey().GetValues()[0].GetInt())
	}
	m.applied[lane.Partition] = lastSeq
	return nil, nil
}

func (m *memTarget) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.keys)
}

func (m *memTarget) Ping(context.Context) error { return nil }
func (m *memTarget) Close()                     {}

// A lane whose consumer disappears (deleted by an operator, or lost with a
// NATS server's store) is started again after what the target holds; it
// used to fetch from the missing consumer forever, and a failure between a
// consumer's reset and NATS coming back stopped the whole applier.
func TestLaneSurvivesLostConsumer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	conn, err := streams.Connect(ctx, config.NATS{Listen: addr, DataDir: filepath.Join(t.TempDir(), "nats"), Replicas: 1, MaxPayload: 1 << 20, DuplicateWindow: config.Duration(time.Minute)}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.EnsureSourceStream(ctx, "src", 1); err != nil {
		t.Fatal(err)
	}
	publish := func(from, to int64) {
		t.Helper()
		for k := from; k < to; k++ {
			data, err := streams.Encode(&pb.Event{Op: pb.Op_OP_INSERT, Table: "public.t",
				Key: &pb.Row{Names: []string{"id"}, Values: []*pb.Value{{Kind: &pb.Value_Int{Int: k}}}}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.PublishSync(ctx, streams.EventSubject("src", "public.t", 0), fmt.Sprintf("k%d", k), data); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(0, 50)
	target := &memTarget{applied: map[int]uint64{}}
	r := NewRunner(config.Target{Name: "dst", From: "src", BatchSize: 10}, conn, target, log)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	waitFor := func(n int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for target.count() < n {
			select {
			case err := <-done:
				t.Fatalf("the runner stopped with %d of %d events applied: %v", target.count(), n, err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d events applied after 30s", target.count(), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor(50)
	if err := conn.JS.DeleteConsumer(ctx, streams.StreamName("src"), streams.ConsumerName("dst", 0)); err != nil {
		t.Fatal(err)
	}
	publish(50, 100)
	waitFor(100)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	// Each event once, in order: the new consumer started after the
	// target's applied sequence.
	for i, k := range target.keys {
		if k != int64(i) {
			t.Fatalf("event %d applied was key %d; applied keys: %v", i, k, target.keys)
		}
	}
	if len(target.keys) != 100 {
		t.Fatalf("applied %d events, want 100", len(target.keys))
	}
}
