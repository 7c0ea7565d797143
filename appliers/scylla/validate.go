package scylla

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/gocql/gocql"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/cqlcodec"
	"github.com/ferry-dev/ferry/streams/pb"
	"github.com/ferry-dev/ferry/validate"
)

func init() {
	validate.RegisterTarget("scylla", openValidator)
	validate.RegisterTarget("cassandra", openValidator)
}

// validator reads a ScyllaDB/Cassandra target for `ferry validate`: rows by
// primary key (lookup mode: the source's token ranges are read and each key
// looked up here) and whole token ranges for the reverse pass that finds
// rows only the target has. It reads only.
type validator struct {
	t        *Target
	wantMeta bool

	mu      sync.Mutex
	tables  map[string]*vtable // by the name Table returned
	readers map[string]*vreader
}

// vtable is a target table's layout.
type vtable struct {
	keyspace, name string
	ident          string
	partKey        []string
	cols           map[string]*gocql.ColumnMetadata
	types          map[string]gocql.TypeInfo
	counter        bool
}

// vreader reads one table's given columns: a token-range query and a
// primary-key query selecting the same list, and where the writetime and
// TTL of each column and a tuple column's NULL indicator are in it.
type vreader struct {
	names         []string
	rangeQ        string
	keyQ          []string // by the number of key columns restricted
	wt, ttl, null []int
	// inherit marks non-frozen collections (and UDTs): they have no single
	// writetime, and the source gives them its row's newest cell's (see
	// the producer's cellMeta), so they are given the same here.
	inherit []bool
	list    []bool
	// regular marks the columns a static-only row (its first clustering
	// value at clustering, NULL) has no cells of; clustering is -1 without
	// clustering columns.
	regular    []bool
	clustering int
}

var (
	_ validate.RangeReader = (*validator)(nil)
	_ validate.Lookuper    = (*validator)(nil)
	_ validate.MetaReader  = (*validator)(nil)
)

// rangesPerScan is how many token ranges the reverse pass cuts the ring
// into; the target has no split count of its own.
const rangesPerScan = 64

func openValidator(ctx context.Context, cfg config.Target, log *slog.Logger) (validate.Target, error) {
	cfg.CQLConnections = max(cfg.CQLConnections, 16)
	at, err := open(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	return &validator{t: at.(*Target), tables: map[string]*vtable{}, readers: map[string]*vreader{}}, nil
}

// ReadMeta makes reads select each cell's writetime and TTL.
func (v *validator) ReadMeta(on bool) { v.wantMeta = on }

// Table reads the layout of the table a source table is written to. name
// is the source's table name (keyspace.table) or the value of its entry
// in targets[].tables; as the applier does, a value with a keyspace names
// that keyspace, anything else is a table of the target's keyspace.
func (v *validator) Table(ctx context.Context, name string) (validate.Table, error) {
	ksName, tbl := validateName(v.t.cfg, name)
	ks, err := cqlcodec.KeyspaceMetadata(ctx, v.t.sess, ksName)
	if err != nil {
		return validate.Table{}, fmt.Errorf("keyspace %s: %w", ksName, err)
	}
	tm, ok := ks.Tables[tbl]
	if !ok {
		return validate.Table{}, fmt.Errorf("table %s.%s does not exist", ksName, tbl)
	}
	vt := &vtable{keyspace: ksName, name: tbl, ident: quote(ksName) + "." + quote(tbl), cols: tm.Columns, types: map[string]gocql.TypeInfo{}}
	out := validate.Table{Name: ksName + "." + tbl}
	for _, c := range tm.PartitionKey {
		vt.partKey = append(vt.partKey, c.Name)
		out.Key = append(out.Key, c.Name)
	}
	for _, c := range tm.ClusteringColumns {
		out.Key = append(out.Key, c.Name)
	}
	out.Columns = append(out.Columns, out.Key...)
	sel := make([]string, 0, len(tm.Columns))
	for n, c := range tm.Columns {
		sel = append(sel, quote(n))
		if c.Kind != gocql.ColumnPartitionKey && c.Kind != gocql.ColumnClusteringKey {
			out.Columns = append(out.Columns, n)
		}
	}
	// Result metadata has the exact types on every version.
	iter := v.t.sess.Query("SELECT " + strings.Join(sel, ", ") + " FROM " + vt.ident + " LIMIT 1").Consistency(v.t.cons).Iter()
	for _, c := range iter.Columns() {
		vt.types[c.Name] = c.TypeInfo
		if c.TypeInfo.Type() == gocql.TypeCounter {
			vt.counter = true
		}
	}
	if err := iter.Close(); err != nil {
		return validate.Table{}, fmt.Errorf("reading the column types of %s.%s: %w", ksName, tbl, err)
	}
	v.mu.Lock()
	v.tables[out.Name] = vt
	v.mu.Unlock()
	return out, nil
}

// validateName is the keyspace and table Table reads for name.
func validateName(cfg config.Target, name string) (string, string) {
	for _, to := range cfg.Tables {
		if to == name {
			if ks, tb, ok := strings.Cut(name, "."); ok {
				return ks, tb
			}
			break
		}
	}
	return cfg.CQLKeyspace, name[strings.LastIndexByte(name, '.')+1:]
}

// reader returns (and keeps) the queries reading t's columns.
func (v *validator) reader(t validate.Table) (*vtable, *vreader, error) {
	id := t.Name + "\x00" + strings.Join(t.Columns, "\x00") + "\x00" + strings.Join(t.Key, "\x00")
	v.mu.Lock()
	defer v.mu.Unlock()
	vt, ok := v.tables[t.Name]
	if !ok {
		return nil, nil, fmt.Errorf("target %s: table %s was not opened", v.t.cfg.Name, t.Name)
	}
	if r, ok := v.readers[id]; ok {
		return vt, r, nil
	}
	r := &vreader{names: t.Columns, clustering: -1}
	if len(t.Key) > len(vt.partKey) {
		r.clustering = len(vt.partKey) // columns lead with the key, in key order
	}
	sel := make([]string, 0, len(t.Columns)*2)
	key := map[string]bool{}
	for _, k := range t.Key {
		key[k] = true
	}
	for _, c := range t.Columns {
		sel = append(sel, quote(c))
	}
	for _, c := range t.Columns {
		r.wt, r.ttl, r.null = append(r.wt, -1), append(r.ttl, -1), append(r.null, -1)
		i := len(r.wt) - 1
		cm, typ := vt.cols[c], vt.types[c]
		if cm == nil || typ == nil {
			return nil, nil, fmt.Errorf("target %s: table %s has no column %s", v.t.cfg.Name, t.Name, c)
		}
		r.inherit, r.list = append(r.inherit, false), append(r.list, typ.Type() == gocql.TypeList)
		r.regular = append(r.regular, !key[c] && cm.Kind != gocql.ColumnStatic)
		if key[c] {
			continue
		}
		// Like the source: only frozen cells have one writetime.
		if v.wantMeta && !vt.counter {
			if cqlcodec.FrozenTop(typ, cm.Validator) {
				r.wt[i], r.ttl[i] = len(sel), len(sel)+1
				sel = append(sel, "writetime("+quote(c)+")", "ttl("+quote(c)+")")
			} else {
				r.inherit[i] = true
			}
		}
		if typ.Type() == gocql.TypeTuple {
			if r.wt[i] < 0 {
				r.null[i] = len(sel)
				sel = append(sel, "writetime("+quote(c)+")")
			} else {
				r.null[i] = r.wt[i]
			}
		}
	}
	pk := make([]string, len(vt.partKey))
	for i, c := range vt.partKey {
		pk[i] = quote(c)
	}
	tok := "token(" + strings.Join(pk, ", ") + ")"
	base := "SELECT " + strings.Join(sel, ", ") + " FROM " + vt.ident
	r.rangeQ = base + " WHERE " + tok + " > ? AND " + tok + " <= ?"
	conds := make([]string, len(t.Key))
	r.keyQ = make([]string, len(t.Key)+1)
	for i, k := range t.Key {
		conds[i] = quote(k) + " = ?"
		r.keyQ[i+1] = base + " WHERE " + strings.Join(conds[:i+1], " AND ")
	}
	v.readers[id] = r
	return vt, r, nil
}

// Ordered: token order is not key order.
func (v *validator) Ordered() bool { return false }

// Ranges cuts the ring into token ranges for the reverse pass.
func (v *validator) Ranges(context.Context, validate.Table, int) ([]validate.Range, error) {
	var out []validate.Range
	for _, r := range cqlcodec.SplitRing(rangesPerScan) {
		out = append(out, validate.Range{Spec: cqlcodec.RangeSpec(r)})
	}
	return out, nil
}

// Read scans one token range.
func (v *validator) Read(ctx context.Context, t validate.Table, r validate.Range, emit func(*pb.Row) error) error {
	_, vr, err := v.reader(t)
	if err != nil {
		return err
	}
	tr, err := cqlcodec.ParseRangeSpec(r.Spec)
	if err != nil {
		return fmt.Errorf("target %s: %s: %w", v.t.cfg.Name, t.Name, err)
	}
	iter := v.t.sess.Query(vr.rangeQ, tr.Start, tr.End).WithContext(ctx).PageSize(1000).Consistency(v.t.cons).Idempotent(true).Iter()
	if err := vr.scan(t.Name, iter, emit); err != nil {
		return fmt.Errorf("target %s: reading %s tokens (%d, %d]: %w", v.t.cfg.Name, t.Name, tr.Start, tr.End, err)
	}
	return nil
}

// Lookup reads the rows of the given primary keys.
func (v *validator) Lookup(ctx context.Context, t validate.Table, keys []*pb.Row) ([]*pb.Row, error) {
	_, vr, err := v.reader(t)
	if err != nil {
		return nil, err
	}
	rows, err := cqlcodec.LookupEach(ctx, v.t.sess, func(n int) string { return vr.keyQ[n] }, v.t.cons, t.Key, keys, func(it cqlcodec.Iter, emit func(*pb.Row) error) error {
		return vr.scan(t.Name, it, emit)
	})
	if err != nil {
		return nil, fmt.Errorf("target %s: looking up rows of %s: %w", v.t.cfg.Name, t.Name, err)
	}
	return rows, nil
}

// scan decodes rows as the source's reader does: a tuple whose cell does
// not exist is NULL, and with write times each cell carries its own.
func (r *vreader) scan(table string, iter cqlcodec.Iter, emit func(*pb.Row) error) error {
	scan := cqlcodec.NewRowScanner(iter.Columns())
	var vals []*pb.Value
	for iter.Scan(scan.Dest()...) {
		var err error
		if vals, err = scan.Values(vals); err != nil {
			_ = iter.Close()
			return fmt.Errorf("%s.%w", table, err)
		}
		row := &pb.Row{Names: r.names, Values: make([]*pb.Value, len(r.names))}
		withMeta := false
		staticOnly := r.clustering >= 0 && vals[r.clustering] == nil
		for i := range r.names {
			val := vals[i]
			if val == nil || (r.null[i] >= 0 && noTuple(val, vals[r.null[i]])) || (staticOnly && r.regular[i]) {
				val = &pb.Value{}
			}
			row.Values[i] = val
			withMeta = withMeta || r.wt[i] >= 0
		}
		if withMeta {
			row.Meta = r.meta(vals, row.Values)
		}
		if err := emit(row); err != nil {
			_ = iter.Close()
			return err
		}
	}
	return iter.Close()
}

// meta is each cell's writetime and TTL; a non-frozen collection takes
// those of the row's newest cell (ties: the longer TTL), a list without
// the writetime, as the source reader gives them.
func (r *vreader) meta(vals, row []*pb.Value) []*pb.CellMeta {
	out := make([]*pb.CellMeta, len(r.names))
	var newest *pb.CellMeta
	for i := range r.names {
		m := &pb.CellMeta{}
		out[i] = m
		if r.wt[i] < 0 || cqlcodec.IsNull(row[i]) {
			continue
		}
		m.WritetimeUs, m.TtlSeconds = vals[r.wt[i]].GetInt(), int32(vals[r.ttl[i]].GetInt())
		if newest == nil || m.WritetimeUs > newest.WritetimeUs ||
			(m.WritetimeUs == newest.WritetimeUs && newest.TtlSeconds != 0 && (m.TtlSeconds == 0 || m.TtlSeconds > newest.TtlSeconds)) {
			newest = m
		}
	}
	for i := range r.names {
		if newest != nil && r.inherit[i] && !cqlcodec.IsNull(row[i]) {
			out[i] = &pb.CellMeta{WritetimeUs: newest.WritetimeUs, TtlSeconds: newest.TtlSeconds}
			if r.list[i] {
				out[i].WritetimeUs = 0
			}
		}
	}
	return out
}

// noTuple tells a NULL tuple (no cell, so no writetime) from a tuple of
// NULL members; Cassandra 2.1 answers 0 rather than NULL in a partition's
// static-only row, so 0 counts as none when every member is NULL.
func noTuple(v, writetime *pb.Value) bool {
	if writetime.GetInt() != 0 {
		return false
	}
	for _, m := range v.GetTuple().GetValues() {
		if !cqlcodec.IsNull(m) {
			return false
		}
	}
	return true
}

// Close closes the session.
func (v *validator) Close() { v.t.Close() }
