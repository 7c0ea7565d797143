package validate

import (
	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/streams/pb"
)

// Absent stands for an attribute a schemaless row does not have, in a
// ColumnDiff (a NULL attribute is a value, "NULL").
const Absent = "(absent)"

// compareAttributes compares the attributes schemaless rows carry beyond
// the pair's columns, by name: each source attribute with the target's
// attribute of its renamed name, then the target's attributes no source
// attribute maps to.
func (e *engine) compareAttributes(p *pair, s, d *pb.Row) []ColumnDiff {
	type cell struct {
		v    *pb.Value
		seen bool
	}
	dst := map[string]*cell{}
	var dstOrder []string
	for i := len(p.dst.Columns); i < len(d.GetNames()); i++ {
		n := d.GetNames()[i]
		dst[n] = &cell{v: at(d.GetValues(), i)}
		dstOrder = append(dstOrder, n)
	}
	var out []ColumnDiff
	for i := len(p.src.Columns); i < len(s.GetNames()); i++ {
		n := s.GetNames()[i]
		a := at(s.GetValues(), i)
		to := renameAttribute(e.opts.TargetCfg.Renames, p.src.Name, p.dst.Name, n)
		renamed := ""
		if to != n {
			renamed = to
		}
		c, ok := dst[to]
		if !ok {
			out = append(out, ColumnDiff{Column: n, TargetColumn: renamed, What: "value", Source: short(Text(a)), Target: Absent})
			continue
		}
		c.seen = true
		if !e.opts.Tolerances.Equal(a, c.v) {
			out = append(out, ColumnDiff{Column: n, TargetColumn: renamed, What: "value", Source: short(Text(a)), Target: short(Text(c.v))})
		}
	}
	for _, n := range dstOrder {
		if c := dst[n]; !c.seen {
			out = append(out, ColumnDiff{Column: n, What: "value", Source: Absent, Target: short(Text(c.v))})
		}
	}
	return out
}

// renameAttribute maps a source attribute to its target name as the
// DynamoDB applier does: a rename applies when it names no table, the
// source table or the target table, and a later one overrides an earlier.
func renameAttribute(renames []config.Rename, src, dst, name string) string {
	to := name
	for _, r := range renames {
		if r.From == name && (r.Table == "" || r.Table == src || r.Table == dst) {
			to = r.To
		}
	}
	return to
}
