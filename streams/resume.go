package streams

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// StoredAfter returns the positions of the events already in source's
// stream beyond after (byte-wise, as positions compare), so that a producer
// resuming from its saved position can tell which re-read changes the
// stream already holds. Publishing is in order, so these are the newest
// messages: the scan walks back from the end of the stream and stops at the
// first message whose events are all at or before after. Messages without
// positions (snapshot reads, repairs) are passed over; the scan reads no
// message at or before fromSeq (the stream sequence saved with the position,
// when known) and at most limit messages.
//
// Message ids alone cannot answer this: a run's ids carry that run's suffix
// (see the PostgreSQL producer), and the duplicate window is finite.
func (c *Conn) StoredAfter(ctx context.Context, source string, after []byte, fromSeq uint64, limit int) (map[string]bool, error) {
	st, err := c.JS.Stream(ctx, StreamName(source))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("opening stream of source %s: %w", source, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading stream of source %s: %w", source, err)
	}
	out := map[string]bool{}
	first := max(info.State.FirstSeq, fromSeq+1)
	for seq, n := info.State.LastSeq, 0; seq >= first && seq > 0 && n < limit; seq, n = seq-1, n+1 {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted or purged
		}
		if err != nil {
			return nil, fmt.Errorf("reading message %d of source %s's stream: %w", seq, source, err)
		}
		b, err := Decode(m.Data)
		if err != nil {
			return nil, fmt.Errorf("message %d of source %s's stream: %w", seq, source, err)
		}
		positioned, beyond := false, false
		for _, e := range b.GetEvents() {
			p := e.GetPosition()
			if len(p) == 0 {
				continue
			}
			positioned = true
			if bytes.Compare(p, after) > 0 {
				beyond = true
				out[string(p)] = true
			}
		}
		if positioned && !beyond {
			break
		}
	}
	return out, nil
}
