package validate

import (
	"testing"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/streams/pb"
)

// putItem stores a schemaless row: the key, then attributes by name.
func (m *memSide) putItem(key *pb.Value, attrs ...any) {
	r := &pb.Row{Names: append([]string(nil), m.t.Columns...), Values: []*pb.Value{key}}
	for i := 0; i < len(attrs); i += 2 {
		r.Names = append(r.Names, attrs[i].(string))
		r.Values = append(r.Values, attrs[i+1].(*pb.Value))
	}
	m.mu.Lock()
	m.rows[keyString([]*pb.Value{key})] = r
	m.mu.Unlock()
}

// Schemaless rows are compared attribute by attribute, renames applied:
// a changed attribute, one the target lacks and one only the target has
// are each named.
func TestValidateSchemalessAttributes(t *testing.T) {
	tbl := Table{Name: "items", Key: []string{"pk"}, Columns: []string{"pk"}, Schemaless: true}
	src, dst := newMem(tbl), newMem(tbl)
	src.unordered, dst.unordered = true, true
	for i := range 30 {
		k := vText(string(rune('a' + i)))
		src.putItem(k, "color", vText("red"), "n", vDec("1.50"))
		// The target stores color as colour (a rename), the number in
		// another notation, and attributes in another order.
		dst.putItem(k, "colour", vText("red"), "n", vDec("1.5"))
	}
	o := opts()
	o.TargetCfg.Renames = []config.Rename{{Table: "items", From: "color", To: "colour"}}
	if rep := run(t, src, dst, o); !rep.Equal || rep.Mode != "lookup" {
		t.Fatalf("equal items reported different (%s): %s", rep.Mode, kinds(rep.Tables[0]))
	}
	dst.putItem(vText("b"), "colour", vText("blue"), "n", vDec("1.5"))
	dst.putItem(vText("c"), "n", vDec("1.5"), "extra", vNull())
	rep := run(t, src, dst, o)
	tr := rep.Tables[0]
	want := "mismatched pk=b color(red|blue); mismatched pk=c color(red|(absent)) extra((absent)|NULL)"
	if got := kinds(tr); got != want || tr.Mismatched != 2 {
		t.Errorf("failures:\n got %s\nwant %s", got, want)
	}
	for _, f := range tr.Failures {
		if f.Columns[0].TargetColumn != "colour" {
			t.Errorf("the renamed attribute's target name: %+v", f.Columns[0])
		}
	}
}
