package mysql

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/ferry-dev/ferry/streams"
)

// position is where the change stream stands: after a whole transaction.
// With GTIDs on, GTID is the set of every transaction up to and including
// it, which is what the stream resumes from; File and Offset (the binlog
// coordinates after it) order positions for the cut-over check, and are the
// resume point when GTIDs are off.
type position struct {
	Flavor string `json:"flavor"`
	GTID   string `json:"gtid,omitempty"`
	File   string `json:"file"`
	Offset uint32 `json:"offset"`
	// UseGTID is false when the server has GTIDs off.
	UseGTID bool `json:"useGTID"`
}

// saved is the position record in KV: the fields every source has, and
// the MySQL position beside them.
type saved struct {
	streams.Position
	MySQL position `json:"mysql"`
}

// text is the position as people read it.
func (p position) text() string {
	if p.UseGTID {
		return p.GTID
	}
	return fmt.Sprintf("%s:%d", p.File, p.Offset)
}

// order is the byte-ordered form: binlog file number, then offset.
func (p position) order() []byte {
	b := binary.BigEndian.AppendUint32(nil, fileNumber(p.File))
	return binary.BigEndian.AppendUint64(b, uint64(p.Offset))
}

// fileNumber is the numeric suffix of a binlog file name (binlog.000012).
func fileNumber(name string) uint32 {
	i := strings.LastIndexByte(name, '.')
	n, _ := strconv.ParseUint(name[i+1:], 10, 32)
	return uint32(n)
}

// parseGTIDSet reads a GTID set in the server's own format: MySQL
// "uuid:1-5:7,uuid2:1-3", MariaDB "0-1-100,1-2-7".
func parseGTIDSet(flavor, s string) (gomysql.GTIDSet, error) {
	set, err := gomysql.ParseGTIDSet(flavor, strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("%s GTID set %q: %w", flavor, s, err)
	}
	return set, nil
}

// addGTID merges one transaction's GTID into set.
func addGTID(set gomysql.GTIDSet, gtid string) error {
	if err := set.Update(gtid); err != nil {
		return fmt.Errorf("adding GTID %s to %s: %w", gtid, set, err)
	}
	return nil
}

// reached reports whether the stream at cur has passed every transaction
// before stop: its binlog coordinates are at or after stop's, or (with
// GTIDs) its set holds all of stop's.
func reached(cur, stop position) bool {
	if cur.File != "" && stop.File != "" {
		cf, sf := fileNumber(cur.File), fileNumber(stop.File)
		if cf != sf {
			return cf > sf
		}
		if cur.Offset >= stop.Offset {
			return true
		}
	}
	if cur.UseGTID && cur.GTID != "" && stop.GTID != "" {
		c, err := parseGTIDSet(cur.Flavor, cur.GTID)
		if err != nil {
			return false
		}
		s, err := parseGTIDSet(cur.Flavor, stop.GTID)
		return err == nil && c.Contain(s)
	}
	return false
}
