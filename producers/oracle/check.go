package oracle

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ferry-dev/ferry/internal/preflight"
)

var _ preflight.SourceChecker = (*producer)(nil)

func init() {
	preflight.RegisterSourceAdvice("oracle", func(_ string, err error) (string, string) {
		return "connect", oracleConnectFix(err)
	})
}

// oracleConnectFix says how to fix a failed connection from its ORA- code.
func oracleConnectFix(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "ORA-01017"):
		return "the server refused the user name or password: fix them in sources[].dsn (oracle://user:password@host:1521/service)"
	case strings.Contains(msg, "ORA-12514"), strings.Contains(msg, "ORA-12505"):
		return "the listener does not know that service: fix the service name in sources[].dsn (lsnrctl services lists them)"
	case strings.Contains(msg, "ORA-28000"):
		return "the account is locked: ALTER USER <user> ACCOUNT UNLOCK;"
	case strings.Contains(msg, "ORA-01045"):
		return "the user may not log in: GRANT CREATE SESSION TO <user>;"
	case strings.Contains(msg, "connection refused"):
		return "nothing listens there: start the listener, or fix the host and port in sources[].dsn"
	case strings.Contains(msg, "not a valid Oracle connection string"):
		return "write sources[].dsn as oracle://user:password@host:1521/service"
	}
	return "check sources[].dsn (host, port, service, user, password) and that the listener accepts connections from this host"
}

// Catalog reads of the preflight.
const (
	databaseSQL = `SELECT LOG_MODE, SUPPLEMENTAL_LOG_DATA_MIN, SUPPLEMENTAL_LOG_DATA_ALL, CDB, USER, (SELECT VERSION FROM V$INSTANCE) FROM V$DATABASE`
	privsSQL    = `SELECT PRIVILEGE FROM SESSION_PRIVS UNION ALL SELECT 'ROLE ' || ROLE FROM SESSION_ROLES`
	logGroupSQL = `SELECT LOG_GROUP_TYPE FROM ALL_LOG_GROUPS WHERE OWNER = :1 AND TABLE_NAME = :2`
)

// dbFacts is what the preflight reads of the database and the user.
type dbFacts struct {
	LogMode, SuppMin, SuppAll, CDB, User, Version string
	Privs                                         map[string]bool // privileges, and roles as "ROLE <name>"
	// pdb is true when the tables live in a PDB reached through pdbDsn.
	PDB bool
}

// tableFacts is what the preflight reads of one table.
type tableFacts struct {
	Name     string
	Ident    string
	Err      error // the table could not be read (missing, no access)
	HasKey   bool
	AllCols  bool // ALL COLUMN supplemental logging on the table
	LogGroup error
}

// checkDatabase turns the database facts into findings: ARCHIVELOG mode,
// minimal supplemental logging and the miner's privileges, each with the
// statement that fixes it.
func checkDatabase(f dbFacts, cdc bool) []preflight.Finding {
	var fs []preflight.Finding
	add := func(check string, sev preflight.Severity, msg, fix string) {
		fs = append(fs, preflight.Finding{Check: check, Severity: sev, Message: msg, Fix: fix})
	}
	// A common user of a CDB is granted in every container at once.
	container := ""
	if f.CDB == "YES" {
		container = " CONTAINER=ALL"
	}
	grant := func(what string) string { return fmt.Sprintf("GRANT %s TO %s%s;", what, f.User, container) }
	if f.Privs["FLASHBACK ANY TABLE"] {
		add("flashback", preflight.OK, "the user may read tables AS OF an SCN (FLASHBACK ANY TABLE)", "")
	} else {
		add("flashback", preflight.Warn, fmt.Sprintf("user %s lacks FLASHBACK ANY TABLE; the snapshot reads AS OF SCN and needs FLASHBACK on each table", f.User),
			grant("FLASHBACK ANY TABLE")+" (or GRANT FLASHBACK ON <owner>.<table> TO "+f.User+"; for each table)")
	}
	if !cdc {
		return fs
	}
	if f.LogMode == "ARCHIVELOG" {
		add("archivelog", preflight.OK, "the database runs in ARCHIVELOG mode", "")
	} else {
		add("archivelog", preflight.Block, fmt.Sprintf("the database runs in %s mode; LogMiner needs archived redo, or changes are lost when online logs are overwritten", f.LogMode),
			"as SYSDBA: SHUTDOWN IMMEDIATE; STARTUP MOUNT; ALTER DATABASE ARCHIVELOG; ALTER DATABASE OPEN;")
	}
	if f.SuppMin == "YES" || f.SuppMin == "IMPLICIT" {
		add("supplemental_logging", preflight.OK, "minimal supplemental logging is on (SUPPLEMENTAL_LOG_DATA_MIN = "+f.SuppMin+")", "")
	} else {
		add("supplemental_logging", preflight.Block, "minimal supplemental logging is off (SUPPLEMENTAL_LOG_DATA_MIN = "+f.SuppMin+"); LogMiner cannot reconstruct changes without it",
			"ALTER DATABASE ADD SUPPLEMENTAL LOG DATA;"+map[bool]string{true: " (in CDB$ROOT)", false: ""}[f.CDB == "YES"])
	}
	need := []struct{ priv, alt, why string }{
		{"LOGMINING", "", "to run LogMiner (Oracle 12c and later)"},
		{"SELECT ANY TRANSACTION", "", "to read V$LOGMNR_CONTENTS"},
		{"ROLE EXECUTE_CATALOG_ROLE", "", "to call DBMS_LOGMNR"},
		{"ROLE SELECT_CATALOG_ROLE", "SELECT ANY DICTIONARY", "to read V$DATABASE, V$LOG, V$ARCHIVED_LOG and V$TRANSACTION"},
	}
	for _, n := range need {
		if f.Privs[n.priv] || (n.alt != "" && f.Privs[n.alt]) {
			add("privileges", preflight.OK, fmt.Sprintf("user %s has %s", f.User, strings.TrimPrefix(n.priv, "ROLE ")), "")
			continue
		}
		add("privileges", preflight.Block, fmt.Sprintf("user %s lacks %s, which ferry needs %s", f.User, strings.TrimPrefix(n.priv, "ROLE "), n.why),
			grant(strings.TrimPrefix(n.priv, "ROLE ")))
	}
	return fs
}

// checkTable turns one table's facts into findings: readable, keyed, and
// (for the change stream) logged with all columns, so that updates and
// deletes carry the key and the whole row.
func checkTable(t tableFacts, dbAll, cdc bool) []preflight.Finding {
	var fs []preflight.Finding
	add := func(check string, sev preflight.Severity, msg, fix string) {
		fs = append(fs, preflight.Finding{Check: check, Severity: sev, Message: msg, Fix: fix})
	}
	if t.Err != nil {
		add("table", preflight.Block, fmt.Sprintf("table %s: %v", t.Name, t.Err),
			fmt.Sprintf("create it, fix its name in sources[].tables (OWNER.TABLE, as Oracle stores it), or GRANT SELECT ON %s TO <user>;", t.Ident))
		return fs
	}
	if !t.HasKey {
		add("primary_key", preflight.Block, fmt.Sprintf("table %s has no primary key; ferry keys rows and orders changes by it", t.Name),
			fmt.Sprintf("ALTER TABLE %s ADD PRIMARY KEY (<columns>);", t.Ident))
	} else {
		add("primary_key", preflight.OK, fmt.Sprintf("table %s has a primary key", t.Name), "")
	}
	if !cdc {
		return fs
	}
	switch {
	case t.LogGroup != nil:
		add("table_supplemental_logging", preflight.Block, fmt.Sprintf("reading the supplemental log groups of %s: %v", t.Name, t.LogGroup),
			"GRANT SELECT_CATALOG_ROLE TO <user>; then run ferry check again")
	case dbAll || t.AllCols:
		add("table_supplemental_logging", preflight.OK, fmt.Sprintf("table %s logs all columns of every change", t.Name), "")
	default:
		add("table_supplemental_logging", preflight.Block,
			fmt.Sprintf("table %s does not log all columns of its changes; updates and deletes would lack the key and the unchanged columns", t.Name),
			fmt.Sprintf("ALTER TABLE %s ADD SUPPLEMENTAL LOG DATA (ALL) COLUMNS;", t.Ident))
	}
	return fs
}

// Check reads the facts through the Querier and evaluates them. It changes
// nothing on the source.
func (p *producer) Check(ctx context.Context) ([]preflight.Finding, []preflight.Table) {
	comp := preflight.SourceComponent(p.cfg.Name)
	var fs []preflight.Finding
	stamp := func(in []preflight.Finding) {
		for _, f := range in {
			f.Component = comp
			fs = append(fs, f)
		}
	}
	f := dbFacts{Privs: map[string]bool{}, PDB: p.cfg.PDBDSN != ""}
	err := p.root.Query(ctx, databaseSQL, nil, func(v []any) error {
		f.LogMode, f.SuppMin, f.SuppAll, f.CDB, f.User, f.Version = str(v[0]), str(v[1]), str(v[2]), str(v[3]), str(v[4]), str(v[5])
		return nil
	})
	if err == nil {
		err = p.root.Query(ctx, privsSQL, nil, func(v []any) error { f.Privs[str(v[0])] = true; return nil })
	}
	if err != nil {
		stamp([]preflight.Finding{{Check: "database", Severity: preflight.Block, Message: fmt.Sprintf("reading V$DATABASE and the session's privileges: %v", err),
			Fix: "GRANT SELECT_CATALOG_ROLE TO <user>; (CONTAINER=ALL for a common user), then run ferry check again"}})
		return fs, nil
	}
	stamp([]preflight.Finding{{Check: "connect", Severity: preflight.OK, Message: fmt.Sprintf("Oracle %s as %s; mode %s", f.Version, f.User, p.cfg.Mode)}})
	stamp(checkDatabase(f, p.cfg.HasCDC()))

	if err := p.loadTablesForCheck(ctx); err != nil {
		stamp([]preflight.Finding{{Check: "table", Severity: preflight.Block, Message: err.Error(), Fix: "list the tables in sources[].tables as OWNER.TABLE"}})
		return fs, nil
	}
	var tables []preflight.Table
	for _, name := range p.cfgTableNames() {
		tf := tableFacts{Name: name, Ident: name}
		t, err := loadTable(ctx, p.q, name)
		if err != nil {
			tf.Err = err
		} else {
			tf.Ident, tf.HasKey = t.ident(), len(t.Key) > 0
			tf.LogGroup = p.q.Query(ctx, logGroupSQL, []any{t.Owner, t.Table}, func(v []any) error {
				if str(v[0]) == "ALL COLUMN LOGGING" {
					tf.AllCols = true
				}
				return nil
			})
			pt := preflight.Table{Name: t.Name, Key: t.keyNames(), Changes: p.cfg.HasCDC()}
			for _, c := range t.Columns {
				pt.Columns = append(pt.Columns, preflight.Column{Name: c.Name, Type: c.Type, NotNull: t.notNull[c.Name]})
			}
			tables = append(tables, pt)
		}
		stamp(checkTable(tf, f.SuppAll == "YES", p.cfg.HasCDC()))
	}
	return fs, tables
}

// cfgTableNames are the tables the check looks at: the configured ones, or
// those loadTablesForCheck listed.
func (p *producer) cfgTableNames() []string {
	if len(p.cfg.Tables) > 0 {
		return p.cfg.Tables
	}
	return p.order
}

// loadTablesForCheck lists the user's tables when none are configured.
func (p *producer) loadTablesForCheck(ctx context.Context) error {
	if len(p.cfg.Tables) > 0 {
		return nil
	}
	p.order = nil
	err := p.q.Query(ctx, userTablesSQL, nil, func(v []any) error {
		p.order = append(p.order, str(v[0])+"."+str(v[1]))
		return nil
	})
	if err != nil {
		return fmt.Errorf("listing the schema's tables: %w", err)
	}
	if len(p.order) == 0 {
		return errors.New("the connected user owns no tables and sources[].tables is empty")
	}
	return nil
}
