package oracle

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/metrics"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

// cdc mines the redo window by window and publishes committed transactions.
// The checkpoint saved in KV moves only once JetStream acknowledged every
// event before it.
type cdc struct {
	p    *producer
	proc *processor
	ck   *streams.Checkpointer
	ctx  context.Context
	// run is the checkpoint of what has been published (not yet acked).
	run checkpoint
	// acked is the newest checkpoint whose events are all acknowledged;
	// saved the one last written to KV.
	mu    sync.Mutex
	acked checkpoint
	saved checkpoint
	// stored is the position of the newest change event the stream held
	// when this run began: events up to it were published by an earlier
	// run and are sent again one at a time, expecting JetStream to report
	// each as a duplicate.
	stored []byte
	// epoch, once set, suffixes every message id of this run (see publish).
	epoch  string
	events int64
}

func (p *producer) stream(ctx context.Context, start checkpoint) error {
	c := &cdc{p: p, ctx: ctx, run: start, acked: start, saved: start}
	stored, err := p.lastStoredPosition(ctx)
	if err != nil {
		return err
	}
	c.stored = stored
	dir := spillDir(p.cfg.SpillDir, p.cfg.Name)
	// Spill files of an earlier run are useless: mining restarts at the
	// oldest open transaction, which writes them again.
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("source %s: clearing spill directory %s: %w", p.cfg.Name, dir, err)
	}
	c.proc = &processor{
		tables: p.tables,
		buf:    newTxBuffer(p.cfg.TxBufferBytes, dir),
		done:   start,
		emit:   c.emit,
		ddl:    c.reload,
	}
	defer c.proc.buf.removeAll()
	c.ck = streams.NewCheckpointer(context.WithoutCancel(ctx), 16384)
	p.log.Info("mining changes", "from", start.RestartSCN, "after", start.CommitSCN)
	runErr := c.loop(ctx, start.RestartSCN)
	ckErr := c.ck.Close()
	if err := c.save(context.WithoutCancel(ctx)); err != nil && runErr == nil {
		runErr = err
	}
	if runErr == nil && ckErr != nil {
		runErr = fmt.Errorf("source %s: %w", p.cfg.Name, ckErr)
	}
	p.log.Info("change stream stopped", "events", c.events, "restartScn", c.saved.RestartSCN, "commitScn", c.saved.CommitSCN)
	return runErr
}

// loop mines [from, from+window-1] up to the current SCN, then waits for
// more redo.
func (c *cdc) loop(ctx context.Context, from uint64) error {
	window := c.p.cfg.SCNWindow
	if window == 0 {
		window = 50000
	}
	owners := c.p.owners()
	flushed := &flushWatch{lag: c.p.flushLag}
	for ctx.Err() == nil {
		if err := c.ck.Err(); err != nil {
			return fmt.Errorf("source %s: %w", c.p.cfg.Name, err)
		}
		cur, err := c.p.miner.CurrentSCN(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("source %s: reading the current SCN: %w", c.p.cfg.Name, err)
		}
		head := flushed.observe(time.Now(), cur)
		if from > head {
			if err := c.save(ctx); err != nil {
				return c.stopping(ctx, err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(c.p.cfg.PollInterval.D()):
			}
			continue
		}
		to := min(from+window-1, head)
		if err := c.p.miner.Mine(ctx, from, to, owners, c.proc.handle); err != nil {
			if ctx.Err() != nil {
				return nil // stopping; the window is mined again on restart
			}
			return fmt.Errorf("source %s: mining SCN %d to %d: %w", c.p.cfg.Name, from, to, err)
		}
		// Everything up to to is mined: with no transaction open, the next
		// run may start after it.
		cp := c.run
		cp.XIDs = slices.Clone(cp.XIDs)
		cp.RestartSCN = c.proc.restartSCN(to + 1)
		cp.MinedSCN = to
		c.ck.Mark(func() error { c.setAcked(cp); return nil })
		from = to + 1
		if err := c.save(ctx); err != nil {
			return c.stopping(ctx, err)
		}
	}
	return nil
}

// flushWatch tells the newest SCN whose redo is surely in the log files.
// Redo waits in the log buffer until LGWR writes it: at a commit, when the
// buffer is a third full, and at least every three seconds (Oracle
// Concepts, "Log Writer Process"). A window that ended at the current SCN
// could miss an uncommitted change still in the buffer and never mine it
// again; so a window ends at an SCN that was current lag ago.
type flushWatch struct {
	lag     time.Duration
	samples []scnSample
}

type scnSample struct {
	at  time.Time
	scn uint64
}

// observe records the current SCN at now and returns the newest SCN that
// was current at least lag before now (0 when none yet).
func (f *flushWatch) observe(now time.Time, scn uint64) uint64 {
	if f.lag <= 0 {
		return scn
	}
	f.samples = append(f.samples, scnSample{now, scn})
	var safe uint64
	keep := 0
	for i, s := range f.samples {
		if now.Sub(s.at) >= f.lag {
			safe, keep = s.scn, i
		}
	}
	f.samples = f.samples[keep:]
	return safe
}

// stopping drops an error caused by ctx ending: the final save after the
// loop writes the checkpoint then.
func (c *cdc) stopping(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (c *cdc) setAcked(cp checkpoint) {
	c.mu.Lock()
	c.acked = cp
	c.mu.Unlock()
}

// save writes the acknowledged checkpoint to KV when it moved.
func (c *cdc) save(ctx context.Context) error {
	c.mu.Lock()
	cp := c.acked
	c.mu.Unlock()
	if cp.CommitSCN == c.saved.CommitSCN && cp.RestartSCN == c.saved.RestartSCN && cp.MinedSCN == c.saved.MinedSCN && slices.Equal(cp.XIDs, c.saved.XIDs) {
		return nil
	}
	if err := c.p.env.State.PutJSON(ctx, lmKey(c.p.cfg.Name), cp); err != nil {
		return fmt.Errorf("source %s: %w", c.p.cfg.Name, err)
	}
	mined := max(cp.MinedSCN, cp.CommitSCN)
	pos := streams.Position{Pos: binary.BigEndian.AppendUint64(nil, mined), Text: fmt.Sprint(mined),
		CommitTimeUs: cp.CommitTimeUs, SavedAtUs: time.Now().UnixMicro()}
	if err := c.p.env.State.PutJSON(ctx, streams.PositionKey(c.p.cfg.Name), pos); err != nil {
		return fmt.Errorf("source %s: %w", c.p.cfg.Name, err)
	}
	c.saved = cp
	metrics.SourcePosition.WithLabelValues(c.p.cfg.Name).Set(float64(mined))
	return nil
}

// reload rereads a table's layout after DDL on it.
func (c *cdc) reload(t *table) error {
	nt, err := loadTable(c.ctx, c.p.q, t.Name)
	if err != nil {
		return fmt.Errorf("source %s: reloading %s after DDL: %w", c.p.cfg.Name, t.Name, err)
	}
	nt.notNull = t.notNull
	*t = *nt
	c.p.log.Info("table layout reloaded after DDL", "table", t.Name, "columns", len(t.Columns))
	return c.p.saveSchema(c.ctx, t)
}

// emit publishes one committed transaction, its events in order. Position:
// commit SCN (8 bytes), the transaction's rank among those committed at
// that SCN (4), the event's index in it (4), all big-endian.
func (c *cdc) emit(cm committed) error {
	if cm.commitSCN != c.run.CommitSCN {
		c.run = checkpoint{CommitSCN: cm.commitSCN}
	}
	rank := uint32(len(c.run.XIDs))
	commitUs := cm.commitTime.UnixMicro()
	if cm.commitTime.IsZero() {
		commitUs = 0
	}
	tables := map[string]int{}
	var index uint32
	err := c.proc.buf.each(cm.t, func(ev *pb.Event) error {
		if err := c.fillLOBs(cm, ev); err != nil {
			return err
		}
		ev.Source = c.p.cfg.Name
		ev.TxId = cm.t.xid
		ev.TxIndex = index
		ev.CommitTimeUs = commitUs
		pos := binary.BigEndian.AppendUint64(nil, cm.commitSCN)
		pos = binary.BigEndian.AppendUint32(pos, rank)
		ev.Position = binary.BigEndian.AppendUint32(pos, index)
		ev.PositionText = fmt.Sprintf("%d/%d/%d", cm.commitSCN, rank, index)
		id := fmt.Sprintf("%s:%016X:%s:%d", c.p.cfg.Name, cm.commitSCN, cm.t.xid, index)
		index++
		tables[ev.Table]++
		return c.publish(ev, id)
	})
	if err != nil {
		return err
	}
	c.run.XIDs = append(c.run.XIDs, cm.t.xid)
	c.run.CommitTimeUs = commitUs
	cp := c.run
	cp.XIDs = slices.Clone(c.run.XIDs)
	// Mining resumes at the oldest transaction still open (this one is
	// done), or at this commit: others may commit at the same SCN.
	cp.RestartSCN, cp.MinedSCN = cm.commitSCN, cm.commitSCN
	for _, t := range c.proc.buf.open {
		if t != cm.t && t.startSCN < cp.RestartSCN {
			cp.RestartSCN = t.startSCN
		}
	}
	c.ck.Mark(func() error {
		c.setAcked(cp)
		for t, n := range tables {
			metrics.EventsPublished.WithLabelValues(c.p.cfg.Name, t).Add(float64(n))
		}
		if commitUs != 0 {
			metrics.SourceLag.WithLabelValues(c.p.cfg.Name).Set(time.Since(time.UnixMicro(commitUs)).Seconds())
		}
		return nil
	})
	return nil
}

// publish sends one change event under its deterministic id.
//
// After a restart, the events up to the newest one the stream holds were
// published by the previous run: they are sent again one at a time, and
// JetStream drops each as a duplicate, so a crash between publishing and
// saving the position leaves no repeats. Should one of them be stored anew
// (an earlier publish was lost while later ones went through, or the
// duplicate window has passed), dedup could leave the stream out of order;
// so from there on every id of this run gets a fresh suffix, and all that
// follows is stored again, in order.
func (c *cdc) publish(ev *pb.Event, id string) error {
	if err := config.WaitRows(c.ctx, c.p.limit, 1); err != nil {
		return err
	}
	data, err := streams.Encode(ev)
	if err != nil {
		return err
	}
	if len(data)+256 > c.p.maxPayload {
		return fmt.Errorf("source %s: change to %s (transaction %s) is %d bytes encoded, above the NATS server's max_payload of %d; raise max_payload (nats.maxPayload for the embedded server)",
			c.p.cfg.Name, ev.Table, ev.TxId, len(data), c.p.maxPayload)
	}
	subject := streams.EventSubject(c.p.cfg.Name, ev.Table, streams.Lane(ev.Key, c.p.cfg.Partitions))
	c.events++
	if c.epoch == "" && c.stored != nil && bytes.Compare(ev.Position, c.stored) <= 0 {
		ack, err := c.p.env.Conn.PublishSync(c.ctx, subject, id, data)
		if err != nil {
			return fmt.Errorf("source %s: %w", c.p.cfg.Name, err)
		}
		if !ack.Duplicate {
			c.epoch = strconv.FormatInt(time.Now().UnixNano(), 36)
			c.p.log.Warn("a change the stream should hold was stored again; the rest of this run is published again in order", "position", ev.PositionText)
		}
		return nil
	}
	if c.epoch != "" {
		id += ":" + c.epoch
	}
	f, err := c.p.env.Conn.PublishAsync(subject, id, data)
	if err != nil {
		return fmt.Errorf("source %s: %w", c.p.cfg.Name, err)
	}
	c.ck.Add(f)
	return nil
}

// lastStoredPosition is the position of the stream's newest message when
// it is a change event of this source (nil otherwise: an empty stream, or
// snapshot rows, which have none).
func (p *producer) lastStoredPosition(ctx context.Context) ([]byte, error) {
	st, err := p.env.Conn.JS.Stream(ctx, streams.StreamName(p.cfg.Name))
	if err != nil {
		return nil, fmt.Errorf("source %s: opening stream: %w", p.cfg.Name, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("source %s: reading stream state: %w", p.cfg.Name, err)
	}
	if info.State.Msgs == 0 {
		return nil, nil
	}
	m, err := st.GetMsg(ctx, info.State.LastSeq)
	if err != nil {
		return nil, fmt.Errorf("source %s: reading the stream's last message: %w", p.cfg.Name, err)
	}
	b, err := streams.Decode(m.Data)
	if err != nil || len(b.Events) == 0 {
		return nil, err
	}
	last := b.Events[len(b.Events)-1]
	if len(last.Position) != 16 {
		return nil, nil
	}
	return last.Position, nil
}

// fillLOBs reads, as of the commit, the LOB columns of an inserted or
// updated row that its redo left out: written with EMPTY_CLOB()/
// EMPTY_BLOB() and then through a locator (LOB_WRITE records, which carry
// no key). A row no longer there at the commit was deleted later in the
// same transaction; its delete follows.
func (c *cdc) fillLOBs(cm committed, ev *pb.Event) error {
	if ev.Op != pb.Op_OP_INSERT && ev.Op != pb.Op_OP_UPDATE {
		return nil
	}
	tb := c.p.tables[ev.Table]
	if tb == nil {
		return nil
	}
	var lobs []string
	for _, n := range ev.Unchanged {
		if i, ok := tb.byName[n]; ok && tb.Columns[i].lob && (ev.Op == pb.Op_OP_INSERT || cm.t.lobTables[tb.Name]) {
			lobs = append(lobs, n)
		}
	}
	if len(lobs) == 0 {
		return nil
	}
	q, args, err := lobQuery(tb, lobs, ev.Key, cm.commitSCN)
	if err != nil {
		return fmt.Errorf("source %s: %s: %w", c.p.cfg.Name, tb.Name, err)
	}
	found := false
	err = c.p.q.Query(c.ctx, q, args, func(v []any) error {
		found = true
		for i, n := range lobs {
			val, err := convert(tb.Columns[tb.byName[n]], driverLiteral(v[i]))
			if err != nil {
				return fmt.Errorf("%s.%s: %w", tb.Name, n, err)
			}
			ev.After.Names = append(ev.After.Names, n)
			ev.After.Values = append(ev.After.Values, val)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("source %s: reading LOB columns of %s as of SCN %d (is UNDO_RETENTION long enough?): %w", c.p.cfg.Name, tb.Name, cm.commitSCN, err)
	}
	if found {
		ev.Unchanged = slices.DeleteFunc(ev.Unchanged, func(n string) bool { return slices.Contains(lobs, n) })
	}
	return nil
}

// lobQuery reads some columns of one row, by key, as of an SCN.
func lobQuery(tb *table, cols []string, key *pb.Row, scn uint64) (string, []any, error) {
	sel := make([]string, len(cols))
	for i, n := range cols {
		sel[i] = tb.Columns[tb.byName[n]].selectExpr()
	}
	args := []any{strconv.FormatUint(scn, 10)}
	var where []string
	for i, n := range key.Names {
		col := tb.Columns[tb.byName[n]]
		text, err := bindText(col, key.Values[i])
		if err != nil {
			return "", nil, fmt.Errorf("key column %s: %w", n, err)
		}
		args = append(args, text)
		where = append(where, quoteIdent(n)+" = "+col.bindExpr(fmt.Sprintf(":%d", len(args))))
	}
	return "SELECT " + strings.Join(sel, ", ") + " FROM " + tb.ident() + " AS OF SCN TO_NUMBER(:1) WHERE " + strings.Join(where, " AND "), args, nil
}

// driverLiteral turns a value the Querier returned into a literal.
func driverLiteral(v any) literal {
	switch x := v.(type) {
	case nil:
		return literal{Kind: litNull}
	case string:
		return literal{Kind: litString, Text: x}
	case []byte:
		return literal{Kind: litBytes, Bytes: x}
	}
	return literal{Kind: litString, Text: fmt.Sprint(v)}
}

// bindText is a key value in the text form selectExpr reads and bindExpr
// turns back into the column's type.
func bindText(c column, v *pb.Value) (string, error) {
	switch k := v.GetKind().(type) {
	case *pb.Value_Int:
		return strconv.FormatInt(k.Int, 10), nil
	case *pb.Value_Decimal:
		return k.Decimal, nil
	case *pb.Value_Text:
		return k.Text, nil
	case *pb.Value_Bytes:
		return strings.ToUpper(fmt.Sprintf("%x", k.Bytes)), nil
	case *pb.Value_Float64:
		return strconv.FormatFloat(k.Float64, 'g', -1, 64), nil
	case *pb.Value_Float32:
		return strconv.FormatFloat(float64(k.Float32), 'g', -1, 32), nil
	case *pb.Value_Timestamp:
		t := time.UnixMicro(k.Timestamp.UnixUs).UTC().Add(time.Duration(k.Timestamp.ExtraNanos))
		y := t.Year()
		sign := ""
		if y <= 0 {
			sign, y = "-", -y+1
		}
		s := fmt.Sprintf("%s%04d-%02d-%02d %02d:%02d:%02d", sign, y, t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second())
		if c.kind != kDate {
			s += fmt.Sprintf(".%09d", t.Nanosecond())
		}
		return s, nil
	}
	return "", fmt.Errorf("a %T key cannot be bound (use a NUMBER, character, RAW, DATE or TIMESTAMP key)", v.GetKind())
}
