// Package appliers holds what every target connector shares: the Target
// interface a connector implements, its registry, and the runner that feeds
// a target from a source's stream (see runner.go).
package appliers

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/registry"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

// Lane is one ordered lane of a source's stream: a key partition. All events
// of one key travel in one lane, in source order.
type Lane struct {
	Source    string
	Partition int
}

// Item is one event to apply, with the stream sequence of its message.
type Item struct {
	Event *pb.Event
	Seq   uint64
}

// Rejected is an event the target refused to store, with the reason. It goes
// to the dead-letter stream; it is never dropped silently.
type Rejected struct {
	Item   Item
	Reason string
}

// DeadLetterFunc stores rejected events durably; an error fails the batch.
type DeadLetterFunc func(ctx context.Context, rejected []Rejected) error

// Target writes events into one target database.
type Target interface {
	// Applied returns the highest stream sequence already applied for lane,
	// or 0. Messages at or below it are redeliveries and are skipped, which
	// keeps one key's changes in order across crashes.
	Applied(ctx context.Context, lane Lane) (uint64, error)
	// Apply writes items in their order and records lastSeq as the lane's
	// applied sequence, in one target transaction. Rows the target rejects
	// for their data (a constraint, a value it cannot store) are passed to
	// deadLetter before that transaction commits (so a crash cannot lose
	// them between the two) and returned; the rest is still applied. An
	// error means nothing was committed and the batch may be retried. A
	// missing table or column is an error naming it. deadLetter may be nil.
	Apply(ctx context.Context, lane Lane, items []Item, lastSeq uint64, deadLetter DeadLetterFunc) ([]Rejected, error)
	// Ping checks the connection, for health checks.
	Ping(ctx context.Context) error
	Close()
}

// StateUser is implemented by targets that read what producers recorded in
// the KV state bucket (the DynamoDB target reads a source table's
// description there to create the table); the runner hands them the bucket
// before applying anything.
type StateUser interface {
	UseState(state *streams.State)
}

// Factory opens a target from its config.
type Factory func(ctx context.Context, cfg config.Target, log *slog.Logger) (Target, error)

var connectors registry.Registry[Factory]

// Register makes a target type available; connectors call it from init.
func Register(typ string, f Factory) { connectors.Register(typ, f) }

// Types lists the registered target types.
func Types() []string { return connectors.Types() }

// Open opens the target described by cfg.
func Open(ctx context.Context, cfg config.Target, log *slog.Logger) (Target, error) {
	f, ok := connectors.Get(cfg.Type)
	if !ok {
		return nil, fmt.Errorf("target %s: unknown type %q (known: %v)", cfg.Name, cfg.Type, Types())
	}
	return f(ctx, cfg, log)
}

// Rewinder is a Target whose lane watermarks can be set back, for a replay
// (ferry apply --from-start/--from-time/--from-sequence): after Rewind,
// Applied(lane) returns seq, and messages above it are applied again.
type Rewinder interface {
	Rewind(ctx context.Context, lane Lane, seq uint64) error
}
