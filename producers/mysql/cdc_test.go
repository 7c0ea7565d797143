package mysql

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/producers"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

// Changes re-read after a restart are recognised by the positions the
// stream holds, whichever run's message ids stored them: a run that found
// a hole publishes again from it, and a later restart from the same saved
// position publishes nothing the stream already has, not even the changes
// that run published first (whose ids carried its own suffix).
func TestRepeatsToldByPosition(t *testing.T) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: filepath.Join(t.TempDir(), "js"), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(20 * time.Second) {
		t.Fatal("NATS did not start")
	}
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	conn, err := streams.Connect(ctx, config.NATS{URL: srv.ClientURL(), Replicas: 1, DuplicateWindow: config.Duration(time.Minute)}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st, err := conn.EnsureSourceStream(ctx, "my", 1)
	if err != nil {
		t.Fatal(err)
	}
	p := &producer{cfg: config.Source{Name: "my", Partitions: 1}, env: producers.Env{Conn: conn, Log: log}, log: log, maxPayload: 1 << 20}
	saved := position{Flavor: "mariadb", File: "binlog.000001", Offset: 1000}
	// run streams transactions 1..n from the saved position, one change
	// each, losing the publishes of those in lost.
	run := func(n int, lost ...int) {
		t.Helper()
		c := &cdc{p: p, ctx: ctx, ck: streams.NewCheckpointer(ctx, 100)}
		if err := c.resume(ctx, saved); err != nil {
			t.Fatal(err)
		}
		skip := map[int]bool{}
		for _, i := range lost {
			skip[i] = true
		}
		for i := 1; i <= n; i++ {
			c.tx = txState{open: true, file: "binlog.000001", start: uint32(1000 + 100*i), tables: map[string]int{}}
			ev := &pb.Event{Source: "my", Table: "f", Op: pb.Op_OP_UPDATE,
				Key: &pb.Row{Names: []string{"id"}, Values: []*pb.Value{{Kind: &pb.Value_Int{Int: int64(i % 2)}}}}}
			if skip[i] {
				continue
			}
			if err := c.publish(ev); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.ck.Close(); err != nil {
			t.Fatal(err)
		}
	}
	msgs := func() uint64 {
		t.Helper()
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Msgs
	}
	run(5, 3) // transaction 3's publish was lost, 4 and 5 went through
	if got := msgs(); got != 4 {
		t.Fatalf("first run stored %d messages, want 4", got)
	}
	run(6) // from the hole on everything again, in order, and 6 is new
	if got := msgs(); got != 4+4 {
		t.Fatalf("after the run that found the hole: %d messages, want 8 (3, 4, 5 again, and 6)", got)
	}
	run(6) // a restart from the same saved position: all of it is there
	if got := msgs(); got != 8 {
		t.Fatalf("a restart published %d changes the stream held already", got-8)
	}
	run(7) // only the new one
	if got := msgs(); got != 9 {
		t.Fatalf("after a new change: %d messages, want 9", got)
	}
}
