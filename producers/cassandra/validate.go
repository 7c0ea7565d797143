package cassandra

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/cqlcodec"
	"github.com/ferry-dev/ferry/producers"
	"github.com/ferry-dev/ferry/streams/pb"
	"github.com/ferry-dev/ferry/validate"
)

func init() {
	validate.RegisterSource("cassandra", openValidator)
	validate.RegisterSource("scylla", openValidator)
}

// validator reads a Cassandra/ScyllaDB source for `ferry validate`: the
// tables the producer moves, split into the token ranges the snapshot reads
// (splitCount of them), each scanned with the producer's own query and
// decoder, so a row reads here as it travelled; and rows by primary key for
// the reverse pass, re-checks and repairs. Token order is not key order, so
// the engine compares in lookup mode.
type validator struct {
	p        *producer
	preserve bool // the pipeline's preserveTimestamps

	mu     sync.Mutex
	tables map[string]*table
}

var (
	_ validate.RangeReader = (*validator)(nil)
	_ validate.Lookuper    = (*validator)(nil)
	_ validate.MetaReader  = (*validator)(nil)
)

func openValidator(ctx context.Context, cfg config.Source, log *slog.Logger) (validate.Source, error) {
	// Ranges are read in parallel, each also looking keys up.
	cfg.CQLConnections = max(cfg.CQLConnections, 8)
	pr, err := open(ctx, cfg, producers.Env{Log: log})
	if err != nil {
		return nil, err
	}
	p := pr.(*producer)
	return &validator{p: p, preserve: cfg.PreserveTimestamps, tables: map[string]*table{}}, nil
}

// ReadMeta makes reads select each cell's writetime and TTL when they are
// compared, and always under preserveTimestamps: rows read here are also
// what --repair publishes, and must carry them as the producer's do.
func (v *validator) ReadMeta(on bool) { v.p.cfg.PreserveTimestamps = on || v.preserve }

// Tables lists the tables the producer moves, keys first (partition key,
// then clustering key).
func (v *validator) Tables(ctx context.Context) ([]validate.Table, error) {
	v.p.tables = nil
	if err := v.p.loadTables(ctx); err != nil {
		return nil, err
	}
	out := make([]validate.Table, 0, len(v.p.tables))
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, t := range v.p.tables {
		v.tables[t.Name] = t
		out = append(out, validate.Table{Name: t.Name, Key: t.keyNames, Columns: t.names})
	}
	return out, nil
}

// lookupQuery is the table's range query with the token bounds replaced by
// the first n primary key columns.
func lookupQuery(t *table, n int) string {
	sel, rest, _ := strings.Cut(t.query, " WHERE token(")
	conds := make([]string, n)
	for i := range conds {
		conds[i] = quote(t.cols[i].Name) + " = ?"
	}
	q := sel + " WHERE " + strings.Join(conds, " AND ")
	if _, filter, ok := strings.Cut(rest, " <= ? AND "); ok {
		q += " AND " + filter // the source's where, with ALLOW FILTERING
	}
	return q
}

func (v *validator) table(name string) (*table, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	t, ok := v.tables[name]
	if !ok {
		return nil, fmt.Errorf("source %s: table %s was not listed", v.p.cfg.Name, name)
	}
	return t, nil
}

// Ordered: token order is not key order.
func (v *validator) Ordered() bool { return false }

// Ranges cuts the ring into the source's splitCount token ranges, as the
// snapshot does; rowsPerRange is not used (a token range's row count is
// not known before it is read).
func (v *validator) Ranges(context.Context, validate.Table, int) ([]validate.Range, error) {
	var out []validate.Range
	for _, r := range splitRing(v.p.cfg.SplitCount) {
		out = append(out, validate.Range{Spec: cqlcodec.RangeSpec(r)})
	}
	return out, nil
}

// Read scans one token range with the snapshot's query.
func (v *validator) Read(ctx context.Context, vt validate.Table, r validate.Range, emit func(*pb.Row) error) error {
	t, err := v.table(vt.Name)
	if err != nil {
		return err
	}
	tr, err := cqlcodec.ParseRangeSpec(r.Spec)
	if err != nil {
		return fmt.Errorf("source %s: %s: %w", v.p.cfg.Name, t.Name, err)
	}
	q := v.p.sess.Query(t.query, tr.Start, tr.End).WithContext(ctx).
		PageSize(v.p.cfg.FetchSize).Consistency(v.p.cons).Idempotent(true)
	if err := v.scan(t, q.Iter(), emit); err != nil {
		return fmt.Errorf("source %s: reading %s tokens (%d, %d]: %w", v.p.cfg.Name, t.Name, tr.Start, tr.End, err)
	}
	return nil
}

// Lookup reads the rows of the given primary keys, several at once.
func (v *validator) Lookup(ctx context.Context, vt validate.Table, keys []*pb.Row) ([]*pb.Row, error) {
	t, err := v.table(vt.Name)
	if err != nil {
		return nil, err
	}
	q := func(n int) string { return lookupQuery(t, n) }
	rows, err := cqlcodec.LookupEach(ctx, v.p.sess, q, v.p.cons, t.keyNames, keys, func(it cqlcodec.Iter, emit func(*pb.Row) error) error {
		return v.scan(t, it, emit)
	})
	if err != nil {
		return nil, fmt.Errorf("source %s: looking up rows of %s: %w", v.p.cfg.Name, t.Name, err)
	}
	return rows, nil
}

// scan decodes an iterator's rows exactly as the snapshot does.
func (v *validator) scan(t *table, iter cqlcodec.Iter, emit func(*pb.Row) error) error {
	scan := cqlcodec.NewRowScanner(iter.Columns())
	var vals []*pb.Value
	for iter.Scan(scan.Dest()...) {
		var err error
		if vals, err = scan.Values(vals); err != nil {
			_ = iter.Close()
			return fmt.Errorf("%s.%w", t.Name, err)
		}
		ev, err := v.p.rowEvent(t, vals, time.Now().UnixMicro())
		if err != nil {
			_ = iter.Close()
			return err
		}
		if err := emit(ev.After); err != nil {
			_ = iter.Close()
			return err
		}
	}
	return iter.Close()
}

// Close closes the session.
func (v *validator) Close() { v.p.sess.Close() }
