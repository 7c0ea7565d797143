package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// State is the KV bucket of source positions and snapshot progress. Keys:
//
//	src.<source>.position              the change stream's saved position
//	src.<source>.snapshot              the snapshot's phase and consistent point
//	src.<source>.plan.<table>          a table's chunk plan
//	src.<source>.chunk.<table>.<n>     a finished chunk and its row count
//	src.<source>.schema.<table>        a table's columns, their source types, its key
//
// A producer writes a position only after JetStream acknowledged every event
// up to it. Nothing secret is stored here.
type State struct {
	KV jetstream.KeyValue
}

// Key joins tokens into a KV key, escaping each.
func Key(parts ...string) string {
	for i, p := range parts {
		parts[i] = Token(p)
	}
	return strings.Join(parts, ".")
}

// SourceKey is a key under a source's prefix.
func SourceKey(source string, parts ...string) string {
	return Key(append([]string{"src", source}, parts...)...)
}

// GetJSON reads key into v; found is false when the key does not exist.
func (s *State) GetJSON(ctx context.Context, key string, v any) (found bool, err error) {
	e, err := s.KV.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading %s from KV: %w", key, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return false, fmt.Errorf("decoding %s from KV: %w", key, err)
	}
	return true, nil
}

// PutJSON writes v at key.
func (s *State) PutJSON(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", key, err)
	}
	if _, err := s.KV.Put(ctx, key, b); err != nil {
		return fmt.Errorf("writing %s to KV: %w", key, err)
	}
	return nil
}

// Keys lists the keys under prefix (a key ending in ".").
func (s *State) Keys(ctx context.Context, prefix string) ([]string, error) {
	lister, err := s.KV.ListKeysFiltered(ctx, prefix+">")
	if err != nil {
		return nil, fmt.Errorf("listing KV keys %s: %w", prefix, err)
	}
	var out []string
	for k := range lister.Keys() {
		out = append(out, k)
	}
	return out, nil
}

// Position is a source's saved change-stream position.
type Position struct {
	// Pos orders positions of one source byte-wise.
	Pos []byte `json:"pos"`
	// Text is the position as the source writes it.
	Text string `json:"text"`
	// CommitTimeUs is the commit time of the newest change up to Pos.
	CommitTimeUs int64 `json:"commitTimeUs,omitempty"`
	// SavedAt is when ferry saved it (Unix microseconds).
	SavedAtUs int64 `json:"savedAtUs"`
	// StreamSeq is the stream sequence of the newest message published up
	// to Pos (0 if unknown): a resuming producer looks for changes it
	// published past Pos only after it.
	StreamSeq uint64 `json:"streamSeq,omitempty"`
}

// SnapshotState is a source's snapshot progress.
type SnapshotState struct {
	// Done is set once every chunk of every table is acknowledged.
	Done bool `json:"done"`
	// Tables lists the tables the snapshot covers.
	Tables []string `json:"tables"`
	// Consistent is the change-stream position the snapshot is consistent
	// with; the change stream starts there.
	Consistent string `json:"consistent,omitempty"`
	// Name identifies an exported source snapshot that workers may import
	// while it lives.
	Name string `json:"name,omitempty"`
}

// ChunkPlan is a table's split into primary-key chunks. Bounds are the key
// values in the source's text form; chunk i holds keys in
// (Bounds[i-1], Bounds[i]], the first chunk has no lower bound and the last
// no upper bound, so every row, also one inserted after planning, falls into
// exactly one chunk.
type ChunkPlan struct {
	Bounds   [][]string `json:"bounds"`
	EstRows  int64      `json:"estRows"`
	Enqueued bool       `json:"enqueued"`
}

// Chunks is the number of chunks the plan makes.
func (pl *ChunkPlan) Chunks() int { return len(pl.Bounds) + 1 }

// ChunkDone records a finished chunk.
type ChunkDone struct {
	Rows int64 `json:"rows"`
}

// Keys of the state bucket for a source.
func PositionKey(source string) string { return SourceKey(source, "position") }

// SnapshotKey holds a source's SnapshotState.
func SnapshotKey(source string) string { return SourceKey(source, "snapshot") }

// PlanKey holds a table's chunk plan.
func PlanKey(source, table string) string { return SourceKey(source, "plan", table) }

// ChunkKey marks one finished chunk.
func ChunkKey(source, table string, chunk int) string {
	return SourceKey(source, "chunk", table, fmt.Sprint(chunk))
}

// ChunkPrefix is the prefix of a table's finished-chunk keys.
func ChunkPrefix(source, table string) string { return SourceKey(source, "chunk", table) + "." }

// TableSchema is a source table's layout as the producer last saw it.
type TableSchema struct {
	Columns []ColumnSchema `json:"columns"`
	Key     []string       `json:"key"`
}

// ColumnSchema is one column and its type in the source's own words.
type ColumnSchema struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	NotNull bool   `json:"notNull,omitempty"`
}

// SchemaKey holds a table's TableSchema.
func SchemaKey(source, table string) string { return SourceKey(source, "schema", table) }
