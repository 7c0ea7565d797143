package cqlcodec

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/gocql/gocql"

	"github.com/ferry-dev/ferry/config"
)

// ClusterOptions are the connection settings shared by the CQL source and
// target.
type ClusterOptions struct {
	DSN         string
	Protocol    int
	Consistency string
	LocalDC     string
	// Conns is the number of connections per host.
	Conns int
}

var envRef = regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$`)

// Password resolves a password written as ${NAME} (as savepoint files write
// it) from the environment.
func Password(p string) (string, error) {
	m := envRef.FindStringSubmatch(p)
	if m == nil {
		return p, nil
	}
	v, ok := os.LookupEnv(m[1])
	if !ok {
		return "", fmt.Errorf("the password is read from environment variable %s, which is not set", m[1])
	}
	return v, nil
}

// Cluster builds a gocql cluster config. Protocol 0 lets the driver
// negotiate (v3 with Cassandra 2.1, v4 with Cassandra 3+/ScyllaDB).
func Cluster(o ClusterOptions) (*gocql.ClusterConfig, error) {
	d, err := config.ParseCQLDSN(o.DSN)
	if err != nil {
		return nil, fmt.Errorf("dsn %s %v", config.Redact(o.DSN), err)
	}
	c := gocql.NewCluster(d.Hosts...)
	if p := commonPort(d.Hosts); p != 0 {
		// The driver reaches the nodes it discovers (system.local and
		// system.peers, read at the start and again whenever its control
		// connection reconnects) on Port, 9042 unless set: a cluster on
		// another port would be left for a port nothing listens on.
		c.Port = p
	}
	c.ProtoVersion = o.Protocol
	c.Timeout = 30 * time.Second
	c.ConnectTimeout = 10 * time.Second
	c.WriteTimeout = 30 * time.Second
	c.NumConns = max(o.Conns, 1)
	cl, err := gocql.ParseConsistencyWrapper(o.Consistency)
	if err != nil {
		return nil, fmt.Errorf("consistency level %q: %w", o.Consistency, err)
	}
	c.Consistency = cl
	if d.User != "" {
		pw, err := Password(d.Password)
		if err != nil {
			return nil, err
		}
		c.Authenticator = gocql.PasswordAuthenticator{Username: d.User, Password: pw}
	}
	c.PoolConfig.HostSelectionPolicy = hostPolicy(o.LocalDC)
	// The driver's own retries would hide failures from ferry's backoff.
	c.RetryPolicy = &gocql.SimpleRetryPolicy{NumRetries: 0}
	return c, nil
}

// commonPort is the port every host names, or 0 when they name none or
// differ.
func commonPort(hosts []string) int {
	port := 0
	for i, h := range hosts {
		_, ps, err := net.SplitHostPort(h)
		p, err2 := strconv.Atoi(ps)
		if err != nil || err2 != nil || (i > 0 && p != port) {
			return 0
		}
		port = p
	}
	return port
}

// Retryable reports driver errors that a later attempt may not meet:
// timeouts, unavailable replicas, an overloaded or bootstrapping node, a
// lost connection. The target retries them; the source reads the ranges it
// had not finished again.
func Retryable(err error) bool {
	var rerr gocql.RequestError
	if errors.As(err, &rerr) {
		switch rerr.Code() {
		case gocql.ErrCodeUnavailable, gocql.ErrCodeOverloaded, gocql.ErrCodeBootstrapping,
			gocql.ErrCodeTruncate, gocql.ErrCodeWriteTimeout, gocql.ErrCodeReadTimeout,
			gocql.ErrCodeReadFailure, gocql.ErrCodeWriteFailure, gocql.ErrCodeServer:
			return true
		}
		return false
	}
	return errors.Is(err, gocql.ErrTimeoutNoResponse) || errors.Is(err, gocql.ErrNoConnections) ||
		errors.Is(err, gocql.ErrConnectionClosed) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, gocql.ErrUnavailable)
}

// KeyspaceMetadata reads a keyspace's schema through the driver, trying
// again (6 times within about 3 s) when the read fails for another reason
// than the keyspace's absence: the driver reads the schema tables in
// separate queries, and Cassandra 2.1 under load was seen to answer one with
// a half-written row ("invalid JSON value ” as strategy_options"). A failed
// read is not cached, so the next one reads the tables again.
func KeyspaceMetadata(ctx context.Context, s *gocql.Session, keyspace string) (*gocql.KeyspaceMetadata, error) {
	return keyspaceMetadata(ctx, s.KeyspaceMetadata, keyspace, 100*time.Millisecond)
}

func keyspaceMetadata(ctx context.Context, read func(string) (*gocql.KeyspaceMetadata, error), keyspace string, wait time.Duration) (*gocql.KeyspaceMetadata, error) {
	for attempt := 1; ; attempt++ {
		m, err := read(keyspace)
		if err == nil || errors.Is(err, gocql.ErrKeyspaceDoesNotExist) || attempt == 6 {
			return m, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// FrozenTop reports whether a column's type is frozen at its top level, from
// the schema's validator (2.x: FrozenType(...)) or type text (3.x+:
// frozen<...>). Tuples are always frozen.
func FrozenTop(info gocql.TypeInfo, validator string) bool {
	switch info.Type() {
	case gocql.TypeList, gocql.TypeSet, gocql.TypeMap, gocql.TypeUDT:
		// Cassandra 2.x has only frozen user-defined types.
		return hasPrefixFold(validator, "frozen<") || hasPrefixFold(validator, "org.apache.cassandra.db.marshal.FrozenType(") ||
			(info.Type() == gocql.TypeUDT && hasPrefixFold(validator, "org.apache.cassandra.db.marshal.UserType("))
	}
	return true
}

func hasPrefixFold(s, p string) bool {
	return len(s) >= len(p) && strings.EqualFold(s[:len(p)], p)
}

// Connect opens a session. Cassandra 2.1 leaves system.local without an
// address the driver can use for the ring lookup (the driver panics on it),
// so a failed lookup is retried with the contact points alone, as the
// driver's DisableInitialHostLookup does.
func Connect(c *gocql.ClusterConfig, localDC string) (*gocql.Session, error) {
	s, err := tryConnect(c)
	if err == nil || c.DisableInitialHostLookup {
		return s, err
	}
	c.DisableInitialHostLookup = true
	// One policy per session, and not token-aware: without the ring there
	// are no replicas to route to, and computing each statement's routing
	// key reads the driver's schema metadata, which on such a node was seen
	// incomplete, with a nil partition-key column that crashed the process
	// (gocql's routingKeyInfo).
	c.PoolConfig.HostSelectionPolicy = contactPolicy(localDC)
	s, err2 := tryConnect(c)
	if err2 != nil {
		return nil, fmt.Errorf("%w; with the contact points alone: %w", err, err2)
	}
	return s, nil
}

func tryConnect(c *gocql.ClusterConfig) (s *gocql.Session, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("the driver failed to read the cluster's hosts: %v", r)
		}
	}()
	return c.CreateSession()
}

// hostPolicy routes each statement to a replica of its partition.
func hostPolicy(localDC string) gocql.HostSelectionPolicy {
	return gocql.TokenAwareHostPolicy(contactPolicy(localDC))
}

// contactPolicy spreads statements over the hosts (of the local DC).
func contactPolicy(localDC string) gocql.HostSelectionPolicy {
	if localDC != "" {
		return gocql.DCAwareRoundRobinPolicy(localDC)
	}
	return gocql.RoundRobinHostPolicy()
}
