package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pool is pgxpool with the one call shape the applier uses: run a function
// on a checked-out connection. pgxpool closes a connection returned with a
// transaction still open, so no session state leaks into the next use.
type pool = pgxpool.Pool

func withConn(ctx context.Context, p *pool, fn func(*pgx.Conn) error) error {
	return p.AcquireFunc(ctx, func(c *pgxpool.Conn) error { return fn(c.Conn()) })
}
