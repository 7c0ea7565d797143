package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/pgcodec"
	"github.com/ferry-dev/ferry/producers"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

// plan is a table's chunk plan, as kept in KV.
type plan = streams.ChunkPlan

// snapshot reads every table in chunks and publishes the rows. Chunks are
// queued on the source's work-queue stream, so any producer process of this
// source can take them and a chunk whose reader died is handed out again;
// finished chunks are recorded in KV only after JetStream acknowledged all
// their rows. It reports done=false when ctx ended first.
func (p *producer) snapshot(ctx context.Context, snapName string) (bool, error) {
	ws, plans, err := producers.PlanChunks(ctx, p.env, p.cfg.Name, p.order, func(table string) (*plan, error) { return p.ensurePlan(ctx, p.tables[table]) })
	if err != nil {
		return false, err
	}
	snapGone := &atomic.Bool{}
	readers := make([]producers.ChunkReader, p.cfg.SnapshotWorkers)
	for i := range readers {
		readers[i] = func(ctx context.Context, table string, pl *plan, chunk int, work jetstream.Msg) (int64, error) {
			return p.readChunk(ctx, p.tables[table], pl, chunk, snapName, snapGone, work)
		}
	}
	return producers.RunChunks(ctx, p.env, p.cfg.Name, ws, plans, readers)
}

// ensurePlan makes (or reloads) a table's chunk plan and queues its chunks.
func (p *producer) ensurePlan(ctx context.Context, t *table) (*plan, error) {
	return producers.QueueChunks(ctx, p.env, p.cfg.Name, t.Name, t.EstRows, func() ([][]string, error) { return p.chunkBounds(ctx, t) })
}

// chunkBounds walks the primary-key index, taking every ChunkRows-th key as
// a chunk's upper bound. It works for any key type and composite keys.
func (p *producer) chunkBounds(ctx context.Context, t *table) ([][]string, error) {
	// The key columns are qualified with the table's alias: unqualified,
	// ORDER BY would name the text output columns and sort as text.
	keyList := p.keyList(t, "x.")
	sel := make([]string, len(t.Key))
	for i, k := range t.Key {
		sel[i] = "x." + quoteIdent(t.Columns[k].Name) + "::text"
	}
	var bounds [][]string
	var last []string
	for {
		q := "SELECT " + strings.Join(sel, ", ") + " FROM " + t.Ident + " AS x"
		var args []any
		if last != nil {
			q += " WHERE (" + keyList + ") > (" + p.keyParams(t, 1) + ")"
			for _, v := range last {
				args = append(args, v)
			}
		}
		q += fmt.Sprintf(" ORDER BY %s OFFSET %d LIMIT 1", keyList, p.cfg.ChunkRows-1)
		vals := make([]string, len(t.Key))
		dest := make([]any, len(vals))
		for i := range vals {
			dest[i] = &vals[i]
		}
		err := p.pool.QueryRow(ctx, q, args...).Scan(dest...)
		if errors.Is(err, pgx.ErrNoRows) {
			return bounds, nil
		}
		if err != nil {
			return nil, fmt.Errorf("source %s: planning chunks of %s: %w", p.cfg.Name, t.Name, err)
		}
		bounds = append(bounds, vals)
		last = vals
	}
}

func (p *producer) keyList(t *table, prefix string) string {
	parts := make([]string, len(t.Key))
	for i, k := range t.Key {
		parts[i] = prefix + quoteIdent(t.Columns[k].Name)
	}
	return strings.Join(parts, ", ")
}

// keyParams renders "$n::text::<type>, ..." for the key columns: bounds
// travel as text and are cast to the column types.
func (p *producer) keyParams(t *table, first int) string {
	parts := make([]string, len(t.Key))
	for i, k := range t.Key {
		parts[i] = fmt.Sprintf("$%d::text::%s", first+i, t.Columns[k].Type.Name)
	}
	return strings.Join(parts, ", ")
}

// readChunk reads one chunk in a repeatable-read transaction (importing the
// exported snapshot while it lives) and publishes its rows, grouped by lane,
// then waits until JetStream acknowledged every message.
func (p *producer) readChunk(ctx context.Context, t *table, pl *plan, chunk int, snapName string, snapGone *atomic.Bool, work jetstream.Msg) (int64, error) {
	tx, err := p.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return 0, fmt.Errorf("source %s: starting chunk transaction: %w", p.cfg.Name, err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if snapName != "" && !snapGone.Load() {
		if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+snapName+"'"); err != nil {
			if p.cfg.HasCDC() {
				// The exporting session ended (its connection was cut).
				// Rows read in a fresh snapshot must wait for the changes
				// before it (catchup.go): start over from the saved state.
				return 0, producers.Restart(fmt.Errorf("source %s: the exported snapshot is gone: %w", p.cfg.Name, err))
			}
			// Without a change stream, nothing older follows these rows:
			// read the rest in a fresh snapshot.
			snapGone.Store(true)
			p.log.Info("exported snapshot no longer available; reading remaining chunks at a fresh snapshot", "err", err)
			_ = tx.Rollback(ctx)
			if tx, err = p.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}); err != nil {
				return 0, fmt.Errorf("source %s: starting chunk transaction: %w", p.cfg.Name, err)
			}
		}
	}
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = quoteIdent(c.Name)
	}
	q := "SELECT " + strings.Join(cols, ", ") + " FROM " + t.Ident
	var where []string
	var args []any
	if chunk > 0 {
		where = append(where, "("+p.keyList(t, "")+") > ("+p.keyParams(t, 1)+")")
		for _, v := range pl.Bounds[chunk-1] {
			args = append(args, v)
		}
	}
	if chunk < len(pl.Bounds) {
		where = append(where, "("+p.keyList(t, "")+") <= ("+p.keyParams(t, len(args)+1)+")")
		for _, v := range pl.Bounds[chunk] {
			args = append(args, v)
		}
	}
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	t0 := time.Now()
	rows, err := tx.Query(ctx, q, append([]any{pgx.QueryResultFormats{pgx.TextFormatCode}}, args...)...)
	if err != nil {
		return 0, fmt.Errorf("source %s: reading chunk %d of %s: %w", p.cfg.Name, chunk, t.Name, err)
	}
	defer rows.Close()

	// A chunk read again (its reader died) is read at a newer snapshot and
	// may split into messages differently; the delivery attempt in the
	// message ids keeps JetStream from dropping any of them as repeats of
	// the earlier, partial attempt. Rows published twice are harmless: the
	// newer copy follows the older one in its lane.
	var attempt uint64
	if md, err := work.Metadata(); err == nil {
		attempt = md.NumDelivered
	}
	batch := producers.NewLaneBatcher(p.env.Conn, p.cfg.Name, t.Name, p.cfg.Partitions, p.maxPayload,
		fmt.Sprintf("%s:snap:%s:%d:%d", p.cfg.Name, t.Name, chunk, attempt))
	var n int64
	lastProgress := time.Now()
	// The batcher encodes each event as it is added, so one event, with
	// its rows, serves every row of the chunk.
	ev := &pb.Event{}
	for rows.Next() {
		err := p.fillRowEvent(ev, t, pb.Op_OP_READ, rows.RawValues(), true)
		if err != nil {
			return 0, err
		}
		size := ev.SizeVT()
		if size+64 > p.maxPayload {
			return 0, fmt.Errorf("source %s: row %s (%s) is %d bytes encoded, above the NATS server's max_payload of %d; raise max_payload (nats.maxPayload for the embedded server)",
				p.cfg.Name, t.Name, keyString(ev.Key), size, p.maxPayload)
		}
		if err := batch.Add(ev, size); err != nil {
			return 0, err
		}
		n++
		if n%256 == 0 {
			if err := config.WaitRows(ctx, p.limit, 256); err != nil {
				return 0, err
			}
		}
		if time.Since(lastProgress) > 5*time.Second {
			_ = work.InProgress() // a long chunk is still being worked on
			lastProgress = time.Now()
		}
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("source %s: reading chunk %d of %s: %w", p.cfg.Name, chunk, t.Name, err)
	}
	t1 := time.Now()
	msgs, err := batch.Finish(ctx)
	if err != nil {
		return 0, fmt.Errorf("source %s: chunk %d of %s: %w", p.cfg.Name, chunk, t.Name, err)
	}
	p.log.Debug("chunk published", "table", t.Name, "chunk", chunk, "rows", n, "messages", msgs, "read", t1.Sub(t0), "acks", time.Since(t1))
	return n, nil
}

// rowEvent builds an event from a row in text form (nil = NULL), columns in
// table order.
func (p *producer) rowEvent(t *table, op pb.Op, raw [][]byte) (*pb.Event, error) {
	ev := &pb.Event{}
	if err := p.fillRowEvent(ev, t, op, raw, false); err != nil {
		return nil, err
	}
	return ev, nil
}

// fillRowEvent is rowEvent into ev, reusing its rows and their value
// slices. With shared, it reuses the values too, and their strings share
// raw's memory: the event must be used up before raw changes (the next
// row). Without, the values are new.
func (p *producer) fillRowEvent(ev *pb.Event, t *table, op pb.Op, raw [][]byte, shared bool) error {
	after, key := ev.After, ev.Key
	if after == nil {
		after, key = &pb.Row{}, &pb.Row{}
	}
	after.Names, after.Values = t.names, slices.Grow(after.Values[:0], len(t.Columns))[:len(t.Columns)]
	for i, c := range t.Columns {
		if !shared {
			v, err := p.decode(t.Name, c.Name, c.Type, raw[i])
			if err != nil {
				return err
			}
			after.Values[i] = v
			continue
		}
		v := after.Values[i] // the previous row's, or nil
		if v == nil {
			v = &pb.Value{}
		}
		if err := pgcodec.DecodeSharedInto(v, c.Type, raw[i]); err != nil {
			if v, err = p.undecodable(t.Name, c.Name, c.Type, raw[i], err); err != nil {
				return err
			}
		}
		after.Values[i] = v
	}
	key.Names, key.Values = t.keyCols, slices.Grow(key.Values[:0], len(t.Key))[:len(t.Key)]
	for i, k := range t.Key {
		key.Values[i] = after.Values[k]
	}
	*ev = pb.Event{Source: p.cfg.Name, Table: t.Name, Op: op, Key: key, After: after}
	return nil
}

// decode converts one text value. A form the codec does not know travels as
// the source's own text, which PostgreSQL reads back unchanged, so nothing is
// lost; it is logged once per column. Text that is not UTF-8 (a SQL_ASCII
// database) cannot travel as text at all and stops the run with the column
// named.
func (p *producer) decode(table, col string, typ *pgcodec.Type, raw []byte) (*pb.Value, error) {
	v, err := pgcodec.Decode(typ, raw)
	if err == nil {
		return v, nil
	}
	return p.undecodable(table, col, typ, raw, err)
}

// undecodable is decode's way with a value the codec refused (err).
func (p *producer) undecodable(table, col string, typ *pgcodec.Type, raw []byte, err error) (*pb.Value, error) {
	if !utf8.Valid(raw) {
		return nil, fmt.Errorf("source %s: %s.%s holds text that is not valid UTF-8; ferry reads text as UTF-8 (is the database SQL_ASCII? convert it, or read the column as bytea)", p.cfg.Name, table, col)
	}
	key := table + "." + col
	if _, seen := warned.LoadOrStore(key, true); !seen {
		p.log.Warn("value kept in PostgreSQL text form", "column", key, "type", typ.Name, "err", err)
	}
	return &pb.Value{Kind: &pb.Value_Native{Native: string(raw)}}, nil
}

var warned sync.Map

func keyString(k *pb.Row) string {
	var b strings.Builder
	for i, n := range k.GetNames() {
		if i > 0 {
			b.WriteString(", ")
		}
		t, null, err := pgcodec.Encode(k.Values[i])
		if null || err != nil {
			t = "?"
		}
		b.WriteString(n + "=" + t)
	}
	return b.String()
}
