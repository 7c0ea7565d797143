package streams

import (
	"fmt"
	"unicode/utf8"

	"github.com/ferry-dev/ferry/streams/pb"
)

// checkUTF8 enforces what proto3 requires of every string field and what
// readers in other languages check, but the generated fast marshaller does
// not: valid UTF-8. Bytes that are not UTF-8 must travel in a bytes value.
func checkUTF8(events []*pb.Event) error {
	for _, e := range events {
		if err := checkEvent(e); err != nil {
			return err
		}
	}
	return nil
}

func checkEvent(e *pb.Event) error {
	for _, s := range [...]string{e.GetSource(), e.GetTable(), e.GetPositionText(), e.GetTxId()} {
		if !utf8.ValidString(s) {
			return fmt.Errorf("event of table %q: a name or position is not valid UTF-8", e.GetTable())
		}
	}
	for _, s := range e.GetUnchanged() {
		if !utf8.ValidString(s) {
			return fmt.Errorf("table %q: column name %q is not valid UTF-8", e.GetTable(), s)
		}
	}
	for _, r := range [...]*pb.Row{e.GetKey(), e.GetAfter(), e.GetBefore()} {
		if err := checkRow(r); err != nil {
			return fmt.Errorf("table %q: %w", e.GetTable(), err)
		}
	}
	return nil
}

func checkRow(r *pb.Row) error {
	for _, n := range r.GetNames() {
		if !utf8.ValidString(n) {
			return fmt.Errorf("column name %q is not valid UTF-8", n)
		}
	}
	for _, t := range r.GetTypes() {
		if !utf8.ValidString(t) {
			return fmt.Errorf("type name %q is not valid UTF-8", t)
		}
	}
	for i, v := range r.GetValues() {
		if err := checkValue(v); err != nil {
			name := "?"
			if i < len(r.GetNames()) {
				name = r.GetNames()[i]
			}
			return fmt.Errorf("column %s: %w", name, err)
		}
	}
	return nil
}

func checkValue(v *pb.Value) error {
	var s string
	switch k := v.GetKind().(type) {
	case *pb.Value_Text:
		s = k.Text
	case *pb.Value_Decimal:
		s = k.Decimal
	case *pb.Value_Json:
		s = k.Json
	case *pb.Value_Native:
		s = k.Native
	case *pb.Value_Array:
		return checkValues(k.Array.GetElements())
	case *pb.Value_List:
		return checkValues(k.List.GetValues())
	case *pb.Value_Set:
		return checkValues(k.Set.GetValues())
	case *pb.Value_Tuple:
		return checkValues(k.Tuple.GetValues())
	case *pb.Value_Map:
		if err := checkValues(k.Map.GetKeys()); err != nil {
			return err
		}
		return checkValues(k.Map.GetValues())
	case *pb.Value_Record:
		for _, n := range k.Record.GetNames() {
			if !utf8.ValidString(n) {
				return fmt.Errorf("field name %q is not valid UTF-8", n)
			}
		}
		return checkValues(k.Record.GetValues())
	case *pb.Value_Timestamp:
		s = k.Timestamp.GetZone()
	default:
		return nil
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("text value is not valid UTF-8 (bytes must travel as a bytes value)")
	}
	return nil
}

func checkValues(vs []*pb.Value) error {
	for _, e := range vs {
		if err := checkValue(e); err != nil {
			return err
		}
	}
	return nil
}
