// Package cassandra is the Cassandra/ScyllaDB source: a snapshot of one
// table, a list, or a whole keyspace, read as token-range scans in parallel
// and published to the source's JetStream stream. Finished token ranges are
// recorded in KV, so a restarted run reads only what is left, whatever its
// split count; with savepoints configured, the same progress is also written
// as savepoint files in the shape the config had.
package cassandra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/gocql/gocql"
	"golang.org/x/time/rate"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/cqlcodec"
	"github.com/ferry-dev/ferry/producers"
	"github.com/ferry-dev/ferry/streams"
)

func init() {
	producers.Register("cassandra", open)
	producers.Register("scylla", open)
}

type producer struct {
	cfg        config.Source
	env        producers.Env
	log        *slog.Logger
	sess       *gocql.Session
	cons       gocql.Consistency
	maxPayload int
	limit      *rate.Limiter
	tables     []*table
	// run tells this process's snapshot messages apart from an earlier
	// run's: a range read again after a kill may split into messages
	// differently, and must not be dropped as a repeat.
	run int64
}

func open(ctx context.Context, cfg config.Source, env producers.Env) (producers.Producer, error) {
	cc, err := cqlcodec.Cluster(cqlcodec.ClusterOptions{
		DSN: cfg.DSN, Protocol: cfg.CQLProtocolVersion, Consistency: cfg.CQLConsistency,
		LocalDC: cfg.CQLLocalDC, Conns: 2,
	})
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", cfg.Name, err)
	}
	sess, err := cqlcodec.Connect(cc, cfg.CQLLocalDC)
	if err != nil {
		return nil, fmt.Errorf("source %s: connecting to %s: %w", cfg.Name, config.Redact(cfg.DSN), err)
	}
	p := &producer{
		cfg: cfg, env: env, sess: sess, cons: cc.Consistency,
		log:   env.Log.With("source", cfg.Name),
		limit: config.Limiter(cfg.ReadRowsPerSecond),
		run:   time.Now().UnixNano(),
	}
	if env.Conn != nil {
		p.maxPayload = int(env.Conn.NC.MaxPayload())
	}
	return p, nil
}

// Ping checks the connection, for health checks.
func (p *producer) Ping(ctx context.Context) error {
	return p.sess.Query("SELECT release_version FROM system.local").WithContext(ctx).Exec()
}

// Run snapshots every configured table, then returns.
func (p *producer) Run(ctx context.Context) error {
	return restartable(ctx, p.snapshotAll(ctx))
}

// restartable marks the driver's errors of a lost connection or a node's
// passing trouble (cqlcodec.Retryable) as a reason to open the source again:
// the supervisor then reads only the token ranges not finished, instead of
// ending the process.
func restartable(ctx context.Context, err error) error {
	if err != nil && ctx.Err() == nil && !errors.Is(err, producers.ErrRestart) && cqlcodec.Retryable(err) {
		return producers.Restart(err)
	}
	return err
}

func (p *producer) snapshotAll(ctx context.Context) error {
	defer p.sess.Close()
	if err := p.loadTables(ctx); err != nil {
		return err
	}
	for _, t := range p.tables {
		if err := p.env.State.PutJSON(ctx, streams.SchemaKey(p.cfg.Name, t.Name), t.schema()); err != nil {
			return err
		}
	}
	if _, err := p.env.Conn.EnsureSourceStream(ctx, p.cfg.Name, p.cfg.Partitions); err != nil {
		return err
	}
	done, err := p.snapshot(ctx)
	if err != nil || !done {
		return err
	}
	names := make([]string, len(p.tables))
	for i, t := range p.tables {
		names[i] = t.Name
	}
	if err := p.env.State.PutJSON(ctx, streams.SnapshotKey(p.cfg.Name), streams.SnapshotState{Done: true, Tables: names}); err != nil {
		return err
	}
	p.log.Info("snapshot complete", "tables", len(p.tables))
	return nil
}

// table is one source table as the snapshot reads it.
type table struct {
	Name     string // keyspace.table
	keyspace string
	name     string
	cols     []*gocql.ColumnMetadata
	names    []string
	keyNames []string
	// nKey columns lead cols: the partition key, then the clustering key.
	nKey, nPart int
	counter     bool
	// wt[i] and ttl[i] are the result positions of writetime() and ttl()
	// of column i, or -1 (preserveTimestamps; not for key columns, counters,
	// or non-frozen collections and UDTs, which have no single writetime and
	// take the row's rule instead: inherit[i]). null[i] is the position of
	// a NULL indicator of a tuple column (see cqlcodec.RowScanner), or -1.
	wt, ttl, null []int
	inherit       []bool
	types         []gocql.TypeInfo
	query         string
}

func quote(id string) string { return `"` + strings.ReplaceAll(id, `"`, `""`) + `"` }

// loadTables reads the tables' layout from the driver's schema metadata,
// which reads system.schema_* on Cassandra 2.x and system_schema on 3+ and
// ScyllaDB.
func (p *producer) loadTables(ctx context.Context) error {
	ks, err := cqlcodec.KeyspaceMetadata(ctx, p.sess, p.cfg.CQLKeyspace)
	if errors.Is(err, gocql.ErrKeyspaceDoesNotExist) || (err == nil && len(ks.Tables) == 0 && len(p.cfg.Tables) == 0) {
		return fmt.Errorf("source %s: keyspace %q does not exist (or has no tables)", p.cfg.Name, p.cfg.CQLKeyspace)
	}
	if err != nil {
		return fmt.Errorf("source %s: reading the schema of keyspace %s: %w", p.cfg.Name, p.cfg.CQLKeyspace, err)
	}
	names := p.cfg.Tables
	if len(names) == 0 {
		for n := range ks.Tables {
			names = append(names, n)
		}
		sort.Strings(names)
	}
	for _, n := range names {
		n = strings.TrimPrefix(n, p.cfg.CQLKeyspace+".")
		tm, ok := ks.Tables[n]
		if !ok {
			ident := quote(p.cfg.CQLKeyspace) + "." + quote(n)
			if p.sess.Query("SELECT * FROM "+ident+" LIMIT 1").WithContext(ctx).Consistency(p.cons).Exec() == nil {
				// It answers, so the driver's (cached) schema was read
				// while the schema tables changed: a new session reads
				// them again.
				return producers.Restart(fmt.Errorf("source %s: the driver's schema of keyspace %s lacks table %s, which exists; reading it again", p.cfg.Name, p.cfg.CQLKeyspace, n))
			}
			return fmt.Errorf("source %s: table %s.%s does not exist", p.cfg.Name, p.cfg.CQLKeyspace, n)
		}
		t, err := p.newTable(tm)
		if err != nil {
			return fmt.Errorf("source %s: %w", p.cfg.Name, err)
		}
		p.tables = append(p.tables, t)
	}
	return nil
}

func (p *producer) newTable(tm *gocql.TableMetadata) (*table, error) {
	if len(tm.PartitionKey) == 0 {
		// The driver reads the schema tables in separate queries and can
		// catch a table without its columns; it keeps that for the
		// session's life. A new session reads them again.
		return nil, producers.Restart(fmt.Errorf("the driver's schema of %s.%s has no partition key; reading it again", tm.Keyspace, tm.Name))
	}
	t := &table{Name: tm.Keyspace + "." + tm.Name, keyspace: tm.Keyspace, name: tm.Name}
	t.cols = append(t.cols, tm.PartitionKey...)
	t.cols = append(t.cols, tm.ClusteringColumns...)
	t.nPart, t.nKey = len(tm.PartitionKey), len(t.cols)
	var rest []string
	for n, c := range tm.Columns {
		if c.Kind != gocql.ColumnPartitionKey && c.Kind != gocql.ColumnClusteringKey {
			rest = append(rest, n)
		}
	}
	sort.Strings(rest)
	for _, n := range rest {
		t.cols = append(t.cols, tm.Columns[n])
	}
	types, err := p.columnTypes(t)
	if err != nil {
		return nil, err
	}
	sel := make([]string, 0, len(t.cols)*3)
	t.wt, t.ttl, t.null = make([]int, len(t.cols)), make([]int, len(t.cols)), make([]int, len(t.cols))
	t.inherit = make([]bool, len(t.cols))
	for i, c := range t.cols {
		if err := cqlcodec.Check(types[i]); err != nil {
			return nil, fmt.Errorf("column %s.%s: %v", t.Name, c.Name, err)
		}
		if types[i].Type() == gocql.TypeCounter {
			t.counter = true
		}
		t.names = append(t.names, c.Name)
		if i < t.nKey {
			t.keyNames = append(t.keyNames, c.Name)
		}
		sel = append(sel, quote(c.Name))
		t.wt[i], t.ttl[i], t.null[i] = -1, -1, -1
	}
	for i := t.nKey; i < len(t.cols); i++ {
		c := t.cols[i]
		frozen := cqlcodec.FrozenTop(types[i], c.Validator)
		if p.cfg.PreserveTimestamps && !t.counter {
			if frozen {
				t.wt[i], t.ttl[i] = len(sel), len(sel)+1
				sel = append(sel, "writetime("+quote(c.Name)+")", "ttl("+quote(c.Name)+")")
			} else {
				t.inherit[i] = true
			}
		}
		if types[i].Type() == gocql.TypeTuple {
			if t.wt[i] < 0 {
				t.null[i] = len(sel)
				sel = append(sel, "writetime("+quote(c.Name)+")")
			} else {
				t.null[i] = t.wt[i]
			}
		}
	}
	pk := make([]string, t.nPart)
	for i := range pk {
		pk[i] = quote(t.cols[i].Name)
	}
	tok := "token(" + strings.Join(pk, ", ") + ")"
	t.query = "SELECT " + strings.Join(sel, ", ") + " FROM " + quote(t.keyspace) + "." + quote(t.name) +
		" WHERE " + tok + " > ? AND " + tok + " <= ?"
	if w := strings.TrimSpace(p.cfg.CQLWhere); w != "" {
		t.query += " AND " + w + " ALLOW FILTERING"
	}
	return t, nil
}

// columnTypes reads the columns' types as the server describes them in a
// result. The driver's schema metadata cannot parse every type Cassandra
// 2.x writes in its schema tables (user-defined types come back as custom
// types), while result metadata is exact on every version.
func (p *producer) columnTypes(t *table) ([]gocql.TypeInfo, error) {
	sel := make([]string, len(t.cols))
	for i, c := range t.cols {
		sel[i] = quote(c.Name)
	}
	iter := p.sess.Query("SELECT " + strings.Join(sel, ", ") + " FROM " + quote(t.keyspace) + "." + quote(t.name) + " LIMIT 1").Consistency(p.cons).Iter()
	cols := iter.Columns()
	if err := iter.Close(); err != nil {
		return nil, fmt.Errorf("reading the column types of %s: %w", t.Name, err)
	}
	if len(cols) != len(t.cols) {
		return nil, fmt.Errorf("reading the column types of %s: %d columns in the result, %d in the schema", t.Name, len(cols), len(t.cols))
	}
	types := make([]gocql.TypeInfo, len(cols))
	for i, c := range cols {
		types[i] = c.TypeInfo
	}
	t.types = types
	return types, nil
}

func (t *table) schema() streams.TableSchema {
	s := streams.TableSchema{Key: t.keyNames}
	for i, c := range t.cols {
		s.Columns = append(s.Columns, streams.ColumnSchema{Name: c.Name, Type: cqlcodec.TypeName(t.types[i]), NotNull: i < t.nPart})
	}
	return s
}
