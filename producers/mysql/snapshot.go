package mysql

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/producers"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

type plan = streams.ChunkPlan

// snapshot reads every table in primary-key chunks, queued on the source's
// work-queue stream; a chunk is recorded done in KV only after JetStream
// acknowledged all its rows. Each reader holds one connection in a
// consistent-snapshot transaction, all opened under a brief global read
// lock during which the binlog position is read: every reader then sees
// exactly the data of that position. On a first start (first: KV holds no
// position) that position is saved and the change stream starts there.
// After a restart the remaining chunks are read at fresh snapshots, newer
// than the saved position: published before the changes between the two,
// their rows would be overwritten on the target by older values until the
// stream caught up, and keys would go back in time. So the changes up to
// the fresh snapshot's position are published first (see catchUp), that
// position is saved, and only then are the remaining chunks read.
// It reports done=false when ctx ended first.
func (p *producer) snapshot(ctx context.Context, snap *streams.SnapshotState, first bool) (bool, error) {
	ws, plans, err := producers.PlanChunks(ctx, p.env, p.cfg.Name, p.order, func(table string) (*plan, error) { return p.ensurePlan(ctx, p.tables[table]) })
	if err != nil {
		return false, err
	}
	conns := make([]*client.Conn, p.cfg.SnapshotWorkers)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	for i := range conns {
		if conns[i], err = p.connect(ctx); err != nil {
			return false, err
		}
	}
	at, err := p.openSnapshots(ctx, conns, snap, first)
	if err != nil {
		return false, err
	}
	if !first && p.cfg.HasCDC() {
		if err := p.catchUp(ctx, at); err != nil {
			return false, err
		}
		if ctx.Err() != nil {
			return false, nil
		}
	}
	readers := make([]producers.ChunkReader, len(conns))
	for i, c := range conns {
		readers[i] = func(ctx context.Context, table string, pl *plan, chunk int, work jetstream.Msg) (int64, error) {
			return p.readChunk(ctx, c, p.tables[table], pl, chunk, work)
		}
	}
	return producers.RunChunks(ctx, p.env, p.cfg.Name, ws, plans, readers)
}

const startSnapshot = "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"

// openSnapshots starts each reader's consistent-snapshot transaction under
// FLUSH TABLES WITH READ LOCK and returns the binlog position of that
// moment. On a first start it saves that position (or defaultGTIDSet, when
// set) as the change stream's start.
func (p *producer) openSnapshots(ctx context.Context, conns []*client.Conn, snap *streams.SnapshotState, first bool) (position, error) {
	locked := true
	if _, err := p.query("FLUSH TABLES WITH READ LOCK"); err != nil {
		// Without RELOAD: the position is read first, and the readers'
		// snapshots are a little newer; the change stream replays the
		// difference, so the target still converges (ferry check warns).
		p.log.Warn("cannot take the global read lock; the snapshot is read slightly after its recorded position and the change stream replays the difference", "err", err)
		locked = false
	}
	pos, err := p.currentPosition()
	if err == nil {
		for _, c := range conns {
			if _, err = c.Execute(startSnapshot); err != nil {
				err = fmt.Errorf("source %s: starting a snapshot transaction: %w", p.cfg.Name, err)
				break
			}
		}
	}
	if locked {
		if _, uerr := p.query("UNLOCK TABLES"); uerr != nil && err == nil {
			err = uerr
		}
	}
	if err != nil {
		return pos, err
	}
	if !first {
		p.log.Info("snapshot resumed at binlog position", "position", pos.text(), "file", pos.File, "offset", pos.Offset)
		return pos, p.env.State.PutJSON(ctx, streams.SnapshotKey(p.cfg.Name), snap)
	}
	snap.Consistent = pos.text()
	p.log.Info("snapshot consistent with binlog position", "position", pos.text(), "file", pos.File, "offset", pos.Offset)
	if p.cfg.HasCDC() {
		start := pos
		if p.cfg.DefaultGTIDSet != "" {
			if start, err = p.firstPosition(); err != nil {
				return pos, err
			}
		}
		if err := p.savePosition(ctx, start, 0); err != nil {
			return pos, err
		}
	}
	return pos, p.env.State.PutJSON(ctx, streams.SnapshotKey(p.cfg.Name), snap)
}

// catchUp publishes the changes from the saved position up to at (a fresh
// snapshot's position) and saves at as the position, so that the rows read
// in that snapshot follow every older change in the stream.
func (p *producer) catchUp(ctx context.Context, at position) error {
	var sv saved
	found, err := p.env.State.GetJSON(ctx, streams.PositionKey(p.cfg.Name), &sv)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("source %s: resuming the snapshot, but KV holds no binlog position to catch up from", p.cfg.Name)
	}
	if reached(sv.MySQL, at) {
		return nil
	}
	p.log.Info("publishing the changes the resumed snapshot already contains", "from", sv.MySQL.text(), "to", at.text())
	return p.runStream(ctx, sv.MySQL, &at)
}

// ensurePlan makes (or reloads) a table's chunk plan and queues its chunks.
func (p *producer) ensurePlan(ctx context.Context, t *table) (*plan, error) {
	return producers.QueueChunks(ctx, p.env, p.cfg.Name, t.Name, t.EstRows, func() ([][]string, error) { return p.chunkBounds(t, p.cfg.ChunkRows) })
}

func (t *table) keyList() string {
	parts := make([]string, len(t.Key))
	for i, k := range t.Key {
		parts[i] = quoteIdent(t.Columns[k].Name)
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func (t *table) keyParams() string {
	if len(t.Key) == 1 {
		return "?"
	}
	return "(" + strings.TrimSuffix(strings.Repeat("?, ", len(t.Key)), ", ") + ")"
}

// chunkBounds walks the primary key, taking every rows-th key as a chunk's
// upper bound. Bounds are kept typed (see encodeBound), so that they compare
// as the key columns do.
func (p *producer) chunkBounds(t *table, rows int) ([][]string, error) {
	keys := strings.Trim(t.keyList(), "()")
	var bounds [][]string
	var last []string
	for {
		q := "SELECT " + keys + " FROM " + t.Ident
		var args []any
		if last != nil {
			q += " WHERE " + t.keyList() + " > " + t.keyParams()
			for _, b := range last {
				args = append(args, decodeBound(b))
			}
		}
		q += fmt.Sprintf(" ORDER BY %s LIMIT 1 OFFSET %d", keys, rows-1)
		p.mu.Lock()
		stmt, err := p.meta.Prepare(q)
		var r *gomysql.Result
		if err == nil {
			r, err = stmt.Execute(args...)
			_ = stmt.Close()
		}
		p.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("source %s: planning chunks of %s: %w", p.cfg.Name, t.Name, err)
		}
		if r.RowNumber() == 0 {
			return bounds, nil
		}
		vals := make([]string, len(t.Key))
		for i := range vals {
			vals[i] = encodeBound(r.Values[0][i])
		}
		bounds = append(bounds, vals)
		last = vals
	}
}

// encodeBound keeps a key value with its type: integers as numbers, so that
// a BIGINT UNSIGNED compares exactly; everything else as its bytes (hex),
// bound back as a string in the connection's character set.
func encodeBound(v gomysql.FieldValue) string {
	switch v.Type {
	case gomysql.FieldValueTypeSigned:
		return "i:" + strconv.FormatInt(v.AsInt64(), 10)
	case gomysql.FieldValueTypeUnsigned:
		return "u:" + strconv.FormatUint(v.AsUint64(), 10)
	case gomysql.FieldValueTypeFloat:
		return "f:" + strconv.FormatFloat(v.AsFloat64(), 'g', -1, 64)
	}
	return "x:" + hex.EncodeToString(v.AsString())
}

func decodeBound(s string) any {
	kind, val, _ := strings.Cut(s, ":")
	switch kind {
	case "i":
		n, _ := strconv.ParseInt(val, 10, 64)
		return n
	case "u":
		n, _ := strconv.ParseUint(val, 10, 64)
		return n
	case "f":
		f, _ := strconv.ParseFloat(val, 64)
		return f
	}
	b, _ := hex.DecodeString(val)
	return b
}

// readChunk reads one chunk in the reader's snapshot transaction, over the
// binary protocol (FLOAT and DOUBLE arrive as their exact bits), publishes
// its rows grouped by lane and waits until JetStream acknowledged them.
func (p *producer) readChunk(ctx context.Context, conn *client.Conn, t *table, pl *plan, chunk int, work jetstream.Msg) (int64, error) {
	cols := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		cols[i] = quoteIdent(c.Name)
	}
	q := "SELECT " + strings.Join(cols, ", ") + " FROM " + t.Ident
	var where []string
	var args []any
	if chunk > 0 {
		where = append(where, t.keyList()+" > "+t.keyParams())
		for _, v := range pl.Bounds[chunk-1] {
			args = append(args, decodeBound(v))
		}
	}
	if chunk < len(pl.Bounds) {
		where = append(where, t.keyList()+" <= "+t.keyParams())
		for _, v := range pl.Bounds[chunk] {
			args = append(args, decodeBound(v))
		}
	}
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	var attempt uint64
	if md, err := work.Metadata(); err == nil {
		attempt = md.NumDelivered
	}
	batch := producers.NewLaneBatcher(p.env.Conn, p.cfg.Name, t.Name, p.cfg.Partitions, p.maxPayload,
		fmt.Sprintf("%s:snap:%s:%d:%d", p.cfg.Name, t.Name, chunk, attempt))
	var n int64
	lastProgress := time.Now()
	raw := make([]any, len(t.Columns))
	all := make([]int, len(t.Columns))
	for i := range all {
		all[i] = i
	}
	stmt, err := conn.Prepare(q)
	if err != nil {
		return 0, fmt.Errorf("source %s: reading chunk %d of %s: %w", p.cfg.Name, chunk, t.Name, err)
	}
	defer stmt.Close()
	var res gomysql.Result
	err = stmt.ExecuteSelectStreaming(&res, func(row []gomysql.FieldValue) error {
		for i := range row {
			raw[i] = row[i].Value()
		}
		after, err := p.row(t, all, raw, false)
		if err != nil {
			return err
		}
		ev := &pb.Event{Source: p.cfg.Name, Table: t.Name, Op: pb.Op_OP_READ, Key: keyOf(t, after), After: after}
		size := ev.SizeVT()
		if size+64 > p.maxPayload {
			return fmt.Errorf("source %s: row %s (%s) is %d bytes encoded, above the NATS server's max_payload of %d; raise max_payload (nats.maxPayload for the embedded server)",
				p.cfg.Name, t.Name, keyString(ev.Key), size, p.maxPayload)
		}
		if err := batch.Add(ev, size); err != nil {
			return err
		}
		n++
		if n%256 == 0 {
			if err := config.WaitRows(ctx, p.limit, 256); err != nil {
				return err
			}
		}
		if time.Since(lastProgress) > 5*time.Second {
			_ = work.InProgress()
			lastProgress = time.Now()
		}
		return nil
	}, nil, args...)
	if err != nil {
		var me *gomysql.MyError
		if errors.As(err, &me) {
			return 0, fmt.Errorf("source %s: reading chunk %d of %s: %w", p.cfg.Name, chunk, t.Name, err)
		}
		return 0, err
	}
	if _, err := batch.Finish(ctx); err != nil {
		return 0, fmt.Errorf("source %s: chunk %d of %s: %w", p.cfg.Name, chunk, t.Name, err)
	}
	return n, nil
}
