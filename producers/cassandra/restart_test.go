package cassandra

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gocql/gocql"

	"github.com/ferry-dev/ferry/producers"
)

// A range scan that lost its connections ("no hosts available in the pool",
// what a cut connection gives) restarts the producer in-process rather than
// ending the run; a problem with the data or the config does not.
func TestLostConnectionRestartsTheProducer(t *testing.T) {
	ctx := context.Background()
	lost := fmt.Errorf("source cql: reading ks.f tokens (1, 2]: %w", gocql.ErrNoConnections)
	if err := restartable(ctx, lost); !errors.Is(err, producers.ErrRestart) || !producers.Transient(ctx, err) {
		t.Fatalf("a lost connection gives %v; want a restart", err)
	}
	if producers.Transient(ctx, lost) {
		t.Fatal("the test proves nothing: the bare error is already transient")
	}
	other := errors.New("source cql: table ks.f does not exist")
	if err := restartable(ctx, other); err != other {
		t.Fatalf("a missing table gives %v; want it unchanged", err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := restartable(done, lost); errors.Is(err, producers.ErrRestart) {
		t.Fatal("the run's own end restarts the producer")
	}
	if restartable(ctx, nil) != nil {
		t.Fatal("no error gives an error")
	}
}

// Schema metadata that shows a table without its columns (the driver read
// the schema tables while they changed) restarts the producer, whose new
// session reads them again, rather than building a query of no columns.
func TestIncompleteSchemaRestartsTheProducer(t *testing.T) {
	p := &producer{}
	_, err := p.newTable(&gocql.TableMetadata{Keyspace: "ks", Name: "f", Columns: map[string]*gocql.ColumnMetadata{}})
	if !errors.Is(err, producers.ErrRestart) || !strings.Contains(err.Error(), "ks.f") {
		t.Fatalf("got %v; want a restart naming ks.f", err)
	}
}
