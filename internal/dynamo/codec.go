// Package dynamo is what the DynamoDB source and the DynamoDB/Alternator
// target share: the AWS client settings, the table description record, and
// the conversion of DynamoDB attribute values to ferry's event
// values and back, losslessly: S → text, N → decimal (the digits as
// DynamoDB sends them, never through a float), B → bytes, BOOL → bool,
// NULL → null, SS/NS/BS → set (of text, decimal, bytes), L → list,
// M → map with text keys, nested to any depth. The kinds alone say which
// DynamoDB type a value was (a set's element kind names SS, NS or BS);
// Row.types repeats the top-level type names for readers.
package dynamo

import (
	"fmt"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ferry-dev/ferry/streams/pb"
)

// Item is a DynamoDB item as both SDK clients (dynamodb, dynamodbstreams)
// are converted to.
type Item = map[string]types.AttributeValue

// ToRow converts an item into a row whose attributes are sorted by name,
// with the DynamoDB type of each in types.
func ToRow(item Item) (*pb.Row, error) {
	names := make([]string, 0, len(item))
	for n := range item {
		names = append(names, n)
	}
	sort.Strings(names)
	row := &pb.Row{Names: names, Types: make([]string, len(names)), Values: make([]*pb.Value, len(names))}
	for i, n := range names {
		v, t, err := ToValue(item[n])
		if err != nil {
			return nil, fmt.Errorf("attribute %s: %w", n, err)
		}
		row.Values[i], row.Types[i] = v, t
	}
	return row, nil
}

// ToValue converts one attribute value and names its DynamoDB type.
func ToValue(av types.AttributeValue) (*pb.Value, string, error) {
	switch a := av.(type) {
	case *types.AttributeValueMemberS:
		return &pb.Value{Kind: &pb.Value_Text{Text: a.Value}}, "S", nil
	case *types.AttributeValueMemberN:
		d, err := PlainDecimal(a.Value)
		if err != nil {
			return nil, "", err
		}
		return &pb.Value{Kind: &pb.Value_Decimal{Decimal: d}}, "N", nil
	case *types.AttributeValueMemberB:
		return &pb.Value{Kind: &pb.Value_Bytes{Bytes: nonNil(a.Value)}}, "B", nil
	case *types.AttributeValueMemberBOOL:
		return &pb.Value{Kind: &pb.Value_Bool{Bool: a.Value}}, "BOOL", nil
	case *types.AttributeValueMemberNULL:
		return &pb.Value{Kind: &pb.Value_Null{Null: true}}, "NULL", nil
	case *types.AttributeValueMemberSS:
		el := make([]*pb.Value, len(a.Value))
		for i, s := range a.Value {
			el[i] = &pb.Value{Kind: &pb.Value_Text{Text: s}}
		}
		return &pb.Value{Kind: &pb.Value_Set{Set: &pb.Elements{Values: el}}}, "SS", nil
	case *types.AttributeValueMemberNS:
		el := make([]*pb.Value, len(a.Value))
		for i, s := range a.Value {
			d, err := PlainDecimal(s)
			if err != nil {
				return nil, "", err
			}
			el[i] = &pb.Value{Kind: &pb.Value_Decimal{Decimal: d}}
		}
		return &pb.Value{Kind: &pb.Value_Set{Set: &pb.Elements{Values: el}}}, "NS", nil
	case *types.AttributeValueMemberBS:
		el := make([]*pb.Value, len(a.Value))
		for i, b := range a.Value {
			el[i] = &pb.Value{Kind: &pb.Value_Bytes{Bytes: nonNil(b)}}
		}
		return &pb.Value{Kind: &pb.Value_Set{Set: &pb.Elements{Values: el}}}, "BS", nil
	case *types.AttributeValueMemberL:
		el := make([]*pb.Value, len(a.Value))
		for i, x := range a.Value {
			v, _, err := ToValue(x)
			if err != nil {
				return nil, "", fmt.Errorf("[%d]: %w", i, err)
			}
			el[i] = v
		}
		return &pb.Value{Kind: &pb.Value_List{List: &pb.Elements{Values: el}}}, "L", nil
	case *types.AttributeValueMemberM:
		keys := make([]string, 0, len(a.Value))
		for k := range a.Value {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		m := &pb.Map{Keys: make([]*pb.Value, len(keys)), Values: make([]*pb.Value, len(keys))}
		for i, k := range keys {
			v, _, err := ToValue(a.Value[k])
			if err != nil {
				return nil, "", fmt.Errorf(".%s: %w", k, err)
			}
			m.Keys[i] = &pb.Value{Kind: &pb.Value_Text{Text: k}}
			m.Values[i] = v
		}
		return &pb.Value{Kind: &pb.Value_Map{Map: m}}, "M", nil
	}
	return nil, "", fmt.Errorf("unsupported DynamoDB attribute value %T", av)
}

// nonNil keeps an empty binary value set (a kind with presence), not NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// FromRow converts a row back into an item; rename maps attribute names
// (nil: none).
func FromRow(row *pb.Row, rename func(string) string) (Item, error) {
	item := make(Item, len(row.GetNames()))
	for i, n := range row.GetNames() {
		typ := ""
		if i < len(row.GetTypes()) {
			typ = row.GetTypes()[i]
		}
		av, err := FromValue(row.GetValues()[i], typ)
		if err != nil {
			return nil, fmt.Errorf("attribute %s: %w", n, err)
		}
		if rename != nil {
			n = rename(n)
		}
		item[n] = av
	}
	return item, nil
}

// FromValue converts one value back; typ (may be empty) is its DynamoDB
// type name, needed only for an empty set.
func FromValue(v *pb.Value, typ string) (types.AttributeValue, error) {
	switch k := v.GetKind().(type) {
	case nil, *pb.Value_Null:
		return &types.AttributeValueMemberNULL{Value: true}, nil
	case *pb.Value_Text:
		return &types.AttributeValueMemberS{Value: k.Text}, nil
	case *pb.Value_Decimal:
		return &types.AttributeValueMemberN{Value: k.Decimal}, nil
	case *pb.Value_Int:
		return &types.AttributeValueMemberN{Value: fmt.Sprint(k.Int)}, nil
	case *pb.Value_Uint:
		return &types.AttributeValueMemberN{Value: fmt.Sprint(k.Uint)}, nil
	case *pb.Value_Bytes:
		return &types.AttributeValueMemberB{Value: k.Bytes}, nil
	case *pb.Value_Bool:
		return &types.AttributeValueMemberBOOL{Value: k.Bool}, nil
	case *pb.Value_Set:
		return fromSet(k.Set.GetValues(), typ)
	case *pb.Value_List:
		out := make([]types.AttributeValue, len(k.List.GetValues()))
		for i, e := range k.List.GetValues() {
			av, err := FromValue(e, "")
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			out[i] = av
		}
		return &types.AttributeValueMemberL{Value: out}, nil
	case *pb.Value_Map:
		out := make(map[string]types.AttributeValue, len(k.Map.GetKeys()))
		for i, key := range k.Map.GetKeys() {
			ks, ok := key.GetKind().(*pb.Value_Text)
			if !ok {
				return nil, fmt.Errorf("map key %v is not text; DynamoDB map keys are strings", key)
			}
			av, err := FromValue(k.Map.GetValues()[i], "")
			if err != nil {
				return nil, fmt.Errorf(".%s: %w", ks.Text, err)
			}
			out[ks.Text] = av
		}
		return &types.AttributeValueMemberM{Value: out}, nil
	}
	return nil, fmt.Errorf("value kind %T has no DynamoDB type", v.GetKind())
}

func fromSet(el []*pb.Value, typ string) (types.AttributeValue, error) {
	if len(el) > 0 {
		switch el[0].GetKind().(type) {
		case *pb.Value_Text:
			typ = "SS"
		case *pb.Value_Decimal, *pb.Value_Int, *pb.Value_Uint:
			typ = "NS"
		case *pb.Value_Bytes:
			typ = "BS"
		default:
			return nil, fmt.Errorf("a set of %T has no DynamoDB type (SS, NS, BS)", el[0].GetKind())
		}
	}
	switch typ {
	case "SS":
		out := make([]string, len(el))
		for i, e := range el {
			s, ok := e.GetKind().(*pb.Value_Text)
			if !ok {
				return nil, fmt.Errorf("string set holds %T", e.GetKind())
			}
			out[i] = s.Text
		}
		return &types.AttributeValueMemberSS{Value: out}, nil
	case "NS":
		out := make([]string, len(el))
		for i, e := range el {
			av, err := FromValue(e, "")
			if err != nil {
				return nil, err
			}
			n, ok := av.(*types.AttributeValueMemberN)
			if !ok {
				return nil, fmt.Errorf("number set holds %T", e.GetKind())
			}
			out[i] = n.Value
		}
		return &types.AttributeValueMemberNS{Value: out}, nil
	case "BS":
		out := make([][]byte, len(el))
		for i, e := range el {
			b, ok := e.GetKind().(*pb.Value_Bytes)
			if !ok {
				return nil, fmt.Errorf("binary set holds %T", e.GetKind())
			}
			out[i] = b.Bytes
		}
		return &types.AttributeValueMemberBS{Value: out}, nil
	}
	return nil, fmt.Errorf("an empty set without its type (SS, NS or BS)")
}

// PlainDecimal writes a DynamoDB number in plain notation (no exponent),
// digit for digit: "1.5E+3" → "1500", "-2e-2" → "-0.02".
func PlainDecimal(s string) (string, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return "", fmt.Errorf("empty number")
	}
	e := strings.IndexAny(t, "eE")
	if e < 0 {
		if !plain(t) {
			return "", fmt.Errorf("%q is not a number", s)
		}
		return strings.TrimPrefix(t, "+"), nil
	}
	mant, expS := t[:e], t[e+1:]
	var exp int
	if _, err := fmt.Sscanf(expS, "%d", &exp); err != nil || !plain(mant) || exp > 1000 || exp < -1000 {
		return "", fmt.Errorf("%q is not a number", s)
	}
	neg := strings.HasPrefix(mant, "-")
	mant = strings.TrimLeft(mant, "+-")
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := intPart + frac
	point := len(intPart) + exp // position of the decimal point in digits
	var out string
	switch {
	case point <= 0:
		out = "0." + strings.Repeat("0", -point) + digits
	case point >= len(digits):
		out = digits + strings.Repeat("0", point-len(digits))
	default:
		out = digits[:point] + "." + digits[point:]
	}
	// Leading zeros of the integer part carry nothing.
	ip, fp, hasFrac := strings.Cut(out, ".")
	ip = strings.TrimLeft(ip, "0")
	if ip == "" {
		ip = "0"
	}
	out = ip
	if hasFrac {
		out += "." + fp
	}
	if neg {
		out = "-" + out
	}
	return out, nil
}

func plain(s string) bool {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	dot := false
	digits := 0
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' && !dot:
			dot = true
		default:
			return false
		}
	}
	return digits > 0
}

// KeyRow takes an item's key attributes (hash key first) as an event key.
func KeyRow(item Item, keyNames []string) (*pb.Row, error) {
	k := &pb.Row{Names: keyNames, Types: make([]string, len(keyNames)), Values: make([]*pb.Value, len(keyNames))}
	for i, n := range keyNames {
		av, ok := item[n]
		if !ok {
			return nil, fmt.Errorf("item has no key attribute %s", n)
		}
		v, t, err := ToValue(av)
		if err != nil {
			return nil, fmt.Errorf("key attribute %s: %w", n, err)
		}
		k.Values[i], k.Types[i] = v, t
	}
	return k, nil
}
