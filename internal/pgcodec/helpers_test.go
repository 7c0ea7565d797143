package pgcodec

import (
	"bytes"
	"math"
	"time"

	"github.com/ferry-dev/ferry/streams/pb"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// Types as ScanTypes would return them for the built-ins (OIDs are fixed),
// plus extension and user types with made-up OIDs above 16384.
var (
	tBool        = &Type{OID: 16, Name: "boolean", Base: "bool", Category: 'B', Delim: ','}
	tBytea       = &Type{OID: 17, Name: "bytea", Base: "bytea", Category: 'U', Delim: ','}
	tChar        = &Type{OID: 18, Name: `"char"`, Base: "char", Category: 'Z', Delim: ','}
	tName        = &Type{OID: 19, Name: "name", Base: "name", Category: 'S', Delim: ','}
	tInt8        = &Type{OID: 20, Name: "bigint", Base: "int8", Category: 'N', Delim: ','}
	tInt2        = &Type{OID: 21, Name: "smallint", Base: "int2", Category: 'N', Delim: ','}
	tInt2Vector  = &Type{OID: 22, Name: "int2vector", Base: "int2vector", Category: 'A', Delim: ',', Elem: tInt2}
	tInt4        = &Type{OID: 23, Name: "integer", Base: "int4", Category: 'N', Delim: ','}
	tText        = &Type{OID: 25, Name: "text", Base: "text", Category: 'S', Delim: ','}
	tOID         = &Type{OID: 26, Name: "oid", Base: "oid", Category: 'N', Delim: ','}
	tJSON        = &Type{OID: 114, Name: "json", Base: "json", Category: 'U', Delim: ','}
	tPoint       = &Type{OID: 600, Name: "point", Base: "point", Category: 'G', Delim: ','}
	tBox         = &Type{OID: 603, Name: "box", Base: "box", Category: 'G', Delim: ';'}
	tFloat4      = &Type{OID: 700, Name: "real", Base: "float4", Category: 'N', Delim: ','}
	tFloat8      = &Type{OID: 701, Name: "double precision", Base: "float8", Category: 'N', Delim: ','}
	tMoney       = &Type{OID: 790, Name: "money", Base: "money", Category: 'N', Delim: ','}
	tInet        = &Type{OID: 869, Name: "inet", Base: "inet", Category: 'I', Delim: ','}
	tBpchar      = &Type{OID: 1042, Name: "character(5)", Base: "bpchar", Category: 'S', Delim: ','}
	tVarchar     = &Type{OID: 1043, Name: "character varying(20)", Base: "varchar", Category: 'S', Delim: ','}
	tDate        = &Type{OID: 1082, Name: "date", Base: "date", Category: 'D', Delim: ','}
	tTime        = &Type{OID: 1083, Name: "time without time zone", Base: "time", Category: 'D', Delim: ','}
	tTimestamp   = &Type{OID: 1114, Name: "timestamp without time zone", Base: "timestamp", Category: 'D', Delim: ','}
	tTimestamptz = &Type{OID: 1184, Name: "timestamp with time zone", Base: "timestamptz", Category: 'D', Delim: ','}
	tInterval    = &Type{OID: 1186, Name: "interval", Base: "interval", Category: 'T', Delim: ','}
	tTimetz      = &Type{OID: 1266, Name: "time with time zone", Base: "timetz", Category: 'D', Delim: ','}
	tVarbit      = &Type{OID: 1562, Name: "bit varying", Base: "varbit", Category: 'V', Delim: ','}
	tNumeric     = &Type{OID: 1700, Name: "numeric", Base: "numeric", Category: 'N', Delim: ','}
	tUUID        = &Type{OID: 2950, Name: "uuid", Base: "uuid", Category: 'U', Delim: ','}
	tTSVector    = &Type{OID: 3614, Name: "tsvector", Base: "tsvector", Category: 'U', Delim: ','}
	tJSONB       = &Type{OID: 3802, Name: "jsonb", Base: "jsonb", Category: 'U', Delim: ','}
	tInt4Range   = &Type{OID: 3904, Name: "int4range", Base: "int4range", Category: 'R', Delim: ','}
	tCitext      = &Type{OID: 16390, Name: "citext", Base: "citext", Category: 'S', Delim: ','}
	tMood        = &Type{OID: 16400, Name: "mood", Base: "mood", Category: 'E', Delim: ','}
	// A user enum that happens to be called "date": must not decode as one.
	tFakeDate = &Type{OID: 16410, Name: "app.date", Base: "date", Category: 'E', Delim: ','}
	// Hand-made types without OIDs go by Base.
	tByNameInt = &Type{Name: "int4", Base: "int4"}

	tBoolArr     = arrayOf(tBool, 1000)
	tInt2Arr     = arrayOf(tInt2, 1005)
	tInt4Arr     = arrayOf(tInt4, 1007)
	tInt8Arr     = arrayOf(tInt8, 1016)
	tTextArr     = arrayOf(tText, 1009)
	tFloat8Arr   = arrayOf(tFloat8, 1022)
	tNumericArr  = arrayOf(tNumeric, 1231)
	tByteaArr    = arrayOf(tBytea, 1001)
	tTstzArr     = arrayOf(tTimestamptz, 1185)
	tDateArr     = arrayOf(tDate, 1182)
	tTimetzArr   = arrayOf(tTimetz, 1270)
	tIntervalArr = arrayOf(tInterval, 1187)
	tUUIDArr     = arrayOf(tUUID, 2951)
	tJSONBArr    = arrayOf(tJSONB, 3807)
	tBoxArr      = arrayOf(tBox, 1020)
	tMoodArr     = arrayOf(tMood, 16401)
)

func arrayOf(elem *Type, oid uint32) *Type {
	return &Type{OID: oid, Name: elem.Name + "[]", Base: "_" + elem.Base, Category: 'A', Elem: elem, Delim: elem.Delim}
}

func vNull() *pb.Value          { return &pb.Value{Kind: &pb.Value_Null{Null: true}} }
func vBool(b bool) *pb.Value    { return &pb.Value{Kind: &pb.Value_Bool{Bool: b}} }
func vInt(n int64) *pb.Value    { return &pb.Value{Kind: &pb.Value_Int{Int: n}} }
func vUint(n uint64) *pb.Value  { return &pb.Value{Kind: &pb.Value_Uint{Uint: n}} }
func vF64(f float64) *pb.Value  { return &pb.Value{Kind: &pb.Value_Float64{Float64: f}} }
func vF32(f float32) *pb.Value  { return &pb.Value{Kind: &pb.Value_Float32{Float32: f}} }
func vDec(s string) *pb.Value   { return &pb.Value{Kind: &pb.Value_Decimal{Decimal: s}} }
func vText(s string) *pb.Value  { return &pb.Value{Kind: &pb.Value_Text{Text: s}} }
func vBytes(b []byte) *pb.Value { return &pb.Value{Kind: &pb.Value_Bytes{Bytes: b}} }
func vJSON(s string) *pb.Value  { return &pb.Value{Kind: &pb.Value_Json{Json: s}} }
func vNat(s string) *pb.Value   { return &pb.Value{Kind: &pb.Value_Native{Native: s}} }
func vTime(us int64) *pb.Value  { return &pb.Value{Kind: &pb.Value_TimeUs{TimeUs: us}} }
func vUUID(b []byte) *pb.Value  { return &pb.Value{Kind: &pb.Value_Uuid{Uuid: b}} }

func vTS(us int64, zoned bool) *pb.Value {
	return &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: &pb.Timestamp{UnixUs: us, Zoned: zoned}}}
}

func vTSInf(sign int32, zoned bool) *pb.Value {
	return &pb.Value{Kind: &pb.Value_Timestamp{Timestamp: &pb.Timestamp{Infinity: sign, Zoned: zoned}}}
}

func vDate(days int32) *pb.Value {
	return &pb.Value{Kind: &pb.Value_Date{Date: &pb.Date{Days: days}}}
}

func vDateInf(sign int32) *pb.Value {
	return &pb.Value{Kind: &pb.Value_Date{Date: &pb.Date{Infinity: sign}}}
}

func vTimeTZ(us int64, off int32) *pb.Value {
	return &pb.Value{Kind: &pb.Value_TimeTz{TimeTz: &pb.TimeTZ{TimeUs: us, OffsetSeconds: off}}}
}

func vIv(months, days int32, micros int64) *pb.Value {
	return &pb.Value{Kind: &pb.Value_Interval{Interval: &pb.Interval{Months: months, Days: days, Micros: micros}}}
}

func vArr(dims, lbs []int32, elems ...*pb.Value) *pb.Value {
	return &pb.Value{Kind: &pb.Value_Array{Array: &pb.Array{Dims: dims, LowerBounds: lbs, Elements: elems}}}
}

// ts is a civil time (astronomical year: 1 BC is 0) in microseconds since
// the epoch, computed by package time as an independent oracle.
func ts(y, mo, d, h, mi, s, us int) int64 {
	return time.Date(y, time.Month(mo), d, h, mi, s, us*1000, time.UTC).UnixMicro()
}

func day(y, mo, d int) int32 {
	return int32(time.Date(y, time.Month(mo), d, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

func clock(h, mi, s, us int) int64 {
	return int64(h)*usPerHour + int64(mi)*usPerMin + int64(s)*usPerSec + int64(us)
}

// identical compares values bit for bit: proto.Equal would call -0 and 0
// equal, and this package must keep them apart.
func identical(a, b *pb.Value) bool {
	opts := proto.MarshalOptions{Deterministic: true}
	ma, err1 := opts.Marshal(a)
	mb, err2 := opts.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(ma, mb)
}

func show(v *pb.Value) string {
	if v == nil {
		return "<nil>"
	}
	return prototext.Format(v)
}

func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

var negZero = math.Copysign(0, -1)
