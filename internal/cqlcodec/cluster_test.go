package cqlcodec

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gocql/gocql"
)

// The nodes the driver discovers are reached on the port the DSN names when
// every host names the same one; otherwise on the driver's default.
func TestClusterPortFromDSN(t *testing.T) {
	for _, c := range []struct {
		dsn  string
		port int
	}{
		{"cassandra://10.0.0.1:19042,10.0.0.2:19042", 19042},
		{"cassandra://u:p@[::1]:9142", 9142},
		{"cassandra://10.0.0.1", 9042},
		{"cassandra://10.0.0.1:19042,10.0.0.2:29042", 9042},
		{"cassandra://10.0.0.1:19042,10.0.0.2", 9042},
	} {
		cc, err := Cluster(ClusterOptions{DSN: c.dsn, Consistency: "ONE"})
		if err != nil {
			t.Fatalf("%s: %v", c.dsn, err)
		}
		if cc.Port != c.port {
			t.Errorf("%s: port %d, want %d", c.dsn, cc.Port, c.port)
		}
	}
}

// A schema read that fails on a half-written schema row is tried again; a
// keyspace that does not exist is said at once; a read that keeps failing
// gives up after six tries.
func TestKeyspaceMetadataTriesAgain(t *testing.T) {
	half := errors.New("invalid JSON value '' as strategy_options for in keyspace 'ks': unexpected end of JSON input")
	calls := 0
	read := func(string) (*gocql.KeyspaceMetadata, error) {
		calls++
		if calls < 3 {
			return nil, half
		}
		return &gocql.KeyspaceMetadata{Name: "ks"}, nil
	}
	if m, err := keyspaceMetadata(context.Background(), read, "ks", time.Millisecond); err != nil || m.Name != "ks" || calls != 3 {
		t.Fatalf("got %v, %v after %d reads; want the keyspace after 3", m, err, calls)
	}
	calls = 0
	missing := func(string) (*gocql.KeyspaceMetadata, error) { calls++; return nil, gocql.ErrKeyspaceDoesNotExist }
	if _, err := keyspaceMetadata(context.Background(), missing, "ks", time.Millisecond); !errors.Is(err, gocql.ErrKeyspaceDoesNotExist) || calls != 1 {
		t.Fatalf("a missing keyspace: %v after %d reads; want it at once", err, calls)
	}
	calls = 0
	broken := func(string) (*gocql.KeyspaceMetadata, error) { calls++; return nil, half }
	if _, err := keyspaceMetadata(context.Background(), broken, "ks", time.Millisecond); err != half || calls != 6 {
		t.Fatalf("a read that keeps failing: %v after %d reads; want its error after 6", err, calls)
	}
}

// Connected to the contact points alone, statements are not routed by
// token: no ring is known, and the routing key would read the driver's
// schema metadata for every statement.
func TestContactPolicyIsNotTokenAware(t *testing.T) {
	for _, dc := range []string{"", "dc1"} {
		if got := fmt.Sprintf("%T", contactPolicy(dc)); strings.Contains(got, "tokenAware") {
			t.Errorf("localDC %q: the contact-point policy is %s", dc, got)
		}
		if got := fmt.Sprintf("%T", hostPolicy(dc)); !strings.Contains(got, "tokenAware") {
			t.Errorf("localDC %q: the ring's policy is %s, want token-aware", dc, got)
		}
	}
}
