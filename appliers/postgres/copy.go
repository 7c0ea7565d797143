package postgres

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// copyMinRows is the smallest upsert segment that goes through COPY. Below
// it the single unnest statement is cheaper than COPY's extra round trips.
const copyMinRows = 256

// useCopy reports whether a segment takes the COPY path: large upserts on
// PostgreSQL (CockroachDB's COPY has other semantics and no temp tables by
// default, so it keeps UPSERT).
func (t *Target) useCopy(s *segment) bool {
	return t.dialect == dialectPostgres && s.kind == kindUpsert && s.live >= copyMinRows
}

// stageName names the session's staging table for one target table and
// column set.
func stageName(t *table, cols []int) string {
	h := fnv.New64a()
	h.Write([]byte(t.ident))
	for _, c := range cols {
		fmt.Fprintf(h, ",%d", c)
	}
	return fmt.Sprintf("ferry_stage_%016x", h.Sum64())
}

// execCopy upserts a segment by COPY into a temporary staging table holding
// just the segment's columns (in text form, as PostgreSQL's input functions
// read it: the same text the unnest path casts), then one INSERT … SELECT …
// ON CONFLICT DO UPDATE. The server parses COPY's text far faster than text
// arrays with casts; the result is the same. The staging table lives in the
// session and is emptied after use, inside the transaction, so a rollback
// leaves it consistent too.
func (t *Target) execCopy(ctx context.Context, tx pgx.Tx, s *segment) error {
	names := quotedNames(s.table, s.cols)
	var buf bytes.Buffer
	for _, row := range s.rows {
		if row == nil {
			continue // superseded by a later row of the same key
		}
		appendCopyRow(&buf, row)
	}
	data := buf.Bytes()
	if s.fresh {
		// Rows the source just created are rarely on the target yet: COPY
		// them straight in, which costs the server about what the COPY
		// baseline does. If any key exists after all (a chunk read twice,
		// a replay), the unique violation undoes just this attempt and the
		// upsert below does the work, so the result is the same.
		done, err := t.copyDirect(ctx, tx, s, names, data)
		if done || err != nil {
			return err
		}
	}
	stage := stageName(s.table, s.cols)
	var def strings.Builder
	def.WriteString("CREATE TEMP TABLE IF NOT EXISTS " + stage + " AS SELECT ")
	def.WriteString(strings.Join(names, ", "))
	def.WriteString(" FROM " + s.table.ident + " WITH NO DATA")
	if _, err := tx.Exec(ctx, def.String()); err != nil {
		return fmt.Errorf("creating staging table for %s: %w", s.table, err)
	}
	cp := "COPY " + stage + " (" + strings.Join(names, ", ") + ") FROM STDIN"
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(data), cp); err != nil {
		return fmt.Errorf("%s of %d rows of %s: copying: %w", s.kind, s.live, s.table, err)
	}
	if _, err := tx.Exec(ctx, upsertFromSQL(s.table, s.cols, stage)); err != nil {
		return fmt.Errorf("%s of %d rows of %s: %w", s.kind, s.live, s.table, err)
	}
	if _, err := tx.Exec(ctx, "TRUNCATE "+stage); err != nil {
		return fmt.Errorf("emptying staging table of %s: %w", s.table, err)
	}
	return nil
}

// copyDirect COPYs a segment into its table under a savepoint. It reports
// done=false, with the savepoint rolled back, when a row's key is already
// there (unique_violation); any other failure is returned.
func (t *Target) copyDirect(ctx context.Context, tx pgx.Tx, s *segment, names []string, data []byte) (bool, error) {
	if _, err := tx.Exec(ctx, "SAVEPOINT ferry_copy"); err != nil {
		return false, fmt.Errorf("copying into %s: %w", s.table, err)
	}
	cp := "COPY " + s.table.ident + " (" + strings.Join(names, ", ") + ") FROM STDIN"
	_, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(data), cp)
	if err == nil {
		if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT ferry_copy"); err != nil {
			return false, fmt.Errorf("copying into %s: %w", s.table, err)
		}
		return true, nil
	}
	if sqlState(err) != "23505" { // unique_violation
		return false, fmt.Errorf("%s of %d rows of %s: copying: %w", s.kind, s.live, s.table, err)
	}
	if _, rerr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT ferry_copy"); rerr != nil {
		return false, fmt.Errorf("copying into %s: %w", s.table, rerr)
	}
	return false, nil
}

// upsertFromSQL is PostgreSQL's upsert of a staging table's rows.
func upsertFromSQL(t *table, cols []int, stage string) string {
	names := quotedNames(t, cols)
	var b strings.Builder
	b.WriteString("INSERT INTO " + t.ident + " (" + strings.Join(names, ", ") + ") OVERRIDING SYSTEM VALUE SELECT ")
	b.WriteString(strings.Join(names, ", "))
	b.WriteString(" FROM " + stage)
	b.WriteString(" ON CONFLICT (" + strings.Join(quotedNames(t, t.pk), ", ") + ") DO ")
	var set []string
	for i, c := range cols {
		if !t.isPK[c] {
			set = append(set, names[i]+" = excluded."+names[i])
		}
	}
	if len(set) == 0 {
		b.WriteString("NOTHING")
	} else {
		b.WriteString("UPDATE SET " + strings.Join(set, ", "))
	}
	return b.String()
}

// appendCopyRow writes one row in COPY's text format: tab-separated, \N for
// NULL, backslash escapes for the characters COPY treats specially.
func appendCopyRow(buf *bytes.Buffer, row []pgtype.Text) {
	for i, v := range row {
		if i > 0 {
			buf.WriteByte('\t')
		}
		if !v.Valid {
			buf.WriteString(`\N`)
			continue
		}
		s := v.String
		start := 0
		for j := 0; j < len(s); j++ {
			var esc string
			switch s[j] {
			case '\\':
				esc = `\\`
			case '\t':
				esc = `\t`
			case '\n':
				esc = `\n`
			case '\r':
				esc = `\r`
			default:
				continue
			}
			buf.WriteString(s[start:j])
			buf.WriteString(esc)
			start = j + 1
		}
		buf.WriteString(s[start:])
	}
	buf.WriteByte('\n')
}
