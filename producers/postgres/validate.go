package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/pgcodec"
	"github.com/ferry-dev/ferry/streams/pb"
	"github.com/ferry-dev/ferry/validate"
)

func init() {
	validate.RegisterSource("postgres", openValidator)
	validate.RegisterSource("postgresql", openValidator)
}

// validator reads a PostgreSQL source for `ferry validate`: the tables the
// producer moves, split into primary-key ranges the way the snapshot splits
// them, each read in key order; and rows by key for re-checks and repairs.
// Values are decoded exactly as the producer decodes them, so a row reads
// here as it travelled.
type validator struct {
	p  *producer
	mu sync.Mutex
}

var (
	_ validate.RangeReader = (*validator)(nil)
	_ validate.Lookuper    = (*validator)(nil)
)

func openValidator(ctx context.Context, cfg config.Source, log *slog.Logger) (validate.Source, error) {
	pc, err := poolConfig(cfg)
	if err != nil {
		return nil, err
	}
	// Ranges are read in parallel, each also re-checking and repairing.
	pc.MaxConns = max(pc.MaxConns, 12)
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
	return &validator{p: &producer{cfg: cfg, pool: pool, log: log.With("source", cfg.Name), tables: map[string]*table{}}}, nil
}

// Tables lists the tables the producer moves, with their primary keys.
func (v *validator) Tables(ctx context.Context) ([]validate.Table, error) {
	names, err := resolveTables(ctx, v.p.pool, v.p.cfg.Tables, v.p.cfg.Publication)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", v.p.cfg.Name, err)
	}
	var out []validate.Table
	for _, n := range names {
		t, err := loadTable(ctx, v.p.pool, n)
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

// Ordered: ranges are read in primary-key order.
func (v *validator) Ordered() bool { return true }

// Ranges walks the primary-key index as the snapshot planner does, taking
// every rowsPerRange-th key as a range's upper bound.
func (v *validator) Ranges(ctx context.Context, vt validate.Table, rowsPerRange int) ([]validate.Range, error) {
	t, err := v.table(vt.Name)
	if err != nil {
		return nil, err
	}
	planner := *v.p
	planner.cfg.ChunkRows = rowsPerRange
	bounds, err := planner.chunkBounds(ctx, t)
	if err != nil {
		return nil, err
	}
	keys := make([]*pb.Row, len(bounds))
	for i, b := range bounds {
		key := &pb.Row{Names: t.keyCols, Values: make([]*pb.Value, len(b))}
		for j, text := range b {
			c := t.Columns[t.Key[j]]
			if key.Values[j], err = v.p.decode(t.Name, c.Name, c.Type, []byte(text)); err != nil {
				return nil, err
			}
		}
		keys[i] = key
	}
	return validate.BoundRanges(keys), nil
}

// keyArgs encodes key values as the text the key columns' casts read.
func keyArgs(t *table, key *pb.Row) ([]any, error) {
	args := make([]any, len(t.Key))
	for i, k := range t.Key {
		text, null, err := pgcodec.EncodeFor(t.Columns[k].Type, key.GetValues()[i])
		if err != nil || null {
			return nil, fmt.Errorf("key column %s.%s: cannot use value %s as a key (%v)", t.Name, t.Columns[k].Name, validate.Text(key.GetValues()[i]), err)
		}
		args[i] = text
	}
	return args, nil
}

// Read returns a range's rows in primary-key order.
func (v *validator) Read(ctx context.Context, vt validate.Table, r validate.Range, emit func(*pb.Row) error) error {
	t, err := v.table(vt.Name)
	if err != nil {
		return err
	}
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = quoteIdent(c.Name)
	}
	q := "SELECT " + strings.Join(cols, ", ") + " FROM " + t.Ident
	args := []any{pgx.QueryResultFormats{pgx.TextFormatCode}}
	var where []string
	if r.Lo != nil {
		a, err := keyArgs(t, r.Lo)
		if err != nil {
			return err
		}
		where = append(where, "("+v.p.keyList(t, "")+") > ("+v.p.keyParams(t, len(args))+")")
		args = append(args, a...)
	}
	if r.Hi != nil {
		a, err := keyArgs(t, r.Hi)
		if err != nil {
			return err
		}
		where = append(where, "("+v.p.keyList(t, "")+") <= ("+v.p.keyParams(t, len(args))+")")
		args = append(args, a...)
	}
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY " + v.p.keyList(t, "")
	return v.query(ctx, t, q, args, emit)
}

func (v *validator) query(ctx context.Context, t *table, q string, args []any, emit func(*pb.Row) error) error {
	rows, err := v.p.pool.Query(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("source %s: reading %s: %w", v.p.cfg.Name, t.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		ev, err := v.p.rowEvent(t, pb.Op_OP_READ, rows.RawValues())
		if err != nil {
			return err
		}
		if err := emit(ev.After); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("source %s: reading %s: %w", v.p.cfg.Name, t.Name, err)
	}
	return nil
}

// Lookup reads the rows of the given primary keys.
func (v *validator) Lookup(ctx context.Context, vt validate.Table, keys []*pb.Row) ([]*pb.Row, error) {
	t, err := v.table(vt.Name)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, nil
	}
	arrays := make([][]string, len(t.Key))
	for _, k := range keys {
		a, err := keyArgs(t, k)
		if err != nil {
			return nil, err
		}
		for i := range a {
			arrays[i] = append(arrays[i], a[i].(string))
		}
	}
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = quoteIdent(c.Name)
	}
	sel := make([]string, len(t.Key))
	params := make([]string, len(t.Key))
	aliases := make([]string, len(t.Key))
	args := []any{pgx.QueryResultFormats{pgx.TextFormatCode}}
	for i, k := range t.Key {
		aliases[i] = fmt.Sprintf("k%d", i)
		params[i] = fmt.Sprintf("$%d::text[]", i+1)
		sel[i] = fmt.Sprintf("u.k%d::%s", i, t.Columns[k].Type.Name)
		args = append(args, arrays[i])
	}
	q := "SELECT " + strings.Join(cols, ", ") + " FROM " + t.Ident + " WHERE (" + v.p.keyList(t, "") + ") IN (SELECT " +
		strings.Join(sel, ", ") + " FROM unnest(" + strings.Join(params, ", ") + ") AS u(" + strings.Join(aliases, ", ") + "))"
	var out []*pb.Row
	err = v.query(ctx, t, q, args, func(r *pb.Row) error { out = append(out, r); return nil })
	return out, err
}

// Close releases the connections.
func (v *validator) Close() { v.p.pool.Close() }
