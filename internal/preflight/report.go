package preflight

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"unicode/utf8"
)

// Count returns how many findings there are of each severity.
func Count(fs []Finding) (ok, warn, block int) {
	for _, f := range fs {
		switch f.Severity {
		case OK:
			ok++
		case Warn:
			warn++
		default:
			// An unknown severity counts as blocking: better a false alarm
			// than a migration started on a check nobody understood.
			block++
		}
	}
	return ok, warn, block
}

// Blocking reports whether any finding blocks the migration.
func Blocking(fs []Finding) bool {
	_, _, b := Count(fs)
	return b > 0
}

// ExitCode is `ferry check`'s exit code for the findings: 1 when anything
// blocks, else 0 (warnings alone do not fail the check, or a pipeline that
// will merely create its own publication could never pass).
func ExitCode(fs []Finding) int {
	if Blocking(fs) {
		return 1
	}
	return 0
}

// Summary is the last line of the report.
func Summary(fs []Finding) string {
	ok, warn, block := Count(fs)
	counts := fmt.Sprintf("%d ok, %d %s, %d blocking", ok, warn, plural(warn, "warning", "warnings"), block)
	if block > 0 {
		return counts + ": ferry cannot run until the blocking findings are fixed"
	}
	if warn > 0 {
		return counts + ": nothing blocks the migration; read the warnings"
	}
	return counts + ": nothing blocks the migration"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Quantity writes n with the word's singular or plural form: "1 column",
// "3 columns".
func Quantity(n int, one, many string) string {
	return fmt.Sprintf("%d %s", n, plural(n, one, many))
}

// messageWidth is where long messages wrap, so that the fix column stays
// on the screen. Fixes are never wrapped: a statement must stay copyable.
const messageWidth = 64

// Write prints the findings as a table (component, check, status, message,
// fix) followed by the summary line. A multi-line fix or a wrapped message
// continues on the following rows, under its column.
func Write(w io.Writer, fs []Finding) error {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COMPONENT\tCHECK\tSTATUS\tMESSAGE\tFIX")
	for _, f := range fs {
		msg := wrap(cell(f.Message), messageWidth)
		var fix []string
		if f.Fix != "" {
			for _, l := range strings.Split(strings.TrimRight(f.Fix, "\n"), "\n") {
				fix = append(fix, strings.ReplaceAll(l, "\t", "  "))
			}
		}
		for i := range max(len(msg), len(fix), 1) {
			var comp, check, status string
			if i == 0 {
				comp, check, status = cell(f.Component), cell(f.Check), strings.ToUpper(f.Severity.String())
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", comp, check, status, line(msg, i), line(fix, i))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(&b, "\n%s\n", Summary(fs))
	_, err := w.Write(b.Bytes())
	return err
}

// WriteJSON prints the findings as a JSON array (an empty one when there
// are none, never null).
func WriteJSON(w io.Writer, fs []Finding) error {
	if fs == nil {
		fs = []Finding{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(fs)
}

// cell makes text fit one table cell: tabs would start a new column and
// line breaks a new row.
func cell(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func line(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return ""
}

// wrap breaks s into lines of at most width bytes at spaces. A word longer
// than width (a DSN in a connection error) is cut into pieces of width,
// which would otherwise widen the whole table; the JSON output keeps the
// message whole.
func wrap(s string, width int) []string {
	var out []string
	cur := ""
	for _, w := range strings.Fields(s) {
		for len(w) > width {
			if cur != "" {
				out = append(out, cur)
				cur = ""
			}
			cut := width
			for cut > 0 && !utf8.RuneStart(w[cut]) {
				cut--
			}
			out = append(out, w[:cut])
			w = w[cut:]
		}
		switch {
		case cur == "":
			cur = w
		case len(cur)+1+len(w) <= width:
			cur += " " + w
		default:
			out = append(out, cur)
			cur = w
		}
	}
	if cur != "" {
		out = append(out, cur)
	}
	return out
}
