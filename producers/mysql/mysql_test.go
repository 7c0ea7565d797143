package mysql

import (
	"context"
	"errors"
	"fmt"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/ferry-dev/ferry/producers"
)

// A session the server killed (KILL CONNECTION, the fault suite's source
// cut) or a connection that broke makes the producer start again from its
// saved state; an error about a statement does not.
func TestSessionLostRestarts(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		// What the driver returns for a session killed while idle.
		{fmt.Errorf("source my: reading chunk 7 of f: %w", fmt.Errorf("io.ReadFull(header) failed. err EOF: %w", gomysql.ErrBadConn)), true},
		// Killed while a query ran.
		{fmt.Errorf("source my: reading chunk 3 of f: %w", &gomysql.MyError{Code: errConnectionKilled, Message: "Connection was killed"}), true},
		{fmt.Errorf("source my: %w", &gomysql.MyError{Code: gomysql.ER_QUERY_INTERRUPTED}), true},
		{fmt.Errorf("source my: %w", &gomysql.MyError{Code: gomysql.ER_NO_SUCH_TABLE}), false},
		{errors.New("source my: table t has no primary key"), false},
		{nil, false},
	} {
		if got := sessionLost(c.err); got != c.want {
			t.Errorf("sessionLost(%v) = %v, want %v", c.err, got, c.want)
		}
		if c.want && !producers.Transient(context.Background(), producers.Restart(c.err)) {
			t.Errorf("%v wrapped for a restart is not transient", c.err)
		}
	}
}
