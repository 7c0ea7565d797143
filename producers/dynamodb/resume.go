package dynamodb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/streams"
)

// A restarted producer reads each shard again after its saved sequence
// number. The records between that point and the crash may be in the
// stream already: published, acknowledged, but not yet saved as the
// shard's position. Publishing them again (the message ids carry the run,
// so JetStream stores them again) would apply a key's older image after a
// newer one on the target, until the newer one came again. So a resumed
// shard first looks in the stream for its records stored after the saved
// position and passes over them.

// maxResumeScan bounds the messages one resumed shard looks through. A
// shard's floor is refreshed at least every resumeFloorStep messages while
// it is at its tip, so this is reached only by a stream growing very fast.
const (
	maxResumeScan   = 1 << 20
	resumeFloorStep = 1000
)

// storedRecords returns the sequence numbers of shard's records after
// `after` that the source's stream holds, among the table's messages after
// stream sequence from.
func storedRecords(ctx context.Context, js jetstream.JetStream, source, table, shard, after string, from uint64) (map[string]bool, error) {
	out := map[string]bool{}
	st, err := js.Stream(ctx, streams.StreamName(source))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("source %s: opening its stream: %w", source, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("source %s: reading its stream: %w", source, err)
	}
	subject := streams.EventSubject(source, table, 0)
	subject = subject[:strings.LastIndex(subject, ".")+1]
	prefix, floor := shard+"/", seqPosition(after)
	first := max(info.State.FirstSeq, from+1)
	for seq := first; seq <= info.State.LastSeq && seq < first+maxResumeScan; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted or purged
		}
		if err != nil {
			return nil, fmt.Errorf("source %s: reading message %d of its stream: %w", source, seq, err)
		}
		if !strings.HasPrefix(m.Subject, subject) {
			continue
		}
		b, err := streams.Decode(m.Data)
		if err != nil {
			return nil, fmt.Errorf("source %s: message %d of its stream: %w", source, seq, err)
		}
		for _, e := range b.GetEvents() {
			rest, ok := strings.CutPrefix(e.GetPositionText(), prefix)
			if ok && bytes.Compare(seqPosition(rest), floor) > 0 {
				out[rest] = true
			}
		}
	}
	return out, nil
}

// resumeSkip passes over the first records of a resumed shard while the
// stream holds them already. At the first record it does not hold (a
// publish of the crashed run that never arrived) it stops skipping: from
// there on every record is published again, so the lane gets the rest of
// the shard in order after that hole, even the records it held already.
type resumeSkip struct {
	stored  map[string]bool
	skipped int
}

func (s *resumeSkip) skip(seq string) bool {
	if len(s.stored) == 0 {
		return false
	}
	if s.stored[seq] {
		delete(s.stored, seq)
		s.skipped++
		return true
	}
	s.stored = nil
	return false
}
