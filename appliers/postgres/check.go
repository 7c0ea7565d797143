package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/preflight"
)

var _ preflight.TargetChecker = (*Target)(nil)

func init() {
	preflight.RegisterTargetAdvice("postgres", openAdvice)
	preflight.RegisterTargetAdvice("cockroachdb", openAdvice)
}

// openAdvice says how to fix a target that could not be opened. Besides
// the connection, open fails when it has to create ferry's state table and
// the role may not: the fix is then the DDL for someone who may.
func openAdvice(dsn string, err error) (check, fix string) {
	// open's own words for that failure (see open in postgres.go).
	if strings.Contains(err.Error(), "creating state table ferry_state.applied") {
		user, db := "<ferry's role>", ""
		if pc, perr := pgconn.ParseConfig(dsn); perr == nil {
			if pc.User != "" {
				user = quoteIdentifier(pc.User)
			}
			db = pc.Database
		}
		return "state_table", "ferry keeps each lane's applied position in ferry_state.applied and creates it on start, which this role may not do; " + stateTableFix(user, db)
	}
	return "connect", preflight.PostgresConnectFix(err, "targets[].dsn")
}

// stateTableFix is the DDL a privileged role runs to make ferry's state
// table for user (a quoted identifier). db, when known, names the database
// for the alternative of granting CREATE.
func stateTableFix(user, db string) string {
	grant := "GRANT CREATE ON DATABASE <database> TO " + user + ";"
	if db != "" {
		grant = "GRANT CREATE ON DATABASE " + quoteIdentifier(db) + " TO " + user + ";"
	}
	return "as a role with CREATE on the database run:\n" +
		createStateSchema + ";\n" +
		createStateTable + ";\n" +
		"GRANT USAGE ON SCHEMA ferry_state TO " + user + ";\n" +
		"GRANT SELECT, INSERT, UPDATE ON ferry_state.applied TO " + user + ";\n" +
		"(or let ferry create it: " + grant + ")"
}

func quoteIdentifier(s string) string { return pgx.Identifier{s}.Sanitize() }

// targetCheck gathers one target's findings.
type targetCheck struct {
	t      *Target
	comp   string
	source string
	fs     []preflight.Finding
	user   string
	db     string
}

func (c *targetCheck) add(check string, sev preflight.Severity, msg, fix string) {
	c.fs = append(c.fs, preflight.Finding{Component: c.comp, Check: check, Severity: sev, Message: msg, Fix: fix})
}

// failed reports a check whose own query failed: it blocks rather than
// pass silently.
func (c *targetCheck) failed(check, what string, err error) {
	c.add(check, preflight.Block, fmt.Sprintf("%s: %v", what, c.t.scrub(err)),
		fmt.Sprintf("ferry reads the same catalogs when it applies: make sure role %s can read the catalogs of database %s, then run ferry check again", c.user, c.db))
}

// CheckTables reports the connection, ferry's state table, and for each of
// the source's tables whether the target can take its rows: the table, its
// columns, a primary key ferry can write by, NOT NULL columns the source
// cannot fill, and the role's privileges. Tables are mapped to target names
// exactly as the applier maps event tables (splitTable, loadTable).
func (t *Target) CheckTables(ctx context.Context, source string, tables []preflight.Table) []preflight.Finding {
	c := &targetCheck{t: t, comp: preflight.TargetComponent(t.cfg.Name), source: source}
	if !c.connection(ctx) {
		return c.fs
	}
	c.stateTable(ctx)
	for _, tbl := range tables {
		c.table(ctx, tbl)
	}
	return c.fs
}

func (c *targetCheck) connection(ctx context.Context) bool {
	err := withConn(ctx, c.t.pool, func(conn *pgx.Conn) error {
		return conn.QueryRow(ctx, `SELECT current_user::text, current_database()::text`).Scan(&c.user, &c.db)
	})
	if err != nil {
		c.add("connect", preflight.Block, fmt.Sprintf("%s: %v", config.Redact(c.t.cfg.DSN), c.t.scrub(err)),
			preflight.PostgresConnectFix(err, "targets[].dsn"))
		return false
	}
	c.add("connect", preflight.OK, fmt.Sprintf("%s at %s as role %s", shortVersion(c.t.version), preflight.PostgresAddress(c.t.cfg.DSN), c.user), "")
	return true
}

// shortVersion keeps the product and release of SELECT version():
// "PostgreSQL 15.6", "CockroachDB CCL v23.1.11".
func shortVersion(v string) string {
	for _, sep := range []string{" (", " on "} {
		if i := strings.Index(v, sep); i > 0 {
			v = v[:i]
		}
	}
	return v
}

// stateTable checks ferry_state.applied, which every batch writes. open
// created it if it was missing, so it is normally there; the check is then
// whether the role can read and write it (a DBA may have created it).
func (c *targetCheck) stateTable(ctx context.Context) {
	user := quoteIdentifier(c.user)
	var exists, usage, sel, ins, upd, canCreate bool
	err := withConn(ctx, c.t.pool, func(conn *pgx.Conn) error {
		if err := conn.QueryRow(ctx, stateTableExists).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return conn.QueryRow(ctx, `SELECT has_database_privilege(current_database(), 'CREATE')`).Scan(&canCreate)
		}
		return conn.QueryRow(ctx, `SELECT has_schema_privilege('ferry_state', 'USAGE'),
			has_table_privilege('ferry_state.applied', 'SELECT'),
			has_table_privilege('ferry_state.applied', 'INSERT'),
			has_table_privilege('ferry_state.applied', 'UPDATE')`).Scan(&usage, &sel, &ins, &upd)
	})
	switch {
	case err != nil:
		c.failed("state_table", "checking ferry_state.applied", err)
	case !exists && canCreate:
		c.add("state_table", preflight.Warn, "ferry_state.applied (each lane's applied position) does not exist; ferry creates it when the applier starts",
			"nothing to do; to create it yourself instead, "+stateTableFix(user, c.db))
	case !exists:
		// Without it the applier cannot start: open would try to create
		// it and fail.
		c.add("state_table", preflight.Block,
			fmt.Sprintf("ferry_state.applied (each lane's applied position) does not exist, and role %s may not create it in database %s", c.user, c.db),
			stateTableFix(user, c.db))
	case !usage || !sel || !ins || !upd:
		c.add("state_table", preflight.Block,
			fmt.Sprintf("role %s cannot read and write ferry_state.applied, which every batch updates", c.user),
			fmt.Sprintf("GRANT USAGE ON SCHEMA ferry_state TO %s; GRANT SELECT, INSERT, UPDATE ON ferry_state.applied TO %s;", user, user))
	default:
		c.add("state_table", preflight.OK, "ferry_state.applied exists and the role can write it", "")
	}
}

// targetColumn is what the checks need to know of a target column beyond
// the applier's column.
type targetColumn struct {
	name       string
	notNull    bool
	hasDefault bool // a default, an identity or a generated column
}

// columnDetailsQuery works on PostgreSQL and CockroachDB alike.
const columnDetailsQuery = `SELECT column_name::text, is_nullable = 'NO',
       column_default IS NOT NULL OR COALESCE(is_identity, 'NO') = 'YES' OR COALESCE(is_generated, 'NEVER') = 'ALWAYS'
FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2`

func (c *targetCheck) table(ctx context.Context, src preflight.Table) {
	schema, name := mapTable(src.Name, c.t.cfg.Tables, c.t.cfg.Schema)
	shown := name
	if schema != "" {
		shown = schema + "." + name
	}
	var (
		tt         *table
		details    []targetColumn
		privileges = map[string]bool{}
		pkName     string
		schemaOK   = true
	)
	err := withConn(ctx, c.t.pool, func(conn *pgx.Conn) error {
		var err error
		if tt, err = loadTable(ctx, conn, schema, name); err != nil {
			if errors.Is(err, errNoTable) && schema != "" {
				// Say whether the schema must be created too.
				return errors.Join(err, conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)`, schema).Scan(&schemaOK))
			}
			return err
		}
		rows, err := conn.Query(ctx, columnDetailsQuery, tt.schema, tt.name)
		if err != nil {
			return fmt.Errorf("reading column details: %w", err)
		}
		details, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (targetColumn, error) {
			var tc targetColumn
			err := r.Scan(&tc.name, &tc.notNull, &tc.hasDefault)
			return tc, err
		})
		if err != nil {
			return fmt.Errorf("reading column details: %w", err)
		}
		for _, p := range []string{"SELECT", "INSERT", "UPDATE", "DELETE"} {
			var ok bool
			if err := conn.QueryRow(ctx, `SELECT has_table_privilege($1, $2)`, tt.ident, p).Scan(&ok); err != nil {
				return fmt.Errorf("reading privileges: %w", err)
			}
			privileges[p] = ok
		}
		err = conn.QueryRow(ctx, `SELECT constraint_name::text FROM information_schema.table_constraints
			WHERE table_schema = $1 AND table_name = $2 AND constraint_type = 'PRIMARY KEY'`, tt.schema, tt.name).Scan(&pkName)
		if errors.Is(err, pgx.ErrNoRows) {
			err = nil
		}
		return err
	})
	if errors.Is(err, errNoTable) {
		c.add("table", preflight.Block, c.mapped(src.Name, shown)+" does not exist on the target",
			"create it, e.g.:\n"+createTableSQL(schema, name, src, schemaOK))
		return
	}
	if err != nil {
		c.failed("table", "reading table "+shown, err)
		return
	}
	if err := tt.renameColumns(src.Name, c.t.cfg.Renames); err != nil {
		c.add("column", preflight.Block, err.Error(), "fix targets[].renames, or add the column to the target table")
		return
	}
	problems := len(c.fs)
	c.columns(src, tt, details)
	c.primaryKey(ctx, src, tt, pkName)
	c.constraints(ctx, tt)
	var missing []string
	for _, p := range []string{"SELECT", "INSERT", "UPDATE", "DELETE"} {
		if !privileges[p] {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		c.add("privileges", preflight.Block, fmt.Sprintf("role %s lacks %s on table %s", c.user, strings.Join(missing, ", "), tt),
			fmt.Sprintf("GRANT %s ON %s TO %s;", strings.Join(missing, ", "), tt.ident, quoteIdentifier(c.user)))
	}
	if len(c.fs) == problems {
		msg := fmt.Sprintf("%s: every source column present (%d)", c.mapped(src.Name, tt.String()), len(src.Columns))
		if len(src.Key) > 0 {
			msg += fmt.Sprintf(", primary key (%s) matches the source key", strings.Join(src.Key, ", "))
		}
		c.add("table", preflight.OK, msg, "")
	}
}

// constraints warns of foreign keys and unique indexes other than the
// primary key: ferry applies different keys in parallel lanes, so a child
// row may arrive before its parent and a key change may briefly collide with
// the row it replaces; the target would reject those rows (they go to the
// dead-letter stream). They belong on the target at cut-over.
func (c *targetCheck) constraints(ctx context.Context, tt *table) {
	rows, err := c.t.pool.Query(ctx, `
		SELECT 'foreign key ' || quote_ident(conname), 'ALTER TABLE ' || conrelid::regclass::text || ' DROP CONSTRAINT ' || quote_ident(conname) || ';'
		FROM pg_constraint WHERE conrelid = $1::regclass AND contype = 'f'
		UNION ALL
		SELECT 'unique index ' || quote_ident(ic.relname),
		       CASE WHEN con.oid IS NOT NULL
		            THEN 'ALTER TABLE ' || i.indrelid::regclass::text || ' DROP CONSTRAINT ' || quote_ident(con.conname) || ';'
		            ELSE 'DROP INDEX ' || i.indexrelid::regclass::text || ';' END
		FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
		LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.contype = 'u'
		WHERE i.indrelid = $1::regclass AND i.indisunique AND NOT i.indisprimary
		ORDER BY 1`, tt.ident)
	if err != nil {
		c.failed("constraints", "reading constraints of "+tt.String(), err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var what, fix string
		if err := rows.Scan(&what, &fix); err != nil {
			c.failed("constraints", "reading constraints of "+tt.String(), err)
			return
		}
		c.add("constraints", preflight.Warn,
			fmt.Sprintf("%s has a %s: ferry applies different keys in parallel, so rows may briefly violate it and be sent to the dead-letter stream; add it at cut-over instead", tt, what),
			fix+" -- and recreate it at cut-over")
	}
	if err := rows.Err(); err != nil {
		c.failed("constraints", "reading constraints of "+tt.String(), err)
	}
}

// mapped names a target table, with its source table when the name differs
// (targets[].schema).
func (c *targetCheck) mapped(source, target string) string {
	if source == target {
		return "table " + target
	}
	return fmt.Sprintf("table %s (source %s table %s)", target, c.source, source)
}

// columns checks that every source column has a target column, and that no
// target column demands a value the source cannot give.
func (c *targetCheck) columns(src preflight.Table, tt *table, details []targetColumn) {
	inSource := map[string]preflight.Column{}
	for _, col := range src.Columns {
		i, ok := tt.byEvent[col.Name]
		if ok {
			inSource[tt.cols[i].name] = col // by the target's name for it
		}
		if !ok {
			c.add("column", preflight.Block,
				fmt.Sprintf("column %s.%s does not exist on the target (source type %s); the applier stops at its first row", tt, col.Name, col.Type),
				fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s;", tt.ident, quoteIdentifier(col.Name), col.Type))
		}
	}
	for _, d := range details {
		sc, ok := inSource[d.name]
		switch {
		case !d.notNull:
		case !ok && !d.hasDefault:
			c.add("not_null", preflight.Block,
				fmt.Sprintf("column %s.%s is NOT NULL without a default, and the source has no such column: every insert would be refused", tt, d.name),
				fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s DROP NOT NULL; (or give it a default: ALTER TABLE %s ALTER COLUMN %s SET DEFAULT ...;)",
					tt.ident, quoteIdentifier(d.name), tt.ident, quoteIdentifier(d.name)))
		case ok && !sc.NotNull && !slices.Contains(src.Key, sc.Name):
			c.add("not_null", preflight.Warn,
				fmt.Sprintf("column %s.%s is NOT NULL on the target but nullable on the source: rows with NULL there would be refused and go to the dead-letter stream", tt, d.name),
				fmt.Sprintf("ALTER TABLE %s ALTER COLUMN %s DROP NOT NULL; (or make the source column NOT NULL)", tt.ident, quoteIdentifier(d.name)))
		}
	}
}

// primaryKey checks the key the applier writes by: it upserts on the target
// table's primary key (ON CONFLICT / UPSERT) and deletes by it, taking its
// values from the event's row, and for deletes from the event's key alone.
func (c *targetCheck) primaryKey(ctx context.Context, src preflight.Table, tt *table, pkName string) {
	tpk := make([]string, len(tt.pk))
	for i, k := range tt.pk {
		tpk[i] = tt.eventName[k] // compared with the source's names
	}
	if len(src.Key) == 0 && len(tpk) > 0 {
		return // the source check blocks on the source table's missing key
	}
	key := quotedList(src.Key)
	onKey := fmt.Sprintf("on the source key (%s)", strings.Join(src.Key, ", "))
	if len(src.Key) == 0 {
		key = "<the columns of the source table's primary key>"
		onKey = "on the same columns as the source table's, which has none yet either"
	}
	if len(tpk) == 0 {
		fix := fmt.Sprintf("ALTER TABLE %s ADD PRIMARY KEY (%s);", tt.ident, key)
		if idx := c.uniqueIndexOn(ctx, tt, src.Key); idx != "" {
			fix = fmt.Sprintf("promote the unique index %s: ALTER TABLE %s ADD PRIMARY KEY USING INDEX %s;", idx, tt.ident, idx)
		}
		c.add("primary_key", preflight.Block,
			fmt.Sprintf("table %s has no primary key; ferry writes rows idempotently by the primary key (INSERT … ON CONFLICT, UPSERT on CockroachDB) and deletes by it, so it needs one %s", tt, onKey),
			fix)
		return
	}
	if sameSet(tpk, src.Key) {
		return
	}
	fix := fmt.Sprintf("ALTER TABLE %s ALTER PRIMARY KEY USING COLUMNS (%s);", tt.ident, key)
	if c.t.dialect == dialectPostgres {
		fix = fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s, ADD PRIMARY KEY (%s);", tt.ident, quoteIdentifier(pkName), key)
	}
	cols := map[string]bool{}
	for _, col := range src.Columns {
		cols[col.Name] = true
	}
	var notInSource, notInKey []string
	for _, k := range tpk {
		if !cols[k] {
			notInSource = append(notInSource, k)
		}
		if !slices.Contains(src.Key, k) {
			notInKey = append(notInKey, k)
		}
	}
	differs := fmt.Sprintf("the primary key of %s (%s) differs from the source key (%s)", tt, strings.Join(tpk, ", "), strings.Join(src.Key, ", "))
	switch {
	case len(notInSource) > 0:
		c.add("primary_key", preflight.Block,
			fmt.Sprintf("%s and uses %s, which the source does not send: ferry could not write a row by its key", differs, strings.Join(notInSource, ", ")), fix)
	case src.Changes && len(notInKey) > 0:
		c.add("primary_key", preflight.Block,
			fmt.Sprintf("%s, and a delete event names its row by the source key only, without %s: the applier would stop at the first delete", differs, strings.Join(notInKey, ", ")), fix)
	default:
		c.add("primary_key", preflight.Warn,
			fmt.Sprintf("%s: ferry writes by the target's key but orders each row's changes by the source's, so rows could overwrite each other or change out of order", differs), fix)
	}
}

// uniqueIndexOn returns a PostgreSQL unique index that could become the
// primary key on exactly cols (unique, b-tree, ascending, on plain
// columns, not partial), or "". CockroachDB tables always have a primary
// key, so it is not asked.
func (c *targetCheck) uniqueIndexOn(ctx context.Context, tt *table, cols []string) string {
	if c.t.dialect != dialectPostgres || len(cols) == 0 {
		return ""
	}
	sorted := slices.Clone(cols)
	slices.Sort(sorted)
	var idx string
	err := withConn(ctx, c.t.pool, func(conn *pgx.Conn) error {
		return conn.QueryRow(ctx, `SELECT quote_ident(ic.relname)
			FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
			WHERE i.indrelid = $1::regclass AND i.indisunique AND i.indimmediate AND am.amname = 'btree'
			  AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indnatts = i.indnkeyatts
			  AND NOT EXISTS (SELECT 1 FROM unnest(i.indoption::int2[]) o WHERE o <> 0)
			  AND (SELECT array_agg(a.attname::text COLLATE "C" ORDER BY a.attname::text COLLATE "C")
			       FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey::int2[])) = $2::text[]
			ORDER BY ic.relname LIMIT 1`, tt.ident, sorted).Scan(&idx)
	})
	if err != nil {
		return "" // no such index (or none readable): the fix names the columns
	}
	return idx
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func quotedList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = quoteIdentifier(n)
	}
	return strings.Join(q, ", ")
}

// createTableSQL is a CREATE TABLE for a missing target table, from the
// source's columns, types and key. Types are the source's names for them:
// enums, domains and other types of the source's own must exist on the
// target first.
func createTableSQL(schema, name string, src preflight.Table, schemaExists bool) string {
	var b strings.Builder
	ident := quoteIdentifier(name)
	if schema != "" {
		ident = pgx.Identifier{schema, name}.Sanitize()
		if !schemaExists {
			fmt.Fprintf(&b, "CREATE SCHEMA %s;\n", quoteIdentifier(schema))
		}
	}
	fmt.Fprintf(&b, "CREATE TABLE %s (\n", ident)
	lines := make([]string, 0, len(src.Columns)+1)
	for _, col := range src.Columns {
		l := "  " + quoteIdentifier(col.Name) + " " + col.Type
		if col.NotNull {
			l += " NOT NULL"
		}
		lines = append(lines, l)
	}
	if len(src.Key) > 0 {
		lines = append(lines, "  PRIMARY KEY ("+quotedList(src.Key)+")")
	}
	b.WriteString(strings.Join(lines, ",\n"))
	b.WriteString("\n);")
	return b.String()
}
