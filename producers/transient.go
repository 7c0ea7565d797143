package producers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrPermanent marks a producer error that restarting cannot fix.
var ErrPermanent = errors.New("permanent")

// Permanent wraps err so that the supervisor stops rather than restarts.
func Permanent(err error) error { return fmt.Errorf("%w: %w", ErrPermanent, err) }

// ErrRestart marks an error after which the producer should be started
// again from its saved state (it is transient by definition).
var ErrRestart = errors.New("restart needed")

// Restart wraps err as a reason to start the producer again.
func Restart(err error) error { return fmt.Errorf("%w: %w", ErrRestart, err) }

// Transient reports whether err looks like a passing failure of a
// connection (the source database, or NATS) rather than a problem with the
// configuration or the data: a producer that stopped on one is started
// again from its saved position instead of failing the run. parent is the
// run's context: a deadline of an inner call is transient, the run's own end
// is not.
func Transient(parent context.Context, err error) bool {
	if err == nil || parent.Err() != nil || errors.Is(err, ErrPermanent) {
		return false
	}
	if errors.Is(err, ErrRestart) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed) {
		return true
	}
	for _, e := range []error{nats.ErrConnectionClosed, nats.ErrTimeout, nats.ErrNoResponders, nats.ErrDisconnected,
		nats.ErrConnectionReconnecting, jetstream.ErrNoStreamResponse, jetstream.ErrJetStreamNotEnabled,
		jetstream.ErrAsyncPublishTimeout, jetstream.ErrTooManyStalledMsgs, jetstream.ErrNoHeartbeat} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	// Database drivers report the server's SQLSTATE; class 08 is a
	// connection exception, 57P0x an administrator or crash shutdown, 53 an
	// exhausted resource (too many connections), 40001/40P01 a serialization
	// failure or deadlock.
	var st interface{ SQLState() string }
	if errors.As(err, &st) {
		s := st.SQLState()
		return strings.HasPrefix(s, "08") || strings.HasPrefix(s, "57P") || strings.HasPrefix(s, "53") || s == "40001" || s == "40P01"
	}
	// Some drivers only say it in words.
	msg := err.Error()
	for _, w := range []string{"connection reset", "broken pipe", "connection refused", "unexpected EOF", "conn closed", "server shutdown"} {
		if strings.Contains(msg, w) {
			return true
		}
	}
	return false
}
