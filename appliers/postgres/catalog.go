package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry/config"
)

// column is one live column of a target table.
type column struct {
	name string
	// cast is format_type(atttypid, -1): the type without its modifier
	// ("character varying", not "character varying(10)"). Values are cast to
	// it and the assignment to the column applies the modifier. Casting to the
	// full type would be wrong: an explicit cast to varchar(n) or bit(n)
	// silently truncates, where assignment raises an error (a rejection).
	// (-1 rather than NULL: with NULL, PostgreSQL names bit "bit", which
	// reads back as bit(1); with -1 it says "bit" quoted, any length.)
	cast string
	// delim separates array elements in the type's text form (';' for box[]).
	delim byte
	// generated is true for columns the target computes (GENERATED ALWAYS AS
	// (...) STORED, CockroachDB computed columns): a value sent for one is
	// not written, because the server refuses any and computes its own.
	generated bool
}

// table is a target table as read from the catalog.
type table struct {
	schema, name string
	ident        string // quoted, schema-qualified
	cols         []column
	byName       map[string]int
	pk           []int // indexes into cols, in key order
	isPK         []bool
	// byEvent finds a column by the name events give it, and eventName is
	// that name per column: they differ for renamed columns
	// (targets[].renames).
	byEvent   map[string]int
	eventName []string
	// writable lists the columns ferry writes (all but generated ones), in
	// table order: the column set of a full row.
	writable []int
}

func (t *table) String() string { return t.schema + "." + t.name }

func newTable(schema, name string, cols []column, pk []string) (*table, error) {
	t := &table{
		schema: schema,
		name:   name,
		ident:  pgx.Identifier{schema, name}.Sanitize(),
		cols:   cols,
		byName: make(map[string]int, len(cols)),
		isPK:   make([]bool, len(cols)),
	}
	t.eventName = make([]string, len(cols))
	t.byEvent = make(map[string]int, len(cols))
	for i, c := range cols {
		t.byName[c.name] = i
		t.byEvent[c.name] = i
		t.eventName[i] = c.name
		if !c.generated {
			t.writable = append(t.writable, i)
		}
	}
	for _, k := range pk {
		i, ok := t.byName[k]
		if !ok {
			return nil, fmt.Errorf("primary key column %s.%s is not among the table's columns", t, k)
		}
		t.pk = append(t.pk, i)
		t.isPK[i] = true
	}
	return t, nil
}

// errNoTable says a table does not exist (or is not visible to the user).
var errNoTable = errors.New("table does not exist")

// Catalog queries. They use only what PostgreSQL and CockroachDB both
// provide: pg_catalog for the column types (format_type), the
// information_schema for the primary key and generated columns, where
// CockroachDB's pg_index.indkey handling differs from PostgreSQL's.
const (
	columnsQuery = `SELECT n.nspname::text, c.relname::text, a.attname::text,
       format_type(a.atttypid, -1),
       coalesce((SELECT e.typdelim::text
                 FROM pg_catalog.pg_type at
                 JOIN pg_catalog.pg_type e ON e.oid = at.typelem
                 WHERE at.oid = a.atttypid AND at.typcategory = 'A'), ',')
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
WHERE n.nspname = coalesce($1::text, current_schema()) AND c.relname = $2
  AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`

	pkQuery = `SELECT k.column_name::text
FROM information_schema.table_constraints c
JOIN information_schema.key_column_usage k
  ON k.constraint_schema = c.constraint_schema AND k.constraint_name = c.constraint_name
 AND k.table_schema = c.table_schema AND k.table_name = c.table_name
WHERE c.constraint_type = 'PRIMARY KEY' AND c.table_schema = $1 AND c.table_name = $2
ORDER BY k.ordinal_position`

	generatedQuery = `SELECT column_name::text
FROM information_schema.columns
WHERE table_schema = $1 AND table_name = $2 AND is_generated = 'ALWAYS'`
)

// loadTable reads a table's columns and primary key. schema "" means the
// connection's current schema. It returns errNoTable when there is no such
// table.
func loadTable(ctx context.Context, conn *pgx.Conn, schema, name string) (*table, error) {
	var schemaArg *string
	if schema != "" {
		schemaArg = &schema
	}
	rows, err := conn.Query(ctx, columnsQuery, schemaArg, name)
	if err != nil {
		return nil, fmt.Errorf("reading columns: %w", err)
	}
	var cols []column
	var gotSchema, gotName string
	for rows.Next() {
		var c column
		var delim string
		if err := rows.Scan(&gotSchema, &gotName, &c.name, &c.cast, &delim); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading columns: %w", err)
		}
		c.delim = ','
		if len(delim) == 1 {
			c.delim = delim[0]
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading columns: %w", err)
	}
	if len(cols) == 0 {
		return nil, errNoTable
	}

	pk, err := queryStrings(ctx, conn, pkQuery, gotSchema, gotName)
	if err != nil {
		return nil, fmt.Errorf("reading primary key: %w", err)
	}
	generated, err := queryStrings(ctx, conn, generatedQuery, gotSchema, gotName)
	if err != nil {
		return nil, fmt.Errorf("reading generated columns: %w", err)
	}
	for _, g := range generated {
		for i := range cols {
			if cols[i].name == g {
				cols[i].generated = true
			}
		}
	}
	return newTable(gotSchema, gotName, cols, pk)
}

func queryStrings(ctx context.Context, conn *pgx.Conn, sql string, args ...any) ([]string, error) {
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// splitTable turns an event's table name into the target's schema and table:
// the first dot separates the source schema, which cfgSchema replaces when
// set. A name without a schema uses cfgSchema, or else the target's current
// schema (returned as "").
func splitTable(eventTable, cfgSchema string) (schema, name string) {
	schema, name, ok := strings.Cut(eventTable, ".")
	if !ok {
		schema, name = "", eventTable
	}
	if cfgSchema != "" {
		schema = cfgSchema
	}
	return schema, name
}

// mapTable turns an event's table name into the target's schema and table,
// after the table renames of targets[].tables. A rename is looked up by the
// event's name ("public.orders"), then by its name without the schema
// ("orders"). A qualified new name is taken as it is; an unqualified one
// keeps targets[].schema, else the event's schema.
func mapTable(eventTable string, tables map[string]string, cfgSchema string) (schema, name string) {
	to, ok := tables[eventTable]
	if !ok {
		if _, bare, qualified := strings.Cut(eventTable, "."); qualified {
			to, ok = tables[bare]
		}
	}
	if !ok {
		return splitTable(eventTable, cfgSchema)
	}
	if s, n, qualified := strings.Cut(to, "."); qualified {
		return s, n
	}
	if s, _, qualified := strings.Cut(eventTable, "."); qualified && cfgSchema == "" {
		return s, to
	}
	return cfgSchema, to
}

// renameColumns applies the column renames of targets[].renames that concern
// eventTable: a rename naming the table (as events name it, with or without
// schema) or no table at all. A rename for this very table whose new name
// the target table lacks is an error naming both; a rename for every table
// applies only where the column exists.
func (t *table) renameColumns(eventTable string, renames []config.Rename) error {
	_, bare, _ := strings.Cut(eventTable, ".")
	for _, r := range renames {
		if r.Table != "" && r.Table != eventTable && r.Table != bare {
			continue
		}
		i, ok := t.byName[r.To]
		if !ok {
			if r.Table == "" {
				continue
			}
			return fmt.Errorf("renames: column %s.%s is renamed to %s, but target table %s has no column %s", eventTable, r.From, r.To, t, r.To)
		}
		if t.eventName[i] == r.To {
			// The target column no longer answers to its own name (a
			// source column of that name is not the same column).
			delete(t.byEvent, r.To)
		}
		t.byEvent[r.From] = i
		t.eventName[i] = r.From
	}
	return nil
}

// shownColumn names a target column for messages, with the event's name for
// it when it was renamed.
func (t *table) shownColumn(i int) string {
	if t.eventName[i] != t.cols[i].name {
		return fmt.Sprintf("%s.%s (source column %s)", t, t.cols[i].name, t.eventName[i])
	}
	return t.String() + "." + t.cols[i].name
}
