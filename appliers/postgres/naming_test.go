package postgres

import (
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/streams/pb"
)

func TestMapTable(t *testing.T) {
	tables := map[string]string{"public.items": "goods", "orders": "archive.orders_v2"}
	for _, c := range []struct {
		event, cfgSchema, schema, name string
	}{
		{"public.items", "", "public", "goods"},           // unqualified rename keeps the event's schema
		{"public.items", "shop", "shop", "goods"},         // ... or targets[].schema
		{"public.orders", "shop", "archive", "orders_v2"}, // a qualified rename wins; found by bare name
		{"public.other", "", "public", "other"},           // not renamed
		{"public.other", "shop", "shop", "other"},
	} {
		s, n := mapTable(c.event, tables, c.cfgSchema)
		if s != c.schema || n != c.name {
			t.Errorf("mapTable(%q, schema %q) = %q.%q, want %q.%q", c.event, c.cfgSchema, s, n, c.schema, c.name)
		}
	}
}

// Events name columns as the source does; renamed columns are written to
// the target's column, keys included.
func TestRenamedColumns(t *testing.T) {
	tb, err := newTable("public", "goods", []column{{name: "gid", cast: "bigint"}, {name: "label", cast: "text"}, {name: "name", cast: "text"}}, []string{"gid"})
	if err != nil {
		t.Fatal(err)
	}
	renames := []config.Rename{
		{Table: "items", From: "id", To: "gid"},
		{Table: "public.items", From: "name", To: "label"},
		{Table: "other", From: "qty", To: "nope"}, // another table's: ignored
		{From: "missing", To: "nowhere"},          // every table's, where it fits: ignored
	}
	if err := tb.renameColumns("public.items", renames); err != nil {
		t.Fatal(err)
	}
	e := &pb.Event{Table: "public.items", Op: pb.Op_OP_INSERT, Key: row("id", vInt(1)), After: row("id", vInt(1), "name", vText("a"))}
	ops, err := eventOps(tb, e, schemaError{target: "t", source: "pg"})
	if err != nil {
		t.Fatal(err)
	}
	if got := tb.cols[ops[0].cols[1]].name; len(ops) != 1 || got != "label" || ops[0].vals[1].String != "a" {
		t.Fatalf("name went to %q (%v)", got, ops)
	}
	d, err := eventOps(tb, &pb.Event{Table: "public.items", Op: pb.Op_OP_DELETE, Key: row("id", vInt(7))}, schemaError{target: "t", source: "pg"})
	if err != nil || d[0].vals[0].String != "7" {
		t.Fatalf("delete by renamed key: %v %v", d, err)
	}
	// The target's own "name" column no longer answers to events' "name".
	if i := tb.byEvent["name"]; tb.cols[i].name != "label" {
		t.Fatalf("event column name maps to %s", tb.cols[i].name)
	}
	if !strings.Contains(tb.shownColumn(1), "source column name") {
		t.Fatal(tb.shownColumn(1))
	}

	bad := []config.Rename{{Table: "public.items", From: "qty", To: "quantity"}}
	err = tb.renameColumns("public.items", bad)
	if err == nil || !strings.Contains(err.Error(), "public.items.qty is renamed to quantity, but target table public.goods has no column quantity") {
		t.Fatalf("rename to a missing column: %v", err)
	}
}
