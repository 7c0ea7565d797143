package dynamo

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

func TestPlainDecimal(t *testing.T) {
	for in, want := range map[string]string{
		"0": "0", "-12.340": "-12.340", "+5": "5",
		"1.5E+3": "1500", "1.5e3": "1500", "-2e-2": "-0.02", "1E-5": "0.00001",
		"12345678901234567890123456789012345678": "12345678901234567890123456789012345678",
		"1.2345E2":                               "123.45", "0.00E0": "0.00", "123E-1": "12.3",
	} {
		got, err := PlainDecimal(in)
		if err != nil || got != want {
			t.Errorf("PlainDecimal(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "abc", "1e", "1.2.3", "--1", "1e99999"} {
		if got, err := PlainDecimal(bad); err == nil {
			t.Errorf("PlainDecimal(%q) = %q, want an error", bad, got)
		}
	}
}

// Every attribute type survives item → row → protobuf → row → item, and
// Row.types names the DynamoDB type of each attribute.
func TestRoundTrip(t *testing.T) {
	item := Item{
		"s":    &types.AttributeValueMemberS{Value: "x"},
		"n":    &types.AttributeValueMemberN{Value: "-0.12345678901234567890123456789012345678"},
		"b":    &types.AttributeValueMemberB{Value: []byte{}},
		"t":    &types.AttributeValueMemberBOOL{Value: false},
		"null": &types.AttributeValueMemberNULL{Value: true},
		"ss":   &types.AttributeValueMemberSS{Value: []string{"b", "a"}},
		"ns":   &types.AttributeValueMemberNS{Value: []string{"1", "2"}},
		"bs":   &types.AttributeValueMemberBS{Value: [][]byte{{1}, {2}}},
		"l": &types.AttributeValueMemberL{Value: []types.AttributeValue{
			&types.AttributeValueMemberSS{Value: []string{"z"}},
			&types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"k": &types.AttributeValueMemberBS{Value: [][]byte{{9}}}}},
		}},
		"m": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{}},
	}
	row, err := ToRow(item)
	if err != nil {
		t.Fatal(err)
	}
	wantTypes := []string{"B", "BS", "L", "M", "N", "NS", "NULL", "S", "SS", "BOOL"}
	gotTypes := map[string]string{}
	for i, n := range row.Names {
		gotTypes[n] = row.Types[i]
	}
	if !reflect.DeepEqual(gotTypes, map[string]string{"b": "B", "bs": "BS", "l": "L", "m": "M", "n": "N", "ns": "NS", "null": "NULL", "s": "S", "ss": "SS", "t": "BOOL"}) {
		t.Errorf("types = %v (want each of %v)", gotTypes, wantTypes)
	}
	data, err := streams.Encode(&pb.Event{Source: "s", Table: "t", Op: pb.Op_OP_READ, After: row})
	if err != nil {
		t.Fatal(err)
	}
	b, err := streams.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	back, err := FromRow(b.Events[0].After, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, item) {
		t.Errorf("round trip changed the item:\n got %#v\nwant %#v", back, item)
	}
	// An empty set (never from DynamoDB, but possible from another source)
	// needs its type name.
	if _, err := FromValue(&pb.Value{Kind: &pb.Value_Set{Set: &pb.Elements{}}}, ""); err == nil {
		t.Error("an empty set without a type name converted")
	}
	if av, err := FromValue(&pb.Value{Kind: &pb.Value_Set{Set: &pb.Elements{}}}, "NS"); err != nil || !reflect.DeepEqual(av, &types.AttributeValueMemberNS{Value: []string{}}) {
		t.Errorf("empty NS: %#v, %v", av, err)
	}
}

func TestScrub(t *testing.T) {
	a := config.AWSAccess{AccessKey: "AKIAEXAMPLE", SecretKey: "s3cr3t"}
	base := errors.New("signature for Credential=AKIAEXAMPLE/20240101 with s3cr3t failed")
	err := Scrub(fmt.Errorf("writing: %w", base), a)
	if strings.Contains(err.Error(), "AKIAEXAMPLE") || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("not scrubbed: %v", err)
	}
	if !errors.Is(err, base) {
		t.Error("scrubbing lost the wrapped error")
	}
	if Scrub(nil, a) != nil {
		t.Error("Scrub(nil) is not nil")
	}
}
