package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// pool is a small connection pool over pgx.Conn.
//
// It stands in for pgxpool, which cannot be built from this module as it
// stands: pgxpool needs github.com/jackc/puddle/v2 and golang.org/x/sync,
// which go.mod/go.sum do not list. The applier needs little from a pool (a
// bounded number of connections shared by the lanes, dead ones dropped), so
// the methods used here (with, ping, close) map one to one onto
// pgxpool.Pool.AcquireFunc / Ping / Close should the dependency be added.
type pool struct {
	cfg *pgx.ConnConfig
	// sem holds one token per connection in use or being opened, which caps
	// the connections at its capacity.
	sem chan struct{}

	mu     sync.Mutex
	idle   []idleConn
	closed bool
}

type idleConn struct {
	conn  *pgx.Conn
	since time.Time
}

var errPoolClosed = errors.New("connection pool is closed")

// pingAfter is how long a connection may sit idle before it is pinged on
// checkout, so that one the server or a proxy dropped meanwhile is replaced
// rather than failing the batch (pgxpool does the same after one second).
const pingAfter = time.Second

func newPool(cfg *pgx.ConnConfig, maxConns int) *pool {
	return &pool{cfg: cfg, sem: make(chan struct{}, maxConns)}
}

// with runs fn on a pooled connection. The connection goes back to the pool
// only if it is open and idle (no transaction left open, nothing in flight);
// otherwise it is closed, so that no session state leaks into the next use.
func (p *pool) with(ctx context.Context, fn func(*pgx.Conn) error) error {
	c, err := p.acquire(ctx)
	if err != nil {
		return err
	}
	defer p.release(c)
	return fn(c)
}

func (p *pool) acquire(ctx context.Context) (*pgx.Conn, error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			<-p.sem
			return nil, errPoolClosed
		}
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		ic := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if time.Since(ic.since) > pingAfter {
			if err := ic.conn.Ping(ctx); err != nil {
				closeConn(ic.conn)
				if ctx.Err() != nil {
					<-p.sem
					return nil, ctx.Err()
				}
				continue
			}
		}
		return ic.conn, nil
	}
	c, err := pgx.ConnectConfig(ctx, p.cfg)
	if err != nil {
		<-p.sem
		return nil, fmt.Errorf("cannot connect: %w", err)
	}
	return c, nil
}

func (p *pool) release(c *pgx.Conn) {
	defer func() { <-p.sem }()
	pc := c.PgConn()
	if c.IsClosed() || pc.IsBusy() || pc.TxStatus() != 'I' {
		closeConn(c)
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		closeConn(c)
		return
	}
	p.idle = append(p.idle, idleConn{conn: c, since: time.Now()})
	p.mu.Unlock()
}

// close closes the idle connections; those in use close when released.
func (p *pool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.closed = true
	p.mu.Unlock()
	for _, ic := range idle {
		closeConn(ic.conn)
	}
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.Close(ctx)
}
