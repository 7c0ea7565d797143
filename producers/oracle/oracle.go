// Package oracle is the Oracle source: a snapshot read AS OF one SCN in
// parallel primary-key chunks, then changes mined with LogMiner over SCN
// windows, grouped into transactions by ferry and published in commit
// order.
//
// The server-facing code is two small interfaces, Miner (LogMiner rows for
// an SCN window) and Querier (queries at an SCN); everything else works on
// their results and is tested without a server. goora.go implements both
// with github.com/sijms/go-ora/v2.
package oracle

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/producers"
	"github.com/ferry-dev/ferry/streams"
)

func init() {
	producers.Register("oracle", open)
}

// Miner reads LogMiner's view of the redo for one SCN window: it adds the
// log files covering [from, to], starts LogMiner with the online catalog,
// and calls fn for every row of V$LOGMNR_CONTENTS with from <= SCN <= to,
// in order, for the given owners (and every transaction's START, COMMIT and
// ROLLBACK).
type Miner interface {
	Mine(ctx context.Context, from, to uint64, owners []string, fn func(MinedRow) error) error
	// CurrentSCN is the database's current SCN (V$DATABASE.CURRENT_SCN).
	CurrentSCN(ctx context.Context) (uint64, error)
}

// Querier runs a query and calls fn with each row's values: nil, string
// (text, and every non-LOB value, which ferry selects through TO_CHAR),
// or []byte (BLOB).
type Querier interface {
	Query(ctx context.Context, sql string, args []any, fn func(vals []any) error) error
}

type producer struct {
	cfg    config.Source
	env    producers.Env
	log    *slog.Logger
	miner  Miner
	q      Querier // the PDB (or the only database): catalog and table reads
	root   Querier // where LogMiner runs: V$DATABASE, V$TRANSACTION
	closer func()
	tables map[string]*table
	order  []string
	// maxPayload is the largest message the NATS server takes.
	maxPayload int
	limit      *rate.Limiter
	// flushLag: mining stays this far behind the current SCN (flushWatch).
	flushLag time.Duration
}

func open(ctx context.Context, cfg config.Source, env producers.Env) (producers.Producer, error) {
	db, err := openDB(ctx, cfg.Name, cfg.DSN)
	if err != nil {
		return nil, err
	}
	pdb := db
	if cfg.PDBDSN != "" {
		if pdb, err = openDB(ctx, cfg.Name, cfg.PDBDSN); err != nil {
			db.Close()
			return nil, err
		}
	}
	m := &goOraMiner{db: db}
	if pdb != db {
		m.pdb = pdb
	}
	p := newProducer(cfg, env, m, &goOraQuerier{db: pdb}, &goOraQuerier{db: db})
	p.closer = func() {
		db.Close()
		if pdb != db {
			pdb.Close()
		}
	}
	return p, nil
}

func newProducer(cfg config.Source, env producers.Env, m Miner, q, root Querier) *producer {
	p := &producer{cfg: cfg, env: env, miner: m, q: q, root: root, tables: map[string]*table{},
		log: env.Log.With("source", cfg.Name), limit: config.Limiter(cfg.ReadRowsPerSecond), closer: func() {},
		flushLag: 5 * time.Second}
	if env.Conn != nil && env.Conn.NC != nil {
		p.maxPayload = int(env.Conn.NC.MaxPayload())
	}
	if p.maxPayload <= 0 {
		p.maxPayload = 1 << 20
	}
	return p
}

// Close releases the connections of a producer that was opened but not run.
func (p *producer) Close() { p.closer() }

// Ping checks the source connection, for health checks.
func (p *producer) Ping(ctx context.Context) error {
	return p.root.Query(ctx, `SELECT 1 FROM DUAL`, nil, func([]any) error { return nil })
}

// CurrentPosition is the database's current SCN: every transaction
// committed before now has a commit SCN at or below it. The saved position
// reaches it once everything mined up to it is published.
func (p *producer) CurrentPosition(ctx context.Context) (streams.Position, error) {
	scn, err := p.miner.CurrentSCN(ctx)
	if err != nil {
		return streams.Position{}, fmt.Errorf("reading the current SCN: %w", err)
	}
	return streams.Position{Pos: binary.BigEndian.AppendUint64(nil, scn), Text: fmt.Sprint(scn)}, nil
}

var _ producers.Positioner = (*producer)(nil)

// lmKey holds the change stream's checkpoint (see checkpoint).
func lmKey(source string) string { return streams.SourceKey(source, "logminer") }

// Run is the producer's whole life: tables, snapshot, change stream.
func (p *producer) Run(ctx context.Context) error {
	defer p.closer()
	if err := p.loadTables(ctx); err != nil {
		return err
	}
	if _, err := p.env.Conn.EnsureSourceStream(ctx, p.cfg.Name, p.cfg.Partitions); err != nil {
		return err
	}
	var snap streams.SnapshotState
	if _, err := p.env.State.GetJSON(ctx, streams.SnapshotKey(p.cfg.Name), &snap); err != nil {
		return err
	}
	if snap.Done && p.cfg.HasSnapshot() {
		for _, t := range p.order {
			if !slices.Contains(snap.Tables, t) {
				return fmt.Errorf("source %s: table %s was added after this source's snapshot finished, and ferry does not snapshot added tables yet; move it with a source of its own (another name)", p.cfg.Name, t)
			}
		}
	}
	needSnapshot := p.cfg.HasSnapshot() && !snap.Done
	var start checkpoint
	found, err := p.env.State.GetJSON(ctx, lmKey(p.cfg.Name), &start)
	if err != nil {
		return err
	}
	if !found && (p.cfg.HasCDC() || needSnapshot) {
		// The first start: one SCN for the snapshot and for where the
		// change stream takes over, saved before anything is read so that
		// a restart uses the same.
		if start, err = p.firstCheckpoint(ctx); err != nil {
			return err
		}
		if err := p.env.State.PutJSON(ctx, lmKey(p.cfg.Name), start); err != nil {
			return err
		}
		p.log.Info("starting position", "scn", start.CommitSCN, "mineFrom", start.RestartSCN)
	}
	if needSnapshot {
		if snap.Consistent == "" {
			snap.Consistent = fmt.Sprint(start.CommitSCN)
		}
		snap.Tables = p.order
		if err := p.env.State.PutJSON(ctx, streams.SnapshotKey(p.cfg.Name), snap); err != nil {
			return err
		}
		var scn uint64
		fmt.Sscan(snap.Consistent, &scn)
		done, err := p.snapshot(ctx, scn)
		if err != nil || !done {
			return err
		}
		snap.Done = true
		if err := p.env.State.PutJSON(ctx, streams.SnapshotKey(p.cfg.Name), snap); err != nil {
			return err
		}
		p.log.Info("snapshot complete", "tables", len(p.order), "scn", scn)
	}
	if !p.cfg.HasCDC() || ctx.Err() != nil {
		return nil
	}
	return p.stream(ctx, start)
}

// firstCheckpoint is where a pipeline with nothing saved starts: the
// configured scn / backfillFromSCN, or the current SCN, mining from the
// start of the oldest transaction open then so that a transaction which
// began before the snapshot and commits after it is seen whole.
func (p *producer) firstCheckpoint(ctx context.Context) (checkpoint, error) {
	if p.cfg.SCN != 0 {
		from := p.cfg.BackfillFromSCN
		if from == 0 {
			from = p.cfg.SCN
		}
		return checkpoint{CommitSCN: p.cfg.SCN, All: true, RestartSCN: from}, nil
	}
	if !p.cfg.HasCDC() {
		// A snapshot alone needs only the SCN to read at.
		cur, err := p.miner.CurrentSCN(ctx)
		if err != nil {
			return checkpoint{}, fmt.Errorf("source %s: reading the current SCN: %w", p.cfg.Name, err)
		}
		return checkpoint{CommitSCN: cur, All: true, RestartSCN: cur}, nil
	}
	var cur, oldest uint64
	err := p.root.Query(ctx, currentSCNSQL, nil, func(v []any) error {
		cur, oldest = scanUint(v[0]), scanUint(v[1])
		return nil
	})
	if err != nil {
		return checkpoint{}, fmt.Errorf("source %s: reading the current SCN and open transactions: %w", p.cfg.Name, err)
	}
	if cur == 0 {
		return checkpoint{}, fmt.Errorf("source %s: the database reported no current SCN", p.cfg.Name)
	}
	from := cur
	if oldest != 0 && oldest < from {
		from = oldest
	}
	return checkpoint{CommitSCN: cur, All: true, RestartSCN: from}, nil
}

// currentSCNSQL reads the current SCN and the start SCN of the oldest open
// transaction in one statement, so they describe one moment.
const currentSCNSQL = `SELECT TO_CHAR(d.CURRENT_SCN), TO_CHAR((SELECT MIN(t.START_SCN) FROM V$TRANSACTION t)) FROM V$DATABASE d`

func scanUint(v any) uint64 {
	var n uint64
	if s, ok := v.(string); ok {
		fmt.Sscan(strings.TrimSpace(s), &n)
	}
	return n
}

// loadTables reads the configured tables' columns and primary keys. With no
// tables configured, every table of the connected user's schema is moved.
func (p *producer) loadTables(ctx context.Context) error {
	names := p.cfg.Tables
	if len(names) == 0 {
		err := p.q.Query(ctx, userTablesSQL, nil, func(v []any) error {
			names = append(names, v[0].(string)+"."+v[1].(string))
			return nil
		})
		if err != nil {
			return fmt.Errorf("source %s: listing the schema's tables: %w", p.cfg.Name, err)
		}
		if len(names) == 0 {
			return fmt.Errorf("source %s: the connected user owns no tables; list them in sources[].tables as OWNER.TABLE", p.cfg.Name)
		}
	}
	for _, n := range names {
		t, err := loadTable(ctx, p.q, n)
		if err != nil {
			return fmt.Errorf("source %s: %w", p.cfg.Name, err)
		}
		if len(t.Key) == 0 {
			return fmt.Errorf("source %s: table %s has no primary key; ferry keys every row by it: ALTER TABLE %s ADD PRIMARY KEY (...);", p.cfg.Name, t.Name, t.ident())
		}
		if _, dup := p.tables[t.Name]; !dup {
			p.order = append(p.order, t.Name)
		}
		p.tables[t.Name] = t
		if err := p.saveSchema(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

const userTablesSQL = `SELECT USER, TABLE_NAME FROM USER_TABLES WHERE TEMPORARY = 'N' AND NESTED = 'NO' AND SECONDARY = 'N' AND IOT_TYPE IS NULL ORDER BY TABLE_NAME`

// Catalog reads of one table: its columns in order, and its primary key.
const (
	columnsSQL = `SELECT COLUMN_NAME, DATA_TYPE, TO_CHAR(DATA_SCALE), NULLABLE FROM ALL_TAB_COLUMNS WHERE OWNER = :1 AND TABLE_NAME = :2 AND HIDDEN_COLUMN = 'NO' ORDER BY COLUMN_ID`
	keySQL     = `SELECT cc.COLUMN_NAME FROM ALL_CONSTRAINTS c JOIN ALL_CONS_COLUMNS cc ON cc.OWNER = c.OWNER AND cc.CONSTRAINT_NAME = c.CONSTRAINT_NAME WHERE c.OWNER = :1 AND c.TABLE_NAME = :2 AND c.CONSTRAINT_TYPE = 'P' ORDER BY cc.POSITION`
)

// splitName splits OWNER.TABLE; names are taken as Oracle stores them
// (unquoted names are upper case), a bare name as upper case.
func splitName(name string) (owner, tbl string, err error) {
	owner, tbl, ok := strings.Cut(name, ".")
	if !ok || owner == "" || tbl == "" {
		return "", "", fmt.Errorf("table %q: write it as OWNER.TABLE", name)
	}
	return owner, tbl, nil
}

func loadTable(ctx context.Context, q Querier, name string) (*table, error) {
	owner, tbl, err := splitName(name)
	if err != nil {
		return nil, err
	}
	var cols []column
	notNull := map[string]bool{}
	err = q.Query(ctx, columnsSQL, []any{owner, tbl}, func(v []any) error {
		scale := -1
		if s, ok := v[2].(string); ok {
			fmt.Sscan(s, &scale)
		}
		c := newColumn(v[0].(string), v[1].(string), scale)
		cols = append(cols, c)
		notNull[c.Name] = v[3] == "N"
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the columns of %s: %w", name, err)
	}
	if len(cols) == 0 {
		return nil, fmt.Errorf("table %s does not exist or the user cannot see it (names are case-sensitive; unquoted Oracle names are upper case)", name)
	}
	var key []string
	err = q.Query(ctx, keySQL, []any{owner, tbl}, func(v []any) error {
		key = append(key, v[0].(string))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the primary key of %s: %w", name, err)
	}
	t, err := newTable(owner, tbl, cols, key)
	if err != nil {
		return nil, err
	}
	t.notNull = notNull
	return t, nil
}

// saveSchema records a table's columns and types in KV.
func (p *producer) saveSchema(ctx context.Context, t *table) error {
	if p.env.State == nil {
		return nil
	}
	ts := streams.TableSchema{Key: t.keyNames()}
	for _, c := range t.Columns {
		ts.Columns = append(ts.Columns, streams.ColumnSchema{Name: c.Name, Type: c.Type, NotNull: t.notNull[c.Name]})
	}
	return p.env.State.PutJSON(ctx, streams.SchemaKey(p.cfg.Name, t.Name), ts)
}

// owners lists the schemas of the pipeline's tables, for the mining query.
func (p *producer) owners() []string {
	var out []string
	for _, n := range p.order {
		if o := p.tables[n].Owner; !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	return out
}
