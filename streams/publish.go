package streams

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PublishAsync sends one event message with its deterministic id, without
// waiting for the acknowledgement. JetStream drops a message whose id it has
// seen inside the duplicate window, so a producer that publishes the same
// position twice after a crash stores it once.
func (c *Conn) PublishAsync(subject, msgID string, data []byte) (jetstream.PubAckFuture, error) {
	m := eventMsg(subject, msgID, data)
	for {
		// No transparent retry: a message retried later from a timer could
		// be stored after ones published meanwhile, out of order. A failed
		// publish fails the producer, which resumes from its saved position.
		f, err := c.JS.PublishMsgAsync(m, jetstream.WithRetryAttempts(0))
		if errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			// Too many unacknowledged publishes: JetStream is slower than
			// the source right now. Waiting here is the backpressure.
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("publishing to %s: %w", subject, err)
		}
		return f, nil
	}
}

// PublishSync sends one event message and waits for JetStream's answer,
// which says whether the id was a duplicate.
func (c *Conn) PublishSync(ctx context.Context, subject, msgID string, data []byte) (*jetstream.PubAck, error) {
	m := eventMsg(subject, msgID, data)
	ack, err := c.JS.PublishMsg(ctx, m, jetstream.WithRetryAttempts(0))
	if err != nil {
		return nil, fmt.Errorf("publishing to %s: %w", subject, err)
	}
	return ack, nil
}

// eventMsg is an event message with its id and content type headers.
func eventMsg(subject, msgID string, data []byte) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	m.Header.Set("Content-Type", ContentType)
	return m
}

// WaitAcks waits for every future; the first failure is returned.
func WaitAcks(ctx context.Context, futs []jetstream.PubAckFuture) error {
	for _, f := range futs {
		if err := waitAck(ctx, f); err != nil {
			return err
		}
	}
	return nil
}

func waitAck(ctx context.Context, f jetstream.PubAckFuture) error {
	_, err := waitAckSeq(ctx, f)
	return err
}

func waitAckSeq(ctx context.Context, f jetstream.PubAckFuture) (uint64, error) {
	select {
	case a := <-f.Ok():
		return a.Sequence, nil
	case err := <-f.Err():
		return 0, fmt.Errorf("JetStream did not store %s: %w", f.Msg().Subject, err)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Checkpointer runs a callback for each checkpoint once every message
// published before that checkpoint was acknowledged. Producers use it to save
// a source position only when everything up to it is durable.
type Checkpointer struct {
	ch   chan ckEntry
	done chan struct{}
	mu   sync.Mutex
	err  error
	// seq is the stream sequence of the newest acknowledged message.
	seq atomic.Uint64
}

type ckEntry struct {
	fut jetstream.PubAckFuture
	fn  func() error
}

// NewCheckpointer starts the waiter; depth bounds what may be outstanding.
func NewCheckpointer(ctx context.Context, depth int) *Checkpointer {
	c := &Checkpointer{ch: make(chan ckEntry, depth), done: make(chan struct{})}
	go c.run(ctx)
	return c
}

func (c *Checkpointer) run(ctx context.Context) {
	defer close(c.done)
	for e := range c.ch {
		if c.Err() != nil {
			continue // drain after a failure; nothing later may be checkpointed
		}
		var err error
		if e.fut != nil {
			var seq uint64
			if seq, err = waitAckSeq(ctx, e.fut); err == nil && seq > c.seq.Load() {
				c.seq.Store(seq)
			}
		} else {
			err = e.fn()
		}
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
		}
	}
}

// Add registers a published message.
func (c *Checkpointer) Add(f jetstream.PubAckFuture) { c.ch <- ckEntry{fut: f} }

// Mark registers fn to run after everything added so far is acknowledged.
func (c *Checkpointer) Mark(fn func() error) { c.ch <- ckEntry{fn: fn} }

// Seq returns the stream sequence of the newest message acknowledged so
// far; inside a Mark callback, of everything added before that mark.
func (c *Checkpointer) Seq() uint64 { return c.seq.Load() }

// Err returns the first failure (an unacknowledged publish or a failed
// checkpoint); after one, no later checkpoint runs.
func (c *Checkpointer) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close waits for outstanding entries and returns Err.
func (c *Checkpointer) Close() error {
	close(c.ch)
	<-c.done
	return c.Err()
}
