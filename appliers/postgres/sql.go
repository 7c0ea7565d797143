package postgres

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// dialect is the SQL flavour of the target server, detected from version().
type dialect uint8

const (
	dialectPostgres dialect = iota
	dialectCockroach
)

func (d dialect) String() string {
	if d == dialectCockroach {
		return "CockroachDB"
	}
	return "PostgreSQL"
}

// detectDialect reads the output of SELECT version().
func detectDialect(version string) dialect {
	if strings.Contains(version, "CockroachDB") {
		return dialectCockroach
	}
	return dialectPostgres
}

// Statement text depends only on the dialect, the table, the kind and the
// column set, never on the number of rows: every column travels as one
// text[] parameter, unnest turns the arrays back into rows and each value is
// cast to its column's type on the server. So each statement is parsed and
// planned once per connection (pgx prepares and caches it), and text is the
// one wire format every type has.

func quote(name string) string { return pgx.Identifier{name}.Sanitize() }

// unnestFrom renders "unnest($1::text[], ..) AS u(a, ..)" for aliases, with
// parameters numbered from 1.
func unnestFrom(b *strings.Builder, aliases []string) {
	b.WriteString("unnest(")
	for i := range aliases {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(b, "$%d::text[]", i+1)
	}
	b.WriteString(") AS u(")
	b.WriteString(strings.Join(aliases, ", "))
	b.WriteString(")")
}

func quotedNames(t *table, cols []int) []string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = quote(t.cols[c].name)
	}
	return out
}

// keyMatch renders "t.k1 = u.<alias k1>::type AND ..".
func keyMatch(b *strings.Builder, t *table, alias func(col int) string) {
	for i, k := range t.pk {
		if i > 0 {
			b.WriteString(" AND ")
		}
		fmt.Fprintf(b, "t.%s = u.%s::%s", quote(t.cols[k].name), alias(k), t.cols[k].cast)
	}
}

// upsertSQL writes full rows: insert, or replace the listed columns of the
// row with the same primary key. Columns not listed keep their default on
// insert and their stored value on update.
func upsertSQL(d dialect, t *table, cols []int) string {
	names := quotedNames(t, cols)
	var b strings.Builder
	if d == dialectCockroach {
		// UPSERT with a column list leaves unlisted columns alone on update,
		// and skips the read INSERT .. ON CONFLICT does when it can.
		b.WriteString("UPSERT INTO ")
	} else {
		b.WriteString("INSERT INTO ")
	}
	b.WriteString(t.ident)
	b.WriteString(" (")
	b.WriteString(strings.Join(names, ", "))
	b.WriteString(")")
	if d == dialectPostgres {
		// The source's values win over GENERATED ALWAYS AS IDENTITY, as they
		// must in a copy; without identity columns the clause is a no-op.
		b.WriteString(" OVERRIDING SYSTEM VALUE")
	}
	b.WriteString(" SELECT ")
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "u.%s::%s", names[i], t.cols[c].cast)
	}
	b.WriteString(" FROM ")
	unnestFrom(&b, names)
	if d == dialectPostgres {
		b.WriteString(" ON CONFLICT (")
		b.WriteString(strings.Join(quotedNames(t, t.pk), ", "))
		b.WriteString(") DO ")
		var set []string
		for i, c := range cols {
			if !t.isPK[c] {
				set = append(set, fmt.Sprintf("%s = excluded.%s", names[i], names[i]))
			}
		}
		if len(set) == 0 {
			b.WriteString("NOTHING")
		} else {
			b.WriteString("UPDATE SET ")
			b.WriteString(strings.Join(set, ", "))
		}
	}
	return b.String()
}

// partialSQL updates only the sent columns of existing rows; cols holds the
// key columns and the sent ones. It returns "" when there is nothing to set
// (only key columns were sent), as the stored row then already holds them.
func partialSQL(t *table, cols []int) string {
	names := quotedNames(t, cols)
	var set []string
	for i, c := range cols {
		if !t.isPK[c] {
			set = append(set, fmt.Sprintf("%s = u.%s::%s", names[i], names[i], t.cols[c].cast))
		}
	}
	if len(set) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "UPDATE %s AS t SET %s FROM ", t.ident, strings.Join(set, ", "))
	unnestFrom(&b, names)
	b.WriteString(" WHERE ")
	keyMatch(&b, t, func(col int) string { return quote(t.cols[col].name) })
	return b.String()
}

// deleteSQL deletes rows by primary key. PostgreSQL and CockroachDB (22.1
// and later) both take DELETE .. USING.
func deleteSQL(t *table) string {
	var b strings.Builder
	fmt.Fprintf(&b, "DELETE FROM %s AS t USING ", t.ident)
	unnestFrom(&b, quotedNames(t, t.pk))
	b.WriteString(" WHERE ")
	keyMatch(&b, t, func(col int) string { return quote(t.cols[col].name) })
	return b.String()
}

// rekeySQL moves rows to a new primary key, for an update that changed the
// key and did not resend every column: the unsent columns must keep their
// stored values, so the row is moved rather than deleted and re-inserted.
// The arrays are the old key columns, then the new ones (aliases o1.., n1..).
func rekeySQL(t *table) string {
	aliases := make([]string, 0, 2*len(t.pk))
	for i := range t.pk {
		aliases = append(aliases, fmt.Sprintf("o%d", i+1))
	}
	for i := range t.pk {
		aliases = append(aliases, fmt.Sprintf("n%d", i+1))
	}
	pos := make(map[int]int, len(t.pk))
	var set []string
	for i, k := range t.pk {
		pos[k] = i + 1
		set = append(set, fmt.Sprintf("%s = u.n%d::%s", quote(t.cols[k].name), i+1, t.cols[k].cast))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "UPDATE %s AS t SET %s FROM ", t.ident, strings.Join(set, ", "))
	unnestFrom(&b, aliases)
	b.WriteString(" WHERE ")
	keyMatch(&b, t, func(col int) string { return fmt.Sprintf("o%d", pos[col]) })
	return b.String()
}

// Statements on ferry's own state. Both dialects take them unchanged.
const (
	stateTableExists  = `SELECT to_regclass('ferry_state.applied') IS NOT NULL`
	createStateSchema = `CREATE SCHEMA IF NOT EXISTS ferry_state`
	createStateTable  = `CREATE TABLE IF NOT EXISTS ferry_state.applied (
    target text,
    source text,
    lane int,
    seq bigint NOT NULL,
    updated_at timestamptz,
    PRIMARY KEY (target, source, lane)
)`
	readApplied  = `SELECT seq FROM ferry_state.applied WHERE target = $1 AND source = $2 AND lane = $3`
	writeApplied = `INSERT INTO ferry_state.applied (target, source, lane, seq, updated_at)
VALUES ($1, $2, $3, $4, now())
ON CONFLICT (target, source, lane) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at`
)
