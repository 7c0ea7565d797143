// Package preflight is what `ferry check` is made of: findings with their
// fixes, the description of a table that source checks hand to target
// checks, and one small interface per connector role.
//
// Connectors must not import each other, so everything a source check tells
// a target check travels as a Table, defined here where both can see it.
package preflight

import (
	"context"
	"fmt"
	"strings"
)

// Severity says whether a finding stops the migration.
type Severity int

// Severities, in increasing order of gravity.
const (
	// OK: the check passed. Its message says what was found.
	OK Severity = iota
	// Warn: ferry can run, but something deserves a look (it will create an
	// object itself, or rows may behave differently from what one expects).
	Warn
	// Block: ferry would stop or lose data; `ferry check` exits 1.
	Block
)

// String is the lower-case name, as printed and as written in JSON.
func (s Severity) String() string {
	switch s {
	case OK:
		return "ok"
	case Warn:
		return "warn"
	case Block:
		return "block"
	}
	return fmt.Sprintf("severity(%d)", int(s))
}

// MarshalText writes the name rather than the number, so that JSON readers
// need not know the order of the constants.
func (s Severity) MarshalText() ([]byte, error) {
	switch s {
	case OK, Warn, Block:
		return []byte(s.String()), nil
	}
	return nil, fmt.Errorf("preflight: unknown severity %d", int(s))
}

// UnmarshalText reads a name written by MarshalText.
func (s *Severity) UnmarshalText(b []byte) error {
	switch strings.ToLower(string(b)) {
	case "ok":
		*s = OK
	case "warn":
		*s = Warn
	case "block":
		*s = Block
	default:
		return fmt.Errorf("preflight: unknown severity %q", b)
	}
	return nil
}

// Finding is the result of one check. A finding that is not OK always says
// how to fix it, in words and, where one exists, in the statement to run.
type Finding struct {
	// Component is what was checked: "source pg", "target dst", "nats".
	Component string `json:"component"`
	// Check is a short name, e.g. "wal_level", "table", "primary_key".
	Check    string   `json:"check"`
	Severity Severity `json:"severity"`
	// Message says what was found, naming the object (table, column, slot).
	Message string `json:"message"`
	// Fix says how to fix it; it may span lines (a CREATE TABLE). Empty
	// for OK findings.
	Fix string `json:"fix,omitempty"`
}

// NATSComponent is the component name of the event log's findings.
const NATSComponent = "nats"

// SourceComponent is the component name of a source's findings.
func SourceComponent(name string) string { return "source " + name }

// TargetComponent is the component name of a target's findings.
func TargetComponent(name string) string { return "target " + name }

// Column is one column of a source table.
type Column struct {
	Name string `json:"name"`
	// Type is the source's name for the column's type, as its DDL would
	// write it (for PostgreSQL, format_type(): "numeric(12,2)", "text[]").
	Type    string `json:"type"`
	NotNull bool   `json:"notNull,omitempty"`
}

// Table describes a source table that will be moved, for the target checks:
// they look for the table, its columns and its key on the target.
type Table struct {
	// Name is the table as events name it ("schema.table").
	Name    string   `json:"name"`
	Columns []Column `json:"columns"`
	// Key lists the source's key columns in key order: what events are
	// keyed and laned by. Empty when the source table has none (which the
	// source check reports as blocking).
	Key []string `json:"key,omitempty"`
	// Changes is true when the source streams changes, not only a
	// snapshot. Delete events then name a row by its Key columns alone,
	// so the target's key must be made of them.
	Changes bool `json:"changes,omitempty"`
}

// SourceChecker is implemented by producers that can check their source.
// Check reports everything the configured mode needs (settings, privileges,
// slots, each table) and returns the tables it would move, which the checks
// of the source's targets then look for. A connection that was opened is
// itself reported as an OK finding.
type SourceChecker interface {
	Check(ctx context.Context) ([]Finding, []Table)
}

// TargetChecker is implemented by targets that can check that they can take
// a source's tables: that each table, column and key is there, and that
// ferry's own state can be written. It reports the connection too.
type TargetChecker interface {
	CheckTables(ctx context.Context, source string, tables []Table) []Finding
}
