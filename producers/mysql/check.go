package mysql

import (
	"context"
	"fmt"
	"strings"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/ferry-dev/ferry/internal/preflight"
)

var _ preflight.SourceChecker = (*producer)(nil)

func init() {
	advice := func(_ string, err error) (string, string) {
		return "connect", "check sources[].dsn (mysql://user:password@host:3306/db or user:password@tcp(host:3306)/db): that the server listens there, the database exists and the user may log in from this host (CREATE USER / GRANT); the error says which"
	}
	preflight.RegisterSourceAdvice("mysql", advice)
	preflight.RegisterSourceAdvice("mariadb", advice)
}

type sourceCheck struct {
	p      *producer
	comp   string
	fs     []preflight.Finding
	user   string // 'user'@'host' as GRANT names it
	grants string // SHOW GRANTS, upper case
}

func (c *sourceCheck) add(check string, sev preflight.Severity, msg, fix string) {
	c.fs = append(c.fs, preflight.Finding{Component: c.comp, Check: check, Severity: sev, Message: msg, Fix: fix})
}

func (c *sourceCheck) ok(check, msg string) { c.add(check, preflight.OK, msg, "") }

func (c *sourceCheck) failed(check, what string, err error) {
	c.add(check, preflight.Block, fmt.Sprintf("%s: %v", what, err),
		fmt.Sprintf("make sure %s may read server variables and information_schema, then run ferry check again", c.user))
}

// variable reads one global server variable ("" when the server has none).
func (c *sourceCheck) variable(name string) (string, error) {
	// name is one of this file's constants; SHOW cannot take a parameter.
	r, err := c.p.query("SHOW GLOBAL VARIABLES LIKE '" + name + "'")
	if err != nil {
		return "", err
	}
	if r.RowNumber() == 0 {
		return "", nil
	}
	v, _ := r.GetString(0, 1)
	return v, nil
}

// Check checks what the configured mode needs and returns the tables it
// would move. Every finding that is not OK gives the statement to run.
func (p *producer) Check(ctx context.Context) ([]preflight.Finding, []preflight.Table) {
	c := &sourceCheck{p: p, comp: preflight.SourceComponent(p.cfg.Name)}
	if !c.connection() {
		return c.fs, nil
	}
	c.privileges()
	if p.cfg.HasCDC() {
		c.binlog()
		c.gtid()
	}
	return c.fs, c.tables()
}

func (c *sourceCheck) connection() bool {
	r, err := c.p.query("SELECT VERSION(), CURRENT_USER()")
	if err != nil {
		c.add("connect", preflight.Block, fmt.Sprintf("connected to %s but the first query failed: %v", c.p.dsn.redacted(), err),
			"check that the user may run queries on the server")
		return false
	}
	version, _ := r.GetString(0, 0)
	cur, _ := r.GetString(0, 1)
	if u, h, ok := strings.Cut(cur, "@"); ok {
		c.user = fmt.Sprintf("'%s'@'%s'", u, h)
	} else {
		c.user = "'" + cur + "'"
	}
	kind := "MySQL"
	if c.p.flavor == gomysql.MariaDBFlavor {
		kind = "MariaDB"
	}
	c.ok("connect", fmt.Sprintf("%s %s at %s as %s; mode %s", kind, version, c.p.dsn.Addr(), c.user, c.p.cfg.Mode))
	return true
}

// privileges checks the grants the snapshot and the binlog reader need.
func (c *sourceCheck) privileges() {
	r, err := c.p.query("SHOW GRANTS")
	if err != nil {
		c.failed("privileges", "reading SHOW GRANTS", err)
		return
	}
	var b strings.Builder
	for i := range r.RowNumber() {
		s, _ := r.GetString(i, 0)
		b.WriteString(strings.ToUpper(s) + "\n")
	}
	c.grants = b.String()
	global := func(priv string) bool {
		for _, line := range strings.Split(c.grants, "\n") {
			if strings.Contains(line, " ON *.* ") && (strings.Contains(line, "ALL PRIVILEGES") || strings.Contains(line, priv)) {
				return true
			}
		}
		return false
	}
	var missing []string
	need := []string{"SELECT"}
	if c.p.cfg.HasCDC() {
		need = append(need, "REPLICATION SLAVE")
		if c.p.flavor == gomysql.MariaDBFlavor {
			need = append(need, "BINLOG MONITOR")
		} else {
			need = append(need, "REPLICATION CLIENT")
		}
	}
	for _, priv := range need {
		if !global(priv) && !(priv == "SELECT" && strings.Contains(c.grants, "SELECT ON `"+strings.ToUpper(c.p.dsn.DB)+"`")) {
			missing = append(missing, priv)
		}
	}
	if len(missing) > 0 {
		c.add("privileges", preflight.Block,
			fmt.Sprintf("%s lacks %s, which %s needs", c.user, strings.Join(missing, ", "), map[bool]string{true: "reading the snapshot and the binlog", false: "reading the snapshot"}[c.p.cfg.HasCDC()]),
			fmt.Sprintf("GRANT %s ON *.* TO %s;", strings.Join(missing, ", "), c.user))
	} else {
		c.ok("privileges", fmt.Sprintf("%s has %s", c.user, strings.Join(need, ", ")))
	}
	if c.p.cfg.HasSnapshot() && !global("RELOAD") {
		c.add("snapshot_lock", preflight.Warn,
			fmt.Sprintf("%s lacks RELOAD, so the snapshot cannot take its brief global read lock; it is then read slightly after its recorded binlog position and the change stream replays the difference (the target converges, but rows changed meanwhile pass through older values)", c.user),
			fmt.Sprintf("GRANT RELOAD ON *.* TO %s;", c.user))
	}
}

// binlog checks that the binlog exists and carries whole row images.
func (c *sourceCheck) binlog() {
	logBin, err := c.variable("log_bin")
	if err != nil {
		c.failed("log_bin", "reading log_bin", err)
		return
	}
	if !strings.EqualFold(logBin, "ON") && logBin != "1" {
		c.add("log_bin", preflight.Block, "the binary log is off, and mode "+c.p.cfg.Mode+" reads changes from it",
			"start the server with log_bin (in my.cnf [mysqld]: log_bin = mysql-bin, server_id = 1, binlog_format = ROW, binlog_row_image = FULL) and restart it; or set mode: snapshot")
		return
	}
	c.ok("log_bin", "the binary log is on")
	checks := []struct{ name, want, why string }{
		{"binlog_format", "ROW", "ferry reads row events; statement events carry no row values"},
		{"binlog_row_image", "FULL", "updates and deletes must carry every column, or the target would lose the columns left out"},
	}
	for _, ch := range checks {
		v, err := c.variable(ch.name)
		if err != nil {
			c.failed(ch.name, "reading "+ch.name, err)
			continue
		}
		if !strings.EqualFold(v, ch.want) {
			c.add(ch.name, preflight.Block, fmt.Sprintf("%s is %s: %s", ch.name, v, ch.why),
				fmt.Sprintf("SET GLOBAL %s = '%s'; and set %s = %s in my.cnf [mysqld] so a restart keeps it (sessions already connected keep the old value until they reconnect)", ch.name, ch.want, ch.name, ch.want))
			continue
		}
		c.ok(ch.name, ch.name+" is "+ch.want)
	}
	if v, err := c.variable("binlog_row_metadata"); err == nil && v != "" && !strings.EqualFold(v, "FULL") {
		c.add("binlog_row_metadata", preflight.Warn,
			fmt.Sprintf("binlog_row_metadata is %s: row events do not name their columns, so ferry matches them by position to the table's current layout, and a schema change it did not see stops the stream", v),
			"SET GLOBAL binlog_row_metadata = 'FULL'; (and in my.cnf [mysqld])")
	}
	if v, err := c.variable("server_id"); err == nil && v == fmt.Sprint(c.p.cfg.ServerID) {
		c.add("server_id", preflight.Block, fmt.Sprintf("the server's own server_id is %s, the id ferry's binlog reader would announce", v),
			"set sources[].serverID to a number no server or replica of this source uses")
	}
}

// gtid checks the GTID settings and defaultGTIDSet.
func (c *sourceCheck) gtid() {
	if c.p.flavor == gomysql.MySQLFlavor {
		mode, err := c.variable("gtid_mode")
		if err != nil {
			c.failed("gtid_mode", "reading gtid_mode", err)
			return
		}
		if !strings.EqualFold(mode, "ON") {
			c.add("gtid_mode", preflight.Warn,
				fmt.Sprintf("gtid_mode is %s: ferry resumes by binlog file and offset, which do not survive a failover to another server", mode),
				"SET GLOBAL enforce_gtid_consistency = ON; SET GLOBAL gtid_mode = OFF_PERMISSIVE; SET GLOBAL gtid_mode = ON_PERMISSIVE; (wait until no anonymous transactions remain) SET GLOBAL gtid_mode = ON; and set both in my.cnf")
		} else {
			c.ok("gtid_mode", "gtid_mode is ON: ferry resumes by GTID set")
		}
	} else {
		pos, err := c.variable("gtid_binlog_pos")
		if err != nil {
			c.failed("gtid", "reading gtid_binlog_pos", err)
			return
		}
		c.ok("gtid", fmt.Sprintf("MariaDB GTIDs (binlog position %q): ferry resumes by GTID set", pos))
	}
	if c.p.cfg.DefaultGTIDSet != "" {
		if !c.p.useGTID {
			c.add("defaultGTIDSet", preflight.Block, "defaultGTIDSet is set but the server has GTIDs off", "remove defaultGTIDSet, or turn GTIDs on (see gtid_mode)")
		} else if _, err := parseGTIDSet(c.p.flavor, c.p.cfg.DefaultGTIDSet); err != nil {
			format := "uuid:1-N[,uuid:1-N]"
			if c.p.flavor == gomysql.MariaDBFlavor {
				format = "domain-server-seq[,domain-server-seq]"
			}
			c.add("defaultGTIDSet", preflight.Block, fmt.Sprintf("defaultGTIDSet: %v", err), "write it as the server does: "+format)
		} else {
			c.ok("defaultGTIDSet", "defaultGTIDSet "+c.p.cfg.DefaultGTIDSet+" is where a first start begins (ignored once a position is saved)")
		}
	}
}

// tables checks every table the run would move and describes it for the
// target checks.
func (c *sourceCheck) tables() []preflight.Table {
	names := c.p.cfg.Tables
	if len(names) == 0 {
		c.p.mu.Lock()
		var err error
		names, err = listTables(c.p.meta, c.p.dsn.DB)
		c.p.mu.Unlock()
		if err != nil {
			c.add("tables", preflight.Block, err.Error(), "create the tables, or list them in sources[].tables")
			return nil
		}
	}
	var out []preflight.Table
	for _, n := range names {
		if _, rel, ok := strings.Cut(n, "."); ok {
			n = rel
		}
		c.p.mu.Lock()
		t, err := loadTable(c.p.meta, c.p.dsn.DB, n)
		c.p.mu.Unlock()
		if err != nil {
			fix := "create it, or remove it from sources[].tables"
			if strings.Contains(err.Error(), "no primary key") {
				fix = fmt.Sprintf("ALTER TABLE %s.%s ADD PRIMARY KEY (...);", quoteIdent(c.p.dsn.DB), quoteIdent(n))
			}
			c.add("table", preflight.Block, err.Error(), fix)
			continue
		}
		pt := preflight.Table{Name: t.Name, Key: t.keyCols, Changes: c.p.cfg.HasCDC()}
		bad := false
		for _, col := range t.Columns {
			pt.Columns = append(pt.Columns, preflight.Column{Name: col.Name, Type: col.ColumnType, NotNull: !col.Nullable})
			switch strings.ToLower(col.Charset) {
			case "", "utf8mb4", "utf8mb3", "utf8", "ascii", "latin1", "binary":
			default:
				if c.p.cfg.HasCDC() {
					bad = true
					c.add("charset", preflight.Block,
						fmt.Sprintf("%s.%s is in character set %s, which the change stream does not decode (utf8mb4, utf8mb3, ascii and latin1 are)", t.Name, col.Name, col.Charset),
						fmt.Sprintf("ALTER TABLE %s MODIFY %s %s CHARACTER SET utf8mb4;", t.Ident, quoteIdent(col.Name), col.ColumnType))
				}
			}
		}
		if !bad {
			c.ok("table", fmt.Sprintf("table %s: %d columns, primary key (%s)", t.Name, len(t.Columns), strings.Join(t.keyCols, ", ")))
		}
		out = append(out, pt)
	}
	return out
}
