package ferrytest

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// PGGuard is SQL that installs, on a PostgreSQL target, the fault trials'
// regression guard for table (whose rows have an int id and a bigint ver):
// a trigger that records every write that would take a key back to an
// older version. fault_seen keeps the highest version each key ever had,
// across deletes, so an old insert replayed after a delete is caught too.
// ENABLE ALWAYS keeps the trigger firing whatever the session's replication
// role. PGRegressions reads what it recorded.
func PGGuard(table string) string {
	return fmt.Sprintf(`
CREATE TABLE fault_seen (id int PRIMARY KEY, ver bigint NOT NULL);
CREATE TABLE fault_regress (id int, seen bigint, got bigint, at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION fault_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE m bigint;
BEGIN
  SELECT ver INTO m FROM fault_seen WHERE id = NEW.id;
  IF m IS NOT NULL AND NEW.ver < m THEN
    INSERT INTO fault_regress (id, seen, got) VALUES (NEW.id, m, NEW.ver);
  END IF;
  INSERT INTO fault_seen VALUES (NEW.id, NEW.ver)
    ON CONFLICT (id) DO UPDATE SET ver = greatest(fault_seen.ver, EXCLUDED.ver);
  RETURN NEW;
END $$;
CREATE TRIGGER fault_guard BEFORE INSERT OR UPDATE ON %[1]s FOR EACH ROW EXECUTE FUNCTION fault_guard();
ALTER TABLE %[1]s ENABLE ALWAYS TRIGGER fault_guard`, table)
}

// Regression is one write the guard saw take a key back.
type Regression struct{ ID, Seen, Got int64 }

func (r Regression) String() string {
	return fmt.Sprintf("key id=%d went back from version %d to %d on the target", r.ID, r.Seen, r.Got)
}

// PGRegressions returns how many regressions the guard recorded and the
// first few, in the order they happened.
func PGRegressions(ctx context.Context, conn *pgx.Conn, first int) (int, []Regression, error) {
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM fault_regress`).Scan(&n); err != nil {
		return 0, nil, fmt.Errorf("counting the guard's regressions: %w", err)
	}
	rows, err := conn.Query(ctx, `SELECT id, seen, got FROM fault_regress ORDER BY at LIMIT $1`, first)
	if err != nil {
		return 0, nil, fmt.Errorf("reading the guard's regressions: %w", err)
	}
	regs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Regression])
	if err != nil {
		return 0, nil, fmt.Errorf("reading the guard's regressions: %w", err)
	}
	return n, regs, nil
}
