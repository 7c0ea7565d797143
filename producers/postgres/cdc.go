package postgres

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/metrics"
	"github.com/ferry-dev/ferry/internal/pgcodec"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

// relation is a pgoutput relation: the column layout of one table as the
// stream sends it, which may be newer than what the snapshot saw.
type relation struct {
	table *table // nil when the table is not part of this run
	names []string
	types []*pgcodec.Type
	key   []int // indexes of the key columns (pgoutput's key flag)
}

// txState is the transaction being received.
type txState struct {
	open     bool
	xid      uint32
	commit   pglogrepl.LSN
	commitUs int64
	index    uint32
	tables   map[string]int // events per table, counted once acknowledged
}

// cdc streams the slot's changes. Events are published as they arrive (a
// huge transaction is never held in memory); the position saved in KV and
// confirmed to PostgreSQL is a commit's end LSN, and only once JetStream has
// acknowledged every event up to that commit.
type cdc struct {
	p         *producer
	conn      *pgconn.PgConn
	relations map[uint32]*relation
	tx        txState
	ck        *streams.Checkpointer
	acked     atomic.Uint64 // newest position everything before is acknowledged
	// ackedSeq is the stream sequence of the newest message published up to
	// acked; ackMu keeps the two consistent for saveAndConfirm.
	ackedSeq  uint64
	ackMu     sync.Mutex
	ackedTime atomic.Int64  // commit time of the newest acknowledged change
	saved     pglogrepl.LSN // newest position saved in KV and confirmed
	events    int64
	ctx       context.Context
	// replaying: events before the first one the stream does not hold yet
	// are repeats of what a previous run published (stored lists their
	// positions); they are not published again.
	replaying bool
	stored    map[string]bool
	// epoch, once set, suffixes every message id of this run (see publish).
	epoch string
	// stop, when set, ends the stream at a fresh snapshot's boundary.
	stop *boundary
}

func (p *producer) stream(ctx context.Context, conn *pgconn.PgConn, start pglogrepl.LSN) error {
	_, err := p.runStream(ctx, conn, start, nil)
	return err
}

// runStream streams changes from start until ctx ends, or with a boundary
// (see catchUp) until it is reached, and returns the position saved last.
func (p *producer) runStream(ctx context.Context, conn *pgconn.PgConn, start pglogrepl.LSN, stop *boundary) (pglogrepl.LSN, error) {
	err := pglogrepl.StartReplication(ctx, conn, p.cfg.Slot, start, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + strings.ReplaceAll(p.cfg.Publication, "'", "''") + "'"},
	})
	if err != nil {
		return 0, fmt.Errorf("source %s: starting replication from slot %s at %s: %w", p.cfg.Name, p.cfg.Slot, start, err)
	}
	p.log.Info("streaming changes", "slot", p.cfg.Slot, "from", start.String())
	// The stream may hold changes past the saved position: they were
	// published, but the run ended before it saved that far.
	stored, fromSeq, err := p.storedAfter(ctx, start)
	if err != nil {
		return 0, err
	}
	c := &cdc{p: p, conn: conn, relations: map[uint32]*relation{}, saved: start, ctx: ctx, replaying: len(stored) > 0, stored: stored, stop: stop}
	c.epoch = strconv.FormatInt(time.Now().UnixNano(), 36)
	c.acked.Store(uint64(start))
	c.ackedSeq = fromSeq
	c.ck = streams.NewCheckpointer(context.WithoutCancel(ctx), 16384)
	runErr := c.loop(ctx)
	if errors.Is(runErr, errCaughtUp) {
		runErr = nil
	}
	// Stopping: wait for what was published, then save and confirm it.
	ckErr := c.ck.Close()
	if err := c.saveAndConfirm(context.WithoutCancel(ctx), false); err != nil && runErr == nil {
		runErr = err
	}
	if runErr == nil && ckErr != nil {
		runErr = fmt.Errorf("source %s: %w", p.cfg.Name, ckErr)
	}
	p.log.Info("change stream stopped", "events", c.events, "position", c.saved.String())
	return c.saved, runErr
}

func (c *cdc) loop(ctx context.Context) error {
	interval := c.p.cfg.StatusInterval.D()
	next := time.Now()
	for {
		if err := c.ck.Err(); err != nil {
			return fmt.Errorf("source %s: %w", c.p.cfg.Name, err)
		}
		if !time.Now().Before(next) {
			// Asking for a reply when idle makes the server send its WAL
			// end, which moves the position on although no table changed,
			// so the slot never holds WAL needlessly.
			if err := c.saveAndConfirm(ctx, !c.tx.open); err != nil {
				return err
			}
			next = time.Now().Add(interval)
		}
		rctx, cancel := context.WithDeadline(ctx, next)
		raw, err := c.conn.ReceiveMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("source %s: receiving replication stream: %w", c.p.cfg.Name, err)
		}
		switch m := raw.(type) {
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("source %s: replication stream: %s (SQLSTATE %s)", c.p.cfg.Name, m.Message, m.Code)
		case *pgproto3.CopyData:
			if len(m.Data) == 0 {
				continue
			}
			switch m.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(m.Data[1:])
				if err != nil {
					return fmt.Errorf("source %s: parsing keepalive: %w", c.p.cfg.Name, err)
				}
				if !c.tx.open {
					// Everything before the server's WAL end has been
					// received; once it is acknowledged it is a safe
					// restart point.
					end := ka.ServerWALEnd
					if c.stop != nil && end >= c.stop.until {
						// Every transaction the fresh snapshot contains
						// has been received.
						c.ck.Mark(func() error { c.advance(end, 0); return nil })
						return errCaughtUp
					}
					c.ck.Mark(func() error {
						c.advance(end, 0)
						metrics.SourceLag.WithLabelValues(c.p.cfg.Name).Set(0)
						return nil
					})
				}
				if ka.ReplyRequested {
					next = time.Now()
				}
			case pglogrepl.XLogDataByteID:
				x, err := pglogrepl.ParseXLogData(m.Data[1:])
				if err != nil {
					return fmt.Errorf("source %s: parsing WAL data: %w", c.p.cfg.Name, err)
				}
				if err := c.handle(ctx, x.WALData); err != nil {
					if ctx.Err() != nil {
						return nil // stopping; the open transaction is read again on restart
					}
					return err
				}
			}
		}
	}
}

// advance records that everything before lsn is acknowledged.
func (c *cdc) advance(lsn pglogrepl.LSN, commitUs int64) {
	c.ackMu.Lock()
	defer c.ackMu.Unlock()
	// Called from a checkpoint, after every message added before it was
	// acknowledged: the checkpointer's sequence is the newest of those.
	if seq := c.ck.Seq(); seq > c.ackedSeq {
		c.ackedSeq = seq
	}
	for {
		cur := c.acked.Load()
		if uint64(lsn) <= cur || c.acked.CompareAndSwap(cur, uint64(lsn)) {
			break
		}
	}
	if commitUs != 0 {
		c.ackedTime.Store(commitUs)
	}
}

// saveAndConfirm writes the acknowledged position to KV, then confirms it to
// PostgreSQL: in that order, so the slot never moves past what ferry has.
func (c *cdc) saveAndConfirm(ctx context.Context, replyRequested bool) error {
	c.ackMu.Lock()
	lsn, seq := pglogrepl.LSN(c.acked.Load()), c.ackedSeq
	c.ackMu.Unlock()
	if lsn > c.saved {
		pos := streams.Position{Pos: lsnBytes(lsn), Text: lsn.String(), CommitTimeUs: c.ackedTime.Load(), SavedAtUs: time.Now().UnixMicro(), StreamSeq: seq}
		if err := c.p.env.State.PutJSON(ctx, streams.PositionKey(c.p.cfg.Name), pos); err != nil {
			return fmt.Errorf("source %s: %w", c.p.cfg.Name, err)
		}
		c.saved = lsn
		metrics.SourcePosition.WithLabelValues(c.p.cfg.Name).Set(float64(lsn))
	}
	err := pglogrepl.SendStandbyStatusUpdate(ctx, c.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: c.saved, WALFlushPosition: c.saved, WALApplyPosition: c.saved,
		ClientTime: time.Now(), ReplyRequested: replyRequested,
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("source %s: sending standby status: %w", c.p.cfg.Name, err)
	}
	return nil
}

func lsnBytes(l pglogrepl.LSN) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(l))
}

func (c *cdc) handle(ctx context.Context, data []byte) error {
	msg, err := pglogrepl.Parse(data)
	if err != nil {
		return fmt.Errorf("source %s: parsing pgoutput message: %w", c.p.cfg.Name, err)
	}
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		return c.relation(ctx, m)
	case *pglogrepl.BeginMessage:
		if c.stop != nil && !c.stop.vis.visible(m.Xid) {
			// The first transaction the fresh snapshot does not contain:
			// it is streamed after the remaining chunks.
			return errCaughtUp
		}
		c.tx = txState{open: true, xid: m.Xid, commit: m.FinalLSN, commitUs: m.CommitTime.UnixMicro(), tables: map[string]int{}}
	case *pglogrepl.CommitMessage:
		end, us, tables := m.TransactionEndLSN, c.tx.commitUs, c.tx.tables
		c.ck.Mark(func() error {
			c.advance(end, us)
			for t, n := range tables {
				metrics.EventsPublished.WithLabelValues(c.p.cfg.Name, t).Add(float64(n))
			}
			metrics.SourceLag.WithLabelValues(c.p.cfg.Name).Set(time.Since(time.UnixMicro(us)).Seconds())
			return nil
		})
		c.tx.open = false
	case *pglogrepl.InsertMessage:
		rel, err := c.rel(m.RelationID)
		if err != nil || rel.table == nil {
			return err
		}
		after, unchanged, err := c.row(rel, m.Tuple)
		if err != nil {
			return err
		}
		return c.publish(c.event(rel, pb.Op_OP_INSERT, after, nil, unchanged))
	case *pglogrepl.UpdateMessage:
		return c.update(ctx, m)
	case *pglogrepl.DeleteMessage:
		rel, err := c.rel(m.RelationID)
		if err != nil || rel.table == nil {
			return err
		}
		before, _, err := c.row(rel, m.OldTuple)
		if err != nil {
			return err
		}
		ev := c.event(rel, pb.Op_OP_DELETE, nil, before, nil)
		ev.Key = keyOf(rel, before)
		return c.publish(ev)
	case *pglogrepl.TruncateMessage:
		c.p.log.Warn("TRUNCATE on the source is not replicated; truncate the target table yourself", "relations", m.RelationIDs)
	}
	return nil
}

// relation records a table's layout. A layout with columns the snapshot did
// not know (ALTER TABLE ADD COLUMN) reloads the table's types from the
// catalog.
func (c *cdc) relation(ctx context.Context, m *pglogrepl.RelationMessage) error {
	name := m.Namespace + "." + m.RelationName
	t := c.p.tables[name]
	r := &relation{table: t}
	if t == nil {
		// A table the publication has but this pipeline does not move.
		c.p.log.Info("skipping changes of a published table that is not in this pipeline", "table", name)
		c.relations[m.RelationID] = r
		return nil
	}
	byName := func(t *table) map[string]*pgcodec.Type {
		out := map[string]*pgcodec.Type{}
		for _, col := range t.Columns {
			out[col.Name] = col.Type
		}
		return out
	}
	known := byName(t)
	for _, col := range m.Columns {
		if known[col.Name] == nil {
			nt, err := loadTable(ctx, c.p.pool, name)
			if err != nil {
				return fmt.Errorf("source %s: reloading %s after a schema change: %w", c.p.cfg.Name, name, err)
			}
			c.p.tables[name], r.table, known = nt, nt, byName(nt)
			if err := c.p.saveSchema(ctx, nt); err != nil {
				return err
			}
			c.p.log.Info("table layout changed on the source", "table", name, "columns", len(m.Columns))
			break
		}
	}
	for _, col := range m.Columns {
		typ := known[col.Name]
		if typ == nil {
			// Dropped again since; keep its text.
			typ = &pgcodec.Type{OID: col.DataType, Name: "text", Base: "unknown"}
		}
		r.names = append(r.names, col.Name)
		r.types = append(r.types, typ)
	}
	// Events are keyed by the primary key, always: pgoutput's key flags
	// follow the replica identity, which under FULL marks every column and
	// would spread one row's changes over many lanes.
	for _, k := range r.table.keyNames() {
		found := false
		for i, n := range r.names {
			if n == k {
				r.key = append(r.key, i)
				found = true
			}
		}
		if !found {
			return fmt.Errorf("source %s: primary-key column %s.%s is not in the replication stream", c.p.cfg.Name, name, k)
		}
	}
	c.relations[m.RelationID] = r
	return nil
}

func (c *cdc) rel(id uint32) (*relation, error) {
	r := c.relations[id]
	if r == nil {
		return nil, fmt.Errorf("source %s: change for relation %d before its relation message", c.p.cfg.Name, id)
	}
	return r, nil
}

// row decodes a tuple. Unchanged TOAST values ('u') are not in the row; their
// names come back in unchanged, so a writer keeps the stored value.
func (c *cdc) row(rel *relation, tup *pglogrepl.TupleData) (*pb.Row, []string, error) {
	if tup == nil {
		return nil, nil, nil
	}
	row := &pb.Row{}
	var unchanged []string
	for i, col := range tup.Columns {
		if i >= len(rel.names) {
			return nil, nil, fmt.Errorf("source %s: tuple of %s has more columns than its relation", c.p.cfg.Name, rel.table.Name)
		}
		switch col.DataType {
		case pglogrepl.TupleDataTypeToast:
			unchanged = append(unchanged, rel.names[i])
			continue
		case pglogrepl.TupleDataTypeNull:
			row.Names = append(row.Names, rel.names[i])
			row.Values = append(row.Values, &pb.Value{Kind: &pb.Value_Null{Null: true}})
		case pglogrepl.TupleDataTypeText:
			v, err := c.p.decode(rel.table.Name, rel.names[i], rel.types[i], col.Data)
			if err != nil {
				return nil, nil, err
			}
			row.Names = append(row.Names, rel.names[i])
			row.Values = append(row.Values, v)
		default:
			return nil, nil, fmt.Errorf("source %s: %s.%s arrived in format %q; ferry asks pgoutput for text", c.p.cfg.Name, rel.table.Name, rel.names[i], col.DataType)
		}
	}
	return row, unchanged, nil
}

// keyOf extracts the key columns of rel from a row holding them.
func keyOf(rel *relation, row *pb.Row) *pb.Row {
	k := &pb.Row{}
	for _, ki := range rel.key {
		name := rel.names[ki]
		for j, n := range row.GetNames() {
			if n == name {
				k.Names = append(k.Names, name)
				k.Values = append(k.Values, row.Values[j])
			}
		}
	}
	return k
}

func (c *cdc) event(rel *relation, op pb.Op, after, before *pb.Row, unchanged []string) *pb.Event {
	ev := &pb.Event{
		Source: c.p.cfg.Name, Table: rel.table.Name, Op: op,
		After: after, Before: before, Unchanged: unchanged,
		CommitTimeUs: c.tx.commitUs, TxId: fmt.Sprint(c.tx.xid),
	}
	if after != nil {
		ev.Key = keyOf(rel, after)
	}
	return ev
}

func (c *cdc) update(ctx context.Context, m *pglogrepl.UpdateMessage) error {
	rel, err := c.rel(m.RelationID)
	if err != nil || rel.table == nil {
		return err
	}
	after, unchanged, err := c.row(rel, m.NewTuple)
	if err != nil {
		return err
	}
	before, _, err := c.row(rel, m.OldTuple)
	if err != nil {
		return err
	}
	ev := c.event(rel, pb.Op_OP_UPDATE, after, before, unchanged)
	if before == nil {
		return c.publish(ev)
	}
	oldKey := keyOf(rel, before)
	if len(oldKey.Values) != len(ev.Key.Values) || keysEqual(oldKey, ev.Key) {
		return c.publish(ev)
	}
	// The primary key changed. The old and new keys may live in different
	// lanes, so this travels as a delete of the old key in its lane and an
	// insert of the new row in the new key's lane.
	del := c.event(rel, pb.Op_OP_DELETE, nil, before, nil)
	del.Key = oldKey
	if err := c.publish(del); err != nil {
		return err
	}
	if len(unchanged) > 0 {
		// An untouched TOAST value is not in the stream, and the new key
		// has no stored row to keep it from: read it from the source now.
		// Should the row have changed since, its later changes follow in
		// this stream and bring it up to date.
		if err := c.fillUnchanged(ctx, rel, ev); err != nil {
			return err
		}
	}
	ev.Op = pb.Op_OP_INSERT
	return c.publish(ev)
}

func keysEqual(a, b *pb.Row) bool {
	for i := range a.Values {
		if !proto.Equal(a.Values[i], b.Values[i]) {
			return false
		}
	}
	return true
}

func (c *cdc) fillUnchanged(ctx context.Context, rel *relation, ev *pb.Event) error {
	t := rel.table
	cols := make([]string, len(ev.Unchanged))
	for i, n := range ev.Unchanged {
		cols[i] = quoteIdent(n)
	}
	var where []string
	var args []any
	for i, n := range ev.Key.Names {
		text, _, err := pgcodec.Encode(ev.Key.Values[i])
		if err != nil {
			return fmt.Errorf("source %s: %s key %s: %w", c.p.cfg.Name, t.Name, n, err)
		}
		where = append(where, fmt.Sprintf("%s = $%d::text::%s", quoteIdent(n), i+1, typeOfCol(t, n)))
		args = append(args, text)
	}
	q := "SELECT " + strings.Join(cols, ", ") + " FROM " + t.Ident + " WHERE " + strings.Join(where, " AND ")
	raw, err := queryRawRow(ctx, c.p.pool, q, args)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // deleted since: its delete follows in the stream
	}
	if err != nil {
		return fmt.Errorf("source %s: reading unchanged columns of %s (%s): %w", c.p.cfg.Name, t.Name, keyString(ev.Key), err)
	}
	for i, n := range ev.Unchanged {
		v, err := c.p.decode(t.Name, n, typeByName(t, n), raw[i])
		if err != nil {
			return err
		}
		ev.After.Names = append(ev.After.Names, n)
		ev.After.Values = append(ev.After.Values, v)
	}
	ev.Unchanged = nil
	return nil
}

func typeByName(t *table, col string) *pgcodec.Type {
	for _, c := range t.Columns {
		if c.Name == col {
			return c.Type
		}
	}
	return &pgcodec.Type{Name: "text", Base: "text"}
}

func typeOfCol(t *table, col string) string { return typeByName(t, col).Name }

func queryRawRow(ctx context.Context, pool *pgxpool.Pool, q string, args []any) ([][]byte, error) {
	rows, err := pool.Query(ctx, q, append([]any{pgx.QueryResultFormats{pgx.TextFormatCode}}, args...)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, err
		}
		return nil, pgx.ErrNoRows
	}
	var out [][]byte
	for _, v := range rows.RawValues() {
		if v != nil {
			v = append([]byte(nil), v...)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// publish sends one change event. Its position is the transaction's commit
// LSN and the event's index inside it, which also makes its message id: a
// change re-sent after a restart is stored once.
func (c *cdc) publish(ev *pb.Event) error {
	if err := config.WaitRows(c.ctx, c.p.limit, 1); err != nil {
		return err
	}
	c.tx.tables[ev.Table]++
	// The index is taken here, at publication, so that every event gets its
	// own position even when one source change becomes two events.
	ev.TxIndex = c.tx.index
	ev.Position = binary.BigEndian.AppendUint32(lsnBytes(c.tx.commit), c.tx.index)
	ev.PositionText = fmt.Sprintf("%s/%d", c.tx.commit, c.tx.index)
	c.tx.index++
	data, err := streams.Encode(ev)
	if err != nil {
		return err
	}
	if len(data)+256 > c.p.maxPayload {
		return fmt.Errorf("source %s: change to %s (%s) is %d bytes encoded, above the NATS server's max_payload of %d; raise max_payload (nats.maxPayload for the embedded server)",
			c.p.cfg.Name, ev.Table, keyString(ev.Key), len(data), c.p.maxPayload)
	}
	lane := streams.Lane(ev.Key, c.p.cfg.Partitions)
	subject := streams.EventSubject(c.p.cfg.Name, ev.Table, lane)
	id := fmt.Sprintf("%s:%016X:%d", c.p.cfg.Name, uint64(c.tx.commit), ev.TxIndex)
	if c.replaying {
		// After a restart the source sends again changes the stream
		// already holds (published, but not yet saved as the position):
		// skip those. From the first change the stream lacks, publish
		// everything, also changes it holds beyond that one: if an earlier
		// publish was lost while later ones went through, only publishing
		// them again puts that key's changes back in order. Every id of a
		// run has its own suffix, so those repeats are stored, not dropped
		// as duplicates.
		if c.stored[string(ev.Position)] {
			c.events++
			return nil
		}
		c.replaying = false
		if len(c.stored) > 0 && c.storedBeyond(ev.Position) {
			c.p.log.Warn("the stream misses a change that later ones follow; publishing again from it so that every key's changes stay in order",
				"source", c.p.cfg.Name, "position", ev.PositionText)
		}
		c.stored = nil
	}
	f, err := c.p.env.Conn.PublishAsync(subject, id+":"+c.epoch, data)
	if err != nil {
		return fmt.Errorf("source %s: %w", c.p.cfg.Name, err)
	}
	c.ck.Add(f)
	c.events++
	return nil
}

// CurrentPosition reads the source's WAL insert position. Not
// pg_current_wal_lsn(), the write position: with synchronous_commit=off a
// transaction that has committed may not be written yet, and the cut-over
// check would pass before its changes arrive.
func CurrentPosition(ctx context.Context, pool *pgxpool.Pool) (streams.Position, error) {
	var text string
	if err := pool.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&text); err != nil {
		return streams.Position{}, fmt.Errorf("reading pg_current_wal_insert_lsn(): %w", err)
	}
	lsn, err := pglogrepl.ParseLSN(text)
	if err != nil {
		return streams.Position{}, err
	}
	return streams.Position{Pos: lsnBytes(lsn), Text: text}, nil
}

// storedBeyond reports whether the stream holds a change after pos.
func (c *cdc) storedBeyond(pos []byte) bool {
	for p := range c.stored {
		if p > string(pos) {
			return true
		}
	}
	return false
}

// storedAfter finds the changes the stream already holds past start, and
// the stream sequence the saved position was taken at. Before the first
// change is published, it saves the start with the stream's current end, so
// that a crash before the first regular save still scans only what this
// stream of changes added.
func (p *producer) storedAfter(ctx context.Context, start pglogrepl.LSN) (map[string]bool, uint64, error) {
	var pos streams.Position
	found, err := p.env.State.GetJSON(ctx, streams.PositionKey(p.cfg.Name), &pos)
	if err != nil {
		return nil, 0, err
	}
	if !found {
		st, err := p.env.Conn.JS.Stream(ctx, streams.StreamName(p.cfg.Name))
		if err != nil {
			return nil, 0, fmt.Errorf("source %s: opening its stream: %w", p.cfg.Name, err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			return nil, 0, fmt.Errorf("source %s: reading its stream: %w", p.cfg.Name, err)
		}
		pos = streams.Position{Pos: lsnBytes(start), Text: start.String(), SavedAtUs: time.Now().UnixMicro(), StreamSeq: info.State.LastSeq}
		if err := p.env.State.PutJSON(ctx, streams.PositionKey(p.cfg.Name), pos); err != nil {
			return nil, 0, fmt.Errorf("source %s: %w", p.cfg.Name, err)
		}
		return map[string]bool{}, pos.StreamSeq, nil
	}
	// A position saved without a sequence (by an older ferry) scans back as
	// far as a checkpoint interval can reach at any plausible rate.
	stored, err := p.env.Conn.StoredAfter(ctx, p.cfg.Name, lsnBytes(start), pos.StreamSeq, 1<<20)
	if err != nil {
		return nil, 0, fmt.Errorf("source %s: %w", p.cfg.Name, err)
	}
	return stored, pos.StreamSeq, nil
}
