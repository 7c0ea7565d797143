package mysql

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/prototext"

	"github.com/ferry-dev/ferry/streams/pb"
)

// row converts the values of the columns cols (indexes into t.Columns) of
// one source row. A value that cannot travel stops the run with the table,
// column and row key named.
func (p *producer) row(t *table, cols []int, raw []any, fromBinlog bool) (*pb.Row, error) {
	r := &pb.Row{Names: make([]string, len(cols)), Values: make([]*pb.Value, len(cols))}
	zeroNull := p.cfg.ZeroDates == "null"
	for i, ci := range cols {
		c := &t.Columns[ci]
		v, err := convert(c, raw[i], fromBinlog, zeroNull)
		if err != nil {
			key := p.rowKey(t, cols, raw, fromBinlog)
			if errors.Is(err, errZeroDate) {
				return nil, fmt.Errorf("source %s: %s.%s holds a zero date (%s) in row %s; PostgreSQL has no such date: fix the row, or set sources[].zeroDates: null to write NULL for zero dates",
					p.cfg.Name, t.Name, c.Name, asString(raw[i]), key)
			}
			return nil, fmt.Errorf("source %s: %s.%s (%s) in row %s: %v", p.cfg.Name, t.Name, c.Name, c.ColumnType, key, err)
		}
		r.Names[i], r.Values[i] = c.Name, v
	}
	return r, nil
}

// rowKey renders a row's key for messages, best effort.
func (p *producer) rowKey(t *table, cols []int, raw []any, fromBinlog bool) string {
	k := &pb.Row{}
	for _, ki := range t.Key {
		for i, ci := range cols {
			if ci == ki {
				v, err := convert(&t.Columns[ci], raw[i], fromBinlog, true)
				if err != nil {
					v = &pb.Value{Kind: &pb.Value_Native{Native: asString(raw[i])}}
				}
				k.Names = append(k.Names, t.Columns[ci].Name)
				k.Values = append(k.Values, v)
			}
		}
	}
	return keyString(k)
}

// keyOf extracts the key columns of t from a row holding them.
func keyOf(t *table, row *pb.Row) *pb.Row {
	k := &pb.Row{Names: t.keyCols, Values: make([]*pb.Value, 0, len(t.keyCols))}
	for _, name := range t.keyCols {
		for j, n := range row.GetNames() {
			if n == name {
				k.Values = append(k.Values, row.Values[j])
				break
			}
		}
	}
	return k
}

// keyString renders a key as name=value pairs.
func keyString(k *pb.Row) string {
	var b strings.Builder
	for i, n := range k.GetNames() {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(n + "=")
		if i >= len(k.Values) {
			b.WriteString("?")
			continue
		}
		switch v := k.Values[i].Kind.(type) {
		case *pb.Value_Int:
			b.WriteString(strconv.FormatInt(v.Int, 10))
		case *pb.Value_Uint:
			b.WriteString(strconv.FormatUint(v.Uint, 10))
		case *pb.Value_Text:
			b.WriteString(strconv.Quote(v.Text))
		case *pb.Value_Decimal:
			b.WriteString(v.Decimal)
		case *pb.Value_Native:
			b.WriteString(strconv.Quote(v.Native))
		default:
			b.WriteString(strings.TrimSpace(prototext.Format(k.Values[i])))
		}
	}
	return b.String()
}
