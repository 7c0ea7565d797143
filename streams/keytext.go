package streams

import (
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/prototext"

	"github.com/ferry-dev/ferry/streams/pb"
)

// KeyText renders a row key as col=value pairs, for messages that must
// name the row they are about (a dead letter, a row too large to publish).
func KeyText(k *pb.Row) string {
	var b strings.Builder
	for i, n := range k.GetNames() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
		b.WriteByte('=')
		if i < len(k.GetValues()) {
			b.WriteString(ValueText(k.GetValues()[i]))
		}
	}
	return b.String()
}

// ValueText is a short readable rendering of a value for messages.
func ValueText(v *pb.Value) string {
	switch k := v.GetKind().(type) {
	case nil, *pb.Value_Null:
		return "NULL"
	case *pb.Value_Int:
		return strconv.FormatInt(k.Int, 10)
	case *pb.Value_Uint:
		return strconv.FormatUint(k.Uint, 10)
	case *pb.Value_Text:
		return strconv.Quote(k.Text)
	case *pb.Value_Decimal:
		return k.Decimal
	case *pb.Value_Native:
		return strconv.Quote(k.Native)
	case *pb.Value_Uuid:
		return fmt.Sprintf("%x", k.Uuid)
	case *pb.Value_Bytes:
		return fmt.Sprintf("\\x%x", k.Bytes)
	}
	return strings.TrimSpace(prototext.Format(v))
}
