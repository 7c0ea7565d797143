package mysql

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/streams/pb"
	"github.com/ferry-dev/ferry/validate"
)

func init() {
	validate.RegisterSource("mysql", openValidator)
	validate.RegisterSource("mariadb", openValidator)
}

// validator reads a MySQL/MariaDB source for `ferry validate`: the tables
// the producer moves, split into primary-key ranges the way the snapshot
// splits them, each read in key order over the binary protocol as the
// snapshot reads its chunks; and rows by key for re-checks, unpaired rows
// and repairs. Values go through the producer's own conversion, so a row
// reads here as it travelled.
type validator struct {
	p *producer

	mu   sync.Mutex // guards idle and p.tables
	idle []*client.Conn
}

var (
	_ validate.RangeReader = (*validator)(nil)
	_ validate.Lookuper    = (*validator)(nil)
)

// maxIdle bounds the connections kept between reads: ranges are read in
// parallel (--parallel), each also looking rows up.
const maxIdle = 12

// lookupBatch bounds the keys of one lookup statement (placeholders are
// limited to 65535 per statement).
const lookupBatch = 500

func openValidator(ctx context.Context, cfg config.Source, log *slog.Logger) (validate.Source, error) {
	d, err := parseDSN(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("source %s: dsn: %v", cfg.Name, err)
	}
	p := &producer{cfg: cfg, dsn: d, log: log.With("source", cfg.Name), tables: map[string]*table{}}
	if p.meta, err = p.connect(ctx); err != nil {
		return nil, err
	}
	return &validator{p: p}, nil
}

// Tables lists the tables the producer moves, with their primary keys.
func (v *validator) Tables(ctx context.Context) ([]validate.Table, error) {
	names, err := v.p.tableNames()
	if err != nil {
		return nil, err
	}
	var out []validate.Table
	for _, n := range names {
		v.p.mu.Lock()
		t, err := loadTable(v.p.meta, v.p.dsn.DB, n)
		v.p.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", v.p.cfg.Name, err)
		}
		v.mu.Lock()
		v.p.tables[t.Name] = t
		v.mu.Unlock()
		out = append(out, validate.Table{Name: t.Name, Key: t.keyCols, Columns: t.names})
	}
	return out, nil
}

func (v *validator) table(name string) (*table, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	t, ok := v.p.tables[name]
	if !ok {
		return nil, fmt.Errorf("source %s: table %s was not listed", v.p.cfg.Name, name)
	}
	return t, nil
}

// Ordered: ranges are read in primary-key order. Text keys follow the
// column's collation, which need not be the engine's byte order; the engine
// looks up the rows it cannot pair, so that costs lookups, not accuracy.
func (v *validator) Ordered() bool { return true }

// Ranges walks the primary key as the snapshot planner does, taking every
// rowsPerRange-th key as a range's upper bound.
func (v *validator) Ranges(ctx context.Context, vt validate.Table, rowsPerRange int) ([]validate.Range, error) {
	t, err := v.table(vt.Name)
	if err != nil {
		return nil, err
	}
	bounds, err := v.p.chunkBounds(t, max(rowsPerRange, 1))
	if err != nil {
		return nil, err
	}
	keys := make([]*pb.Row, len(bounds))
	raw := make([]any, len(t.Key))
	for i, b := range bounds {
		for j, s := range b {
			raw[j] = decodeBound(s)
		}
		if keys[i], err = v.p.row(t, t.Key, raw, false); err != nil {
			return nil, err
		}
	}
	return validate.BoundRanges(keys), nil
}

// Read returns a range's rows in primary-key order.
func (v *validator) Read(ctx context.Context, vt validate.Table, r validate.Range, emit func(*pb.Row) error) error {
	t, err := v.table(vt.Name)
	if err != nil {
		return err
	}
	var where []string
	var args []any
	for _, b := range []struct {
		key *pb.Row
		op  string
	}{{r.Lo, " > "}, {r.Hi, " <= "}} {
		if b.key == nil {
			continue
		}
		a, err := keyArgs(t, b.key)
		if err != nil {
			return err
		}
		where = append(where, t.keyList()+b.op+t.keyParams())
		args = append(args, a...)
	}
	q := selectAll(t)
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY " + strings.Trim(t.keyList(), "()")
	return v.query(ctx, t, q, args, emit)
}

// Lookup reads the rows of the given primary keys.
func (v *validator) Lookup(ctx context.Context, vt validate.Table, keys []*pb.Row) ([]*pb.Row, error) {
	t, err := v.table(vt.Name)
	if err != nil {
		return nil, err
	}
	var out []*pb.Row
	for len(keys) > 0 {
		batch := keys[:min(len(keys), lookupBatch)]
		keys = keys[len(batch):]
		var args []any
		params := make([]string, len(batch))
		for i, k := range batch {
			a, err := keyArgs(t, k)
			if err != nil {
				return nil, err
			}
			args = append(args, a...)
			params[i] = t.keyParams()
		}
		q := selectAll(t) + " WHERE " + t.keyList() + " IN (" + strings.Join(params, ", ") + ")"
		if err := v.query(ctx, t, q, args, func(r *pb.Row) error { out = append(out, r); return nil }); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func selectAll(t *table) string {
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = quoteIdent(c.Name)
	}
	return "SELECT " + strings.Join(cols, ", ") + " FROM " + t.Ident
}

// query runs q over the binary protocol, as the snapshot reads (FLOAT and
// DOUBLE arrive as their exact bits), and converts each row as the
// producer does.
func (v *validator) query(ctx context.Context, t *table, q string, args []any, emit func(*pb.Row) error) error {
	conn, err := v.conn(ctx)
	if err != nil {
		return err
	}
	err = func() error {
		stmt, err := conn.Prepare(q)
		if err != nil {
			return err
		}
		defer stmt.Close()
		raw := make([]any, len(t.Columns))
		all := make([]int, len(t.Columns))
		for i := range all {
			all[i] = i
		}
		var res gomysql.Result
		return stmt.ExecuteSelectStreaming(&res, func(row []gomysql.FieldValue) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			for i := range row {
				raw[i] = row[i].Value()
			}
			r, err := v.p.row(t, all, raw, false)
			if err != nil {
				return err
			}
			return emit(r)
		}, nil, args...)
	}()
	if err != nil {
		// A statement stopped half-way leaves the connection unusable.
		conn.Close()
		return fmt.Errorf("source %s: reading %s: %w", v.p.cfg.Name, t.Name, err)
	}
	v.release(conn)
	return nil
}

// conn takes an idle connection or opens one.
func (v *validator) conn(ctx context.Context) (*client.Conn, error) {
	v.mu.Lock()
	if n := len(v.idle); n > 0 {
		c := v.idle[n-1]
		v.idle = v.idle[:n-1]
		v.mu.Unlock()
		return c, nil
	}
	v.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	return v.p.connect(cctx)
}

func (v *validator) release(c *client.Conn) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.idle) < maxIdle {
		v.idle = append(v.idle, c)
		return
	}
	c.Close()
}

// Close releases the connections.
func (v *validator) Close() {
	v.mu.Lock()
	for _, c := range v.idle {
		c.Close()
	}
	v.idle = nil
	v.mu.Unlock()
	v.p.Close()
}

// keyArgs turns key values, as the producer converted them, back into
// statement arguments that compare as the key columns do.
func keyArgs(t *table, key *pb.Row) ([]any, error) {
	if len(key.GetValues()) != len(t.Key) {
		return nil, fmt.Errorf("table %s: a key needs %d values (%s), got %d", t.Name, len(t.Key), strings.Join(t.keyCols, ", "), len(key.GetValues()))
	}
	args := make([]any, len(t.Key))
	for i, k := range t.Key {
		c := &t.Columns[k]
		a, err := keyArg(c, key.GetValues()[i])
		if err != nil {
			return nil, fmt.Errorf("key column %s.%s: cannot use value %s as a key (%v)", t.Name, c.Name, validate.Text(key.GetValues()[i]), err)
		}
		args[i] = a
	}
	return args, nil
}

func keyArg(c *column, v *pb.Value) (any, error) {
	switch x := v.GetKind().(type) {
	case *pb.Value_Int:
		return x.Int, nil
	case *pb.Value_Uint:
		return x.Uint, nil
	case *pb.Value_Decimal:
		return x.Decimal, nil
	case *pb.Value_Float64:
		return x.Float64, nil
	case *pb.Value_Float32:
		return float64(x.Float32), nil
	case *pb.Value_Text:
		return x.Text, nil
	case *pb.Value_Json:
		return x.Json, nil
	case *pb.Value_Bytes:
		return x.Bytes, nil
	case *pb.Value_Date:
		return time.Unix(int64(x.Date.Days)*86400, 0).UTC().Format("2006-01-02"), nil
	case *pb.Value_Timestamp:
		// The session's time zone is UTC, so a TIMESTAMP reads back as
		// the UTC wall time it was converted from.
		return time.UnixMicro(x.Timestamp.UnixUs).UTC().Format("2006-01-02 15:04:05.999999"), nil
	case *pb.Value_TimeUs:
		return clock(x.TimeUs), nil
	case *pb.Value_Interval:
		return clock(x.Interval.Micros), nil
	}
	return nil, fmt.Errorf("%s key values of this kind are not supported", c.ColumnType)
}

// clock renders microseconds as MySQL's "[-]H:MM:SS.ffffff".
func clock(us int64) string {
	sign := ""
	if us < 0 {
		sign, us = "-", -us
	}
	s := us / 1_000_000
	return fmt.Sprintf("%s%d:%02d:%02d.%06d", sign, s/3600, s/60%60, s%60, us%1_000_000)
}
