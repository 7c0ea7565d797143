package oracle

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/ferry-dev/ferry/streams/pb"
)

// txn is one source transaction being received: its changes are held until
// its COMMIT (published) or ROLLBACK (dropped).
type txn struct {
	xid      string
	startSCN uint64
	// events in memory, oldest first; a nil entry was undone by a partial
	// rollback. rowids is parallel: the ROW_ID of each change.
	events []*pb.Event
	rowids []string
	groups []int // the source change each event came from
	nextGr int
	bytes  int
	// Beyond the memory budget the transaction's events go to a file of
	// length-prefixed protobuf events, read back in order at commit.
	spill   *os.File
	spillW  *bufio.Writer
	spilled int
	// lobTables names tables whose LOBs this transaction wrote through a
	// locator (LOB_WRITE records); their values are read at commit.
	lobTables map[string]bool
}

// txBuffer holds every open transaction. Its memory is bounded: when adding
// a change would take the events held in memory over limit bytes, the
// transaction being added to moves to its spill file, so a huge transaction
// costs disk, not memory.
type txBuffer struct {
	open  map[string]*txn
	bytes int
	limit int
	dir   string
	// spills counts transactions ever spilled (for logs and tests).
	spills int
}

func newTxBuffer(limit int, dir string) *txBuffer {
	return &txBuffer{open: map[string]*txn{}, limit: limit, dir: dir}
}

// get returns the open transaction xid, starting it at scn when new.
func (b *txBuffer) get(xid string, scn uint64) *txn {
	t := b.open[xid]
	if t == nil {
		t = &txn{xid: xid, startSCN: scn}
		b.open[xid] = t
	}
	return t
}

// add appends the events of one source change to its transaction.
func (b *txBuffer) add(t *txn, rowid string, evs ...*pb.Event) error {
	t.nextGr++
	for _, ev := range evs {
		if err := b.add1(t, ev, rowid); err != nil {
			return err
		}
	}
	return nil
}

func (b *txBuffer) add1(t *txn, ev *pb.Event, rowid string) error {
	size := ev.SizeVT()
	if t.spill == nil && b.bytes+size > b.limit {
		if err := b.spillTxn(t); err != nil {
			return err
		}
	}
	if t.spill != nil {
		return b.writeSpill(t, ev)
	}
	t.events = append(t.events, ev)
	t.rowids = append(t.rowids, rowid)
	t.groups = append(t.groups, t.nextGr)
	t.bytes += size
	b.bytes += size
	return nil
}

// undo drops the newest change of t to the row rowid that is still held in
// memory: a record with ROLLBACK=1 is the undo of such a change (a rollback
// to a savepoint). It reports false when no such change is held (it was
// spilled to disk), and then the undo record is published as a change of
// its own, which restores the same state.
func (b *txBuffer) undo(t *txn, rowid string) bool {
	if rowid == "" {
		return false
	}
	for i := len(t.events) - 1; i >= 0; i-- {
		if t.events[i] == nil || t.rowids[i] != rowid {
			continue
		}
		// Every event of that change goes (a key change made two).
		g := t.groups[i]
		for j := i; j >= 0 && t.groups[j] == g; j-- {
			if t.events[j] != nil {
				size := t.events[j].SizeVT()
				t.events[j] = nil
				t.bytes -= size
				b.bytes -= size
			}
		}
		return true
	}
	return false
}

func (b *txBuffer) spillTxn(t *txn) error {
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		return fmt.Errorf("creating spill directory %s: %w", b.dir, err)
	}
	f, err := os.CreateTemp(b.dir, "tx-"+strings.ReplaceAll(t.xid, ".", "_")+"-*.spill")
	if err != nil {
		return fmt.Errorf("creating spill file for transaction %s: %w", t.xid, err)
	}
	t.spill, t.spillW = f, bufio.NewWriterSize(f, 256<<10)
	b.spills++
	for _, ev := range t.events {
		if ev != nil {
			if err := b.writeSpill(t, ev); err != nil {
				return err
			}
		}
	}
	b.bytes -= t.bytes
	t.events, t.rowids, t.groups, t.bytes = nil, nil, nil, 0
	return nil
}

func (b *txBuffer) writeSpill(t *txn, ev *pb.Event) error {
	data, err := ev.MarshalVT()
	if err != nil {
		return fmt.Errorf("encoding a change of transaction %s for its spill file: %w", t.xid, err)
	}
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(data)))
	if _, err := t.spillW.Write(n[:]); err != nil {
		return fmt.Errorf("writing spill file %s: %w", t.spill.Name(), err)
	}
	if _, err := t.spillW.Write(data); err != nil {
		return fmt.Errorf("writing spill file %s: %w", t.spill.Name(), err)
	}
	t.spilled++
	return nil
}

// close removes t from the buffer (committed or rolled back) and frees it.
func (b *txBuffer) close(t *txn) {
	delete(b.open, t.xid)
	b.bytes -= t.bytes
	t.bytes = 0
	if t.spill != nil {
		name := t.spill.Name()
		t.spill.Close()
		os.Remove(name)
		t.spill = nil
	}
}

// each calls fn for every change of t in order: the spilled ones first
// (they are older than any still in memory), then those in memory.
func (b *txBuffer) each(t *txn, fn func(*pb.Event) error) error {
	if t.spill != nil {
		if err := t.spillW.Flush(); err != nil {
			return fmt.Errorf("writing spill file %s: %w", t.spill.Name(), err)
		}
		if _, err := t.spill.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("reading spill file %s: %w", t.spill.Name(), err)
		}
		r := bufio.NewReaderSize(t.spill, 256<<10)
		for range t.spilled {
			var n [4]byte
			if _, err := io.ReadFull(r, n[:]); err != nil {
				return fmt.Errorf("reading spill file %s: %w", t.spill.Name(), err)
			}
			data := make([]byte, binary.BigEndian.Uint32(n[:]))
			if _, err := io.ReadFull(r, data); err != nil {
				return fmt.Errorf("reading spill file %s: %w", t.spill.Name(), err)
			}
			ev := &pb.Event{}
			if err := ev.UnmarshalVT(data); err != nil {
				return fmt.Errorf("decoding spill file %s: %w", t.spill.Name(), err)
			}
			if err := fn(ev); err != nil {
				return err
			}
		}
	}
	for _, ev := range t.events {
		if ev != nil {
			if err := fn(ev); err != nil {
				return err
			}
		}
	}
	return nil
}

// oldestStart is the smallest start SCN among open transactions (ok=false
// when none is open).
func (b *txBuffer) oldestStart() (scn uint64, ok bool) {
	for _, t := range b.open {
		if !ok || t.startSCN < scn {
			scn, ok = t.startSCN, true
		}
	}
	return scn, ok
}

// removeAll drops every open transaction and its spill file (at stop: the
// next run mines them again from the restart SCN).
func (b *txBuffer) removeAll() {
	for _, t := range b.open {
		b.close(t)
	}
}

func spillDir(base, source string) string {
	if base == "" {
		base = os.TempDir()
	}
	return filepath.Join(base, "ferry-oracle-"+source)
}
