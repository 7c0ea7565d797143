package producers

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

type sqlStateErr string

func (e sqlStateErr) Error() string    { return "server error " + string(e) }
func (e sqlStateErr) SQLState() string { return string(e) }

func TestTransient(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("publishing: %w", jetstream.ErrAsyncPublishTimeout), true},
		{fmt.Errorf("receiving: %w", sqlStateErr("57P01")), true}, // terminated by an administrator
		{fmt.Errorf("connecting: %w", sqlStateErr("08006")), true},
		{fmt.Errorf("reading: %w", sqlStateErr("42P01")), false}, // missing table: fix the config
		{fmt.Errorf("login: %w", sqlStateErr("28P01")), false},   // wrong password
		{Restart(errors.New("snapshot gone")), true},
		{Permanent(fmt.Errorf("x: %w", jetstream.ErrAsyncPublishTimeout)), false},
		{errors.New("table public.t has no primary key"), false},
		{fmt.Errorf("call: %w", context.DeadlineExceeded), true},
	} {
		if got := Transient(ctx, tc.err); got != tc.want {
			t.Errorf("Transient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if Transient(done, Restart(errors.New("x"))) {
		t.Error("an error after the run ended is not a reason to restart")
	}
}
