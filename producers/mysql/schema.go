package mysql

import (
	"fmt"
	"strings"

	"github.com/go-mysql-org/go-mysql/client"

	"github.com/ferry-dev/ferry/streams"
)

// column is one source column as information_schema describes it.
type column struct {
	Name       string
	DataType   string // lower case: int, varchar, datetime, enum, ...
	ColumnType string // full: "int(10) unsigned", "enum('a','b')"
	Unsigned   bool
	Charset    string // character set of text columns ("" for others)
	Scale      int    // decimal scale
	Labels     []string
	// Virtual is a generated column the server computes on read (not
	// stored); MariaDB leaves it out of row images.
	Virtual  bool
	Nullable bool
}

// table is a source table: its columns in ordinal order and its key.
type table struct {
	Name    string // as events name it: the bare table name
	Ident   string // `db`.`table`
	Columns []column
	Key     []int
	EstRows int64
	names   []string
	keyCols []string
	// stored lists the indexes of columns that row images carry.
	stored []int
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// listTables returns the base tables of db, sorted.
func listTables(c *client.Conn, db string) ([]string, error) {
	r, err := c.Execute(`SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME`, db)
	if err != nil {
		return nil, fmt.Errorf("listing tables of %s: %w", db, err)
	}
	var out []string
	for i := range r.RowNumber() {
		s, _ := r.GetString(i, 0)
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("database %s has no tables to move: set sources[].tables or create tables", db)
	}
	return out, nil
}

// loadTable reads a table's columns and primary key.
func loadTable(c *client.Conn, db, name string) (*table, error) {
	r, err := c.Execute(`SELECT COLUMN_NAME, LOWER(DATA_TYPE), COLUMN_TYPE, COALESCE(CHARACTER_SET_NAME, ''),
		COALESCE(NUMERIC_SCALE, 0), EXTRA, IS_NULLABLE, COLUMN_KEY
		FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`, db, name)
	if err != nil {
		return nil, fmt.Errorf("reading columns of %s: %w", name, err)
	}
	if r.RowNumber() == 0 {
		return nil, fmt.Errorf("table %s does not exist in database %s", name, db)
	}
	t := &table{Name: name, Ident: quoteIdent(db) + "." + quoteIdent(name)}
	for i := range r.RowNumber() {
		var col column
		col.Name, _ = r.GetString(i, 0)
		col.DataType, _ = r.GetString(i, 1)
		col.ColumnType, _ = r.GetString(i, 2)
		col.Charset, _ = r.GetString(i, 3)
		scale, _ := r.GetInt(i, 4)
		col.Scale = int(scale)
		extra, _ := r.GetString(i, 5)
		nullable, _ := r.GetString(i, 6)
		col.Nullable = nullable == "YES"
		col.Unsigned = strings.Contains(strings.ToLower(col.ColumnType), "unsigned")
		col.Virtual = strings.Contains(strings.ToUpper(extra), "VIRTUAL")
		if col.DataType == "enum" || col.DataType == "set" {
			col.Labels, err = parseLabels(col.ColumnType)
			if err != nil {
				return nil, fmt.Errorf("column %s.%s: %w", name, col.Name, err)
			}
		}
		t.Columns = append(t.Columns, col)
	}
	kr, err := c.Execute(`SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE
		WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND CONSTRAINT_NAME = 'PRIMARY' ORDER BY ORDINAL_POSITION`, db, name)
	if err != nil {
		return nil, fmt.Errorf("reading primary key of %s: %w", name, err)
	}
	for i := range kr.RowNumber() {
		k, _ := kr.GetString(i, 0)
		for j, col := range t.Columns {
			if col.Name == k {
				t.Key = append(t.Key, j)
			}
		}
	}
	if len(t.Key) == 0 {
		return nil, fmt.Errorf("table %s has no primary key: ferry needs one to keep each row's changes in order and to write idempotently; add one (ALTER TABLE %s ADD PRIMARY KEY (...))", name, t.Ident)
	}
	for i, col := range t.Columns {
		t.names = append(t.names, col.Name)
		if !col.Virtual {
			t.stored = append(t.stored, i)
		}
	}
	for _, k := range t.Key {
		t.keyCols = append(t.keyCols, t.Columns[k].Name)
	}
	er, err := c.Execute(`SELECT COALESCE(TABLE_ROWS, 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?`, db, name)
	if err == nil && er.RowNumber() > 0 {
		n, _ := er.GetInt(0, 0)
		t.EstRows = n
	}
	return t, nil
}

// parseLabels reads the quoted labels of "enum('a','b”c')" or "set(...)".
func parseLabels(ct string) ([]string, error) {
	open := strings.IndexByte(ct, '(')
	if open < 0 || !strings.HasSuffix(ct, ")") {
		return nil, fmt.Errorf("cannot read the labels of %q", ct)
	}
	s := ct[open+1 : len(ct)-1]
	var out []string
	for i := 0; i < len(s); {
		if s[i] != '\'' {
			return nil, fmt.Errorf("cannot read the labels of %q", ct)
		}
		var b strings.Builder
		i++
		for i < len(s) {
			if s[i] == '\'' {
				if i+1 < len(s) && s[i+1] == '\'' {
					b.WriteByte('\'')
					i += 2
					continue
				}
				break
			}
			if s[i] == '\\' && i+1 < len(s) {
				b.WriteByte(s[i+1])
				i += 2
				continue
			}
			b.WriteByte(s[i])
			i++
		}
		out = append(out, b.String())
		i++ // closing quote
		if i < len(s) && s[i] == ',' {
			i++
		}
	}
	return out, nil
}

// schemaRecord is the table's layout as saved in KV.
func (t *table) schemaRecord() streams.TableSchema {
	ts := streams.TableSchema{Key: t.keyCols}
	for _, c := range t.Columns {
		ts.Columns = append(ts.Columns, streams.ColumnSchema{Name: c.Name, Type: c.ColumnType, NotNull: !c.Nullable})
	}
	return ts
}
