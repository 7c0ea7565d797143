package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/pgcodec"
	"github.com/ferry-dev/ferry/streams/pb"
	"github.com/ferry-dev/ferry/validate"
)

func init() {
	validate.RegisterTarget("postgres", openValidator)
	validate.RegisterTarget("cockroachdb", openValidator)
}

// validator reads a PostgreSQL or CockroachDB target for `ferry validate`:
// key ranges in primary-key order and rows by key. It only reads: unlike
// the applier it creates nothing on the target. The statements are the
// same on both dialects (row-value comparisons, unnest, casts from text).
type validator struct {
	cfg    config.Target
	pool   *pool
	secret string

	mu     sync.Mutex
	tables map[string]*vtable // by the name Table returned
}

// vtable is a target table with the decoder of each column.
type vtable struct {
	tbl   *table
	types map[string]*pgcodec.Type
}

var (
	_ validate.RangeReader = (*validator)(nil)
	_ validate.Lookuper    = (*validator)(nil)
)

func openValidator(ctx context.Context, cfg config.Target, _ *slog.Logger) (validate.Target, error) {
	where := fmt.Sprintf("target %s (%s)", cfg.Name, config.Redact(cfg.DSN))
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("%s: invalid dsn: %s", where, parseErrText(err, cfg.DSN))
	}
	for k, v := range pgcodec.SessionParams {
		pcfg.ConnConfig.RuntimeParams[k] = v
	}
	pcfg.ConnConfig.RuntimeParams["application_name"] = "ferry validate"
	if !strings.Contains(cfg.DSN, "pool_max_conns") {
		pcfg.MaxConns = 12
	}
	v := &validator{cfg: cfg, secret: pcfg.ConnConfig.Password, tables: map[string]*vtable{}}
	if v.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return nil, v.scrub(fmt.Errorf("%s: %w", where, err))
	}
	if err := v.pool.Ping(ctx); err != nil {
		v.pool.Close()
		return nil, v.scrub(fmt.Errorf("%s: %w", where, err))
	}
	return v, nil
}

func (v *validator) scrub(err error) error {
	return (&Target{secret: v.secret}).scrub(err)
}

// Table reads a table's columns, their types and its primary key. name is
// the source's table name after renames; targets[].schema replaces its
// schema as the applier does.
func (v *validator) Table(ctx context.Context, name string) (validate.Table, error) {
	schema, rel := splitTable(name, v.cfg.Schema)
	var vt vtable
	err := withConn(ctx, v.pool, func(c *pgx.Conn) error {
		var err error
		if vt.tbl, err = loadTable(ctx, c, schema, rel); err != nil {
			return err
		}
		rows, err := c.Query(ctx, pgcodec.TypeQuery, vt.tbl.ident)
		if err != nil {
			return fmt.Errorf("reading column types: %w", err)
		}
		cols, err := pgcodec.ScanTypes(rows)
		if err != nil {
			return err
		}
		vt.types = make(map[string]*pgcodec.Type, len(cols))
		for _, col := range cols {
			vt.types[col.Name] = col.Type
		}
		return nil
	})
	if errors.Is(err, errNoTable) {
		shown := rel
		if schema != "" {
			shown = schema + "." + rel
		}
		return validate.Table{}, fmt.Errorf("table %s does not exist", shown)
	}
	if err != nil {
		return validate.Table{}, v.scrub(fmt.Errorf("reading the definition of table %s: %w", name, err))
	}
	out := validate.Table{Name: vt.tbl.String()}
	for _, k := range vt.tbl.pk {
		out.Key = append(out.Key, vt.tbl.cols[k].name)
	}
	for _, c := range vt.tbl.cols {
		out.Columns = append(out.Columns, c.name)
	}
	v.mu.Lock()
	v.tables[out.Name] = &vt
	v.mu.Unlock()
	return out, nil
}

// Ordered: ranges are read in the order of the key columns given.
func (v *validator) Ordered() bool { return true }

// Ranges splits the table by every rowsPerRange-th key (used when the
// target is scanned for rows the source lacks).
func (v *validator) Ranges(ctx context.Context, t validate.Table, rowsPerRange int) ([]validate.Range, error) {
	vt, err := v.table(t.Name)
	if err != nil {
		return nil, err
	}
	cols, err := vt.columns(t.Key)
	if err != nil {
		return nil, err
	}
	keyList := strings.Join(quotedNames(vt.tbl, cols), ", ")
	var keys []*pb.Row
	var last *pb.Row
	for {
		q := "SELECT " + keyList + " FROM " + vt.tbl.ident
		args := []any{pgx.QueryResultFormats{pgx.TextFormatCode}}
		if last != nil {
			cond, a, err := vt.compare(cols, ">", last, 1)
			if err != nil {
				return nil, err
			}
			q += " WHERE " + cond
			args = append(args, a...)
		}
		q += fmt.Sprintf(" ORDER BY %s OFFSET %d LIMIT 1", keyList, rowsPerRange-1)
		var key *pb.Row
		err := v.query(ctx, vt, t.Key, q, args, func(r *pb.Row) error { key = r; return nil })
		if err != nil {
			return nil, err
		}
		if key == nil {
			break
		}
		keys = append(keys, key)
		last = key
	}
	out := make([]validate.Range, len(keys)+1)
	for i := range out {
		if i > 0 {
			out[i].Lo = keys[i-1]
		}
		if i < len(keys) {
			out[i].Hi = keys[i]
		}
	}
	return out, nil
}

func (v *validator) table(name string) (*vtable, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	vt, ok := v.tables[name]
	if !ok {
		return nil, fmt.Errorf("target %s: table %s was not looked up", v.cfg.Name, name)
	}
	return vt, nil
}

// columns resolves column names to indexes of the table.
func (vt *vtable) columns(names []string) ([]int, error) {
	out := make([]int, len(names))
	for i, n := range names {
		c, ok := vt.tbl.byName[n]
		if !ok {
			return nil, fmt.Errorf("column %s.%s does not exist", vt.tbl, n)
		}
		out[i] = c
	}
	return out, nil
}

// compare renders "(k1, k2) op ($n::text::type1, ...)" for a key bound,
// parameters numbered from first.
func (vt *vtable) compare(cols []int, op string, key *pb.Row, first int) (string, []any, error) {
	params := make([]string, len(cols))
	args := make([]any, len(cols))
	for i, c := range cols {
		text, err := vt.keyText(c, key.GetValues()[i])
		if err != nil {
			return "", nil, err
		}
		params[i] = fmt.Sprintf("$%d::text::%s", first+i, vt.tbl.cols[c].cast)
		args[i] = text
	}
	return "(" + strings.Join(quotedNames(vt.tbl, cols), ", ") + ") " + op + " (" + strings.Join(params, ", ") + ")", args, nil
}

func (vt *vtable) keyText(c int, val *pb.Value) (string, error) {
	tv, err := encode(vt.tbl.cols[c], val)
	if err != nil || !tv.Valid {
		return "", fmt.Errorf("key column %s.%s: cannot use value %s as a key (%v)", vt.tbl, vt.tbl.cols[c].name, validate.Text(val), err)
	}
	return tv.String, nil
}

// Read returns the rows of a key range, ordered by t.Key.
func (v *validator) Read(ctx context.Context, t validate.Table, r validate.Range, emit func(*pb.Row) error) error {
	vt, err := v.table(t.Name)
	if err != nil {
		return err
	}
	keyCols, err := vt.columns(t.Key)
	if err != nil {
		return err
	}
	cols, err := vt.columns(t.Columns)
	if err != nil {
		return err
	}
	q := "SELECT " + strings.Join(quotedNames(vt.tbl, cols), ", ") + " FROM " + vt.tbl.ident
	args := []any{pgx.QueryResultFormats{pgx.TextFormatCode}}
	var where []string
	for _, b := range []struct {
		key *pb.Row
		op  string
	}{{r.Lo, ">"}, {r.Hi, "<="}} {
		if b.key == nil {
			continue
		}
		cond, a, err := vt.compare(keyCols, b.op, b.key, len(args))
		if err != nil {
			return err
		}
		where = append(where, cond)
		args = append(args, a...)
	}
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY " + strings.Join(quotedNames(vt.tbl, keyCols), ", ")
	return v.query(ctx, vt, t.Columns, q, args, emit)
}

// Lookup reads the rows of the given keys.
func (v *validator) Lookup(ctx context.Context, t validate.Table, keys []*pb.Row) ([]*pb.Row, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	vt, err := v.table(t.Name)
	if err != nil {
		return nil, err
	}
	keyCols, err := vt.columns(t.Key)
	if err != nil {
		return nil, err
	}
	cols, err := vt.columns(t.Columns)
	if err != nil {
		return nil, err
	}
	arrays := make([][]string, len(keyCols))
	for _, k := range keys {
		for i, c := range keyCols {
			text, err := vt.keyText(c, k.GetValues()[i])
			if err != nil {
				return nil, err
			}
			arrays[i] = append(arrays[i], text)
		}
	}
	aliases := make([]string, len(keyCols))
	args := []any{pgx.QueryResultFormats{pgx.TextFormatCode}}
	for i := range keyCols {
		aliases[i] = fmt.Sprintf("k%d", i+1)
		args = append(args, arrays[i])
	}
	var b strings.Builder
	b.WriteString("SELECT ")
	for i, n := range quotedNames(vt.tbl, cols) {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("t." + n)
	}
	b.WriteString(" FROM " + vt.tbl.ident + " AS t JOIN ")
	unnestFrom(&b, aliases)
	b.WriteString(" ON ")
	pos := map[int]int{}
	for i, c := range keyCols {
		pos[c] = i + 1
	}
	// Match on the key columns asked for (the source's key, renamed),
	// which may differ from the target's own primary key.
	byKey := *vt.tbl
	byKey.pk = keyCols
	keyMatch(&b, &byKey, func(col int) string { return fmt.Sprintf("k%d", pos[col]) })
	var out []*pb.Row
	err = v.query(ctx, vt, t.Columns, b.String(), args, func(r *pb.Row) error { out = append(out, r); return nil })
	return out, err
}

// query runs a statement whose result columns are names, decoding each row.
func (v *validator) query(ctx context.Context, vt *vtable, names []string, q string, args []any, emit func(*pb.Row) error) error {
	types := make([]*pgcodec.Type, len(names))
	for i, n := range names {
		types[i] = vt.types[n]
		if types[i] == nil {
			return fmt.Errorf("target %s: no type known for column %s.%s", v.cfg.Name, vt.tbl, n)
		}
	}
	rows, err := v.pool.Query(ctx, q, args...)
	if err != nil {
		return v.scrub(fmt.Errorf("target %s: reading %s: %w", v.cfg.Name, vt.tbl, err))
	}
	defer rows.Close()
	for rows.Next() {
		raw := rows.RawValues()
		row := &pb.Row{Names: names, Values: make([]*pb.Value, len(names))}
		for i, typ := range types {
			val, err := pgcodec.Decode(typ, raw[i])
			if err != nil {
				if !utf8.Valid(raw[i]) {
					return fmt.Errorf("target %s: %s.%s holds text that is not valid UTF-8", v.cfg.Name, vt.tbl, names[i])
				}
				// A form the codec does not know compares as the
				// server's own text, as the source sends it.
				val = &pb.Value{Kind: &pb.Value_Native{Native: string(raw[i])}}
			}
			row.Values[i] = val
		}
		if err := emit(row); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return v.scrub(fmt.Errorf("target %s: reading %s: %w", v.cfg.Name, vt.tbl, err))
	}
	return nil
}

// Close releases the connections.
func (v *validator) Close() { v.pool.Close() }
