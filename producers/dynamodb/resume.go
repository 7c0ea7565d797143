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

// storedRecords returns the shard's records after `after` that the
// source's stream holds, among the table's messages after stream sequence
// from: their sequence numbers, each with its key (the key row's encoding).
func storedRecords(ctx context.Context, js jetstream.JetStream, source, table, shard, after string, from uint64) (map[string]string, error) {
	out := map[string]string{}
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
				k, err := e.GetKey().MarshalVT()
				if err != nil {
					return nil, fmt.Errorf("source %s: message %d of its stream: %w", source, seq, err)
				}
				out[rest] = string(k)
			}
		}
	}
	return out, nil
}

// resumeSkip decides which records of a resumed shard to publish, until
// the shard is past the last record the stream holds already. A record the
// stream holds is passed over. A record it lacks (a publish of the crashed
// run that never arrived, while later ones did: the client's reconnect
// buffer is flushed after a reconnect) is passed over too when the stream
// holds a later record of the same key: every record carries the whole
// item, so that later one decides the key, and publishing the older one now
// would take the key back on the target. The rest is published.
type resumeSkip struct {
	stored     map[string]string // sequence number → key
	later      map[string]string // key → its newest stored sequence number
	skipped    int
	superseded int
}

func newResumeSkip(stored map[string]string) *resumeSkip {
	s := &resumeSkip{stored: stored, later: map[string]string{}}
	for seq, k := range stored {
		if last, ok := s.later[k]; !ok || bytes.Compare(seqPosition(seq), seqPosition(last)) > 0 {
			s.later[k] = seq
		}
	}
	return s
}

// active reports whether records are still to be looked at.
func (s *resumeSkip) active() bool { return s != nil && len(s.stored) > 0 }

// skip reports whether the record seq of key k is passed over.
func (s *resumeSkip) skip(seq, k string) bool {
	if !s.active() {
		return false
	}
	if _, ok := s.stored[seq]; ok {
		delete(s.stored, seq)
		s.skipped++
		return true
	}
	if last, ok := s.later[k]; ok && bytes.Compare(seqPosition(seq), seqPosition(last)) < 0 {
		s.superseded++
		return true
	}
	return false
}
