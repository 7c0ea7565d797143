package mysql

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	alterRE   = regexp.MustCompile(`(?is)^ALTER\s+(?:ONLINE\s+|IGNORE\s+)*TABLE\s+(?:IF\s+EXISTS\s+)?((?:` + "`[^`]+`" + `|\w+)(?:\s*\.\s*(?:` + "`[^`]+`" + `|\w+))?)\s*(.*)$`)
	tableRE   = regexp.MustCompile(`(?is)^(?:DROP|TRUNCATE|RENAME)\s+(?:TEMPORARY\s+)?TABLES?\s+(?:IF\s+EXISTS\s+)?(.*)$`)
	commentRE = regexp.MustCompile(`(?s)/\*.*?\*/`)
)

// ddl follows a statement from the binlog. ADD COLUMN and DROP COLUMN (and
// index changes) on a table of this pipeline reload its layout, which is
// saved in KV, and the stream goes on; any other change to such a table
// stops the stream with the statement named, at the position before it.
func (c *cdc) ddl(schema, q string) error {
	stmt := strings.TrimSpace(commentRE.ReplaceAllString(q, " "))
	if m := alterRE.FindStringSubmatch(stmt); m != nil {
		db, name := splitQualified(m[1], schema)
		if db != c.p.dsn.DB || c.p.tables[name] == nil {
			return nil
		}
		if !layoutChangeSupported(m[2]) {
			return fmt.Errorf("source %s: unsupported schema change on %s: %q; ferry follows ALTER TABLE … ADD COLUMN / DROP COLUMN only. The position before it is saved: apply the change to the target, then move the table with a new source (snapshot) or ask for support", c.p.cfg.Name, name, q)
		}
		if err := c.p.reload(c.ctx, name); err != nil {
			return err
		}
		c.p.log.Info("table layout changed on the source", "table", name, "columns", len(c.p.tables[name].Columns))
		return nil
	}
	if m := tableRE.FindStringSubmatch(stmt); m != nil {
		for _, part := range splitTop(m[1]) {
			part = strings.TrimSpace(part)
			if i := strings.IndexAny(part, " \t\n"); i >= 0 && strings.HasPrefix(strings.ToUpper(stmt), "RENAME") {
				part = part[:i] // "a TO b"
			}
			db, name := splitQualified(part, schema)
			if db == c.p.dsn.DB && c.p.tables[name] != nil {
				return fmt.Errorf("source %s: unsupported schema change on %s: %q; ferry does not follow DROP, TRUNCATE or RENAME of a table it moves. The position before it is saved", c.p.cfg.Name, name, q)
			}
		}
	}
	return nil
}

// layoutChangeSupported says whether every clause of an ALTER TABLE is one
// ferry follows: ADD/DROP of columns, indexes and keys other than the
// primary key, and column defaults.
func layoutChangeSupported(spec string) bool {
	for _, clause := range splitTop(spec) {
		f := strings.Fields(strings.ReplaceAll(strings.ToUpper(clause), "=", " "))
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "ADD", "DROP":
			if len(f) > 1 && (f[1] == "PRIMARY" || f[1] == "PARTITION") {
				return false
			}
		case "ALTER":
			// ALTER [COLUMN] c SET DEFAULT / DROP DEFAULT
			if !strings.Contains(strings.ToUpper(clause), "DEFAULT") {
				return false
			}
		case "ALGORITHM", "LOCK":
		default:
			return false
		}
	}
	return true
}

// splitTop splits on commas outside parentheses and quotes.
func splitTop(s string) []string {
	var out []string
	depth, start := 0, 0
	var quote byte
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case quote != 0:
			if ch == quote {
				quote = 0
			}
		case ch == '\'' || ch == '"' || ch == '`':
			quote = ch
		case ch == '(':
			depth++
		case ch == ')':
			depth--
		case ch == ',' && depth == 0:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func unquote(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '`' && s[len(s)-1] == '`' {
		return strings.ReplaceAll(s[1:len(s)-1], "``", "`")
	}
	return s
}

// splitQualified reads "db.t", "`db`.`t`" or "t" (in schema).
func splitQualified(s, schema string) (db, name string) {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "."); i >= 0 && !strings.Contains(s[i:], "`") || strings.Contains(s, "`.`") {
		if j := strings.Index(s, "`.`"); j >= 0 {
			return unquote(s[:j+1]), unquote(s[j+2:])
		}
		return unquote(s[:i]), unquote(s[i+1:])
	}
	return schema, unquote(s)
}
