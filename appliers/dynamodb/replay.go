package dynamodb

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The watermark is written after a batch's items, not with them. After a
// crash between the two, the runner delivers the lane again from the
// watermark, but not necessarily in the same batches: a replayed batch may
// end between two changes of a key that the crashed batch wrote at once,
// and writing the earlier one would take the item back to an older state
// it already had on the target, until the later one came again.
//
// So, before writing a batch in which some key changes more than once, the
// applier records in the lane's state item which keys those are, each with
// the stream sequence of its last change in the batch, and up to where the
// batch goes (`upto`). A lane that starts with such a record skips, until
// it has applied up to `upto`, every write of one of those keys that is
// older than the change recorded for it: that change is yet to come in the
// replay and is the one the crashed batch wrote. Keys that change once in
// a batch need nothing: a replay writes the same image again.

// intent is the keys of a batch in flight that change more than once, by a
// digest of table and key, with the stream sequence of each one's last
// change.
type intent struct {
	upto uint64
	keys map[[digestLen]byte]uint64
}

const digestLen = 16

// keyDigest identifies a key of a target table in an intent. 128 bits of
// SHA-256: a collision, which would skip a write, is not a practical
// concern.
func keyDigest(k string) [digestLen]byte {
	sum := sha256.Sum256([]byte(k))
	var d [digestLen]byte
	copy(d[:], sum[:])
	return d
}

// older reports whether a write of key k at stream sequence seq must be
// skipped: the recorded batch holds a later change of k.
func (in *intent) older(k string, seq uint64) bool {
	if in == nil {
		return false
	}
	last, ok := in.keys[keyDigest(k)]
	return ok && last > seq
}

// merge adds a batch's repeated keys to the intent (nil: none yet).
func (in *intent) merge(upto uint64, keys map[string]uint64) *intent {
	if len(keys) == 0 {
		return in
	}
	out := &intent{upto: upto, keys: map[[digestLen]byte]uint64{}}
	if in != nil {
		out.upto = max(out.upto, in.upto)
		for d, s := range in.keys {
			out.keys[d] = s
		}
	}
	for k, s := range keys {
		d := keyDigest(k)
		out.keys[d] = max(out.keys[d], s)
	}
	return out
}

// encode renders the keys as one binary attribute: digest, then sequence.
func (in *intent) encode() []byte {
	b := make([]byte, 0, len(in.keys)*(digestLen+8))
	for d, s := range in.keys {
		b = append(b, d[:]...)
		b = binary.BigEndian.AppendUint64(b, s)
	}
	return b
}

// decodeIntent reads the intent from a lane's state item; nil when it has
// none.
func decodeIntent(item map[string]types.AttributeValue) (*intent, error) {
	u, ok := item["upto"].(*types.AttributeValueMemberN)
	if !ok {
		return nil, nil
	}
	upto, err := strconv.ParseUint(u.Value, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("upto is %q", u.Value)
	}
	kb, _ := item["keys"].(*types.AttributeValueMemberB)
	if kb == nil || len(kb.Value)%(digestLen+8) != 0 {
		return nil, fmt.Errorf("keys is not a list of %d-byte entries", digestLen+8)
	}
	in := &intent{upto: upto, keys: map[[digestLen]byte]uint64{}}
	for b := kb.Value; len(b) > 0; b = b[digestLen+8:] {
		var d [digestLen]byte
		copy(d[:], b)
		in.keys[d] = binary.BigEndian.Uint64(b[digestLen:])
	}
	return in, nil
}
