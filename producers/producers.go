// Package producers holds what every source connector shares: the Producer
// interface, its registry, and the environment a producer runs in.
package producers

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/registry"
	"github.com/ferry-dev/ferry/streams"
)

// Env is what a producer publishes into and records its progress in.
type Env struct {
	Conn  *streams.Conn
	State *streams.State
	Log   *slog.Logger
}

// Producer reads one source and publishes its rows and changes.
type Producer interface {
	// Run publishes until the work is done (a snapshot-only source returns
	// nil once every row is acknowledged by JetStream) or ctx ends; then it
	// records its position and returns nil. A returned error says what
	// failed; the position saved before it is safe to resume from.
	Run(ctx context.Context) error
}

// Positioner is implemented by sources that can tell their current position,
// which the cut-over check waits for.
type Positioner interface {
	// CurrentPosition returns the source's newest position now, in the
	// ordering of streams.Position.Pos.
	CurrentPosition(ctx context.Context) (streams.Position, error)
}

// Factory opens a producer from its config.
type Factory func(ctx context.Context, cfg config.Source, env Env) (Producer, error)

var connectors registry.Registry[Factory]

// Register makes a source type available; connectors call it from init.
func Register(typ string, f Factory) { connectors.Register(typ, f) }

// Types lists the registered source types.
func Types() []string { return connectors.Types() }

// Open opens the producer described by cfg.
func Open(ctx context.Context, cfg config.Source, env Env) (Producer, error) {
	f, ok := connectors.Get(cfg.Type)
	if !ok {
		return nil, fmt.Errorf("source %s: unknown type %q (known: %v)", cfg.Name, cfg.Type, Types())
	}
	return f(ctx, cfg, env)
}
