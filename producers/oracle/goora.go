package oracle

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	_ "github.com/sijms/go-ora/v2" // registers the "oracle" database/sql driver

	"github.com/ferry-dev/ferry/config"
)

// This file is the only code that talks to Oracle. It is kept thin: the SQL
// it runs is built by functions tested on their own, and what it reads goes
// to code tested on recorded rows. It has not been run against a server
// here (none can be had); docs/oracle.md says what to verify.

// openDB opens and pings a go-ora connection pool (DSN oracle://user:pass@host:port/service).
func openDB(ctx context.Context, source, dsn string) (*sql.DB, error) {
	db, err := sql.Open("oracle", dsn)
	if err != nil {
		return nil, fmt.Errorf("source %s: dsn %s is not a valid Oracle connection string (oracle://user:password@host:1521/service)", source, config.Redact(dsn))
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := db.PingContext(cctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("source %s: cannot connect to Oracle at %s: %s", source, config.Redact(dsn), redactErr(err, dsn))
	}
	return db, nil
}

// redactErr keeps a driver error from repeating the DSN's password.
func redactErr(err error, dsn string) string {
	msg := err.Error()
	if strings.Contains(msg, dsn) {
		msg = strings.ReplaceAll(msg, dsn, config.Redact(dsn))
	}
	return msg
}

// sessionSQL sets ferry's session formats in one round trip.
func sessionSQL() string {
	var b strings.Builder
	b.WriteString("BEGIN ")
	for _, s := range sessionSetup {
		b.WriteString("EXECUTE IMMEDIATE '" + strings.ReplaceAll(s, "'", "''") + "'; ")
	}
	b.WriteString("END;")
	return b.String()
}

// session takes a connection of the pool with ferry's formats set.
func session(ctx context.Context, db *sql.DB) (*sql.Conn, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, sessionSQL()); err != nil {
		conn.Close()
		return nil, fmt.Errorf("setting session formats: %w", err)
	}
	return conn, nil
}

type goOraQuerier struct{ db *sql.DB }

func (q *goOraQuerier) Query(ctx context.Context, query string, args []any, fn func([]any) error) error {
	conn, err := session(ctx, q.db)
	if err != nil {
		return err
	}
	defer conn.Close()
	return queryConn(ctx, conn, query, args, fn)
}

func queryConn(ctx context.Context, conn *sql.Conn, query string, args []any, fn func([]any) error) error {
	rows, err := conn.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		out := make([]any, len(vals))
		for i, v := range vals {
			out[i] = normalize(v)
		}
		if err := fn(out); err != nil {
			return err
		}
	}
	return rows.Err()
}

// normalize gives the Querier's value forms: nil, string or []byte.
func normalize(v any) any {
	switch x := v.(type) {
	case nil, string:
		return x
	case []byte:
		return append([]byte(nil), x...)
	case time.Time:
		return x.Format("2006-01-02 15:04:05.000000000")
	}
	return fmt.Sprint(v)
}

// goOraMiner runs LogMiner on the root connection (where V$LOGMNR_* live).
type goOraMiner struct {
	db  *sql.DB
	pdb *sql.DB // the PDB, when the tables live in one; nil otherwise
	con string  // its container name, read once
}

func (m *goOraMiner) CurrentSCN(ctx context.Context) (uint64, error) {
	var s string
	if err := m.db.QueryRowContext(ctx, `SELECT TO_CHAR(CURRENT_SCN) FROM V$DATABASE`).Scan(&s); err != nil {
		return 0, err
	}
	var n uint64
	_, err := fmt.Sscan(s, &n)
	return n, err
}

func (m *goOraMiner) Mine(ctx context.Context, from, to uint64, owners []string, fn func(MinedRow) error) error {
	if m.pdb != nil && m.con == "" {
		if err := m.pdb.QueryRowContext(ctx, `SELECT SYS_CONTEXT('USERENV', 'CON_NAME') FROM DUAL`).Scan(&m.con); err != nil {
			return fmt.Errorf("reading the PDB's container name: %w", err)
		}
	}
	conn, err := session(ctx, m.db)
	if err != nil {
		return err
	}
	defer conn.Close()
	var files []logFile
	err = queryConn(ctx, conn, logFilesSQL, []any{fmt.Sprint(to), fmt.Sprint(from), fmt.Sprint(to), fmt.Sprint(from)}, func(v []any) error {
		files = append(files, logFile{Name: str(v[0]), Thread: str(v[1]), Sequence: str(v[2])})
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing redo log files: %w", err)
	}
	names := pickLogFiles(files)
	if len(names) == 0 {
		return fmt.Errorf("no archived or online redo log covers SCN %d to %d (were archived logs deleted before ferry mined them?)", from, to)
	}
	for i, n := range names {
		opt := 3 // DBMS_LOGMNR.ADDFILE
		if i == 0 {
			opt = 1 // DBMS_LOGMNR.NEW
		}
		if _, err := conn.ExecContext(ctx, `BEGIN DBMS_LOGMNR.ADD_LOGFILE(LOGFILENAME => :1, OPTIONS => :2); END;`, n, opt); err != nil {
			return fmt.Errorf("adding log file %s: %w", n, err)
		}
	}
	if _, err := conn.ExecContext(ctx, startLogMinerSQL, fmt.Sprint(from), fmt.Sprint(to)); err != nil {
		return fmt.Errorf("starting LogMiner: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `BEGIN DBMS_LOGMNR.END_LOGMNR; END;`)
	q, args := contentsQuery(from, to, owners, m.con)
	return queryConn(ctx, conn, q, args, func(v []any) error {
		r, err := minedRow(v)
		if err != nil {
			return err
		}
		return fn(r)
	})
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// startLogMinerSQL mines an SCN range with the online catalog as the
// dictionary. Continuous mining is gone since 19c, so ferry adds the log
// files itself (logFilesSQL). Uncommitted changes are returned too: ferry
// groups transactions itself, so a huge transaction is not held by Oracle.
const startLogMinerSQL = `BEGIN DBMS_LOGMNR.START_LOGMNR(STARTSCN => TO_NUMBER(:1), ENDSCN => TO_NUMBER(:2), OPTIONS => DBMS_LOGMNR.DICT_FROM_ONLINE_CATALOG + DBMS_LOGMNR.NO_ROWID_IN_STMT); END;`

// logFilesSQL lists the archived and online logs that overlap an SCN range,
// archived first for each thread and sequence (pickLogFiles keeps one).
const logFilesSQL = `SELECT NAME, TO_CHAR(THREAD#), TO_CHAR(SEQUENCE#) FROM (` +
	`SELECT a.NAME, a.THREAD#, a.SEQUENCE#, 1 AS PREF FROM V$ARCHIVED_LOG a WHERE a.NAME IS NOT NULL AND a.STANDBY_DEST = 'NO' AND a.DELETED = 'NO' AND a.STATUS = 'A' AND a.FIRST_CHANGE# <= TO_NUMBER(:1) AND a.NEXT_CHANGE# > TO_NUMBER(:2) ` +
	`UNION ALL ` +
	`SELECT MIN(f.MEMBER), l.THREAD#, l.SEQUENCE#, 2 AS PREF FROM V$LOG l JOIN V$LOGFILE f ON f.GROUP# = l.GROUP# WHERE l.FIRST_CHANGE# <= TO_NUMBER(:3) AND (l.NEXT_CHANGE# > TO_NUMBER(:4) OR l.STATUS = 'CURRENT') AND f.STATUS IS NULL GROUP BY l.THREAD#, l.SEQUENCE#` +
	`) ORDER BY THREAD#, SEQUENCE#, PREF`

type logFile struct{ Name, Thread, Sequence string }

// pickLogFiles keeps one file per thread and sequence: the first listed
// (archived before online; one archive destination of several).
func pickLogFiles(files []logFile) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range files {
		k := f.Thread + "/" + f.Sequence
		if seen[k] || f.Name == "" {
			continue
		}
		seen[k] = true
		out = append(out, f.Name)
	}
	return out
}

// contentsQuery selects what ferry reads of V$LOGMNR_CONTENTS for a window:
// commits and rollbacks of every transaction, and the changes, DDL, LOB and
// unsupported records of the pipeline's schemas. Every number comes as
// text; TIMESTAMP (the server's local time) is turned into UTC.
func contentsQuery(from, to uint64, owners []string, con string) (string, []any) {
	args := []any{fmt.Sprint(from), fmt.Sprint(to)}
	ph := make([]string, len(owners))
	for i, o := range owners {
		args = append(args, o)
		ph[i] = fmt.Sprintf(":%d", len(args))
	}
	q := `SELECT TO_CHAR(SCN), TO_CHAR(OPERATION_CODE), XIDUSN || '.' || XIDSLT || '.' || XIDSQN, SEG_OWNER, TABLE_NAME, SQL_REDO, TO_CHAR(CSF), TO_CHAR(ROLLBACK), ROW_ID, RS_ID, TO_CHAR(SSN), ` +
		`TO_CHAR(SYS_EXTRACT_UTC(FROM_TZ(CAST(TIMESTAMP AS TIMESTAMP), TO_CHAR(SYSTIMESTAMP, 'TZH:TZM'))), 'YYYY-MM-DD HH24:MI:SS') ` +
		`FROM V$LOGMNR_CONTENTS WHERE SCN >= TO_NUMBER(:1) AND SCN <= TO_NUMBER(:2) AND (OPERATION_CODE IN (7, 36) OR (OPERATION_CODE IN (1, 2, 3, 5, 9, 10, 11, 255) AND SEG_OWNER IN (` + strings.Join(ph, ", ") + `)))`
	if con != "" {
		args = append(args, con)
		q += fmt.Sprintf(" AND SRC_CON_NAME = :%d", len(args))
	}
	return q, args
}

// minedRow reads one row of contentsQuery.
func minedRow(v []any) (MinedRow, error) {
	if len(v) != 12 {
		return MinedRow{}, fmt.Errorf("V$LOGMNR_CONTENTS row has %d columns, want 12", len(v))
	}
	var r MinedRow
	r.SCN = scanUint(v[0])
	var op, csf, rb int
	fmt.Sscan(str(v[1]), &op)
	fmt.Sscan(str(v[6]), &csf)
	fmt.Sscan(str(v[7]), &rb)
	r.Op, r.CSF, r.Rollback = op, csf == 1, rb == 1
	r.XID, r.Owner, r.Table, r.SQLRedo = str(v[2]), str(v[3]), str(v[4]), str(v[5])
	r.RowID, r.RSID = str(v[8]), strings.TrimSpace(str(v[9]))
	fmt.Sscan(str(v[10]), &r.SSN)
	if ts := str(v[11]); ts != "" {
		t, err := time.Parse("2006-01-02 15:04:05", ts)
		if err != nil {
			return MinedRow{}, fmt.Errorf("V$LOGMNR_CONTENTS TIMESTAMP %q: %w", ts, err)
		}
		r.Timestamp = t
	}
	if r.SCN == 0 {
		return MinedRow{}, fmt.Errorf("V$LOGMNR_CONTENTS row without an SCN: %v", v)
	}
	return r, nil
}
