package postgres

import (
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/streams/pb"
)

func TestConvertFor(t *testing.T) {
	i := func(n int64) *pb.Value { return &pb.Value{Kind: &pb.Value_Int{Int: n}} }
	u := func(n uint64) *pb.Value { return &pb.Value{Kind: &pb.Value_Uint{Uint: n}} }
	for _, c := range []struct {
		cast    string
		v       *pb.Value
		want    string
		handled bool
		err     string
	}{
		{"boolean", i(1), "t", true, ""},
		{"boolean", i(0), "f", true, ""},
		{"boolean", u(1), "t", true, ""},
		{"boolean", i(5), "", false, "does not fit a boolean"},
		{"boolean", i(-1), "", false, "does not fit a boolean"},
		{"numeric", u(18446744073709551615), "18446744073709551615", true, ""},
		{"bigint", u(18446744073709551615), "", false, "out of range for type bigint"},
		{"bigint", u(9223372036854775807), "9223372036854775807", true, ""},
		{"smallint", i(40000), "", false, "out of range for type smallint"},
		{"integer", u(4294967295), "", false, "out of range"},
		{"double precision", i(1 << 53), "9007199254740992", true, ""},
		{"double precision", i(1<<53 + 1), "", false, "exactly"},
		{"real", i(1<<24 + 1), "", false, "exactly"},
		{"date", i(5), "", false, ""},
		{"text", &pb.Value{Kind: &pb.Value_Bytes{Bytes: []byte("héllo")}}, "héllo", true, ""},
		{"text", &pb.Value{Kind: &pb.Value_Bytes{Bytes: []byte{0xff, 0x00}}}, "", false, "not UTF-8"},
		{"bytea", &pb.Value{Kind: &pb.Value_Text{Text: `a\b`}}, `\x615c62`, true, ""},
		{"bytea", &pb.Value{Kind: &pb.Value_Bytes{Bytes: []byte{1}}}, "", false, ""},
	} {
		got, handled, err := convertFor(c.cast, c.v)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s %v: err %v, want %q", c.cast, c.v, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want || handled != c.handled {
			t.Errorf("%s %v = %q, %v, %v; want %q, %v", c.cast, c.v, got, handled, err, c.want, c.handled)
		}
	}
	// A rejected value names its column.
	if _, err := encode(column{name: "flag", cast: "boolean"}, i(7)); err == nil || !strings.Contains(err.Error(), "column flag") {
		t.Errorf("encode error %v does not name the column", err)
	}
}
