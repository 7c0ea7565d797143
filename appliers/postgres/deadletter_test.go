package postgres

import (
	"context"
	"errors"
	"testing"

	"github.com/ferry-dev/ferry/appliers"
)

// Rejected rows are handed to the dead-letter store inside the batch's
// transaction: when storing them fails, nothing of the batch is committed
// (so a retry finds it whole); when it succeeds, the rest is committed.
func TestDeadLettersStoredBeforeCommit(t *testing.T) {
	cfg := testDB(t, `CREATE TABLE public.orders (id bigint PRIMARY KEY, customer text NOT NULL, qty integer CHECK (qty < 100), note text)`)
	tg := openTarget(t, cfg)
	ctx := context.Background()
	batch := items(ins(1, "a", 1), ins(2, "b", 500), ins(3, "c", 3))

	failing := func(context.Context, []appliers.Rejected) error { return errors.New("dead-letter stream unavailable") }
	if _, err := tg.Apply(ctx, lane0, batch, 7, failing); err == nil {
		t.Fatal("Apply succeeded although the dead letters could not be stored")
	}
	if got := query(t, cfg, "SELECT count(*) FROM orders"); got[0][0] != "0" {
		t.Fatalf("%s rows committed although the dead letters were not stored", got[0][0])
	}
	if seq, _ := tg.Applied(ctx, lane0); seq != 0 {
		t.Fatalf("watermark moved to %d", seq)
	}

	var stored []appliers.Rejected
	keep := func(_ context.Context, rj []appliers.Rejected) error { stored = append(stored, rj...); return nil }
	rej, err := tg.Apply(ctx, lane0, batch, 7, keep)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 1 || len(rej) != 1 || stored[0].Item.Seq != batch[1].Seq {
		t.Fatalf("stored %v, returned %v; want the qty=500 row", stored, rej)
	}
	if got := query(t, cfg, "SELECT count(*) FROM orders"); got[0][0] != "2" {
		t.Fatalf("%s rows, want 2", got[0][0])
	}
}
