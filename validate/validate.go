// Package validate compares every row of a source with its target, whatever
// the connectors: a connector-neutral engine (engine.go) driven through small
// role interfaces that each connector implements in its own package and
// registers from init (RegisterSource, RegisterTarget).
//
// Two ways of comparing exist, picked from the roles the two sides offer:
//
//   - merge: both sides are RangeReaders that return a key range's rows in key
//     order (SQL databases). Each source range is read on both sides and the
//     two row streams are merged by key.
//   - lookup: the source is a RangeReader (its rows in any order: a DynamoDB
//     scan segment, a CQL token range) and the target a Lookuper; every
//     source row is looked up on the target by key. Rows only the target has
//     are found by the reverse pass when the target can also be scanned and
//     the source looked up.
//
// Both sides also being Lookupers enables --live (differences are read again
// after a delay before they count) and --repair (fresh source rows are
// published into the source's own stream).
package validate

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/registry"
	"github.com/ferry-dev/ferry/streams/pb"
)

// Table is one table as one side names it. Rows a side returns for it carry
// exactly Columns, in that order, in Row.Names (shared slices are fine).
type Table struct {
	// Name as the side names it; for the source, as events name it
	// ("public.orders").
	Name string
	// Key lists the key columns, in key order (a subset of Columns).
	Key []string
	// Columns lists the columns to compare, key columns included.
	Columns []string
	// Schemaless marks a table whose rows have no fixed columns (DynamoDB
	// items): Columns is then the key alone, and each row carries its
	// other attributes after Columns, by name (Row.Names), whatever they
	// are. When both sides are schemaless those are compared by name too,
	// renames applied, an attribute on one side only being a difference.
	Schemaless bool
}

// Range is a part of a table that can be read on its own. Key ranges hold
// the rows with Lo < key <= Hi in the key order of the side (nil Lo: from the
// start; nil Hi: to the end); Spec is for ranges that are not key intervals
// (a scan segment, a token range), opaque to the engine. Ranges are stored
// in KV to resume a validation, so they must survive a JSON round trip.
type Range struct {
	Lo   *pb.Row `json:"-"`
	Hi   *pb.Row `json:"-"`
	Spec string  `json:"spec,omitempty"`
}

// BoundRanges turns ascending key bounds (every n-th key, as a snapshot
// planner picks them) into the len(bounds)+1 ranges they delimit: up to the
// first bound, between each two, and after the last.
func BoundRanges(bounds []*pb.Row) []Range {
	out := make([]Range, len(bounds)+1)
	for i := range out {
		if i > 0 {
			out[i].Lo = bounds[i-1]
		}
		if i < len(bounds) {
			out[i].Hi = bounds[i]
		}
	}
	return out
}

// RangeReader splits a table into ranges and reads them. A target
// RangeReader is given the source's ranges, bounds renamed to its own key
// columns, and returns the rows of the same key interval.
type RangeReader interface {
	// Ranges splits t into ranges of about rowsPerRange rows.
	Ranges(ctx context.Context, t Table, rowsPerRange int) ([]Range, error)
	// Read calls emit for each row of r.
	Read(ctx context.Context, t Table, r Range, emit func(*pb.Row) error) error
	// Ordered reports whether Read returns rows in key order, so that two
	// sides can be merged (otherwise the target is looked up by key).
	Ordered() bool
}

// Lookuper reads rows by key: used by lookup mode, --live re-checks and
// --repair. keys carry t.Key's columns; rows not found are left out.
type Lookuper interface {
	Lookup(ctx context.Context, t Table, keys []*pb.Row) ([]*pb.Row, error)
}

// MetaReader is a side that can read per-cell write times and TTLs (CQL)
// into Row.Meta. The engine tells it before listing tables whether they
// are compared (validation.compareTimestamps), so that a side reads them
// only when they are: they cost extra columns on every read.
type MetaReader interface {
	ReadMeta(on bool)
}

// Source is a source database opened for validation. It also implements
// RangeReader and, for --live and --repair, Lookuper.
type Source interface {
	// Tables lists the tables to validate (those the pipeline moves),
	// with their key and columns.
	Tables(ctx context.Context) ([]Table, error)
	Close()
}

// Target is a target database opened for validation. It implements
// RangeReader, Lookuper, or both.
type Target interface {
	// Table returns the target's layout of table name (already renamed by
	// the engine from the source's name, before the target's own schema
	// setting), or an error naming what is missing.
	Table(ctx context.Context, name string) (Table, error)
	Close()
}

// SourceFactory opens a source for validation.
type SourceFactory func(ctx context.Context, cfg config.Source, log *slog.Logger) (Source, error)

// TargetFactory opens a target for validation.
type TargetFactory func(ctx context.Context, cfg config.Target, log *slog.Logger) (Target, error)

var (
	sources registry.Registry[SourceFactory]
	targets registry.Registry[TargetFactory]
)

// RegisterSource makes a source type validatable; connectors call it from
// init, next to producers.Register.
func RegisterSource(typ string, f SourceFactory) { sources.Register(typ, f) }

// RegisterTarget makes a target type validatable; connectors call it from
// init, next to appliers.Register.
func RegisterTarget(typ string, f TargetFactory) { targets.Register(typ, f) }

// OpenSource opens the source described by cfg.
func OpenSource(ctx context.Context, cfg config.Source, log *slog.Logger) (Source, error) {
	f, ok := sources.Get(cfg.Type)
	if !ok {
		return nil, fmt.Errorf("source %s: type %q cannot be validated yet (validatable: %v)", cfg.Name, cfg.Type, sources.Types())
	}
	return f(ctx, cfg, log)
}

// OpenTarget opens the target described by cfg.
func OpenTarget(ctx context.Context, cfg config.Target, log *slog.Logger) (Target, error) {
	f, ok := targets.Get(cfg.Type)
	if !ok {
		return nil, fmt.Errorf("target %s: type %q cannot be validated yet (validatable: %v)", cfg.Name, cfg.Type, targets.Types())
	}
	return f(ctx, cfg, log)
}
