package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-dev/ferry/internal/pgcodec"
)

// table is a source table with its columns and primary key.
type table struct {
	Name    string // schema.table, as events name it
	Ident   string // quoted for SQL
	Columns []pgcodec.Column
	Key     []int // indexes into Columns of the primary-key columns
	EstRows int64
	// Column and key names, shared by every event of the table.
	names   []string
	keyCols []string
}

func (t *table) keyNames() []string {
	out := make([]string, len(t.Key))
	for i, k := range t.Key {
		out[i] = t.Columns[k].Name
	}
	return out
}

func quoteIdent(s string) string { return pgx.Identifier{s}.Sanitize() }

// splitName splits "schema.table"; a bare name is in public.
func splitName(n string) (schema, name string) {
	if i := strings.IndexByte(n, '.'); i >= 0 {
		return n[:i], n[i+1:]
	}
	return "public", n
}

// resolveTables lists the tables to move: the configured ones, else those of
// the publication if it exists, else every ordinary table of schema public.
func resolveTables(ctx context.Context, pool *pgxpool.Pool, configured []string, publication string) ([]string, error) {
	if len(configured) > 0 {
		out := make([]string, len(configured))
		for i, n := range configured {
			s, t := splitName(n)
			out[i] = s + "." + t
		}
		return out, nil
	}
	var q string
	var args []any
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, publication).Scan(&exists); err != nil {
		return nil, fmt.Errorf("looking up publication %s: %w", publication, err)
	}
	if exists {
		q = `SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1`
		args = []any{publication}
	} else {
		q = `SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		     WHERE n.nspname = 'public' AND c.relkind IN ('r','p') AND NOT c.relispartition ORDER BY 1`
	}
	rows, err := pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("listing tables: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("listing tables: %w", err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no tables to migrate: set sources[].tables, or create tables in schema public")
	}
	return names, nil
}

// loadTable reads a table's columns, types and primary key.
func loadTable(ctx context.Context, pool *pgxpool.Pool, name string) (*table, error) {
	schema, rel := splitName(name)
	ident := quoteIdent(schema) + "." + quoteIdent(rel)
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, ident).Scan(&exists); err != nil {
		return nil, fmt.Errorf("looking up table %s: %w", name, err)
	}
	if !exists {
		return nil, fmt.Errorf("table %s does not exist in the source", name)
	}
	rows, err := pool.Query(ctx, pgcodec.TypeQuery, ident)
	if err != nil {
		return nil, fmt.Errorf("reading columns of %s: %w", name, err)
	}
	cols, err := pgcodec.ScanTypes(rows)
	if err != nil {
		return nil, fmt.Errorf("reading columns of %s: %w", name, err)
	}
	t := &table{Name: schema + "." + rel, Ident: ident, Columns: cols}
	krows, err := pool.Query(ctx, `
		SELECT a.attname::text FROM pg_index i
		JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
		WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY k.ord`, ident)
	if err != nil {
		return nil, fmt.Errorf("reading primary key of %s: %w", name, err)
	}
	keys, err := pgx.CollectRows(krows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("reading primary key of %s: %w", name, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("table %s has no primary key: ferry needs one to keep each row's changes in order and to write idempotently; add one (ALTER TABLE %s ADD PRIMARY KEY (...))", name, ident)
	}
	for _, k := range keys {
		for i, c := range cols {
			if c.Name == k {
				t.Key = append(t.Key, i)
			}
		}
	}
	for _, c := range cols {
		t.names = append(t.names, c.Name)
	}
	t.keyCols = t.keyNames()
	if err := pool.QueryRow(ctx, `SELECT GREATEST(reltuples, 0)::int8 FROM pg_class WHERE oid = $1::regclass`, ident).Scan(&t.EstRows); err != nil {
		return nil, fmt.Errorf("estimating rows of %s: %w", name, err)
	}
	return t, nil
}
