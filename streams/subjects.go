package streams

import (
	"encoding/hex"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"github.com/ferry-dev/ferry/streams/pb"
)

// Token escapes a name (a table, a source) into one subject or KV-key token:
// bytes outside [A-Za-z0-9_-] become "=XX" (hex). "=" is legal in both
// subjects and KV keys, where "%" and "." are not.
func Token(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "=%02X", c)
		}
	}
	return b.String()
}

// Untoken reverses Token.
func Untoken(tok string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(tok); i++ {
		if tok[i] != '=' {
			b.WriteByte(tok[i])
			continue
		}
		if i+2 >= len(tok) {
			return "", fmt.Errorf("bad token %q: truncated escape", tok)
		}
		v, err := hex.DecodeString(tok[i+1 : i+3])
		if err != nil {
			return "", fmt.Errorf("bad token %q: %w", tok, err)
		}
		b.Write(v)
		i += 2
	}
	return b.String(), nil
}

// StreamName is the JetStream stream holding a source's events.
func StreamName(source string) string { return "FERRY_" + strings.ToUpper(Token(source)) }

// WorkStreamName is the work-queue stream of a source's snapshot chunks.
func WorkStreamName(source string) string { return "FERRY_WORK_" + strings.ToUpper(Token(source)) }

// DLQStream holds rows targets rejected, from every pipeline.
const DLQStream = "FERRY_DLQ"

// EventSubject is the subject of a source's events for one table and lane.
func EventSubject(source, table string, lane int) string {
	return "ferry.ev." + Token(source) + "." + Token(table) + "." + strconv.Itoa(lane)
}

// EventSubjects is the filter of every event of a source.
func EventSubjects(source string) string { return "ferry.ev." + Token(source) + ".>" }

// LaneFilter selects one lane of a source across all its tables.
func LaneFilter(source string, lane int) string {
	return "ferry.ev." + Token(source) + ".*." + strconv.Itoa(lane)
}

// TableFromSubject returns the table and lane an event subject names.
func TableFromSubject(subject string) (table string, lane int, err error) {
	parts := strings.Split(subject, ".")
	if len(parts) != 5 || parts[0] != "ferry" || parts[1] != "ev" {
		return "", 0, fmt.Errorf("not a ferry event subject: %q", subject)
	}
	table, err = Untoken(parts[3])
	if err != nil {
		return "", 0, err
	}
	lane, err = strconv.Atoi(parts[4])
	return table, lane, err
}

// WorkSubject is the subject of a snapshot work item for a table.
func WorkSubject(source, table string) string {
	return "ferry.work." + Token(source) + "." + Token(table)
}

// DLQSubject is the subject of a rejected row.
func DLQSubject(target, table string) string {
	return "ferry.dlq." + Token(target) + "." + Token(table)
}

// Lane picks the key partition of a row from its primary-key values. The
// hash covers the canonical protobuf bytes of each value, so the same key
// always lands in the same lane, whatever produced it.
func Lane(key *pb.Row, partitions int) int {
	// FNV-1a 64 written out, over a stack buffer: the same sum as
	// hashKey into fnv.New64a, without two allocations per row.
	const offset64, prime64 = 14695981039346656037, 1099511628211
	var scratch [64]byte
	h := uint64(offset64)
	for _, v := range key.GetValues() {
		n := v.SizeVT()
		buf := scratch[:0]
		if n > len(scratch) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		_, _ = v.MarshalToSizedBufferVT(buf)
		for _, c := range buf {
			h ^= uint64(c)
			h *= prime64
		}
		h *= prime64 // the 0 byte after each value: h ^= 0 leaves h as is
	}
	return int(h % uint64(partitions))
}

// hashKey writes the canonical protobuf bytes of each key value to h, each
// followed by a 0 byte.
func hashKey(h hash.Hash, key *pb.Row) {
	var buf []byte
	for _, v := range key.GetValues() {
		// The generated marshaller writes the same bytes as a deterministic
		// proto.Marshal of a Value, without reflection.
		n := v.SizeVT()
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		_, _ = v.MarshalToSizedBufferVT(buf)
		_, _ = h.Write(buf)
		_, _ = h.Write([]byte{0})
	}
}

// DLQFilter selects every dead letter of a target.
func DLQFilter(target string) string { return "ferry.dlq." + Token(target) + ".>" }
