package streams

// Benchmarks behind the choice of protobuf binary as the wire format (see
// "Why protobuf" in docs/FORMAT.md). The same events are encoded four ways:
//
//   - protobuf: Encode/Decode, what ferry sends;
//   - protojson: the same pb messages in proto's canonical JSON mapping;
//   - json: encoding/json of a plain Go struct shaped the way a hand-made
//     JSON envelope would be (values as tagged unions, bytes as base64);
//   - cbor: the same plain struct as CBOR (a schemaless binary format).
//
// Run: go test -run '^$' -bench . -benchmem ./streams/
//
// ns/op is the figure to compare across formats. MB/s counts each format's
// own payload bytes, so a bigger format looks faster per byte than it is per
// event. bytes/msg is the payload size.

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/ferry-dev/ferry/streams/pb"
)

// ordersUpdate is one CDC update of an orders row: the full new row and a
// before-image holding the old key only (what pgoutput sends under REPLICA
// IDENTITY DEFAULT), shaped as the PostgreSQL source builds them.
func ordersUpdate() *pb.Event {
	const id = 90412345
	// About 200 bytes of jsonb, as PostgreSQL prints it (", " and ": ").
	attrs := `{"gift": false, "items": [{"qty": 2, "sku": "KB-2041", "unit_price": "349.5000"}, ` +
		`{"qty": 1, "sku": "MS-0117", "unit_price": "550.9900"}], "coupon": "SPRING25", "channel": "web", "shipping": "express"}`
	return &pb.Event{
		Source: "shop",
		Table:  "public.orders",
		Op:     pb.Op_OP_UPDATE,
		Key:    &pb.Row{Names: []string{"id"}, Values: []*pb.Value{valInt(id)}},
		After: &pb.Row{
			Names: []string{"id", "status", "total", "updated_at", "attrs"},
			Types: []string{"int8", "text", "numeric(18,4)", "timestamptz", "jsonb"},
			Values: []*pb.Value{
				valInt(id),
				valText("shipped"),
				valDec("1249.9900"),
				valTS(1767225600123456, true),
				{Kind: &pb.Value_Json{Json: attrs}},
			},
		},
		Before: &pb.Row{Names: []string{"id"}, Types: []string{"int8"}, Values: []*pb.Value{valInt(id)}},
		// 12 bytes, as the PostgreSQL source writes them: the commit LSN and
		// the event's index in its transaction, big-endian.
		Position:     []byte{0, 0, 0, 0x02, 0x5a, 0x3f, 0x1c, 0x28, 0, 0, 0, 3},
		PositionText: "2/5A3F1C28/3",
		CommitTimeUs: 1767225600124001,
		TxId:         "5123987",
		TxIndex:      3,
	}
}

// customersSnapshot is what one snapshot message carries: n rows of a
// 5-column table, shaped as the PostgreSQL source builds
// them (types in the full row, the key row naming its columns only).
func customersSnapshot(n int) []*pb.Event {
	names := []string{"id", "email", "full_name", "balance", "created_at"}
	types := []string{"int8", "text", "text", "numeric(12,2)", "timestamptz"}
	first := []string{"Ana", "Bartholomew", "Chen", "Dagny", "Émile", "Fatima", "Grzegorz", "Hiroshi"}
	last := []string{"Okafor", "Lindqvist", "Nakamura", "García Márquez", "O'Neill", "Kowalczyk"}
	events := make([]*pb.Event, n)
	for i := range events {
		id := valInt(int64(100000 + i))
		events[i] = &pb.Event{
			Source: "shop",
			Table:  "public.customers",
			Op:     pb.Op_OP_READ,
			Key:    &pb.Row{Names: names[:1], Values: []*pb.Value{id}},
			After: &pb.Row{Names: names, Types: types, Values: []*pb.Value{
				id,
				valText(fmt.Sprintf("customer.%06d@example.com", 100000+i)),
				valText(first[i%len(first)] + " " + last[i%len(last)]),
				valDec(fmt.Sprintf("%d.%02d", (i*7919)%100000, i%100)),
				valTS(1600000000000000+int64(i)*7_919_000_123, true),
			}},
		}
	}
	return events
}

// The plain-struct envelope: what a JSON format designed by hand, without a
// schema compiler, would look like for the same data.
type envBatch struct {
	Version uint32     `json:"version"`
	Events  []envEvent `json:"events"`
}

type envEvent struct {
	Source       string   `json:"source"`
	Table        string   `json:"table"`
	Op           string   `json:"op"`
	Key          *envRow  `json:"key,omitempty"`
	After        *envRow  `json:"after,omitempty"`
	Before       *envRow  `json:"before,omitempty"`
	Unchanged    []string `json:"unchanged,omitempty"`
	Position     []byte   `json:"position,omitempty"`
	PositionText string   `json:"position_text,omitempty"`
	CommitTimeUs int64    `json:"commit_time_us,omitempty"`
	TxID         string   `json:"tx_id,omitempty"`
	TxIndex      uint32   `json:"tx_index,omitempty"`
}

type envRow struct {
	Names  []string   `json:"names"`
	Types  []string   `json:"types,omitempty"`
	Values []envValue `json:"values"`
}

// envValue is a tagged union: exactly one field is set, e.g. {"int":42} or
// {"decimal":"1.50"}; none set is NULL. Pointers keep false/0/"" apart from
// absent.
type envValue struct {
	Null      bool          `json:"null,omitempty"`
	Bool      *bool         `json:"bool,omitempty"`
	Int       *int64        `json:"int,omitempty"`
	Uint      *uint64       `json:"uint,omitempty"`
	Float64   *float64      `json:"float64,omitempty"`
	Float32   *float32      `json:"float32,omitempty"`
	Decimal   *string       `json:"decimal,omitempty"`
	Text      *string       `json:"text,omitempty"`
	Bytes     *[]byte       `json:"bytes,omitempty"`
	Timestamp *envTimestamp `json:"timestamp,omitempty"`
	Date      *envDate      `json:"date,omitempty"`
	TimeUs    *int64        `json:"time_us,omitempty"`
	TimeTZ    *envTimeTZ    `json:"time_tz,omitempty"`
	Interval  *envInterval  `json:"interval,omitempty"`
	UUID      *[]byte       `json:"uuid,omitempty"`
	JSON      *string       `json:"json,omitempty"`
	Array     *envArray     `json:"array,omitempty"`
	Native    *string       `json:"native,omitempty"`
}

type envTimestamp struct {
	UnixUs   int64 `json:"unix_us"`
	Zoned    bool  `json:"zoned,omitempty"`
	Infinity int32 `json:"infinity,omitempty"`
}

type envDate struct {
	Days     int32 `json:"days"`
	Infinity int32 `json:"infinity,omitempty"`
}

type envTimeTZ struct {
	TimeUs        int64 `json:"time_us"`
	OffsetSeconds int32 `json:"offset_seconds"`
}

type envInterval struct {
	Months int32 `json:"months"`
	Days   int32 `json:"days"`
	Micros int64 `json:"micros"`
}

type envArray struct {
	Dims        []int32    `json:"dims,omitempty"`
	LowerBounds []int32    `json:"lower_bounds,omitempty"`
	Elements    []envValue `json:"elements,omitempty"`
}

func ptr[T any](v T) *T { return &v }

func envFromPB(b *pb.Batch) *envBatch {
	out := &envBatch{Version: b.GetVersion()}
	for _, e := range b.GetEvents() {
		out.Events = append(out.Events, envEvent{
			Source:       e.GetSource(),
			Table:        e.GetTable(),
			Op:           strings.TrimPrefix(e.GetOp().String(), "OP_"),
			Key:          envRowFromPB(e.GetKey()),
			After:        envRowFromPB(e.GetAfter()),
			Before:       envRowFromPB(e.GetBefore()),
			Unchanged:    e.GetUnchanged(),
			Position:     e.GetPosition(),
			PositionText: e.GetPositionText(),
			CommitTimeUs: e.GetCommitTimeUs(),
			TxID:         e.GetTxId(),
			TxIndex:      e.GetTxIndex(),
		})
	}
	return out
}

func envRowFromPB(r *pb.Row) *envRow {
	if r == nil {
		return nil
	}
	out := &envRow{Names: r.GetNames(), Types: r.GetTypes()}
	for _, v := range r.GetValues() {
		out.Values = append(out.Values, envValueFromPB(v))
	}
	return out
}

func envValueFromPB(v *pb.Value) envValue {
	switch k := v.GetKind().(type) {
	case *pb.Value_Null:
		return envValue{Null: k.Null}
	case *pb.Value_Bool:
		return envValue{Bool: ptr(k.Bool)}
	case *pb.Value_Int:
		return envValue{Int: ptr(k.Int)}
	case *pb.Value_Uint:
		return envValue{Uint: ptr(k.Uint)}
	case *pb.Value_Float64:
		return envValue{Float64: ptr(k.Float64)}
	case *pb.Value_Float32:
		return envValue{Float32: ptr(k.Float32)}
	case *pb.Value_Decimal:
		return envValue{Decimal: ptr(k.Decimal)}
	case *pb.Value_Text:
		return envValue{Text: ptr(k.Text)}
	case *pb.Value_Bytes:
		return envValue{Bytes: ptr(k.Bytes)}
	case *pb.Value_Timestamp:
		t := k.Timestamp
		return envValue{Timestamp: &envTimestamp{t.GetUnixUs(), t.GetZoned(), t.GetInfinity()}}
	case *pb.Value_Date:
		return envValue{Date: &envDate{k.Date.GetDays(), k.Date.GetInfinity()}}
	case *pb.Value_TimeUs:
		return envValue{TimeUs: ptr(k.TimeUs)}
	case *pb.Value_TimeTz:
		return envValue{TimeTZ: &envTimeTZ{k.TimeTz.GetTimeUs(), k.TimeTz.GetOffsetSeconds()}}
	case *pb.Value_Interval:
		i := k.Interval
		return envValue{Interval: &envInterval{i.GetMonths(), i.GetDays(), i.GetMicros()}}
	case *pb.Value_Uuid:
		return envValue{UUID: ptr(k.Uuid)}
	case *pb.Value_Json:
		return envValue{JSON: ptr(k.Json)}
	case *pb.Value_Array:
		a := &envArray{Dims: k.Array.GetDims(), LowerBounds: k.Array.GetLowerBounds()}
		for _, e := range k.Array.GetElements() {
			a.Elements = append(a.Elements, envValueFromPB(e))
		}
		return envValue{Array: a}
	case *pb.Value_Native:
		return envValue{Native: ptr(k.Native)}
	}
	return envValue{}
}

type benchSet struct {
	name  string
	batch *pb.Batch
}

func benchSets() []benchSet {
	return []benchSet{
		{"cdc_update", &pb.Batch{Version: FormatVersion, Events: []*pb.Event{ordersUpdate()}}},
		{"snapshot_500", &pb.Batch{Version: FormatVersion, Events: customersSnapshot(500)}},
	}
}

type benchCodec struct {
	name   string
	encode func() ([]byte, error)
	decode func([]byte) (any, error)
	// same reports whether a decoded value equals what was encoded, so the
	// benchmarks are known to time a lossless round trip.
	same func(any) bool
}

func benchCodecs(batch *pb.Batch) []benchCodec {
	env := envFromPB(batch)
	samePB := func(got any) bool { return proto.Equal(batch, got.(*pb.Batch)) }
	sameEnv := func(got any) bool { return reflect.DeepEqual(env, got) }
	return []benchCodec{
		{
			name:   "protobuf",
			encode: func() ([]byte, error) { return Encode(batch.GetEvents()...) },
			decode: func(p []byte) (any, error) { return Decode(p) },
			same:   samePB,
		},
		{
			name:   "protojson",
			encode: func() ([]byte, error) { return protojson.Marshal(batch) },
			decode: func(p []byte) (any, error) {
				var b pb.Batch
				err := protojson.Unmarshal(p, &b)
				return &b, err
			},
			same: samePB,
		},
		{
			name:   "json",
			encode: func() ([]byte, error) { return json.Marshal(env) },
			decode: func(p []byte) (any, error) {
				var e envBatch
				err := json.Unmarshal(p, &e)
				return &e, err
			},
			same: sameEnv,
		},
		{
			name:   "cbor",
			encode: func() ([]byte, error) { return cbor.Marshal(env) },
			decode: func(p []byte) (any, error) {
				var e envBatch
				err := cbor.Unmarshal(p, &e)
				return &e, err
			},
			same: sameEnv,
		},
	}
}

// TestBenchCodecsRoundTrip makes sure every benchmarked codec carries the
// benchmark's events without loss; a fast codec that drops data proves
// nothing.
func TestBenchCodecsRoundTrip(t *testing.T) {
	if n := len(ordersUpdate().GetAfter().GetValues()[4].GetJson()); n < 180 || n > 220 {
		t.Errorf("orders attrs is %d bytes, want about 200", n)
	}
	for _, set := range benchSets() {
		for _, c := range benchCodecs(set.batch) {
			payload, err := c.encode()
			if err != nil {
				t.Fatalf("%s/%s: encode: %v", set.name, c.name, err)
			}
			got, err := c.decode(payload)
			if err != nil {
				t.Fatalf("%s/%s: decode: %v", set.name, c.name, err)
			}
			if !c.same(got) {
				t.Errorf("%s/%s: round trip changed the events", set.name, c.name)
			}
		}
	}
}

// TestPlainJSONCannotCarryNaN records a reason for a schema'd binary format:
// a float8 NaN or infinity, legal in PostgreSQL, has no encoding/json form
// at all, where protobuf carries its exact bits (TestRoundTripEveryKind).
func TestPlainJSONCannotCarryNaN(t *testing.T) {
	for _, f := range []float64{math.NaN(), math.Inf(1)} {
		if _, err := json.Marshal(envValue{Float64: ptr(f)}); err == nil {
			t.Errorf("encoding/json accepted %v; update docs/FORMAT.md", f)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, set := range benchSets() {
		for _, c := range benchCodecs(set.batch) {
			b.Run(set.name+"/"+c.name, func(b *testing.B) {
				payload, err := c.encode()
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(len(payload)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.encode(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(payload)), "bytes/msg")
			})
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, set := range benchSets() {
		for _, c := range benchCodecs(set.batch) {
			b.Run(set.name+"/"+c.name, func(b *testing.B) {
				payload, err := c.encode()
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(int64(len(payload)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := c.decode(payload); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(payload)), "bytes/msg")
			})
		}
	}
}
