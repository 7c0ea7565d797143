package postgres

// Resuming a snapshot after its exported snapshot is gone.
//
// The first run reads every chunk in the snapshot the replication slot
// exported at its consistent point C, and the change stream starts at C:
// the two meet exactly. After a restart that snapshot no longer exists, and
// chunks still to read must be read in a fresh one, S2, taken later. Read
// first and published before the changes between C and S2, those rows would
// be overwritten on the target by older values until the stream caught up:
// keys would go back in time. So the producer first publishes the changes
// S2 already contains (the transactions visible in it, which come first in
// commit order), stops before the first one S2 does not contain, then reads
// the remaining chunks in S2, then streams on from there. Every key's values
// on the target then only move forward.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// xidSnapshot is which transactions a snapshot sees, in 32-bit xids as the
// replication stream gives them: every xid before xmin, and those before
// xmax that are not in xip.
type xidSnapshot struct {
	xmin, xmax uint32
	xip        map[uint32]bool
}

// parseXidSnapshot reads txid_current_snapshot()'s text, "xmin:xmax:xip,...",
// whose 64-bit ids carry the epoch in their high half.
func parseXidSnapshot(s string) (*xidSnapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return nil, fmt.Errorf("snapshot %q is not xmin:xmax:xip", s)
	}
	num := func(t string) (uint32, error) {
		v, err := strconv.ParseUint(t, 10, 64)
		return uint32(v), err
	}
	x := &xidSnapshot{xip: map[uint32]bool{}}
	var err error
	if x.xmin, err = num(parts[0]); err != nil {
		return nil, fmt.Errorf("snapshot %q: %w", s, err)
	}
	if x.xmax, err = num(parts[1]); err != nil {
		return nil, fmt.Errorf("snapshot %q: %w", s, err)
	}
	if parts[2] != "" {
		for _, t := range strings.Split(parts[2], ",") {
			v, err := num(t)
			if err != nil {
				return nil, fmt.Errorf("snapshot %q: %w", s, err)
			}
			x.xip[v] = true
		}
	}
	return x, nil
}

// precedes compares xids as PostgreSQL does, modulo 2^32.
func precedes(a, b uint32) bool { return int32(a-b) < 0 }

// visible reports whether the snapshot sees transaction xid's changes.
func (x *xidSnapshot) visible(xid uint32) bool {
	if precedes(xid, x.xmin) {
		return true
	}
	// xmin is the oldest transaction still running when xmin < xmax,
	// whether or not xip repeats it.
	if xid == x.xmin && x.xmin != x.xmax {
		return false
	}
	return precedes(xid, x.xmax) && !x.xip[xid]
}

// errCaughtUp ends the catch-up stream at its boundary.
var errCaughtUp = errors.New("caught up with the snapshot")

// freshSnapshot opens a repeatable-read transaction, exports its snapshot
// and says which transactions it sees and the WAL position after it: every
// transaction it sees committed before that position.
func (p *producer) freshSnapshot(ctx context.Context) (pgx.Tx, string, *xidSnapshot, pglogrepl.LSN, error) {
	tx, name, err := p.exportSnapshot(ctx)
	if err != nil {
		return nil, "", nil, 0, err
	}
	var snapText, lsnText string
	if err := tx.QueryRow(ctx, `SELECT txid_current_snapshot()::text, pg_current_wal_lsn()::text`).Scan(&snapText, &lsnText); err != nil {
		_ = tx.Rollback(ctx)
		return nil, "", nil, 0, fmt.Errorf("source %s: reading the snapshot's transactions: %w", p.cfg.Name, err)
	}
	vis, err := parseXidSnapshot(snapText)
	if err != nil {
		_ = tx.Rollback(ctx)
		return nil, "", nil, 0, fmt.Errorf("source %s: %w", p.cfg.Name, err)
	}
	lsn, err := pglogrepl.ParseLSN(lsnText)
	if err != nil {
		_ = tx.Rollback(ctx)
		return nil, "", nil, 0, fmt.Errorf("source %s: %w", p.cfg.Name, err)
	}
	return tx, name, vis, lsn, nil
}

// catchUp publishes the changes from start that the fresh snapshot vis
// contains, and returns the position after the last of them, where the
// stream resumes once the remaining chunks are read. It ends at the first
// transaction vis does not see, or once the server has sent everything
// before until (no transaction it sees commits later). The replication
// connection is used up; the caller opens another.
func (p *producer) catchUp(ctx context.Context, conn *pgconn.PgConn, start pglogrepl.LSN, vis *xidSnapshot, until pglogrepl.LSN) (pglogrepl.LSN, error) {
	p.log.Info("publishing the changes the fresh snapshot already contains before reading the remaining chunks", "from", start.String(), "until", until.String())
	saved, err := p.runStream(ctx, conn, start, &boundary{vis: vis, until: until})
	if err != nil {
		return 0, err
	}
	return saved, nil
}

// boundary is where a catch-up stream stops.
type boundary struct {
	vis   *xidSnapshot
	until pglogrepl.LSN
}
