// Package postgres is the target connector for PostgreSQL and CockroachDB.
//
// One implementation serves both target types ("postgres", "cockroachdb");
// the SQL dialect follows the server actually reached (SELECT version()),
// not the configured type name.
//
// A batch is written in one transaction together with the lane's applied
// stream sequence (table ferry_state.applied), so that a batch is either
// fully applied and recorded or not at all. Events become a few set-based
// statements: consecutive events of one table and kind form a segment, and
// each segment is one statement over text arrays (see sql.go). When the batch
// fails on a row's data, it is redone event by event, each under a savepoint,
// and the events the server refuses are returned as rejected.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"

	"strings"
	"sync"
	"unicode/utf8"

	"github.com/cockroachdb/cockroach-go/v2/crdb"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-dev/ferry/appliers"
	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/pgcodec"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

func init() {
	appliers.Register("postgres", Open)
	appliers.Register("cockroachdb", Open)
}

// Target writes events into a PostgreSQL or CockroachDB database.
type Target struct {
	cfg     config.Target
	log     *slog.Logger
	pool    *pool // pgxpool, see pool.go
	dialect dialect
	version string
	// secret is the DSN's password, scrubbed from error texts.
	secret string

	mu     sync.Mutex
	tables map[string]*table // by event table name
}

var (
	_ appliers.Target   = (*Target)(nil)
	_ appliers.Rewinder = (*Target)(nil)
)

// Open connects to the target, detects its dialect and creates ferry's state
// table if needed. The DSN may carry pool_max_conns (as for pgxpool); the
// default is max(4, CPUs).
func Open(ctx context.Context, cfg config.Target, log *slog.Logger) (appliers.Target, error) {
	return open(ctx, cfg, log)
}

func open(ctx context.Context, cfg config.Target, log *slog.Logger) (*Target, error) {
	if log == nil {
		log = slog.Default()
	}
	where := fmt.Sprintf("target %s (%s)", cfg.Name, config.Redact(cfg.DSN))
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("%s: invalid dsn: %s", where, parseErrText(err, cfg.DSN))
	}
	t := &Target{cfg: cfg, log: log.With("target", cfg.Name), secret: pcfg.ConnConfig.Password, tables: map[string]*table{}}
	for k, v := range pgcodec.SessionParams {
		pcfg.ConnConfig.RuntimeParams[k] = v
	}
	if !strings.Contains(cfg.DSN, "pool_max_conns") {
		pcfg.MaxConns = int32(max(4, runtime.NumCPU()))
	}
	if t.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return nil, t.scrub(fmt.Errorf("%s: %w", where, err))
	}

	err = withConn(ctx, t.pool, func(c *pgx.Conn) error {
		if err := c.QueryRow(ctx, "SELECT version()").Scan(&t.version); err != nil {
			return fmt.Errorf("reading server version: %w", err)
		}
		t.dialect = detectDialect(t.version)
		// Look first: a DBA may have created the table for a ferry user
		// that has no CREATE privilege, which CREATE .. IF NOT EXISTS
		// would still demand.
		var exists bool
		if err := c.QueryRow(ctx, stateTableExists).Scan(&exists); err != nil {
			return fmt.Errorf("looking for state table ferry_state.applied: %w", err)
		}
		if exists {
			return nil
		}
		for _, q := range []string{createStateSchema, createStateTable} {
			if err := ensureDDL(ctx, c, q); err != nil {
				return fmt.Errorf("creating state table ferry_state.applied: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		t.pool.Close()
		return nil, t.scrub(fmt.Errorf("%s: %w", where, err))
	}
	t.log.Info("connected to target", "dsn", config.Redact(cfg.DSN), "dialect", t.dialect.String(), "version", t.version)
	return t, nil
}

// ensureDDL runs an IF NOT EXISTS statement. Two appliers creating the same
// object at once can still collide in PostgreSQL's catalogs (a unique
// violation on pg_namespace or pg_type); the loser just tries again and then
// finds the object.
func ensureDDL(ctx context.Context, c *pgx.Conn, sql string) error {
	var err error
	for range 3 {
		if _, err = c.Exec(ctx, sql); err == nil || sqlState(err) != "23505" {
			return err
		}
	}
	return err
}

// parseErrText is pgx's complaint about a DSN without the DSN itself, which
// would carry the password.
func parseErrText(err error, dsn string) string {
	msg := err.Error()
	if i := strings.Index(msg, "`: "); i >= 0 && strings.HasPrefix(msg, "cannot parse `") {
		msg = msg[i+3:]
	}
	return strings.ReplaceAll(msg, dsn, config.Redact(dsn))
}

// scrub removes the password from an error's text. pgx keeps passwords out
// of its messages, but a server or proxy echoing one must not put it in a
// log. (Passwords under 4 characters are left: replacing them would garble
// every message, and they are no secret anyway.)
func (t *Target) scrub(err error) error {
	if len(t.secret) < 4 || !strings.Contains(err.Error(), t.secret) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), t.secret, "xxxxx"))
}

// Applied returns the lane's recorded stream sequence, 0 if none.
func (t *Target) Applied(ctx context.Context, lane appliers.Lane) (uint64, error) {
	var seq int64
	err := withConn(ctx, t.pool, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, readApplied, t.cfg.Name, lane.Source, lane.Partition).Scan(&seq)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("target %s: reading applied sequence of lane %s/%d: %w", t.cfg.Name, lane.Source, lane.Partition, t.scrub(err))
	}
	return uint64(seq), nil
}

// Rewind sets the lane's recorded stream sequence, for a replay.
func (t *Target) Rewind(ctx context.Context, lane appliers.Lane, seq uint64) error {
	if seq > math.MaxInt64 {
		return fmt.Errorf("stream sequence %d does not fit ferry_state.applied.seq (bigint)", seq)
	}
	err := withConn(ctx, t.pool, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, writeApplied, t.cfg.Name, lane.Source, lane.Partition, int64(seq))
		return err
	})
	if err != nil {
		return fmt.Errorf("target %s: rewinding lane %s/%d to %d: %w", t.cfg.Name, lane.Source, lane.Partition, seq, t.scrub(err))
	}
	return nil
}

// Ping checks that a connection can be had and answers.
func (t *Target) Ping(ctx context.Context) error {
	err := withConn(ctx, t.pool, func(c *pgx.Conn) error { return c.Ping(ctx) })
	if err != nil {
		return fmt.Errorf("target %s: ping: %w", t.cfg.Name, t.scrub(err))
	}
	return nil
}

// Close closes the connections.
func (t *Target) Close() { t.pool.Close() }

// itemPlan is what one item turned into.
type itemPlan struct {
	item   appliers.Item
	table  *table
	ops    []op
	reject error // a rejectError, when the event cannot be written
}

// plan is a batch ready to write.
type plan struct {
	items    []itemPlan
	segments []*segment
}

// plan resolves tables and encodes values. Permanent schema errors end it;
// events that cannot be encoded are marked rejected and left out.
func (t *Target) plan(ctx context.Context, lane appliers.Lane, items []appliers.Item) (*plan, error) {
	p, stale, err := t.planOnce(ctx, lane, items)
	if stale != "" && t.forget(stale) {
		// The table may have changed since it was cached (a column added
		// for the migration): read it again before calling it permanent.
		p, _, err = t.planOnce(ctx, lane, items)
	}
	return p, err
}

// planOnce plans with the cached tables. On a schema error it also returns
// the event table name it concerns, so that plan can retry with a fresh
// copy.
func (t *Target) planOnce(ctx context.Context, lane appliers.Lane, items []appliers.Item) (*plan, string, error) {
	p := &plan{items: make([]itemPlan, len(items))}
	tables := map[string]*table{} // one *table per name for the whole batch
	ops := make([]op, 0, len(items))
	pl := planner{events: len(items)}
	for i, it := range items {
		e := it.Event
		p.items[i].item = it
		src := e.GetSource()
		if src == "" {
			src = lane.Source
		}
		se := schemaError{target: t.cfg.Name, source: src}
		tbl, ok := tables[e.GetTable()]
		if !ok {
			var err error
			if tbl, err = t.table(ctx, e.GetTable(), se); err != nil {
				return nil, "", err
			}
			tables[e.GetTable()] = tbl
		}
		p.items[i].table = tbl
		n := len(ops)
		var err error
		ops, err = pl.eventOps(ops, tbl, e, se)
		var rj *rejectError
		if errors.As(err, &rj) {
			ops = ops[:n]
			p.items[i].reject = err
			continue
		}
		if err != nil {
			return nil, e.GetTable(), err
		}
		p.items[i].ops = ops[n:len(ops):len(ops)]
	}
	p.segments = segmentOps(ops)
	return p, "", nil
}

// table returns the cached target table for an event table name, reading
// the catalog on first use.
func (t *Target) table(ctx context.Context, eventTable string, se schemaError) (*table, error) {
	t.mu.Lock()
	tbl, ok := t.tables[eventTable]
	t.mu.Unlock()
	if ok {
		return tbl, nil
	}
	schema, name := mapTable(eventTable, t.cfg.Tables, t.cfg.Schema)
	err := withConn(ctx, t.pool, func(c *pgx.Conn) error {
		var err error
		tbl, err = loadTable(ctx, c, schema, name)
		return err
	})
	if err == nil {
		if err := tbl.renameColumns(eventTable, t.cfg.Renames); err != nil {
			return nil, se.errorf("%v", err)
		}
	}
	if errors.Is(err, errNoTable) {
		shown := name
		if schema != "" {
			shown = schema + "." + name
		}
		return nil, se.errorf("table %s does not exist", shown)
	}
	if err != nil {
		return nil, fmt.Errorf("target %s: reading the definition of table %s: %w", t.cfg.Name, eventTable, t.scrub(err))
	}
	t.mu.Lock()
	t.tables[eventTable] = tbl
	t.mu.Unlock()
	return tbl, nil
}

// forget drops eventTable's cached table and reports whether there was one.
func (t *Target) forget(eventTable string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.tables[eventTable]
	delete(t.tables, eventTable)
	return ok
}

// forgetAll empties the table cache, after the server said a table or
// column the cache knows is gone.
func (t *Target) forgetAll() {
	t.mu.Lock()
	clear(t.tables)
	t.mu.Unlock()
}

// Apply writes the batch and the lane's sequence in one transaction.
func (t *Target) Apply(ctx context.Context, lane appliers.Lane, items []appliers.Item, lastSeq uint64, deadLetter appliers.DeadLetterFunc) ([]appliers.Rejected, error) {
	if lastSeq > math.MaxInt64 {
		return nil, appliers.Permanent(fmt.Errorf("target %s: stream sequence %d does not fit ferry_state.applied.seq (bigint)", t.cfg.Name, lastSeq))
	}
	p, err := t.plan(ctx, lane, items)
	if err != nil {
		return nil, err
	}
	err = t.inTx(ctx, func(tx pgx.Tx) error {
		for _, s := range p.segments {
			if err := t.exec(ctx, tx, s); err != nil {
				return err
			}
		}
		if err := storeDeadLetters(ctx, deadLetter, p.rejectedOnly()); err != nil {
			return err
		}
		return t.writeApplied(ctx, tx, lane, lastSeq)
	})
	if err == nil {
		return p.rejectedOnly(), nil
	}
	if !needsOneByOne(err) {
		return nil, t.applyErr(err, lane, len(items))
	}
	t.log.Warn("a row of the batch was refused; applying the batch event by event to set the refused ones aside",
		"lane", lane.Partition, "events", len(items), "err", t.scrub(err))
	// A deferred constraint fails only at COMMIT, where no savepoint can
	// isolate the row; checking constraints after each statement instead
	// lets the event-by-event pass find it.
	var ce *commitError
	immediate := errors.As(err, &ce) && t.dialect == dialectPostgres
	return t.applyOneByOne(ctx, lane, p, lastSeq, immediate, deadLetter)
}

// storeDeadLetters hands rejected events to deadLetter inside the batch's
// transaction, before its commit.
func storeDeadLetters(ctx context.Context, deadLetter appliers.DeadLetterFunc, rejected []appliers.Rejected) error {
	if deadLetter == nil || len(rejected) == 0 {
		return nil
	}
	if err := deadLetter(ctx, rejected); err != nil {
		return fmt.Errorf("storing %d rejected rows: %w", len(rejected), err)
	}
	return nil
}

func (t *Target) applyErr(err error, lane appliers.Lane, n int) error {
	if strings.HasPrefix(sqlState(err), "42") {
		// An undefined table or column, a type mismatch: the table may have
		// changed under the cache. The retry reads it again, and a table or
		// column that is really gone then becomes a permanent error.
		t.forgetAll()
	}
	return fmt.Errorf("target %s: applying %d events of lane %s/%d: %w", t.cfg.Name, n, lane.Source, lane.Partition, t.scrub(err))
}

func (p *plan) rejectedOnly() []appliers.Rejected {
	var out []appliers.Rejected
	for _, ip := range p.items {
		if ip.reject != nil {
			out = append(out, appliers.Rejected{Item: ip.item, Reason: rejectReason(ip, ip.reject)})
		}
	}
	return out
}

// applyOneByOne redoes a batch that failed on a row's data, each event
// under its own savepoint: an event the server refuses for its data is
// rolled back and returned, the others are committed with the sequence.
// immediate makes deferred constraints be checked after each statement.
func (t *Target) applyOneByOne(ctx context.Context, lane appliers.Lane, p *plan, lastSeq uint64, immediate bool, deadLetter appliers.DeadLetterFunc) ([]appliers.Rejected, error) {
	var rejected []appliers.Rejected
	err := t.inTx(ctx, func(tx pgx.Tx) error {
		rejected = rejected[:0] // the closure reruns on a retryable error
		if immediate {
			if _, err := tx.Exec(ctx, "SET CONSTRAINTS ALL IMMEDIATE"); err != nil {
				return fmt.Errorf("making constraints immediate: %w", err)
			}
		}
		for _, ip := range p.items {
			if ip.reject != nil {
				rejected = append(rejected, appliers.Rejected{Item: ip.item, Reason: rejectReason(ip, ip.reject)})
				continue
			}
			if len(ip.ops) == 0 {
				continue
			}
			if _, err := tx.Exec(ctx, "SAVEPOINT ferry_event"); err != nil {
				return fmt.Errorf("setting savepoint: %w", err)
			}
			var refused error
			for _, s := range segmentOps(ip.ops) {
				if err := t.exec(ctx, tx, s); err != nil {
					if !isDataError(err) {
						return err
					}
					refused = err
					break
				}
			}
			if refused != nil {
				if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT ferry_event"); err != nil {
					return fmt.Errorf("rolling back to savepoint: %w", err)
				}
				rejected = append(rejected, appliers.Rejected{Item: ip.item, Reason: rejectReason(ip, refused)})
				continue
			}
			if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT ferry_event"); err != nil {
				return fmt.Errorf("releasing savepoint: %w", err)
			}
		}
		if err := storeDeadLetters(ctx, deadLetter, rejected); err != nil {
			return err
		}
		return t.writeApplied(ctx, tx, lane, lastSeq)
	})
	if err != nil {
		return nil, t.applyErr(fmt.Errorf("event by event: %w", err), lane, len(p.items))
	}
	return rejected, nil
}

// exec runs one segment's statement.
func (t *Target) exec(ctx context.Context, tx pgx.Tx, s *segment) error {
	if s.live == 0 {
		return nil
	}
	if t.useCopy(s) {
		return t.execCopy(ctx, tx, s)
	}
	sql := s.sql(t.dialect)
	if sql == "" {
		return nil
	}
	var affected int64
	for _, args := range s.argChunks(maxStatementRows) {
		tag, err := tx.Exec(ctx, sql, args...)
		if err != nil {
			return fmt.Errorf("%s of %d rows of %s: %w", s.kind, s.live, s.table, err)
		}
		affected += tag.RowsAffected()
	}
	if s.kind == kindPartial && affected < int64(s.live) {
		// The row a partial update changes is not on the target: the
		// unchanged columns are unknown, so it cannot be inserted either.
		t.log.Warn("partial update found no row to update; the target is missing rows the source has",
			"table", s.table.String(), "rows", s.live, "updated", affected)
	}
	return nil
}

func (t *Target) writeApplied(ctx context.Context, tx pgx.Tx, lane appliers.Lane, seq uint64) error {
	if _, err := tx.Exec(ctx, writeApplied, t.cfg.Name, lane.Source, lane.Partition, int64(seq)); err != nil {
		return fmt.Errorf("recording applied sequence %d: %w", seq, err)
	}
	return nil
}

// inTx runs fn in a transaction on a pooled connection, retrying it on
// serialization failures (40001) through crdb.ExecuteInTx: CockroachDB asks
// for such retries routinely, PostgreSQL at higher isolation levels.
//
// crdbpgx.ExecuteTx does the same but drops the error of the final COMMIT:
// on CockroachDB, RELEASE SAVEPOINT cockroach_restart has committed already,
// but on PostgreSQL the COMMIT is the real one and its failure (a lost
// connection, a deferred constraint) must not pass for success. So the
// adapter here keeps that error.
func (t *Target) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return withConn(ctx, t.pool, func(c *pgx.Conn) error {
		tx, err := c.Begin(ctx)
		if err != nil {
			return fmt.Errorf("beginning transaction: %w", err)
		}
		a := &txAdapter{tx: tx}
		if err := crdb.ExecuteInTx(ctx, a, func() error { return fn(tx) }); err != nil {
			return err
		}
		if a.commitErr != nil {
			return &commitError{a.commitErr}
		}
		return nil
	})
}

// commitError is a failed COMMIT (PostgreSQL).
type commitError struct{ err error }

func (e *commitError) Error() string { return "committing: " + e.err.Error() }
func (e *commitError) Unwrap() error { return e.err }

type txAdapter struct {
	tx        pgx.Tx
	commitErr error
}

var _ crdb.Tx = (*txAdapter)(nil)

func (a *txAdapter) Exec(ctx context.Context, sql string, args ...any) error {
	_, err := a.tx.Exec(ctx, sql, args...)
	return err
}

func (a *txAdapter) Commit(ctx context.Context) error {
	a.commitErr = a.tx.Commit(ctx)
	return a.commitErr
}

func (a *txAdapter) Rollback(ctx context.Context) error { return a.tx.Rollback(ctx) }

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// isDataError reports whether the server refused a row for its data: class
// 22 (data exception: bad text for the type, out of range) or 23 (integrity
// constraint: NOT NULL, CHECK, unique, foreign key).
func isDataError(err error) bool {
	c := sqlState(err)
	return strings.HasPrefix(c, "22") || strings.HasPrefix(c, "23")
}

// needsOneByOne reports whether a failed batch should be redone event by
// event: on data errors, to find the refused rows, and on class 21
// (cardinality: "ON CONFLICT DO UPDATE command cannot affect row a second
// time"), which two keys that differ in text but are equal on the server
// (say under a case-insensitive collation) can cause in one statement and
// which single rows cannot.
func needsOneByOne(err error) bool {
	return isDataError(err) || strings.HasPrefix(sqlState(err), "21")
}

// rejectReason names the table, the key and the server's message.
func rejectReason(ip itemPlan, err error) string {
	e := ip.item.Event
	msg := err.Error()
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		msg = fmt.Sprintf("%s (SQLSTATE %s)", pe.Message, pe.Code)
		if pe.Detail != "" {
			msg += ": " + truncate(pe.Detail, 300)
		}
	}
	name := e.GetTable()
	if ip.table != nil {
		name = ip.table.String() // the target's name for it
	}
	r := fmt.Sprintf("%s %s key %s: %s", opName(e.GetOp()), name, eventKey(e), msg)
	// The reason travels in a NATS header, which cannot hold line breaks.
	return strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(r)
}

func opName(o pb.Op) string {
	switch o {
	case pb.Op_OP_READ:
		return "read"
	case pb.Op_OP_INSERT:
		return "insert"
	case pb.Op_OP_UPDATE:
		return "update"
	case pb.Op_OP_DELETE:
		return "delete"
	}
	return o.String()
}

// eventKey renders the event's key as name=value pairs.
func eventKey(e *pb.Event) string {
	k := e.GetKey()
	var parts []string
	for i, n := range k.GetNames() {
		if i < len(k.GetValues()) {
			parts = append(parts, n+"="+streams.ValueText(k.GetValues()[i]))
		}
	}
	if len(parts) == 0 {
		return "(none)"
	}
	return strings.Join(parts, ",")
}

// truncate cuts s to at most n bytes, on a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
