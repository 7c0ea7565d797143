// Package mysql is the MySQL/MariaDB source: a parallel, chunked snapshot
// consistent with a binlog position, then the binlog's row events from that
// position (by GTID, or by file and offset where GTIDs are off), published to
// the source's JetStream stream.
package mysql

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"golang.org/x/time/rate"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/producers"
	"github.com/ferry-dev/ferry/streams"
)

func init() {
	producers.Register("mysql", open)
	producers.Register("mariadb", open)
}

type producer struct {
	cfg  config.Source
	env  producers.Env
	log  *slog.Logger
	dsn  dsn
	meta *client.Conn // catalog and position queries
	mu   sync.Mutex   // guards meta

	flavor  string // gomysql.MySQLFlavor or gomysql.MariaDBFlavor
	useGTID bool

	tables map[string]*table
	order  []string

	maxPayload int
	limit      *rate.Limiter
}

func open(ctx context.Context, cfg config.Source, env producers.Env) (producers.Producer, error) {
	d, err := parseDSN(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("source %s: dsn: %v", cfg.Name, err)
	}
	p := &producer{
		cfg: cfg, env: env, dsn: d,
		log:    env.Log.With("source", cfg.Name),
		tables: map[string]*table{},
		limit:  config.Limiter(cfg.ReadRowsPerSecond),
	}
	if env.Conn != nil {
		p.maxPayload = int(env.Conn.NC.MaxPayload())
	}
	p.meta, err = p.connect(ctx)
	if err != nil {
		return nil, err
	}
	if err := p.detect(); err != nil {
		p.meta.Close()
		return nil, err
	}
	return p, nil
}

// connect opens a session that reads text as utf8mb4 and TIMESTAMP values
// in UTC, so that both arrive exactly as the binlog carries them.
func (p *producer) connect(ctx context.Context) (*client.Conn, error) {
	c, err := client.ConnectWithContext(ctx, p.dsn.Addr(), p.dsn.User, p.dsn.Password, p.dsn.DB, 15*time.Second)
	if err != nil {
		return nil, fmt.Errorf("source %s: cannot connect to MySQL at %s: %v", p.cfg.Name, p.dsn.redacted(), err)
	}
	if err := c.SetCharset("utf8mb4"); err != nil {
		c.Close()
		return nil, fmt.Errorf("source %s: setting the connection character set: %w", p.cfg.Name, err)
	}
	if _, err := c.Execute("SET time_zone = '+00:00'"); err != nil {
		c.Close()
		return nil, fmt.Errorf("source %s: setting the session time zone: %w", p.cfg.Name, err)
	}
	return c, nil
}

// detect learns whether the server is MySQL or MariaDB and whether its
// transactions carry GTIDs.
func (p *producer) detect() error {
	r, err := p.query("SELECT VERSION()")
	if err != nil {
		return err
	}
	v, _ := r.GetString(0, 0)
	p.flavor = gomysql.MySQLFlavor
	if strings.Contains(strings.ToLower(v), "mariadb") {
		// MariaDB gives every transaction a GTID; there is no switch.
		p.flavor, p.useGTID = gomysql.MariaDBFlavor, true
		return nil
	}
	r, err = p.query("SELECT @@GLOBAL.gtid_mode")
	if err != nil {
		return err
	}
	mode, _ := r.GetString(0, 0)
	p.useGTID = strings.EqualFold(mode, "ON")
	return nil
}

// query runs a statement on the shared catalog connection.
func (p *producer) query(q string, args ...any) (*gomysql.Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r, err := p.meta.Execute(q, args...)
	if err != nil {
		return nil, fmt.Errorf("source %s: %s: %w", p.cfg.Name, q, err)
	}
	return r, nil
}

// Close releases the catalog connection of a producer that was opened but
// not run (Run closes it itself).
func (p *producer) Close() { p.mu.Lock(); p.meta.Close(); p.mu.Unlock() }

// Ping checks the source connection, for health checks.
func (p *producer) Ping(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.meta.Ping()
}

// CurrentPosition is the binlog position now: every transaction committed
// before it is at or below it.
func (p *producer) CurrentPosition(ctx context.Context) (streams.Position, error) {
	pos, err := p.currentPosition()
	if err != nil {
		return streams.Position{}, err
	}
	return streams.Position{Pos: pos.order(), Text: pos.text()}, nil
}

func (p *producer) currentPosition() (position, error) {
	pos := position{Flavor: p.flavor, UseGTID: p.useGTID}
	r, err := p.query("SHOW MASTER STATUS")
	if err != nil {
		// MySQL 8.4 renamed it.
		if r, err = p.query("SHOW BINARY LOG STATUS"); err != nil {
			return pos, err
		}
	}
	if r.RowNumber() == 0 {
		return pos, fmt.Errorf("source %s: the server writes no binary log; start it with log_bin (see ferry check)", p.cfg.Name)
	}
	pos.File, _ = r.GetString(0, 0)
	off, _ := r.GetUint(0, 1)
	pos.Offset = uint32(off)
	if p.useGTID {
		q := "SELECT @@GLOBAL.gtid_executed"
		if p.flavor == gomysql.MariaDBFlavor {
			q = "SELECT @@GLOBAL.gtid_binlog_pos"
		}
		r, err := p.query(q)
		if err != nil {
			return pos, err
		}
		pos.GTID, _ = r.GetString(0, 0)
		pos.GTID = strings.ReplaceAll(pos.GTID, "\n", "")
	}
	return pos, nil
}

// Run is the producer's whole life: tables, snapshot, change stream. A
// session the server killed or lost is reported as a reason to start again
// from the saved state, which is how a restarted producer carries on.
func (p *producer) Run(ctx context.Context) (err error) {
	defer p.Close()
	defer func() {
		if sessionLost(err) {
			err = producers.Restart(err)
		}
	}()
	return p.run(ctx)
}

// sessionLost reports whether err ended a MySQL session rather than being
// about the statement: the connection broke (the driver's ErrBadConn), or
// the server killed the session or its query (KILL, a shutdown) or lost it.
func sessionLost(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, gomysql.ErrBadConn) {
		return true
	}
	var me *gomysql.MyError
	if errors.As(err, &me) {
		switch me.Code {
		case gomysql.ER_QUERY_INTERRUPTED, gomysql.ER_SERVER_SHUTDOWN, gomysql.ER_NET_READ_ERROR, gomysql.ER_NET_READ_INTERRUPTED,
			gomysql.ER_NET_ERROR_ON_WRITE, gomysql.ER_NET_WRITE_INTERRUPTED, errConnectionKilled:
			return true
		}
	}
	return false
}

// errConnectionKilled is MariaDB's ER_CONNECTION_KILLED ("Connection was
// killed"), which the driver has no name for.
const errConnectionKilled = 1927

func (p *producer) run(ctx context.Context) error {
	names, err := p.tableNames()
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := p.reload(ctx, n); err != nil {
			return err
		}
		p.order = append(p.order, n)
	}
	if _, err := p.env.Conn.EnsureSourceStream(ctx, p.cfg.Name, p.cfg.Partitions); err != nil {
		return err
	}
	var snap streams.SnapshotState
	if _, err := p.env.State.GetJSON(ctx, streams.SnapshotKey(p.cfg.Name), &snap); err != nil {
		return err
	}
	var sv saved
	havePos, err := p.env.State.GetJSON(ctx, streams.PositionKey(p.cfg.Name), &sv)
	if err != nil {
		return err
	}
	if snap.Done {
		done := map[string]bool{}
		for _, t := range snap.Tables {
			done[t] = true
		}
		for _, t := range p.order {
			if !done[t] && p.cfg.HasSnapshot() {
				return fmt.Errorf("source %s: table %s was added after this source's snapshot finished, and ferry does not snapshot added tables yet; move it with a source of its own (another name)", p.cfg.Name, t)
			}
		}
		if p.cfg.HasCDC() && p.cfg.HasSnapshot() && !havePos {
			return fmt.Errorf("source %s: the snapshot was taken in mode snapshot, without a binlog position, so the changes made since cannot be found; run snapshot+cdc under a new source name (or delete this source's stream and KV state and empty the targets)", p.cfg.Name)
		}
	}
	needSnapshot := p.cfg.HasSnapshot() && !snap.Done
	var start position
	if havePos {
		start = sv.MySQL
		if p.cfg.DefaultGTIDSet != "" {
			p.log.Info("defaultGTIDSet ignored: resuming from the saved position", "position", start.text())
		}
	}
	if needSnapshot {
		snap.Tables = p.order
		done, err := p.snapshot(ctx, &snap, !havePos)
		if err != nil || !done {
			return err
		}
		snap.Done = true
		if err := p.env.State.PutJSON(ctx, streams.SnapshotKey(p.cfg.Name), snap); err != nil {
			return err
		}
		p.log.Info("snapshot complete", "tables", len(p.order))
		if p.cfg.HasCDC() {
			// The snapshot saved where the stream starts: its consistent
			// point, or where a resumed snapshot caught up to.
			if havePos, err = p.env.State.GetJSON(ctx, streams.PositionKey(p.cfg.Name), &sv); err != nil {
				return err
			}
			start = sv.MySQL
		}
	}
	if !p.cfg.HasCDC() || ctx.Err() != nil {
		return nil
	}
	if !havePos {
		start, err = p.firstPosition()
		if err != nil {
			return err
		}
		if err := p.savePosition(ctx, start, 0); err != nil {
			return err
		}
	}
	return p.stream(ctx, start)
}

// tableNames lists the tables the source moves (sources[].tables, or every
// base table of the DSN's database), as bare names.
func (p *producer) tableNames() ([]string, error) {
	names := p.cfg.Tables
	if len(names) == 0 {
		p.mu.Lock()
		var err error
		names, err = listTables(p.meta, p.dsn.DB)
		p.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", p.cfg.Name, err)
		}
	}
	out := make([]string, 0, len(names))
	for _, n := range names {
		// "app.orders" names the DSN's database explicitly.
		if db, rel, ok := strings.Cut(n, "."); ok {
			if db != p.dsn.DB {
				return nil, fmt.Errorf("source %s: table %s is not in database %s, the one the dsn names", p.cfg.Name, n, p.dsn.DB)
			}
			n = rel
		}
		out = append(out, n)
	}
	return out, nil
}

// firstPosition is where the change stream starts when KV holds none:
// defaultGTIDSet when set, else the server's position now.
func (p *producer) firstPosition() (position, error) {
	if p.cfg.DefaultGTIDSet != "" {
		if !p.useGTID {
			return position{}, fmt.Errorf("source %s: defaultGTIDSet is set but the server has GTIDs off (gtid_mode); remove defaultGTIDSet or turn GTIDs on", p.cfg.Name)
		}
		set, err := parseGTIDSet(p.flavor, p.cfg.DefaultGTIDSet)
		if err != nil {
			return position{}, fmt.Errorf("source %s: defaultGTIDSet: %w", p.cfg.Name, err)
		}
		p.log.Info("starting the change stream at defaultGTIDSet", "gtid", set.String())
		return position{Flavor: p.flavor, UseGTID: true, GTID: set.String()}, nil
	}
	return p.currentPosition()
}

// savePosition writes pos to KV as the change stream's resume point.
func (p *producer) savePosition(ctx context.Context, pos position, commitUs int64) error {
	sv := saved{
		Position: streams.Position{Pos: pos.order(), Text: pos.text(), CommitTimeUs: commitUs, SavedAtUs: time.Now().UnixMicro()},
		MySQL:    pos,
	}
	return p.env.State.PutJSON(ctx, streams.PositionKey(p.cfg.Name), sv)
}

// reload reads a table's layout from the catalog and records it in KV.
func (p *producer) reload(ctx context.Context, name string) error {
	p.mu.Lock()
	t, err := loadTable(p.meta, p.dsn.DB, name)
	p.mu.Unlock()
	if err != nil {
		return fmt.Errorf("source %s: %w", p.cfg.Name, err)
	}
	p.tables[name] = t
	return p.env.State.PutJSON(ctx, streams.SchemaKey(p.cfg.Name, name), t.schemaRecord())
}
