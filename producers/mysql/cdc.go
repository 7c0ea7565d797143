package mysql

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"google.golang.org/protobuf/proto"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/metrics"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

// txState is the transaction being received.
type txState struct {
	open     bool
	gtid     string // this transaction's GTID ("" with GTIDs off)
	file     string
	start    uint32 // binlog offset where it begins
	commitUs int64
	index    uint32
	tables   map[string]int
}

// cdc reads the binlog. Events are published as they arrive; the position
// saved in KV is always one after a whole transaction (its XID or COMMIT),
// and only once JetStream acknowledged every event up to it.
type cdc struct {
	p    *producer
	ctx  context.Context
	ck   *streams.Checkpointer
	gtid gomysql.GTIDSet // every transaction up to the one received last
	file string          // current binlog file
	tx   txState

	mu       sync.Mutex
	acked    position // newest position everything before is acknowledged
	ackedUs  int64
	ackedSet bool
	saved    position
	events   int64

	// replaying: events before the first one the stream does not hold yet
	// are repeats of what a previous run published (stored lists their
	// positions); they are not published again.
	replaying bool
	stored    map[string]bool
	// epoch suffixes every message id of this run (see publish).
	epoch string

	// at is the position after the last whole transaction (or event
	// between transactions) handled; stop, when set, ends the stream once
	// at reaches it (see catchUp).
	at   position
	stop *position
}

func (p *producer) stream(ctx context.Context, start position) error {
	return p.runStream(ctx, start, nil)
}

// runStream streams changes from start until ctx ends or, with stop set,
// until every change before stop is published and stop saved.
func (p *producer) runStream(ctx context.Context, start position, stop *position) error {
	cfg := replication.BinlogSyncerConfig{
		ServerID:                p.cfg.ServerID,
		Flavor:                  p.flavor,
		Host:                    p.dsn.Host,
		Port:                    p.dsn.Port,
		User:                    p.dsn.User,
		Password:                p.dsn.Password,
		Charset:                 "utf8mb4",
		UseDecimal:              true,
		TimestampStringLocation: time.UTC,
		HeartbeatPeriod:         5 * time.Second,
		ReadTimeout:             30 * time.Second,
		MaxReconnectAttempts:    3,
		Logger:                  slog.New(slog.DiscardHandler),
	}
	syncer := replication.NewBinlogSyncer(cfg)
	defer syncer.Close()
	c := &cdc{p: p, ctx: ctx, file: start.File, acked: start, saved: start, at: start, stop: stop}
	var streamer *replication.BinlogStreamer
	var err error
	if start.UseGTID {
		if c.gtid, err = parseGTIDSet(p.flavor, start.GTID); err != nil {
			return fmt.Errorf("source %s: saved position: %w", p.cfg.Name, err)
		}
		streamer, err = syncer.StartSyncGTID(c.gtid.Clone())
	} else {
		streamer, err = syncer.StartSync(gomysql.Position{Name: start.File, Pos: start.Offset})
	}
	if err != nil {
		return fmt.Errorf("source %s: starting to read the binlog at %s: %w", p.cfg.Name, start.text(), err)
	}
	p.log.Info("streaming changes", "from", start.text(), "flavor", p.flavor)
	c.ck = streams.NewCheckpointer(context.WithoutCancel(ctx), 16384)
	if err := c.resume(ctx, start); err != nil {
		return err
	}
	runErr := c.loop(ctx, streamer)
	ckErr := c.ck.Close()
	if err := c.save(context.WithoutCancel(ctx)); err != nil && runErr == nil {
		runErr = err
	}
	if runErr == nil && ckErr != nil {
		runErr = fmt.Errorf("source %s: %w", p.cfg.Name, ckErr)
	}
	p.log.Info("change stream stopped", "events", c.events, "position", c.saved.text())
	return runErr
}

func (c *cdc) loop(ctx context.Context, s *replication.BinlogStreamer) error {
	interval := c.p.cfg.StatusInterval.D()
	next := time.Now().Add(interval)
	for {
		if err := c.ck.Err(); err != nil {
			return fmt.Errorf("source %s: %w", c.p.cfg.Name, err)
		}
		if !time.Now().Before(next) {
			if err := c.save(ctx); err != nil {
				return err
			}
			next = time.Now().Add(interval)
		}
		rctx, cancel := context.WithDeadline(ctx, next)
		ev, err := s.GetEvent(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, context.DeadlineExceeded) {
				continue
			}
			return fmt.Errorf("source %s: reading the binlog: %w", c.p.cfg.Name, err)
		}
		if err := c.handle(ev); err != nil {
			if ctx.Err() != nil {
				return nil // stopping; the open transaction is read again on restart
			}
			return err
		}
		if c.stop != nil && !c.tx.open && reached(c.at, *c.stop) {
			return nil
		}
	}
}

// mark records, once everything published so far is acknowledged, that
// the stream may resume after the current point.
func (c *cdc) mark(offset uint32, commitUs int64, tables map[string]int) {
	pos := position{Flavor: c.p.flavor, UseGTID: c.p.useGTID, File: c.file, Offset: offset}
	if c.gtid != nil {
		pos.GTID = c.gtid.String()
	}
	c.at = pos
	c.ck.Mark(func() error {
		c.mu.Lock()
		c.acked, c.ackedSet = pos, true
		if commitUs != 0 {
			c.ackedUs = commitUs
		}
		c.mu.Unlock()
		for t, n := range tables {
			metrics.EventsPublished.WithLabelValues(c.p.cfg.Name, t).Add(float64(n))
		}
		if commitUs != 0 {
			metrics.SourceLag.WithLabelValues(c.p.cfg.Name).Set(time.Since(time.UnixMicro(commitUs)).Seconds())
		} else {
			metrics.SourceLag.WithLabelValues(c.p.cfg.Name).Set(0)
		}
		return nil
	})
}

// save writes the acknowledged position to KV when it moved.
func (c *cdc) save(ctx context.Context) error {
	c.mu.Lock()
	pos, us, ok := c.acked, c.ackedUs, c.ackedSet
	c.mu.Unlock()
	if !ok || pos == c.saved {
		return nil
	}
	if err := c.p.savePosition(ctx, pos, us); err != nil {
		return fmt.Errorf("source %s: %w", c.p.cfg.Name, err)
	}
	c.saved = pos
	metrics.SourcePosition.WithLabelValues(c.p.cfg.Name).Set(float64(fileNumber(pos.File))*4294967296 + float64(pos.Offset))
	return nil
}

func (c *cdc) begin(h *replication.EventHeader, gtid string) {
	c.tx = txState{open: true, gtid: gtid, file: c.file, start: h.LogPos - h.EventSize,
		commitUs: int64(h.Timestamp) * 1_000_000, tables: map[string]int{}}
}

// commit ends the transaction: its GTID joins the set, and the position
// after it becomes the resume point once its events are acknowledged.
func (c *cdc) commit(h *replication.EventHeader) error {
	if c.tx.gtid != "" && c.gtid != nil {
		if err := addGTID(c.gtid, c.tx.gtid); err != nil {
			return fmt.Errorf("source %s: %w", c.p.cfg.Name, err)
		}
	}
	c.mark(h.LogPos, c.tx.commitUs, c.tx.tables)
	c.tx = txState{}
	return nil
}

func (c *cdc) handle(ev *replication.BinlogEvent) error {
	h := ev.Header
	switch e := ev.Event.(type) {
	case *replication.RotateEvent:
		c.file = string(e.NextLogName)
		return nil
	case *replication.GTIDEvent:
		if !c.p.useGTID {
			// gtid_mode OFF: every transaction has the same anonymous
			// GTID, so the binlog place identifies it instead.
			c.begin(h, "")
			return nil
		}
		next, err := e.GTIDNext()
		if err != nil {
			return fmt.Errorf("source %s: reading a GTID event: %w", c.p.cfg.Name, err)
		}
		c.begin(h, next.String())
		return nil
	case *replication.MariadbGTIDEvent:
		c.begin(h, e.GTID.String())
		return nil
	case *replication.XIDEvent:
		return c.commit(h)
	case *replication.QueryEvent:
		q := strings.TrimSpace(string(e.Query))
		switch strings.ToUpper(q) {
		case "BEGIN":
			if !c.tx.open {
				c.begin(h, "")
			}
			return nil
		case "COMMIT":
			return c.commit(h)
		}
		if err := c.ddl(string(e.Schema), q); err != nil {
			return err
		}
		if !c.tx.open {
			c.begin(h, "")
		}
		return c.commit(h)
	case *replication.RowsEvent:
		return c.rows(h, e)
	}
	if !c.tx.open && h.LogPos > 0 && c.file != "" {
		// Between transactions (format description, GTID list, heartbeat,
		// checkpoint): the position moves on with no event to publish.
		c.mark(h.LogPos, 0, nil)
	}
	return nil
}

func (c *cdc) rows(h *replication.EventHeader, e *replication.RowsEvent) error {
	if string(e.Table.Schema) != c.p.dsn.DB {
		return nil
	}
	name := string(e.Table.Table)
	t := c.p.tables[name]
	if t == nil {
		return nil
	}
	if !c.tx.open {
		c.begin(h, "")
	}
	cols, err := c.columns(t, e)
	if err != nil {
		return err
	}
	switch h.EventType {
	case replication.WRITE_ROWS_EVENTv0, replication.WRITE_ROWS_EVENTv1, replication.WRITE_ROWS_EVENTv2:
		for _, r := range e.Rows {
			after, err := c.p.row(t, cols, r, true)
			if err != nil {
				return err
			}
			if err := c.publish(c.event(t, pb.Op_OP_INSERT, after, nil)); err != nil {
				return err
			}
		}
	case replication.DELETE_ROWS_EVENTv0, replication.DELETE_ROWS_EVENTv1, replication.DELETE_ROWS_EVENTv2:
		for _, r := range e.Rows {
			before, err := c.p.row(t, cols, r, true)
			if err != nil {
				return err
			}
			ev := c.event(t, pb.Op_OP_DELETE, nil, before)
			ev.Key = keyOf(t, before)
			if err := c.publish(ev); err != nil {
				return err
			}
		}
	case replication.UPDATE_ROWS_EVENTv0, replication.UPDATE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv2:
		for i := 0; i+1 < len(e.Rows); i += 2 {
			before, err := c.p.row(t, cols, e.Rows[i], true)
			if err != nil {
				return err
			}
			after, err := c.p.row(t, cols, e.Rows[i+1], true)
			if err != nil {
				return err
			}
			ev := c.event(t, pb.Op_OP_UPDATE, after, before)
			oldKey := keyOf(t, before)
			if keysEqual(oldKey, ev.Key) {
				if err := c.publish(ev); err != nil {
					return err
				}
				continue
			}
			// The primary key changed: the old and new keys may live in
			// different lanes, so this travels as a delete of the old key
			// and an insert of the new row.
			del := c.event(t, pb.Op_OP_DELETE, nil, before)
			del.Key = oldKey
			if err := c.publish(del); err != nil {
				return err
			}
			ev.Op = pb.Op_OP_INSERT
			if err := c.publish(ev); err != nil {
				return err
			}
		}
	}
	return nil
}

// columns maps a row image's values to the table's columns: by name when
// the server logs them (binlog_row_metadata=FULL), else by position, where
// the image holds every column or every stored (non-virtual) one.
func (c *cdc) columns(t *table, e *replication.RowsEvent) ([]int, error) {
	n := int(e.ColumnCount)
	if names := e.Table.ColumnNameString(); len(names) == n && n > 0 {
		cols := make([]int, n)
		for i, name := range names {
			cols[i] = -1
			for j, col := range t.Columns {
				if col.Name == name {
					cols[i] = j
				}
			}
			if cols[i] < 0 {
				return nil, fmt.Errorf("source %s: the binlog has column %s.%s, which the table's definition does not; ferry saw no DDL adding it", c.p.cfg.Name, t.Name, name)
			}
		}
		return cols, nil
	}
	switch n {
	case len(t.Columns):
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		return all, nil
	case len(t.stored):
		return t.stored, nil
	}
	return nil, fmt.Errorf("source %s: a binlog row of %s has %d columns but the table has %d now; its layout changed in a way ferry did not follow (set binlog_row_metadata=FULL on the server so rows carry column names)",
		c.p.cfg.Name, t.Name, n, len(t.Columns))
}

func (c *cdc) event(t *table, op pb.Op, after, before *pb.Row) *pb.Event {
	ev := &pb.Event{
		Source: c.p.cfg.Name, Table: t.Name, Op: op,
		After: after, Before: before,
		CommitTimeUs: c.tx.commitUs, TxId: c.tx.gtid,
	}
	if after != nil {
		ev.Key = keyOf(t, after)
	}
	return ev
}

func keysEqual(a, b *pb.Row) bool {
	if len(a.GetValues()) != len(b.GetValues()) {
		return false
	}
	for i := range a.Values {
		if !proto.Equal(a.Values[i], b.Values[i]) {
			return false
		}
	}
	return true
}

// publish sends one change event. Its position is the transaction's place
// in the binlog and the event's index inside it. After a restart the binlog
// is read again from the saved position, and the stream may already hold
// what follows it (published, but not yet saved as the position): those
// changes are recognised by their positions and skipped. From the first
// change the stream lacks, everything is published, also changes it holds
// beyond that one: if an earlier publish was lost while later ones went
// through, only publishing them again puts that key's changes back in
// order. Every message id of a run has the run's own suffix, so those
// repeats are stored, not dropped as duplicates; which is also why repeats
// are told by position and not by id.
func (c *cdc) publish(ev *pb.Event) error {
	if err := config.WaitRows(c.ctx, c.p.limit, 1); err != nil {
		return err
	}
	c.tx.tables[ev.Table]++
	ev.TxIndex = c.tx.index
	txPos := position{File: c.tx.file, Offset: c.tx.start}
	ev.Position = binary.BigEndian.AppendUint32(txPos.order(), c.tx.index)
	txID := c.tx.gtid
	if txID == "" {
		txID = fmt.Sprintf("%s:%d", c.tx.file, c.tx.start)
	}
	ev.PositionText = fmt.Sprintf("%s/%d", txID, c.tx.index)
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
	if c.replaying {
		if c.stored[string(ev.Position)] {
			c.events++
			return nil
		}
		c.replaying = false
		if c.storedBeyond(ev.Position) {
			c.p.log.Warn("the stream misses a change that later ones follow; publishing again from it so that every key's changes stay in order",
				"source", c.p.cfg.Name, "position", ev.PositionText)
		}
		c.stored = nil
	}
	id := fmt.Sprintf("%s:%s:%d:%s", c.p.cfg.Name, txID, ev.TxIndex, c.epoch)
	f, err := c.p.env.Conn.PublishAsync(subject, id, data)
	if err != nil {
		return fmt.Errorf("source %s: %w", c.p.cfg.Name, err)
	}
	c.ck.Add(f)
	c.events++
	return nil
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

// resume prepares a run that streams from start: it finds the changes the
// stream already holds beyond start (see publish) and picks the run's id
// suffix.
func (c *cdc) resume(ctx context.Context, start position) error {
	stored, err := c.p.env.Conn.StoredAfter(ctx, c.p.cfg.Name, start.order(), 0, 1<<20)
	if err != nil {
		return fmt.Errorf("source %s: %w", c.p.cfg.Name, err)
	}
	c.stored, c.replaying = stored, len(stored) > 0
	c.epoch = strconv.FormatInt(time.Now().UnixNano(), 36)
	return nil
}
