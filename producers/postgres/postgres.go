// Package postgres is the PostgreSQL source: a parallel, chunked snapshot
// consistent with a logical replication slot, then the slot's pgoutput
// change stream, published to the source's JetStream stream.
package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/time/rate"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/pgcodec"
	"github.com/ferry-dev/ferry/producers"
	"github.com/ferry-dev/ferry/streams"
)

func init() {
	producers.Register("postgres", open)
	producers.Register("postgresql", open)
}

type producer struct {
	cfg    config.Source
	env    producers.Env
	log    *slog.Logger
	pool   *pgxpool.Pool
	tables map[string]*table
	order  []string
	// maxPayload is the largest message the NATS server takes.
	maxPayload int
	// limit caps rows read per second (nil: no cap).
	limit *rate.Limiter
}

func poolConfig(cfg config.Source) (*pgxpool.Config, error) {
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		// pgx quotes the DSN in its error; say what is wrong without it.
		return nil, fmt.Errorf("source %s: dsn %s is not a valid PostgreSQL connection string", cfg.Name, config.Redact(cfg.DSN))
	}
	for k, v := range pgcodec.SessionParams {
		pc.ConnConfig.RuntimeParams[k] = v
	}
	pc.ConnConfig.RuntimeParams["application_name"] = "ferry"
	pc.MaxConns = int32(cfg.SnapshotWorkers + 2)
	return pc, nil
}

func open(ctx context.Context, cfg config.Source, env producers.Env) (producers.Producer, error) {
	pc, err := poolConfig(cfg)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("source %s: connecting to %s: %w", cfg.Name, config.Redact(cfg.DSN), err)
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := pool.Ping(cctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("source %s: cannot connect to PostgreSQL at %s: %w", cfg.Name, config.Redact(cfg.DSN), err)
	}
	return &producer{
		cfg: cfg, env: env, pool: pool,
		log:        env.Log.With("source", cfg.Name),
		tables:     map[string]*table{},
		maxPayload: int(env.Conn.NC.MaxPayload()),
		limit:      config.Limiter(cfg.ReadRowsPerSecond),
	}, nil
}

// Run is the producer's whole life: preflight, snapshot, change stream.
func (p *producer) Run(ctx context.Context) error {
	defer p.pool.Close()
	if err := p.preflight(ctx); err != nil {
		return err
	}
	names, err := resolveTables(ctx, p.pool, p.cfg.Tables, p.cfg.Publication)
	if err != nil {
		return fmt.Errorf("source %s: %w", p.cfg.Name, err)
	}
	for _, n := range names {
		t, err := loadTable(ctx, p.pool, n)
		if err != nil {
			return fmt.Errorf("source %s: %w", p.cfg.Name, err)
		}
		p.tables[t.Name] = t
		p.order = append(p.order, t.Name)
		if err := p.saveSchema(ctx, t); err != nil {
			return err
		}
	}
	if p.cfg.HasCDC() {
		if err := p.checkReplicaIdentity(ctx); err != nil {
			return err
		}
	}
	if _, err := p.env.Conn.EnsureSourceStream(ctx, p.cfg.Name, p.cfg.Partitions); err != nil {
		return err
	}
	var snap streams.SnapshotState
	if _, err := p.env.State.GetJSON(ctx, streams.SnapshotKey(p.cfg.Name), &snap); err != nil {
		return err
	}
	needSnapshot := p.cfg.HasSnapshot() && !snap.Done
	if snap.Done {
		// The snapshot is finished and recorded: a table added to the
		// config since has no rows in the stream, and after a snapshot
		// taken without a slot no slot holds the changes made since.
		done := map[string]bool{}
		for _, t := range snap.Tables {
			done[t] = true
		}
		for _, t := range p.order {
			if !done[t] && p.cfg.HasSnapshot() {
				return fmt.Errorf("source %s: table %s was added after this source's snapshot finished, and ferry does not snapshot added tables yet; move it with a source of its own (another name)", p.cfg.Name, t)
			}
		}
		if p.cfg.HasCDC() && p.cfg.HasSnapshot() && snap.Consistent == "" {
			return fmt.Errorf("source %s: the snapshot was taken in mode snapshot, without a replication slot, so no slot holds the changes made since; run snapshot+cdc under a new source name (or delete this source's stream and KV state and empty the targets)", p.cfg.Name)
		}
	}

	var repl *pgconn.PgConn
	var start pglogrepl.LSN
	if p.cfg.HasCDC() {
		if err := p.ensurePublication(ctx); err != nil {
			return err
		}
		repl, err = p.replConn(ctx)
		if err != nil {
			return err
		}
		defer repl.Close(context.Background())
		start, err = p.ensureSlot(ctx, repl, needSnapshot, &snap)
		if err != nil {
			return err
		}
		if needSnapshot && snap.Name == "" {
			// The slot's exported snapshot is gone (a restart): see
			// catchup.go for why the stream goes first.
			tx, name, vis, until, err := p.freshSnapshot(ctx)
			if err != nil {
				return err
			}
			defer func() { _ = tx.Rollback(context.Background()) }()
			if start, err = p.catchUp(ctx, repl, start, vis, until); err != nil {
				return err
			}
			repl.Close(context.Background())
			if repl, err = p.replConn(ctx); err != nil {
				return err
			}
			defer repl.Close(context.Background())
			snap.Name = name
		}
	}
	if needSnapshot {
		if !p.cfg.HasCDC() && snap.Name == "" {
			// Without a slot, a plain exported snapshot keeps the chunks
			// consistent with each other while this transaction stays open.
			tx, name, err := p.exportSnapshot(ctx)
			if err != nil {
				return err
			}
			defer func() { _ = tx.Rollback(context.Background()) }()
			snap.Name = name
		}
		snap.Tables = p.order
		if err := p.env.State.PutJSON(ctx, streams.SnapshotKey(p.cfg.Name), snap); err != nil {
			return err
		}
		done, err := p.snapshot(ctx, snap.Name)
		if err != nil || !done {
			return err
		}
		snap.Done, snap.Name = true, ""
		if err := p.env.State.PutJSON(ctx, streams.SnapshotKey(p.cfg.Name), snap); err != nil {
			return err
		}
		p.log.Info("snapshot complete", "tables", len(p.order))
	}
	if !p.cfg.HasCDC() || ctx.Err() != nil {
		return nil
	}
	return p.stream(ctx, repl, start)
}

// preflight checks what the source must allow, saying how to fix each.
func (p *producer) preflight(ctx context.Context) error {
	if !p.cfg.HasCDC() {
		return nil
	}
	var walLevel string
	if err := p.pool.QueryRow(ctx, `SHOW wal_level`).Scan(&walLevel); err != nil {
		return fmt.Errorf("source %s: reading wal_level: %w", p.cfg.Name, err)
	}
	if walLevel != "logical" {
		return fmt.Errorf("source %s: wal_level is %q but change capture (mode %s) needs logical replication: run ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL (or use mode: snapshot)",
			p.cfg.Name, walLevel, p.cfg.Mode)
	}
	var ok bool
	if err := p.pool.QueryRow(ctx, `SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user`).Scan(&ok); err != nil {
		return fmt.Errorf("source %s: reading role privileges: %w", p.cfg.Name, err)
	}
	if !ok {
		return fmt.Errorf("source %s: the connecting role lacks the REPLICATION privilege: run ALTER ROLE <user> WITH REPLICATION;", p.cfg.Name)
	}
	return nil
}

func (p *producer) ensurePublication(ctx context.Context) error {
	var exists bool
	if err := p.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, p.cfg.Publication).Scan(&exists); err != nil {
		return fmt.Errorf("source %s: looking up publication %s: %w", p.cfg.Name, p.cfg.Publication, err)
	}
	idents := make([]string, 0, len(p.order))
	for _, n := range p.order {
		idents = append(idents, p.tables[n].Ident)
	}
	if !exists {
		// Changes to a partition are published under its root, the table
		// ferry reads and names; without this they would arrive as the
		// leaf partitions' own names.
		q := "CREATE PUBLICATION " + quoteIdent(p.cfg.Publication) + " FOR TABLE " + strings.Join(idents, ", ") + " WITH (publish_via_partition_root = true)"
		if _, err := p.pool.Exec(ctx, q); err != nil {
			return fmt.Errorf("source %s: creating publication %s: %w", p.cfg.Name, p.cfg.Publication, err)
		}
		p.log.Info("created publication", "publication", p.cfg.Publication, "tables", len(idents))
		return nil
	}
	var viaRoot bool
	if err := p.pool.QueryRow(ctx, `SELECT pubviaroot FROM pg_publication WHERE pubname = $1`, p.cfg.Publication).Scan(&viaRoot); err != nil {
		return fmt.Errorf("source %s: reading publication %s: %w", p.cfg.Name, p.cfg.Publication, err)
	}
	if !viaRoot {
		for _, n := range p.order {
			var partitioned bool
			if err := p.pool.QueryRow(ctx, `SELECT relkind = 'p' FROM pg_class WHERE oid = $1::regclass`, p.tables[n].Ident).Scan(&partitioned); err != nil {
				return fmt.Errorf("source %s: reading %s: %w", p.cfg.Name, n, err)
			}
			if partitioned {
				return fmt.Errorf("source %s: table %s is partitioned but publication %s publishes changes under the partitions' names; run ALTER PUBLICATION %s SET (publish_via_partition_root = true);",
					p.cfg.Name, n, p.cfg.Publication, quoteIdent(p.cfg.Publication))
			}
		}
	}
	rows, err := p.pool.Query(ctx, `SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = $1`, p.cfg.Publication)
	if err != nil {
		return fmt.Errorf("source %s: reading publication %s: %w", p.cfg.Name, p.cfg.Publication, err)
	}
	in, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("source %s: reading publication %s: %w", p.cfg.Name, p.cfg.Publication, err)
	}
	have := map[string]bool{}
	for _, n := range in {
		have[n] = true
	}
	for _, n := range p.order {
		if have[n] {
			continue
		}
		if _, err := p.pool.Exec(ctx, "ALTER PUBLICATION "+quoteIdent(p.cfg.Publication)+" ADD TABLE "+p.tables[n].Ident); err != nil {
			return fmt.Errorf("source %s: adding %s to publication %s: %w", p.cfg.Name, n, p.cfg.Publication, err)
		}
		p.log.Info("added table to publication", "publication", p.cfg.Publication, "table", n)
	}
	return nil
}

// replConn opens a replication-protocol connection.
func (p *producer) replConn(ctx context.Context) (*pgconn.PgConn, error) {
	pc, err := pgconn.ParseConfig(p.cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("source %s: dsn %s is not a valid PostgreSQL connection string", p.cfg.Name, config.Redact(p.cfg.DSN))
	}
	for k, v := range pgcodec.SessionParams {
		pc.RuntimeParams[k] = v
	}
	pc.RuntimeParams["replication"] = "database"
	pc.RuntimeParams["application_name"] = "ferry"
	conn, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("source %s: opening replication connection to %s: %w", p.cfg.Name, config.Redact(p.cfg.DSN), err)
	}
	return conn, nil
}

// ensureSlot creates the replication slot if absent and returns the LSN to
// stream from. A new slot made while a snapshot is still needed exports its
// snapshot, so that the snapshot and the stream meet exactly at the slot's
// consistent point.
func (p *producer) ensureSlot(ctx context.Context, repl *pgconn.PgConn, needSnapshot bool, snap *streams.SnapshotState) (pglogrepl.LSN, error) {
	var plugin string
	var confirmed *string
	var sameDB bool
	err := p.pool.QueryRow(ctx, `SELECT plugin, confirmed_flush_lsn::text, database IS NOT DISTINCT FROM current_database()
		FROM pg_replication_slots WHERE slot_name = $1`, p.cfg.Slot).Scan(&plugin, &confirmed, &sameDB)
	var pos streams.Position
	havePos, perr := p.env.State.GetJSON(ctx, streams.PositionKey(p.cfg.Name), &pos)
	if perr != nil {
		return 0, perr
	}
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		if !havePos && snap.Consistent != "" {
			return 0, fmt.Errorf("source %s: replication slot %s is gone, but this source's snapshot was read against it (consistent at %s); the changes since are lost with it. Recreate the pipeline (delete stream %s and the ferry KV bucket, empty the targets) to start over",
				p.cfg.Name, p.cfg.Slot, snap.Consistent, streams.StreamName(p.cfg.Name))
		}
		if havePos {
			return 0, fmt.Errorf("source %s: replication slot %s is gone but ferry already streamed up to %s; changes since then cannot be recovered from the source. Recreate the pipeline (delete stream %s and the ferry KV bucket, empty the targets) to start over",
				p.cfg.Name, p.cfg.Slot, pos.Text, streams.StreamName(p.cfg.Name))
		}
		action := "NOEXPORT_SNAPSHOT"
		if needSnapshot {
			action = "EXPORT_SNAPSHOT"
		}
		res, err := pglogrepl.CreateReplicationSlot(ctx, repl, p.cfg.Slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{SnapshotAction: action})
		if err != nil {
			return 0, fmt.Errorf("source %s: creating replication slot %s: %w", p.cfg.Name, p.cfg.Slot, err)
		}
		lsn, err := pglogrepl.ParseLSN(res.ConsistentPoint)
		if err != nil {
			return 0, fmt.Errorf("source %s: slot consistent point %q: %w", p.cfg.Name, res.ConsistentPoint, err)
		}
		snap.Consistent, snap.Name = res.ConsistentPoint, res.SnapshotName
		p.log.Info("created replication slot", "slot", p.cfg.Slot, "consistentPoint", res.ConsistentPoint)
		return lsn, nil
	case err != nil:
		return 0, fmt.Errorf("source %s: looking up replication slot %s: %w", p.cfg.Name, p.cfg.Slot, err)
	}
	if !sameDB {
		return 0, fmt.Errorf("source %s: replication slot %s belongs to another database of this server; slot names are server-wide, so set sources[].slot to a name of its own",
			p.cfg.Name, p.cfg.Slot)
	}
	if plugin != "pgoutput" {
		return 0, fmt.Errorf("source %s: replication slot %s uses plugin %s; ferry needs pgoutput: drop it (SELECT pg_drop_replication_slot('%s')) or set another slot name",
			p.cfg.Name, p.cfg.Slot, plugin, p.cfg.Slot)
	}
	// An existing slot's exported snapshot is long gone; chunks still to read
	// are read at a fresh snapshot and the stream from the slot brings them
	// up to date.
	snap.Name = ""
	var start pglogrepl.LSN
	if confirmed != nil {
		start, _ = pglogrepl.ParseLSN(*confirmed)
		if snap.Consistent == "" {
			// A slot made before ferry's first run: the stream starts at
			// its confirmed position, which is what the snapshot meets.
			snap.Consistent = *confirmed
		}
	}
	if havePos && len(pos.Pos) >= 8 {
		if l := pglogrepl.LSN(binary.BigEndian.Uint64(pos.Pos)); l > start {
			start = l
		}
	}
	return start, nil
}

// exportSnapshot opens a repeatable-read transaction and exports its
// snapshot for the chunk readers.
func (p *producer) exportSnapshot(ctx context.Context) (pgx.Tx, string, error) {
	tx, err := p.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, "", fmt.Errorf("source %s: starting snapshot transaction: %w", p.cfg.Name, err)
	}
	var name string
	if err := tx.QueryRow(ctx, `SELECT pg_export_snapshot()`).Scan(&name); err != nil {
		_ = tx.Rollback(ctx)
		return nil, "", fmt.Errorf("source %s: exporting snapshot: %w", p.cfg.Name, err)
	}
	return tx, name, nil
}

// CurrentPosition is the source's WAL insert position now: every change
// committed before it is at or below it.
func (p *producer) CurrentPosition(ctx context.Context) (streams.Position, error) {
	return CurrentPosition(ctx, p.pool)
}

// Close releases the source connections of a producer that was opened but
// not run (Run closes them itself).
func (p *producer) Close() { p.pool.Close() }

// saveSchema records a table's columns and types in KV, once per layout,
// rather than naming the types in every event.
func (p *producer) saveSchema(ctx context.Context, t *table) error {
	ts := streams.TableSchema{Key: t.keyCols}
	for _, c := range t.Columns {
		ts.Columns = append(ts.Columns, streams.ColumnSchema{Name: c.Name, Type: c.Type.Name, NotNull: c.NotNull})
	}
	return p.env.State.PutJSON(ctx, streams.SchemaKey(p.cfg.Name, t.Name), ts)
}

// Ping checks the source connection, for health checks.
func (p *producer) Ping(ctx context.Context) error { return p.pool.Ping(ctx) }

// checkReplicaIdentity refuses tables whose deletes and key changes would
// not carry the primary key in the stream: REPLICA IDENTITY NOTHING, or
// USING INDEX on an index other than the primary key. DEFAULT (the primary
// key) and FULL (every column) both carry it.
func (p *producer) checkReplicaIdentity(ctx context.Context) error {
	for _, name := range p.order {
		t := p.tables[name]
		var ident string
		var onPK bool
		err := p.pool.QueryRow(ctx, `
			SELECT c.relreplident::text,
			       COALESCE((SELECT i.indisprimary FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident), false)
			FROM pg_class c WHERE c.oid = $1::regclass`, t.Ident).Scan(&ident, &onPK)
		if err != nil {
			return fmt.Errorf("source %s: reading the replica identity of %s: %w", p.cfg.Name, name, err)
		}
		if ident == "n" || (ident == "i" && !onPK) {
			return fmt.Errorf("source %s: table %s has REPLICA IDENTITY %s, so its deletes and key changes do not carry the primary key ferry orders changes by; run ALTER TABLE %s REPLICA IDENTITY DEFAULT;",
				p.cfg.Name, name, map[string]string{"n": "NOTHING", "i": "USING INDEX (not the primary key)"}[ident], t.Ident)
		}
	}
	return nil
}
