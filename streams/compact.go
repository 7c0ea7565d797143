package streams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/streams/pb"
)

// compactBatch is how many change-stream messages the compactor folds
// between two progress records.
const compactBatch = 1000

// compactBytes bounds the change-stream bytes of one fold.
const compactBytes = 1 << 20

// trimInterval is how often the retention is enforced.
const trimInterval = 10 * time.Second

// Compactor folds a source's change stream into its state stream, in stream
// order, and trims the change stream by the source's retention, never past
// what it has folded. One compactor runs per source, beside its producer.
type Compactor struct {
	conn   *Conn
	state  *State
	source string
	ret    config.Retention
	log    *slog.Logger
	parts  int

	// js publishes state messages: a JetStream context of its own, so
	// that its outstanding acknowledgements do not count against the
	// producer's in the same process.
	js       jetstream.JetStream
	id       string // this compactor's lease owner name
	leaseRev uint64
	leaseTo  time.Time
}

// leaseTTL is how long a compactor's lease lasts without renewal. Two
// compactors of one source (two producer processes) must not fold at once:
// one refolding older events would hold keys at older states than the
// recorded progress says.
const leaseTTL = 15 * time.Second

// lease is the KV record of who compacts a source.
type lease struct {
	Owner   string `json:"owner"`
	UntilUs int64  `json:"untilUs"`
}

// LeaseKey holds the compactor lease of a source.
func LeaseKey(source string) string { return SourceKey(source, "compactor") }

// acquire waits until this compactor holds the source's lease.
func (c *Compactor) acquire(ctx context.Context) error {
	logged := false
	for {
		until := time.Now().Add(leaseTTL)
		val, _ := json.Marshal(lease{Owner: c.id, UntilUs: until.UnixMicro()})
		e, err := c.state.KV.Get(ctx, LeaseKey(c.source))
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			c.leaseRev, err = c.state.KV.Create(ctx, LeaseKey(c.source), val)
		case err == nil:
			var l lease
			if json.Unmarshal(e.Value(), &l) == nil && l.Owner != c.id && time.Now().Before(time.UnixMicro(l.UntilUs)) {
				if !logged {
					c.log.Info("another process compacts this source; standing by", "owner", l.Owner)
					logged = true
				}
				err = errLeaseHeld
				break
			}
			c.leaseRev, err = c.state.KV.Update(ctx, LeaseKey(c.source), val, e.Revision())
		}
		if err == nil {
			c.leaseTo = until
			return nil
		}
		if !errors.Is(err, errLeaseHeld) && !errors.Is(err, jetstream.ErrKeyExists) {
			c.log.Debug("taking the compactor lease", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// release gives the lease up, so that a restarted producer compacts at
// once rather than after the lease expired.
func (c *Compactor) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.state.KV.Delete(ctx, LeaseKey(c.source), jetstream.LastRevision(c.leaseRev))
}

var errLeaseHeld = errors.New("lease held by another compactor")

// renew extends the lease when a third of it is gone; it fails when the
// lease is lost, and then nothing more may be folded.
func (c *Compactor) renew(ctx context.Context) error {
	if time.Until(c.leaseTo) > 2*leaseTTL/3 {
		return nil
	}
	if time.Now().After(c.leaseTo) {
		return errors.New("the compactor lease expired")
	}
	until := time.Now().Add(leaseTTL)
	val, _ := json.Marshal(lease{Owner: c.id, UntilUs: until.UnixMicro()})
	rev, err := c.state.KV.Update(ctx, LeaseKey(c.source), val, c.leaseRev)
	if err != nil {
		return fmt.Errorf("renewing the compactor lease: %w", err)
	}
	c.leaseRev, c.leaseTo = rev, until
	return nil
}

// NewCompactor prepares the compactor of a source; Run starts it.
func NewCompactor(conn *Conn, state *State, src config.Source, log *slog.Logger) *Compactor {
	host, _ := os.Hostname()
	return &Compactor{conn: conn, state: state, source: src.Name, ret: src.Retention,
		log: log.With("source", src.Name, "role", "compactor"),
		id:  fmt.Sprintf("%s/%d/%d", host, os.Getpid(), time.Now().UnixNano())}
}

// Run compacts until ctx ends. Errors of NATS are retried from the recorded
// progress; the state stream stays consistent (see docs/replay.md).
func (c *Compactor) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		err := c.run(ctx)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		c.log.Warn("compacting failed; resuming from the recorded progress", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	return nil
}

func (c *Compactor) run(ctx context.Context) error {
	// The producer creates the change stream.
	for {
		n, err := c.conn.SourcePartitions(ctx, c.source)
		if err == nil {
			c.parts = n
			break
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
	if c.js == nil {
		js, err := jetstream.New(c.conn.NC, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(time.Minute))
		if err != nil {
			return fmt.Errorf("opening JetStream: %w", err)
		}
		c.js = js
	}
	if err := c.acquire(ctx); err != nil {
		return nil // ctx ended
	}
	defer c.release()
	stateSt, err := c.conn.EnsureStateStream(ctx, c.source)
	if err != nil {
		return err
	}
	var prog Compacted
	if _, err := c.state.GetJSON(ctx, CompactedKey(c.source), &prog); err != nil {
		return err
	}
	changes, err := c.conn.JS.Stream(ctx, StreamName(c.source))
	if err != nil {
		return fmt.Errorf("opening stream %s: %w", StreamName(c.source), err)
	}
	info, err := changes.Info(ctx)
	if err != nil {
		return fmt.Errorf("reading stream %s: %w", StreamName(c.source), err)
	}
	if !prog.Incomplete && info.State.FirstSeq > prog.Seq+1 && info.State.Msgs > 0 {
		// Events the compactor never saw are gone: it was turned on after
		// the stream was trimmed. Say so for good rather than seed targets
		// with rows missing.
		prog.Incomplete = true
		c.log.Error("the change stream was trimmed before the compactor saw its start; the state stream cannot seed targets",
			"firstSeq", info.State.FirstSeq, "compacted", prog.Seq)
		if err := c.state.PutJSON(ctx, CompactedKey(c.source), prog); err != nil {
			return err
		}
	}
	// Always restart right after the recorded progress, never from an
	// older point: refolding an event at or below the progress could hold a
	// key at an older value that a seed reading "as of the progress" would
	// take for the current one.
	// No subject filter: the stream holds only this source's events, and a
	// filter costs the server a subject match per message.
	cons, err := c.conn.JS.OrderedConsumer(ctx, StreamName(c.source), jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   prog.Seq + 1,
	})
	if err != nil {
		return fmt.Errorf("reading stream %s: %w", StreamName(c.source), err)
	}
	c.log.Info("compacting the change stream into "+StateStreamName(c.source), "from", prog.Seq+1)
	lastTrim := time.Time{}
	maxBytes := compactBytes
	for ctx.Err() == nil {
		if err := c.renew(ctx); err != nil {
			return err
		}
		if c.ret.MaxAge > 0 || c.ret.MaxBytes > 0 {
			if time.Since(lastTrim) >= trimInterval {
				if err := c.trim(ctx, changes, prog.Seq); err != nil {
					c.log.Warn("trimming the change stream", "err", err)
				}
				lastTrim = time.Now()
			}
		}
		// A byte budget keeps one fold short (snapshot messages hold many
		// rows each), well inside the lease.
		batch, err := cons.Fetch(compactBatch, jetstream.FetchMaxWait(time.Second), jetstream.FetchMaxBytes(maxBytes))
		if err != nil {
			return fmt.Errorf("reading stream %s: %w", StreamName(c.source), err)
		}
		var msgs []jetstream.Msg
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		if err := batch.Error(); errors.Is(err, jetstream.ErrMaxBytesExceeded) && len(msgs) == 0 {
			maxBytes = int(c.conn.NC.MaxPayload()) + 64<<10 // one large message alone
			continue
		}
		maxBytes = compactBytes
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && len(msgs) == 0 {
			return fmt.Errorf("reading stream %s: %w", StreamName(c.source), err)
		}
		if len(msgs) == 0 {
			continue
		}
		if err := c.renew(ctx); err != nil {
			return err
		}
		last, err := c.fold(ctx, stateSt, msgs)
		if err != nil {
			return err
		}
		prog.Seq = last
		prog.SavedAtUs = time.Now().UnixMicro()
		// Recorded only once JetStream stored every state message up to it.
		if err := c.state.PutJSON(ctx, CompactedKey(c.source), prog); err != nil {
			return err
		}
	}
	return nil
}

// fold writes the state of every key the messages touch and returns the
// last sequence, once everything is stored.
func (c *Compactor) fold(ctx context.Context, stateSt jetstream.Stream, msgs []jetstream.Msg) (uint64, error) {
	// The newest state written in this batch per subject: a partial update
	// merges into it rather than into what the stream may not hold yet.
	latest := map[string]*pb.Event{}
	var futs []jetstream.PubAckFuture
	var last uint64
	for _, m := range msgs {
		md, err := m.Metadata()
		if err != nil {
			return 0, fmt.Errorf("reading message metadata: %w", err)
		}
		seq := md.Sequence.Stream
		last = seq
		b, err := Decode(m.Data())
		if err != nil {
			// The appliers stop on such a message too; the compactor
			// cannot skip it either without losing the key's state.
			return 0, fmt.Errorf("message %d on %s: %w", seq, m.Subject(), err)
		}
		for _, e := range b.Events {
			evs, err := c.states(ctx, stateSt, latest, e)
			if err != nil {
				return 0, fmt.Errorf("message %d on %s: %w", seq, m.Subject(), err)
			}
			for _, s := range evs {
				f, err := c.publish(s, seq)
				if err != nil {
					return 0, err
				}
				futs = append(futs, f)
			}
			if len(futs) >= 8192 {
				// A snapshot message holds many rows: bound what is in
				// flight and remembered.
				if err := c.settle(ctx, stateSt, futs, latest); err != nil {
					return 0, err
				}
				futs = futs[:0]
				clear(latest)
			}
		}
	}
	if err := c.settle(ctx, stateSt, futs, latest); err != nil {
		return 0, err
	}
	return last, nil
}

// settle waits until every state message published is stored, then
// removes the keys whose newest state is a tombstone: the tombstone went
// out in order with the other messages (a key deleted and then written
// again in one batch keeps its new row), and the purge afterwards leaves a
// deleted key absent, which seeds exactly like a deleted one while taking no
// room.
func (c *Compactor) settle(ctx context.Context, stateSt jetstream.Stream, futs []jetstream.PubAckFuture, latest map[string]*pb.Event) error {
	if err := WaitAcks(ctx, futs); err != nil {
		return err
	}
	for subj, e := range latest {
		if e.GetOp() != pb.Op_OP_DELETE {
			continue
		}
		if err := stateSt.Purge(ctx, jetstream.WithPurgeSubject(subj)); err != nil {
			return fmt.Errorf("removing deleted key %s from %s: %w", subj, StateStreamName(c.source), err)
		}
	}
	return nil
}

// states returns the state events an event leads to: the key's new full
// row, or its tombstone; and the old key's tombstone when an update moved
// the row to a new key.
func (c *Compactor) states(ctx context.Context, stateSt jetstream.Stream, latest map[string]*pb.Event, e *pb.Event) ([]*pb.Event, error) {
	key := e.GetKey()
	subj := StateSubject(c.source, e.GetTable(), Lane(key, c.parts), key)
	var out []*pb.Event
	tomb := func(k *pb.Row, s string) {
		t := &pb.Event{Source: e.GetSource(), Table: e.GetTable(), Op: pb.Op_OP_DELETE, Key: k,
			CommitTimeUs: e.GetCommitTimeUs(), PositionText: e.GetPositionText(), Position: e.GetPosition()}
		latest[s] = t
		out = append(out, t)
	}
	if e.GetOp() == pb.Op_OP_DELETE {
		tomb(key, subj)
		return out, nil
	}
	var old *pb.Event
	if e.GetOp() == pb.Op_OP_UPDATE {
		if ok, oldKey := movedKey(e); ok {
			oldSubj := StateSubject(c.source, e.GetTable(), Lane(oldKey, c.parts), oldKey)
			if len(e.GetUnchanged()) > 0 {
				var err error
				if old, err = c.current(ctx, stateSt, latest, oldSubj); err != nil {
					return nil, err
				}
			}
			tomb(oldKey, oldSubj)
		}
	}
	s := &pb.Event{Source: e.GetSource(), Table: e.GetTable(), Op: pb.Op_OP_READ, Key: key, After: e.GetAfter(),
		CommitTimeUs: e.GetCommitTimeUs(), PositionText: e.GetPositionText(), Position: e.GetPosition(),
		PartitionKeyCount: e.GetPartitionKeyCount()}
	if len(e.GetUnchanged()) > 0 {
		if old == nil {
			var err error
			if old, err = c.current(ctx, stateSt, latest, subj); err != nil {
				return nil, err
			}
		}
		if old == nil || old.GetOp() == pb.Op_OP_DELETE || old.GetAfter() == nil {
			// No full row to merge into (it should be there: a row is read
			// or inserted before it is updated). Keep the partial update as
			// it is; a target seeded from it updates what it holds.
			c.log.Warn("partial update of a key the state stream does not hold; kept as a partial update",
				"table", e.GetTable())
			s.Op = pb.Op_OP_UPDATE
			s.Unchanged = e.GetUnchanged()
		} else {
			s.After = mergeRow(old.GetAfter(), e.GetAfter())
		}
	}
	latest[subj] = s
	return append(out, s), nil
}

// movedKey returns the old key of an update that changed the key.
func movedKey(e *pb.Event) (bool, *pb.Row) {
	b := e.GetBefore()
	key := e.GetKey()
	if b == nil || key == nil {
		return false, nil
	}
	old := &pb.Row{Names: key.GetNames()}
	for _, n := range key.GetNames() {
		v, ok := rowValue(b, n)
		if !ok {
			return false, nil
		}
		old.Values = append(old.Values, v)
	}
	if KeyToken(old) == KeyToken(key) {
		return false, nil
	}
	return true, old
}

func rowValue(r *pb.Row, name string) (*pb.Value, bool) {
	for i, n := range r.GetNames() {
		if n == name && i < len(r.GetValues()) {
			return r.GetValues()[i], true
		}
	}
	return nil, false
}

// mergeRow lays the columns of upd over base: what an update with
// unchanged columns leaves is base's value. A column's type and cell
// metadata come with its value, or from base when upd has none.
func mergeRow(base, upd *pb.Row) *pb.Row {
	out := &pb.Row{}
	withTypes := len(base.GetTypes()) == len(base.GetNames())
	withMeta := len(base.GetMeta()) == len(base.GetNames())
	at := func(r *pb.Row, i int) (typ string, meta *pb.CellMeta) {
		if i >= 0 && len(r.GetTypes()) == len(r.GetNames()) {
			typ = r.GetTypes()[i]
		}
		if i >= 0 && len(r.GetMeta()) == len(r.GetNames()) {
			meta = r.GetMeta()[i]
		}
		return typ, meta
	}
	add := func(name string, v *pb.Value, typ string, meta *pb.CellMeta) {
		out.Names = append(out.Names, name)
		out.Values = append(out.Values, v)
		if withTypes {
			out.Types = append(out.Types, typ)
		}
		if withMeta {
			if meta == nil {
				meta = &pb.CellMeta{}
			}
			out.Meta = append(out.Meta, meta)
		}
	}
	inUpd := map[string]int{}
	for j, n := range upd.GetNames() {
		inUpd[n] = j
	}
	inBase := map[string]bool{}
	for i, n := range base.GetNames() {
		inBase[n] = true
		bt, bm := at(base, i)
		if j, ok := inUpd[n]; ok {
			ut, um := at(upd, j)
			if ut == "" {
				ut = bt
			}
			if um == nil {
				um = bm
			}
			add(n, upd.GetValues()[j], ut, um)
		} else {
			add(n, base.GetValues()[i], bt, bm)
		}
	}
	for j, n := range upd.GetNames() {
		if !inBase[n] { // a column base did not have
			ut, um := at(upd, j)
			add(n, upd.GetValues()[j], ut, um)
		}
	}
	return out
}

// current returns a key's state: written earlier in this batch, else as
// stored, else nil.
func (c *Compactor) current(ctx context.Context, stateSt jetstream.Stream, latest map[string]*pb.Event, subj string) (*pb.Event, error) {
	if e, ok := latest[subj]; ok {
		return e, nil
	}
	m, err := stateSt.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading state %s: %w", subj, err)
	}
	b, err := Decode(m.Data)
	if err != nil || len(b.Events) != 1 {
		return nil, fmt.Errorf("state message %s: not one event (%v)", subj, err)
	}
	// Decode shares m.Data; the event outlives nothing else of it.
	return b.Events[0], nil
}

// publish stores one state event, stamped with the change-stream sequence
// it reflects.
func (c *Compactor) publish(e *pb.Event, seq uint64) (jetstream.PubAckFuture, error) {
	data, err := Encode(e)
	if err != nil {
		return nil, err
	}
	subj := StateSubject(c.source, e.GetTable(), Lane(e.GetKey(), c.parts), e.GetKey())
	m := nats.NewMsg(subj)
	m.Data = data
	// Only the sequence header: it is stored with every one of perhaps
	// millions of keys (the payload is a ferry.v1.Batch like the change
	// stream's, docs/replay.md).
	m.Header.Set(SeqHeader, strconv.FormatUint(seq, 10))
	for {
		f, err := c.js.PublishMsgAsync(m, jetstream.WithRetryAttempts(0))
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("publishing state to %s: %w", subj, err)
		}
		return f, nil
	}
}

// trim removes events older than the retention from the change stream, but
// none the compactor has not folded (above compacted). Before removing it
// records, per lane, the highest sequence removed, so that a target whose
// watermark is below it knows it missed events (appliers' runner).
func (c *Compactor) trim(ctx context.Context, changes jetstream.Stream, compacted uint64) error {
	info, err := changes.Info(ctx)
	if err != nil {
		return err
	}
	st := info.State
	if st.Msgs == 0 {
		return nil
	}
	var cut uint64
	if c.ret.MaxAge > 0 {
		if cut, err = c.conn.SeqAtTime(ctx, c.source, time.Now().Add(-c.ret.MaxAge.D())); err != nil {
			return err
		}
	}
	if c.ret.MaxBytes > 0 && st.Bytes > uint64(c.ret.MaxBytes) {
		// Messages are of similar size: drop the oldest share above the cap.
		drop := uint64(float64(st.Msgs) * (1 - float64(c.ret.MaxBytes)/float64(st.Bytes)))
		cut = max(cut, st.FirstSeq+drop)
	}
	cut = min(cut, compacted+1)
	if cut <= st.FirstSeq {
		return nil
	}
	var prev Trim
	if _, err := c.state.GetJSON(ctx, TrimKey(c.source), &prev); err != nil {
		return err
	}
	rec := Trim{Cut: cut, LaneLast: make([]uint64, c.parts)}
	copy(rec.LaneLast, prev.LaneLast)
	// Read the subjects (headers only) of what goes, for each lane's last.
	cons, err := c.conn.JS.OrderedConsumer(ctx, StreamName(c.source), jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   st.FirstSeq,
		HeadersOnly:   true,
	})
	if err != nil {
		return err
	}
	for seq := st.FirstSeq; seq < cut; {
		batch, err := cons.Fetch(4096, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			seq = md.Sequence.Stream + 1
			if md.Sequence.Stream >= cut {
				break
			}
			if _, lane, err := TableFromSubject(m.Subject()); err == nil && lane < len(rec.LaneLast) {
				rec.LaneLast[lane] = max(rec.LaneLast[lane], md.Sequence.Stream)
			}
		}
		if n == 0 {
			break
		}
	}
	// The record first: nobody may see events gone without it.
	if err := c.state.PutJSON(ctx, TrimKey(c.source), rec); err != nil {
		return err
	}
	if err := changes.Purge(ctx, jetstream.WithPurgeSequence(cut)); err != nil {
		return fmt.Errorf("trimming stream %s below %d: %w", StreamName(c.source), cut, err)
	}
	c.log.Info("trimmed the change stream", "below", cut)
	return nil
}
