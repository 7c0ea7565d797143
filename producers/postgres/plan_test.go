package postgres

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/e2e/pgtest"
)

func testProducer(t *testing.T, setup string, chunkRows int) *producer {
	t.Helper()
	srv := pgtest.StartT(t, pgtest.Options{})
	ctx := context.Background()
	if err := srv.CreateDB(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Exec(ctx, "app", setup); err != nil {
		t.Fatal(err)
	}
	cfg := config.Source{Name: "pg", DSN: srv.DSN("app"), ChunkRows: chunkRows, SnapshotWorkers: 1}
	pc, err := poolConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return &producer{cfg: cfg, pool: pool, log: slog.New(slog.NewTextHandler(io.Discard, nil)), tables: map[string]*table{}}
}

// Chunk bounds follow the key's own order (not its text), for single and
// composite keys, and split the table into chunks of chunkRows rows.
func TestChunkBounds(t *testing.T) {
	p := testProducer(t, `
		CREATE TABLE nums (id bigint PRIMARY KEY);
		INSERT INTO nums SELECT generate_series(1, 25);
		CREATE TABLE pairs (a int, b text, PRIMARY KEY (a, b));
		INSERT INTO pairs SELECT a, b FROM generate_series(1, 3) a, unnest(ARRAY['x', 'y', 'z', 'Z']) b;`, 10)
	ctx := context.Background()
	for _, tc := range []struct {
		table string
		want  [][]string
	}{
		// As text, the 10th key would be "18" and the 20th "27"-ish nonsense.
		{"public.nums", [][]string{{"10"}, {"20"}}},
		// (a, b) in the key's order; pgtest servers use the C collation,
		// so "Z" < "x" < "y" < "z" and the 10th pair is (3, x).
		{"public.pairs", [][]string{{"3", "x"}}},
	} {
		tbl, err := loadTable(ctx, p.pool, tc.table)
		if err != nil {
			t.Fatal(err)
		}
		got, err := p.chunkBounds(ctx, tbl)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Fatalf("%s bounds = %v, want %v", tc.table, got, tc.want)
		}
	}
}
