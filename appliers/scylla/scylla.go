// Package scylla is the ScyllaDB/Cassandra target: events are written with
// prepared statements, grouped by partition into unlogged batches that run
// in parallel, with each cell's source writetime and TTL (USING TIMESTAMP /
// USING TTL) when the events carry them. Counter tables are written so that
// applying the same event twice leaves the same value (see counters.go).
package scylla

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/gocql/gocql"

	"github.com/ferry-dev/ferry/appliers"
	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/cqlcodec"
)

func init() {
	appliers.Register("scylla", open)
	appliers.Register("cassandra", open)
}

// Target writes into one ScyllaDB or Cassandra cluster.
type Target struct {
	cfg  config.Target
	log  *slog.Logger
	sess *gocql.Session
	cons gocql.Consistency
	// sem bounds the partitions written at once, over all lanes.
	sem chan struct{}

	mu     sync.Mutex
	tables map[string]*targetTable
	// clock is the time in µs since the epoch; nil means the wall clock.
	// execHook, when set, runs statements instead of the session. Both are
	// for tests.
	clock    func() int64
	execHook func([]stmt) error
}

func (t *Target) now() int64 {
	if t.clock != nil {
		return t.clock()
	}
	return time.Now().UnixMicro()
}

func open(ctx context.Context, cfg config.Target, log *slog.Logger) (appliers.Target, error) {
	cc, err := cqlcodec.Cluster(cqlcodec.ClusterOptions{
		DSN: cfg.DSN, Protocol: cfg.CQLProtocolVersion, Consistency: cfg.CQLConsistency,
		LocalDC: cfg.CQLLocalDC, Conns: max(2, cfg.CQLConnections/8),
	})
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", cfg.Name, err)
	}
	sess, err := cqlcodec.Connect(cc, cfg.CQLLocalDC)
	if err != nil {
		return nil, fmt.Errorf("target %s: connecting to %s: %w", cfg.Name, config.Redact(cfg.DSN), err)
	}
	t := &Target{
		cfg: cfg, log: log.With("target", cfg.Name), sess: sess, cons: cc.Consistency,
		sem:    make(chan struct{}, cfg.CQLConnections),
		tables: map[string]*targetTable{},
	}
	if _, err := cqlcodec.KeyspaceMetadata(ctx, sess, cfg.CQLKeyspace); err != nil {
		sess.Close()
		err = fmt.Errorf("target %s: keyspace %q: %w", cfg.Name, cfg.CQLKeyspace, err)
		if errors.Is(err, gocql.ErrKeyspaceDoesNotExist) {
			err = appliers.Permanent(err)
		}
		return nil, err
	}
	return t, nil
}

func quote(id string) string { return `"` + strings.ReplaceAll(id, `"`, `""`) + `"` }

// Applied returns 0: this target keeps no watermark and relies on the
// durable consumer's acknowledgements alone. Cassandra cannot store a
// watermark atomically with the rows, and a watermark outliving its stream
// (a run resumed from a savepoint with a fresh ferry-data, whose new stream
// numbers from 1 again) would skip rows silently. Nothing needs it: every
// write here is idempotent (see Apply), so a batch delivered again after a
// crash is simply applied again, in order.
func (t *Target) Applied(context.Context, appliers.Lane) (uint64, error) { return 0, nil }

// Ping checks that the cluster answers.
func (t *Target) Ping(ctx context.Context) error {
	return t.sess.Query("SELECT release_version FROM system.local").WithContext(ctx).Exec()
}

// Close closes the session.
func (t *Target) Close() { t.sess.Close() }

// Apply writes items: the events of each partition in order, partitions in
// parallel. A crash before the runner acknowledged the batch applies it
// again after the restart, followed by everything after it in stream order.
// Every write is idempotent (the same cells, with the same timestamps when
// preserved; deletes; counters brought to the source's value rather than
// incremented blindly), so that converges to the same state.
func (t *Target) Apply(ctx context.Context, _ appliers.Lane, items []appliers.Item, _ uint64, deadLetter appliers.DeadLetterFunc) ([]appliers.Rejected, error) {
	groups, rejected, err := t.group(ctx, items)
	if err != nil {
		return nil, err
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	for _, g := range groups {
		select {
		case t.sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return nil, ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer func() { <-t.sem; wg.Done() }()
			rj, err := t.applyGroup(ctx, g)
			mu.Lock()
			defer mu.Unlock()
			rejected = append(rejected, rj...)
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if len(rejected) > 0 && deadLetter != nil {
		if err := deadLetter(ctx, rejected); err != nil {
			return nil, fmt.Errorf("target %s: storing %d dead letters: %w", t.cfg.Name, len(rejected), err)
		}
	}
	return rejected, nil
}

// retryable reports driver errors that a later attempt may not meet (see
// cqlcodec.Retryable).
func retryable(err error) bool { return cqlcodec.Retryable(err) }

// exec runs fn, retrying retryable driver errors with backoff (up to about
// half a minute); other errors are returned at once.
func (t *Target) exec(ctx context.Context, what string, fn func() error) error {
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || !retryable(err) || attempt >= 8 || ctx.Err() != nil {
			return err
		}
		t.log.Warn(what+" failed; retrying", "err", err, "in", wait)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
		wait = min(wait*2, 5*time.Second)
	}
}
