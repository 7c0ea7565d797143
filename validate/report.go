package validate

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is the outcome of one validation run, written as JSON by --report.
type Report struct {
	Source   string    `json:"source"`
	Target   string    `json:"target"`
	RunID    string    `json:"runId"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Mode is "merge" (both sides read in key order) or "lookup" (source
	// scan, target lookups).
	Mode   string `json:"mode"`
	Live   bool   `json:"live"`
	Repair bool   `json:"repair"`
	// Equal is true when no difference remains: none was found, or every
	// one found was repaired and found equal once the target caught up.
	Equal  bool           `json:"equal"`
	Tables []*TableReport `json:"tables"`
	// FailuresToFetch is the cap on listed failures (counts are exact).
	FailuresToFetch int `json:"failuresToFetch"`
}

// TableReport is one table's counts and listed differences.
type TableReport struct {
	Table       string `json:"table"`
	TargetTable string `json:"targetTable"`
	SourceRows  int64  `json:"sourceRows"`
	TargetRows  int64  `json:"targetRows"`
	Missing     int64  `json:"missing"`
	Extraneous  int64  `json:"extraneous"`
	Mismatched  int64  `json:"mismatched"`
	// Ranges is the table's number of key ranges; RangesRead were read by
	// this run, RangesResumed had been finished by an earlier, interrupted
	// run of the same validation and were not read again.
	Ranges        int `json:"ranges"`
	RangesRead    int `json:"rangesRead"`
	RangesResumed int `json:"rangesResumed"`
	// Rechecked counts differences that disappeared when read again
	// (--live): rows that were in flight.
	Rechecked int64 `json:"rechecked,omitempty"`
	// Repaired counts rows whose repair was published (--repair);
	// Unrepaired those still different after the target caught up.
	Repaired   int64 `json:"repaired,omitempty"`
	Unrepaired int64 `json:"unrepaired,omitempty"`
	// Failures lists differences, up to failuresToFetch for the run.
	Failures        []Failure `json:"failures"`
	FailuresOmitted int64     `json:"failuresOmitted,omitempty"`
	// ExtraneousNotChecked is set in lookup mode when the target cannot be
	// scanned or the source looked up: rows only the target has are not
	// looked for.
	ExtraneousNotChecked bool `json:"extraneousNotChecked,omitempty"`
}

// Differences is the number of rows found different.
func (t *TableReport) Differences() int64 { return t.Missing + t.Extraneous + t.Mismatched }

// Failure kinds.
const (
	Missing    = "missing"    // in the source, not in the target
	Extraneous = "extraneous" // in the target, not in the source
	Mismatched = "mismatched" // in both, some column differs
)

// Failure is one row that differs.
type Failure struct {
	Kind    string       `json:"kind"`
	Key     []Cell       `json:"key"`
	Columns []ColumnDiff `json:"columns,omitempty"`
}

// Cell is a column and its value as text.
type Cell struct {
	Column string `json:"column"`
	Value  string `json:"value"`
}

// ColumnDiff is one column of a mismatched row with both values.
type ColumnDiff struct {
	Column string `json:"column"`
	// TargetColumn is the target's name when the column is renamed.
	TargetColumn string `json:"targetColumn,omitempty"`
	// What differs: "value", or the cell's "writetime" or "ttl".
	What   string `json:"what"`
	Source string `json:"source"`
	Target string `json:"target"`
}

func (f Failure) keyText() string {
	parts := make([]string, len(f.Key))
	for i, c := range f.Key {
		parts[i] = c.Column + "=" + c.Value
	}
	return strings.Join(parts, ", ")
}

// WriteJSON writes the report to path (temp file, then rename).
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the report: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing the report %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing the report %s: %w", path, err)
	}
	return nil
}

// Summary writes the human summary: a line per table, then each listed
// difference.
func (r *Report) Summary(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "validation of target %s against source %s (%s mode", r.Target, r.Source, r.Mode)
	if r.Live {
		fmt.Fprint(tw, ", live")
	}
	if r.Repair {
		fmt.Fprint(tw, ", repair")
	}
	fmt.Fprintf(tw, "), %s\n\n", r.Finished.Sub(r.Started).Round(time.Millisecond))
	fmt.Fprintln(tw, "TABLE\tSOURCE ROWS\tTARGET ROWS\tMISSING\tEXTRANEOUS\tMISMATCHED\tRANGES (RESUMED)")
	for _, t := range r.Tables {
		name := t.Table
		if t.TargetTable != "" && t.TargetTable != t.Table {
			name += " -> " + t.TargetTable
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d (%d)\n", name, t.SourceRows, t.TargetRows, t.Missing, t.Extraneous, t.Mismatched, t.Ranges, t.RangesResumed)
	}
	tw.Flush()
	for _, t := range r.Tables {
		for _, f := range t.Failures {
			fmt.Fprintf(w, "%s %s: %s", t.Table, f.Kind, f.keyText())
			for _, c := range f.Columns {
				col := c.Column
				if c.TargetColumn != "" {
					col += " (target " + c.TargetColumn + ")"
				}
				what := ""
				if c.What != "value" {
					what = " " + c.What
				}
				fmt.Fprintf(w, "\n    %s%s: source %s, target %s", col, what, c.Source, c.Target)
			}
			fmt.Fprintln(w)
		}
		if t.FailuresOmitted > 0 {
			fmt.Fprintf(w, "%s: %d more differences not listed (validation.failuresToFetch = %d)\n", t.Table, t.FailuresOmitted, r.FailuresToFetch)
		}
		if t.ExtraneousNotChecked {
			fmt.Fprintf(w, "%s: rows only the target has were not looked for (the target cannot be scanned, or the source cannot look rows up)\n", t.Table)
		}
		if t.Rechecked > 0 {
			fmt.Fprintf(w, "%s: %d differences were in flight and equal when read again\n", t.Table, t.Rechecked)
		}
		if t.Repaired > 0 {
			fmt.Fprintf(w, "%s: %d rows repaired, %d still different after the target caught up\n", t.Table, t.Repaired, t.Unrepaired)
		}
	}
	if r.Equal {
		fmt.Fprintln(w, "\nresult: EQUAL")
	} else {
		fmt.Fprintln(w, "\nresult: DIFFERENT")
	}
}
