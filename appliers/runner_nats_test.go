package appliers

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

// natsDownTarget takes NATS down when a lane asks for its applied sequence,
// the moment a lane starts, for longer than a JetStream request waits, and
// records what it is given to apply.
type natsDownTarget struct {
	down    func()
	once    sync.Once
	mu      sync.Mutex
	applied []Item
}

func (f *natsDownTarget) Applied(ctx context.Context, lane Lane) (uint64, error) {
	f.once.Do(f.down)
	return 0, nil
}

func (f *natsDownTarget) Apply(ctx context.Context, lane Lane, items []Item, lastSeq uint64, _ DeadLetterFunc) ([]Rejected, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, items...)
	return nil, nil
}

func (f *natsDownTarget) Ping(ctx context.Context) error { return nil }
func (f *natsDownTarget) Close()                         {}

func (f *natsDownTarget) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.applied)
}

// A NATS restart while a lane starts (checking the stream's end, reading
// its consumer) is waited out like any other NATS call: the applier carries
// on once the server is back, instead of ending the run (found by the MySQL
// fault suite's nats-restart trials).
func TestLaneStartRidesOutNATSRestart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	opts := &server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: filepath.Join(t.TempDir(), "js"), NoSigs: true, NoLog: true}
	var mu sync.Mutex
	start := func() *server.Server {
		srv, err := server.NewServer(opts)
		if err != nil {
			t.Error(err)
			return nil
		}
		go srv.Start()
		if !srv.ReadyForConnections(20 * time.Second) {
			t.Error("NATS did not start")
		}
		return srv
	}
	srv := start()
	t.Cleanup(func() { mu.Lock(); defer mu.Unlock(); srv.Shutdown() })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	conn, err := streams.Connect(ctx, config.NATS{URL: srv.ClientURL(), Replicas: 1, DuplicateWindow: config.Duration(time.Minute)}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.EnsureSourceStream(ctx, "my", 1); err != nil {
		t.Fatal(err)
	}
	data, err := streams.Encode(&pb.Event{Source: "my", Table: "f", Op: pb.Op_OP_INSERT,
		Key: &pb.Row{Names: []string{"id"}, Values: []*pb.Value{{Kind: &pb.Value_Int{Int: 1}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.PublishSync(ctx, streams.EventSubject("my", "f", 0), "e1", data); err != nil {
		t.Fatal(err)
	}

	restarted := make(chan struct{})
	target := &natsDownTarget{down: func() {
		mu.Lock()
		srv.Shutdown()
		srv.WaitForShutdown()
		mu.Unlock()
		go func() {
			defer close(restarted)
			// Longer than a JetStream request's 5 s timeout.
			time.Sleep(6 * time.Second)
			mu.Lock()
			srv = start()
			mu.Unlock()
		}()
	}}
	r := NewRunner(config.Target{Name: "dst", From: "my", BatchSize: 10}, conn, target, log)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.After(60 * time.Second)
	for target.count() == 0 {
		select {
		case err := <-done:
			t.Fatalf("the applier stopped on a NATS restart: %v", err)
		case <-deadline:
			t.Fatal("the event was not applied within 60s of the NATS restart")
		case <-time.After(100 * time.Millisecond):
		}
	}
	<-restarted
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after stopping: %v", err)
	}
}
