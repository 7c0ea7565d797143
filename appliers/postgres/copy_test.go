package postgres

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ferry-dev/ferry/streams/pb"
)

func TestAppendCopyRowEscapes(t *testing.T) {
	var b bytes.Buffer
	appendCopyRow(&b, []pgtype.Text{
		{String: "a\tb\nc\\d\re", Valid: true}, {}, {String: `\N`, Valid: true}, {String: "", Valid: true},
	})
	if got, want := b.String(), "a\\tb\\nc\\\\d\\re\t\\N\t\\\\N\t\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// readEvent is a snapshot row of orders with a note that needs COPY escapes.
func readEvent(id, qty int64, note string) *pb.Event {
	e := ins(id, fmt.Sprintf("c%d", id), qty)
	e.Op = pb.Op_OP_READ
	e.After.Values[3] = vText(note)
	return e
}

// Large batches of new rows go straight in by COPY; when their keys exist
// already (a chunk read twice), the unique violation falls back to the
// upsert, with the same result; text that COPY must escape arrives intact.
func TestCopyPathDirectAndFallback(t *testing.T) {
	cfg := testDB(t, `CREATE TABLE public.orders (id bigint PRIMARY KEY, customer text NOT NULL, qty integer, note text)`)
	tg := openTarget(t, cfg)
	ctx := context.Background()
	const n = copyMinRows + 50
	notes := []string{"tab\there", "line\nbreak", `back\slash`, `\N`, "cr\rlf", "plain ünï ☃"}
	batch := func(qtyBase int64) []*pb.Event {
		var evs []*pb.Event
		for i := int64(1); i <= n; i++ {
			evs = append(evs, readEvent(i, qtyBase+i, notes[i%int64(len(notes))]))
		}
		return evs
	}
	check := func(qtyBase int64) {
		t.Helper()
		var want [][]string
		for i := int64(1); i <= n; i++ {
			want = append(want, []string{fmt.Sprint(i), fmt.Sprint(qtyBase + i), notes[i%int64(len(notes))]})
		}
		if got := query(t, cfg, "SELECT id, qty, note FROM orders ORDER BY id"); !reflect.DeepEqual(got, want) {
			t.Fatalf("rows differ: first got %v, want %v (of %d/%d)", got[0], want[0], len(got), len(want))
		}
	}
	if _, err := tg.Apply(ctx, lane0, items(batch(0)...), 1, nil); err != nil {
		t.Fatal(err)
	}
	check(0)
	// The same keys again with new values: the direct COPY meets existing
	// keys and the upsert takes over.
	if _, err := tg.Apply(ctx, lane0, items(batch(1000)...), 2, nil); err != nil {
		t.Fatal(err)
	}
	check(1000)
}
