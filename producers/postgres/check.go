package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/pgcodec"
	"github.com/ferry-dev/ferry/internal/preflight"
	"github.com/ferry-dev/ferry/streams"
)

var _ preflight.SourceChecker = (*producer)(nil)

func init() {
	// A source that cannot be opened has no producer to ask; this says how
	// to fix its connection.
	advice := func(_ string, err error) (string, string) {
		return "connect", preflight.PostgresConnectFix(err, "sources[].dsn")
	}
	preflight.RegisterSourceAdvice("postgres", advice)
	preflight.RegisterSourceAdvice("postgresql", advice)
}

// sourceCheck gathers one source's findings. The checks read what Run will
// depend on and change nothing: a check creates no publication and no slot
// (the replication connection it tries is closed again at once).
type sourceCheck struct {
	p    *producer
	comp string
	fs   []preflight.Finding
	// What the connection check learnt, for the other checks' fixes.
	user, db          string
	super, replicator bool
	// slotExists, slotActive: ferry's slot is there (and streaming), so it
	// needs no free slot or WAL sender of its own.
	slotExists, slotActive bool
	sendersFree            bool
}

func (c *sourceCheck) add(check string, sev preflight.Severity, msg, fix string) {
	c.fs = append(c.fs, preflight.Finding{Component: c.comp, Check: check, Severity: sev, Message: msg, Fix: fix})
}

func (c *sourceCheck) ok(check, msg string) { c.add(check, preflight.OK, msg, "") }

// failed reports a check whose own query failed: nothing can be said about
// what it checks, so it blocks rather than pass silently.
func (c *sourceCheck) failed(check, what string, err error) {
	c.add(check, preflight.Block, fmt.Sprintf("%s: %v", what, err),
		fmt.Sprintf("make sure role %s can read the system catalogs of database %s (the error says what was refused), then run ferry check again", c.user, c.db))
}

// Check checks everything the source's mode needs and returns the tables it
// would move. The connection itself was proven by open.
func (p *producer) Check(ctx context.Context) ([]preflight.Finding, []preflight.Table) {
	c := &sourceCheck{p: p, comp: preflight.SourceComponent(p.cfg.Name)}
	if !c.connection(ctx) {
		return c.fs, nil
	}
	if p.cfg.HasCDC() {
		c.walLevel(ctx)
		if c.replicationRole() {
			c.slot(ctx)
			c.capacity(ctx)
			c.replicationConnection(ctx)
		}
	}
	tables := c.tables(ctx)
	if p.cfg.HasCDC() && len(tables) > 0 {
		c.publication(ctx, tables)
	}
	return c.fs, tables
}

func (c *sourceCheck) connection(ctx context.Context) bool {
	var version string
	err := c.p.pool.QueryRow(ctx, `SELECT current_setting('server_version'), current_user::text, current_database()::text,
		COALESCE((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false),
		COALESCE((SELECT rolreplication FROM pg_roles WHERE rolname = current_user), false)`).
		Scan(&version, &c.user, &c.db, &c.super, &c.replicator)
	if err != nil {
		c.add("connect", preflight.Block, fmt.Sprintf("connected to %s but the first query failed: %v", config.Redact(c.p.cfg.DSN), err),
			preflight.PostgresConnectFix(err, "sources[].dsn"))
		return false
	}
	if i := strings.Index(version, " ("); i > 0 {
		version = version[:i] // "15.6 (Debian 15.6-0+deb12u1)"
	}
	c.ok("connect", fmt.Sprintf("PostgreSQL %s at %s as role %s; mode %s", version, preflight.PostgresAddress(c.p.cfg.DSN), c.user, c.p.cfg.Mode))
	return true
}

func (c *sourceCheck) walLevel(ctx context.Context) {
	var level string
	if err := c.p.pool.QueryRow(ctx, `SHOW wal_level`).Scan(&level); err != nil {
		c.failed("wal_level", "reading wal_level", err)
		return
	}
	if level != "logical" {
		c.add("wal_level", preflight.Block,
			fmt.Sprintf("wal_level is %q, but mode %s reads changes through logical replication, which needs wal_level = logical", level, c.p.cfg.Mode),
			"ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL (or set mode: snapshot, which needs no change stream)")
		return
	}
	c.ok("wal_level", "wal_level is logical")
}

// replicationRole reports whether the role may stream changes; the slot
// and replication-connection checks need that to mean anything.
func (c *sourceCheck) replicationRole() bool {
	switch {
	case c.super:
		c.ok("replication_role", fmt.Sprintf("role %s is a superuser", c.user))
	case c.replicator:
		c.ok("replication_role", fmt.Sprintf("role %s has REPLICATION", c.user))
	default:
		c.add("replication_role", preflight.Block,
			fmt.Sprintf("role %s has neither REPLICATION nor superuser, which reading the change stream needs", c.user),
			fmt.Sprintf("as a superuser run: ALTER ROLE %s WITH REPLICATION; (on Amazon RDS/Aurora: GRANT rds_replication TO %s;)", quoteIdent(c.user), quoteIdent(c.user)))
		return false
	}
	return true
}

// slot checks ferry's replication slot as ensureSlot will find it.
func (c *sourceCheck) slot(ctx context.Context) {
	name := c.p.cfg.Slot
	var (
		slotType, plugin, database, confirmed, walStatus string
		sameDB, active                                   bool
		pid                                              int64
	)
	// wal_status is read through to_jsonb, so that servers before 13,
	// which lack the column, still answer.
	err := c.p.pool.QueryRow(ctx, `SELECT slot_type::text, COALESCE(plugin::text, ''), COALESCE(database::text, ''),
		database IS NOT DISTINCT FROM current_database(), active, COALESCE(active_pid, 0)::int8,
		COALESCE(confirmed_flush_lsn::text, ''), COALESCE(to_jsonb(s)->>'wal_status', '')
		FROM pg_replication_slots s WHERE slot_name = $1`, name).
		Scan(&slotType, &plugin, &database, &sameDB, &active, &pid, &confirmed, &walStatus)
	startOver := fmt.Sprintf("start the pipeline over: delete stream %s and the ferry KV bucket, empty the targets, and run ferry again", streams.StreamName(c.p.cfg.Name))
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if pos, ok := c.savedPosition(ctx); ok {
			c.add("slot", preflight.Block,
				fmt.Sprintf("replication slot %s is gone, but ferry already streamed up to %s; the changes since cannot be read from the source any more", name, pos),
				startOver)
			return
		}
		c.ok("slot", fmt.Sprintf("replication slot %s does not exist yet; ferry will create it (pgoutput)", name))
		return
	case err != nil:
		c.failed("slot", "looking up replication slot "+name, err)
		return
	}
	c.slotExists, c.slotActive = true, active
	other := fmt.Sprintf("slot names are server-wide: set sources[].slot to a name of its own (e.g. ferry_%s), or drop the slot if nothing uses it: SELECT pg_drop_replication_slot('%s');", config.IdentSafe(c.db+"_"+c.p.cfg.Name), name)
	switch {
	case slotType != "logical":
		c.add("slot", preflight.Block, fmt.Sprintf("replication slot %s is a %s slot; ferry needs a logical one", name, slotType), other)
	case !sameDB:
		c.add("slot", preflight.Block, fmt.Sprintf("replication slot %s belongs to database %s, not %s", name, database, c.db), other)
	case plugin != "pgoutput":
		c.add("slot", preflight.Block, fmt.Sprintf("replication slot %s uses plugin %s; ferry reads pgoutput", name, plugin), other)
	case walStatus == "lost":
		c.add("slot", preflight.Block,
			fmt.Sprintf("replication slot %s has lost WAL it needed (wal_status lost, max_slot_wal_keep_size exceeded): changes are missing", name),
			fmt.Sprintf("drop the slot (SELECT pg_drop_replication_slot('%s');) and %s", name, startOver))
	case active:
		c.add("slot", preflight.Warn,
			fmt.Sprintf("replication slot %s is in use by process %d: a running ferry of this source, or another client; only one can stream from a slot", name, pid),
			fmt.Sprintf("nothing to do if it is this pipeline's running ferry; otherwise stop that client (SELECT pg_terminate_backend(%d);) or set sources[].slot to another name", pid))
	default:
		c.ok("slot", fmt.Sprintf("replication slot %s exists (pgoutput, confirmed up to %s); ferry resumes from it", name, confirmed))
	}
}

// savedPosition returns the change-stream position ferry saved for this
// source, when the check was given the state bucket and there is one.
func (c *sourceCheck) savedPosition(ctx context.Context) (string, bool) {
	if c.p.env.State == nil {
		return "", false
	}
	var pos streams.Position
	ok, err := c.p.env.State.GetJSON(ctx, streams.PositionKey(c.p.cfg.Name), &pos)
	if err != nil || !ok {
		return "", false
	}
	return pos.Text, true
}

// capacity checks that a replication slot and a WAL sender are free for
// ferry, unless its slot exists (and, for the sender, streams) already.
func (c *sourceCheck) capacity(ctx context.Context) {
	var maxSlots, usedSlots, maxSenders, usedSenders int
	var inactive string
	err := c.p.pool.QueryRow(ctx, `SELECT current_setting('max_replication_slots')::int,
		(SELECT count(*) FROM pg_replication_slots)::int,
		current_setting('max_wal_senders')::int,
		(SELECT count(*) FROM pg_stat_replication)::int,
		COALESCE((SELECT string_agg(slot_name::text, ', ' ORDER BY slot_name) FROM pg_replication_slots WHERE NOT active), '')`).
		Scan(&maxSlots, &usedSlots, &maxSenders, &usedSenders, &inactive)
	if err != nil {
		c.failed("replication_slots", "reading max_replication_slots and max_wal_senders", err)
		return
	}
	switch {
	case maxSlots == 0:
		c.add("replication_slots", preflight.Block, "max_replication_slots is 0: the server allows no replication slot, and ferry needs one",
			"ALTER SYSTEM SET max_replication_slots = 10; then restart PostgreSQL")
	case !c.slotExists && usedSlots >= maxSlots:
		fix := fmt.Sprintf("raise the limit: ALTER SYSTEM SET max_replication_slots = %d; then restart PostgreSQL", maxSlots+4)
		if inactive != "" {
			first, _, _ := strings.Cut(inactive, ", ")
			fix = fmt.Sprintf("drop a slot nothing uses any more (inactive: %s), e.g. SELECT pg_drop_replication_slot('%s'); or %s", inactive, first, fix)
		}
		c.add("replication_slots", preflight.Block, fmt.Sprintf("all %d replication slots (max_replication_slots) are taken; ferry needs one for slot %s", maxSlots, c.p.cfg.Slot), fix)
	default:
		c.ok("replication_slots", fmt.Sprintf("%d of %d replication slots in use", usedSlots, maxSlots))
	}
	switch {
	case maxSenders == 0:
		c.add("wal_senders", preflight.Block, "max_wal_senders is 0: the server accepts no replication connection, and ferry streams changes through one",
			"ALTER SYSTEM SET max_wal_senders = 10; then restart PostgreSQL")
	case !c.slotActive && usedSenders >= maxSenders:
		c.add("wal_senders", preflight.Block, fmt.Sprintf("all %d WAL senders (max_wal_senders) are busy; ferry's replication connection would be refused", maxSenders),
			fmt.Sprintf("ALTER SYSTEM SET max_wal_senders = %d; then restart PostgreSQL (or stop a replication client: SELECT pid, application_name FROM pg_stat_replication;)", maxSenders+4))
	default:
		c.sendersFree = true
		c.ok("wal_senders", fmt.Sprintf("%d of %d WAL senders (max_wal_senders) busy", usedSenders, maxSenders))
	}
}

// replicationConnection opens the replication-protocol connection Run
// streams through and asks the server who it is: pg_hba.conf and the
// connection limits apply to it as they will to ferry's.
func (c *sourceCheck) replicationConnection(ctx context.Context) {
	if !c.sendersFree {
		return // the wal_senders finding already says why it would fail
	}
	conn, err := c.p.replConn(ctx)
	if err != nil {
		c.add("replication_connection", preflight.Block, err.Error(),
			"allow replication connections of this role to this database in pg_hba.conf (then SELECT pg_reload_conf();); "+preflight.PostgresConnectFix(err, "sources[].dsn"))
		return
	}
	defer conn.Close(context.WithoutCancel(ctx))
	sys, err := pglogrepl.IdentifySystem(ctx, conn)
	if err != nil {
		c.add("replication_connection", preflight.Block, "IDENTIFY_SYSTEM on the replication connection failed: "+err.Error(),
			fmt.Sprintf("make sure role %s may open replication connections (REPLICATION) and that a WAL sender is free", c.user))
		return
	}
	c.ok("replication_connection", fmt.Sprintf("replication connection works (system %s, timeline %d, WAL at %s)", sys.SystemID, sys.Timeline, sys.XLogPos))
}

// replicaIdentity names pg_class.relreplident as ALTER TABLE writes it.
func replicaIdentity(code string) string {
	switch code {
	case "d":
		return "DEFAULT"
	case "n":
		return "NOTHING"
	case "f":
		return "FULL"
	case "i":
		return "USING INDEX"
	}
	return code
}

// tables checks each table the source would move (resolved as Run resolves
// them) and returns those that exist, for the target checks. A table without
// a primary key is returned without a key, so that the targets can still be
// checked for its columns.
func (c *sourceCheck) tables(ctx context.Context) []preflight.Table {
	names, err := resolveTables(ctx, c.p.pool, c.p.cfg.Tables, c.p.cfg.Publication)
	if err != nil {
		c.add("tables", preflight.Block, err.Error(),
			"list the tables in sources[].tables (schema.table), or create them in schema public")
		return nil
	}
	var out []preflight.Table
	for _, n := range names {
		if t, ok := c.table(ctx, n); ok {
			out = append(out, t)
		}
	}
	return out
}

func (c *sourceCheck) table(ctx context.Context, name string) (preflight.Table, bool) {
	schema, rel := splitName(name)
	name = schema + "." + rel
	ident := quoteIdent(schema) + "." + quoteIdent(rel)
	var kind, replident string
	var hasPK, canSelect, identIsPK bool
	err := c.p.pool.QueryRow(ctx, `SELECT c.relkind::text, c.relreplident::text,
		EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
		has_table_privilege(c.oid, 'SELECT'),
		COALESCE((SELECT i.indisprimary FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident), false)
		FROM pg_class c WHERE c.oid = to_regclass($1)`, ident).Scan(&kind, &replident, &hasPK, &canSelect, &identIsPK)
	if errors.Is(err, pgx.ErrNoRows) {
		c.add("table", preflight.Block, fmt.Sprintf("table %s does not exist in the source database %s", name, c.db),
			fmt.Sprintf("create %s on the source, or remove it from sources[].tables", name))
		return preflight.Table{}, false
	}
	if err != nil {
		c.failed("table", "looking up table "+name, err)
		return preflight.Table{}, false
	}
	if kind != "r" && kind != "p" {
		what := map[string]string{"v": "view", "m": "materialized view", "f": "foreign table", "S": "sequence", "c": "composite type"}[kind]
		if what == "" {
			what = "relation of kind " + kind
		}
		c.add("table", preflight.Block, fmt.Sprintf("%s is a %s; ferry moves tables, whose changes logical replication carries", name, what),
			fmt.Sprintf("remove %s from sources[].tables", name))
		return preflight.Table{}, false
	}
	problems := len(c.fs)
	if !canSelect {
		// The snapshot reads every row; the change stream alone reads a
		// row only when a key change leaves a TOASTed value out of it.
		sev, why := preflight.Block, "which the snapshot needs"
		if !c.p.cfg.HasSnapshot() {
			sev, why = preflight.Warn, "which the change stream needs when a primary-key change leaves a large (TOASTed) value out of the stream"
		}
		c.add("privileges", sev, fmt.Sprintf("role %s cannot read table %s, %s", c.user, name, why),
			fmt.Sprintf("GRANT SELECT ON %s TO %s;", ident, quoteIdent(c.user)))
	}
	if !hasPK {
		cols, err := c.columns(ctx, ident)
		if err != nil {
			c.failed("primary_key", "reading the columns of "+name, err)
			return preflight.Table{}, false
		}
		c.add("primary_key", preflight.Block,
			fmt.Sprintf("table %s has no primary key (REPLICA IDENTITY %s); ferry needs a primary key to keep each row's changes in order and to write each row idempotently",
				name, replicaIdentity(replident)),
			c.addPrimaryKeyFix(ctx, ident, cols))
		return c.describe(name, cols, nil), true
	}
	t, err := loadTable(ctx, c.p.pool, name)
	if err != nil {
		c.failed("table", "reading table "+name, err)
		return preflight.Table{}, false
	}
	if c.p.cfg.HasCDC() {
		c.replicaIdentity(name, ident, replident, identIsPK)
	}
	if len(c.fs) == problems {
		msg := fmt.Sprintf("%s: %s, primary key (%s)", name, preflight.Quantity(len(t.Columns), "column", "columns"), strings.Join(t.keyCols, ", "))
		if t.EstRows > 0 { // 0 is also "never analyzed"
			msg += ", about " + preflight.Quantity(int(t.EstRows), "row", "rows")
		}
		c.ok("table", msg)
	}
	return c.describe(name, t.Columns, t.keyCols), true
}

// replicaIdentity checks that the change stream carries each row's primary
// key, which the producer keys every change by (the same rule as the
// producer's own start-up check): DEFAULT and FULL do; NOTHING and an
// identity index other than the primary key do not.
func (c *sourceCheck) replicaIdentity(name, ident, replident string, identIsPK bool) {
	fix := fmt.Sprintf("ALTER TABLE %s REPLICA IDENTITY DEFAULT;", ident)
	switch {
	case replident == "n":
		c.add("replica_identity", preflight.Block,
			fmt.Sprintf("table %s has REPLICA IDENTITY NOTHING: once it is published, its UPDATEs and DELETEs fail on the source, and the change stream could not name their rows", name), fix)
	case replident == "f":
		c.add("replica_identity", preflight.OK,
			fmt.Sprintf("table %s has REPLICA IDENTITY FULL: every change carries the old row, which costs WAL; DEFAULT (the primary key) is enough for ferry", name), "")
	case replident == "i" && !identIsPK:
		c.add("replica_identity", preflight.Block,
			fmt.Sprintf("table %s has REPLICA IDENTITY USING INDEX on an index other than its primary key: its deletes and key changes would not carry the primary key ferry orders changes by", name), fix)
	}
}

func (c *sourceCheck) columns(ctx context.Context, ident string) ([]pgcodec.Column, error) {
	rows, err := c.p.pool.Query(ctx, pgcodec.TypeQuery, ident)
	if err != nil {
		return nil, err
	}
	return pgcodec.ScanTypes(rows)
}

// addPrimaryKeyFix proposes the primary key: promoting a unique index that
// can be one (unique, b-tree, on plain columns, not partial), else naming
// the columns, with id when the table has such a column.
func (c *sourceCheck) addPrimaryKeyFix(ctx context.Context, ident string, cols []pgcodec.Column) string {
	var index string
	err := c.p.pool.QueryRow(ctx, `SELECT quote_ident(ic.relname)
		FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
		WHERE i.indrelid = $1::regclass AND i.indisunique AND i.indimmediate AND am.amname = 'btree'
		  AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indnatts = i.indnkeyatts
		  AND NOT EXISTS (SELECT 1 FROM unnest(i.indoption::int2[]) o WHERE o <> 0)
		ORDER BY i.indnatts, ic.relname LIMIT 1`, ident).Scan(&index)
	if err == nil {
		return fmt.Sprintf("promote the unique index %s: ALTER TABLE %s ADD PRIMARY KEY USING INDEX %s;", index, ident, index)
	}
	key := "<columns that identify a row>"
	for _, col := range cols {
		if col.Name == "id" {
			key = "id"
		}
	}
	return fmt.Sprintf("ALTER TABLE %s ADD PRIMARY KEY (%s);", ident, key)
}

func (c *sourceCheck) describe(name string, cols []pgcodec.Column, key []string) preflight.Table {
	t := preflight.Table{Name: name, Key: key, Changes: c.p.cfg.HasCDC()}
	for _, col := range cols {
		t.Columns = append(t.Columns, preflight.Column{Name: col.Name, Type: col.Type.Name, NotNull: col.NotNull})
	}
	return t
}

// publication checks the publication as ensurePublication will find it:
// absent (ferry creates it), or present with every table ferry moves
// (else ferry adds them), publishing inserts, updates and deletes.
func (c *sourceCheck) publication(ctx context.Context, tables []preflight.Table) {
	pub := c.p.cfg.Publication
	idents := make([]string, len(tables))
	names := make([]string, len(tables))
	for i, t := range tables {
		s, r := splitName(t.Name)
		idents[i], names[i] = quoteIdent(s)+"."+quoteIdent(r), t.Name
	}
	var allOps, allTables, ownsPub bool
	err := c.p.pool.QueryRow(ctx, `SELECT pubinsert AND pubupdate AND pubdelete, puballtables, pg_has_role(pubowner, 'USAGE')
		FROM pg_publication WHERE pubname = $1`, pub).Scan(&allOps, &allTables, &ownsPub)
	if errors.Is(err, pgx.ErrNoRows) {
		c.newPublication(ctx, pub, idents)
		return
	}
	if err != nil {
		c.failed("publication", "looking up publication "+pub, err)
		return
	}
	if !allOps {
		c.add("publication", preflight.Block,
			fmt.Sprintf("publication %s does not publish every insert, update and delete; the changes it leaves out would never reach the targets", pub),
			fmt.Sprintf("ALTER PUBLICATION %s SET (publish = 'insert, update, delete');", quoteIdent(pub)))
	}
	var missing []string
	if !allTables {
		rows, err := c.p.pool.Query(ctx, `SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1`, pub)
		if err != nil {
			c.failed("publication", "reading publication "+pub, err)
			return
		}
		in, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			c.failed("publication", "reading publication "+pub, err)
			return
		}
		have := map[string]bool{}
		for _, n := range in {
			have[n] = true
		}
		for i, n := range names {
			if !have[n] {
				missing = append(missing, idents[i])
			}
		}
	}
	if len(missing) == 0 {
		if allOps {
			c.ok("publication", fmt.Sprintf("publication %s publishes every table ferry moves (%s)", pub, preflight.Quantity(len(tables), "table", "tables")))
		}
		return
	}
	add := fmt.Sprintf("ALTER PUBLICATION %s ADD TABLE %s;", quoteIdent(pub), strings.Join(missing, ", "))
	notOwned, err := c.notOwned(ctx, missing)
	if err != nil {
		c.failed("publication", "reading the owners of the tables", err)
		return
	}
	if c.super || (ownsPub && len(notOwned) == 0) {
		c.add("publication", preflight.Warn,
			fmt.Sprintf("publication %s lacks %s ferry moves (%s); ferry will add them", pub, preflight.Quantity(len(missing), "table", "tables"), strings.Join(missing, ", ")),
			"nothing to do; to add them yourself instead: "+add)
		return
	}
	c.add("publication", preflight.Block,
		fmt.Sprintf("publication %s lacks %s, and role %s cannot add them (adding a table takes owning the publication and the table)", pub, strings.Join(missing, ", "), c.user),
		"as the owner of the publication and the tables (or a superuser) run: "+add)
}

func (c *sourceCheck) newPublication(ctx context.Context, pub string, idents []string) {
	create := fmt.Sprintf("CREATE PUBLICATION %s FOR TABLE %s;", quoteIdent(pub), strings.Join(idents, ", "))
	var canCreate bool
	if err := c.p.pool.QueryRow(ctx, `SELECT has_database_privilege(current_database(), 'CREATE')`).Scan(&canCreate); err != nil {
		c.failed("publication", "reading the CREATE privilege on the database", err)
		return
	}
	notOwned, err := c.notOwned(ctx, idents)
	if err != nil {
		c.failed("publication", "reading the owners of the tables", err)
		return
	}
	if c.super || (canCreate && len(notOwned) == 0) {
		c.add("publication", preflight.Warn,
			fmt.Sprintf("publication %s does not exist yet; ferry will create it for %s", pub, preflight.Quantity(len(idents), "table", "tables")),
			"nothing to do; to create it yourself instead: "+create)
		return
	}
	var why []string
	if !canCreate {
		why = append(why, fmt.Sprintf("it has no CREATE privilege on database %s", c.db))
	}
	if len(notOwned) > 0 {
		why = append(why, "it does not own "+strings.Join(notOwned, ", "))
	}
	c.add("publication", preflight.Block,
		fmt.Sprintf("publication %s does not exist, and role %s cannot create it: %s", pub, c.user, strings.Join(why, "; ")),
		fmt.Sprintf("as a superuser or the tables' owner run: %s (or GRANT CREATE ON DATABASE %s TO %s; and make %s own the tables)",
			create, quoteIdent(c.db), quoteIdent(c.user), quoteIdent(c.user)))
}

// notOwned lists the tables (quoted names) whose owner the role does not
// act as: publishing a table takes owning it.
func (c *sourceCheck) notOwned(ctx context.Context, idents []string) ([]string, error) {
	if c.super {
		return nil, nil
	}
	rows, err := c.p.pool.Query(ctx, `SELECT t.ident FROM unnest($1::text[]) AS t(ident)
		JOIN pg_class c ON c.oid = to_regclass(t.ident)
		WHERE NOT pg_has_role(c.relowner, 'USAGE') ORDER BY 1`, idents)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
