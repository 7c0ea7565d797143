package cassandra

import (
	"testing"

	"github.com/gocql/gocql"
)

func TestLookupQuery(t *testing.T) {
	tb := &table{
		cols:  []*gocql.ColumnMetadata{{Name: "p"}, {Name: "c"}, {Name: "v"}},
		nKey:  2,
		query: `SELECT "p", "c", "v" FROM "ks"."t" WHERE token("p") > ? AND token("p") <= ?`,
	}
	if got, want := lookupQuery(tb, 2), `SELECT "p", "c", "v" FROM "ks"."t" WHERE "p" = ? AND "c" = ?`; got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
	tb.query += ` AND v > 3 ALLOW FILTERING`
	if got, want := lookupQuery(tb, 1), `SELECT "p", "c", "v" FROM "ks"."t" WHERE "p" = ? AND v > 3 ALLOW FILTERING`; got != want {
		t.Errorf("with a where: got %s\nwant %s", got, want)
	}
}
