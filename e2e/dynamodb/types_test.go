package dynamodb

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
	"github.com/ferry-dev/ferry/internal/dynamo"
)

const digits38 = "12345678901234567890123456789012345678"

// typedItems is one item of every attribute type, a map nested 10 deep and
// a 350 KB item; prefix keeps snapshot and stream copies apart.
func typedItems(prefix string) []dynamo.Item {
	var nested types.AttributeValue = &types.AttributeValueMemberS{Value: "bottom"}
	for d := 10; d > 0; d-- {
		nested = &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{
			fmt.Sprintf("level%d", d): nested,
			"n":                       n(fmt.Sprint(d)),
			"l":                       &types.AttributeValueMemberL{Value: []types.AttributeValue{s("x"), &types.AttributeValueMemberNS{Value: []string{"1", "2.5"}}}},
		}}
	}
	r := rand.New(rand.NewPCG(9, 9))
	big := make([]byte, 350<<10)
	for i := range big {
		big[i] = byte(r.UintN(256))
	}
	return []dynamo.Item{
		{
			"pk":    s(prefix + "every-type"),
			"s":     s("héllo, wörld ✓"),
			"n38":   n(digits38),
			"nfrac": n("-0." + digits38),
			"nbig":  n("9.9999999999999999999999999999999999999E+125"),
			"nsm":   n("1E-130"),
			"b":     &types.AttributeValueMemberB{Value: []byte{0, 1, 2, 255, 254}},
			"t":     &types.AttributeValueMemberBOOL{Value: true},
			"f":     &types.AttributeValueMemberBOOL{Value: false},
			"null":  &types.AttributeValueMemberNULL{Value: true},
			"ss":    &types.AttributeValueMemberSS{Value: []string{"a", "b", "ç"}},
			"ns":    &types.AttributeValueMemberNS{Value: []string{"1", "-2.5", digits38}},
			"bs":    &types.AttributeValueMemberBS{Value: [][]byte{{0}, {1, 2}, {255, 0, 255}}},
			"l":     &types.AttributeValueMemberL{Value: []types.AttributeValue{s("a"), n("1"), &types.AttributeValueMemberNULL{Value: true}, &types.AttributeValueMemberL{}}},
			"m":     &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"empty": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{}}, "bs": &types.AttributeValueMemberBS{Value: [][]byte{{7}}}}},
			"deep":  nested,
			"es":    s(""),
		},
		{"pk": s(prefix + "large"), "blob": &types.AttributeValueMemberB{Value: big}, "text": s(strings.Repeat("y", 1000))},
		// Three more in one lane (one partition below) would exceed 1 MB in
		// one message.
		{"pk": s(prefix + "large2"), "blob": &types.AttributeValueMemberB{Value: big[1:]}},
		{"pk": s(prefix + "large3"), "blob": &types.AttributeValueMemberB{Value: big[2:]}},
		{"pk": s(prefix + "large4"), "s": s(strings.Repeat("z", 350<<10))},
	}
}

// Every attribute type arrives exactly, through the scan and through the
// stream: numbers of 38 digits and extreme exponents, binary sets, a map
// nested 10 deep, a 350 KB item.
func TestEveryAttributeType(t *testing.T) {
	p := newPipeline(t)
	createTable(t, p.sc, p.table, false, types.StreamViewTypeNewImage)
	for _, it := range typedItems("snap-") {
		putItem(t, p.sc, p.table, it)
	}
	p.writeConfig("snapshot+cdc", "partitions: 1", "scanSegments: 1", "")
	pr := p.start("migrate", "--config", p.cfgPath)
	ferrytest.Eventually(t, time.Minute, "the snapshot", func() bool { return strings.Contains(pr.Output(), "snapshot complete") })
	for _, it := range typedItems("stream-") {
		putItem(t, p.sc, p.table, it)
	}
	p.waitSame(p.table, p.table, time.Minute)
	pr.Stop(t)

	got := strings.Join(scanAll(t, p.dc, p.table), "\n")
	for _, want := range []string{"N" + digits38, "N-0." + digits38, `"nbig":N99999999999999999999999999999999999999` + strings.Repeat("0", 88), `"nsm":N0.` + strings.Repeat("0", 129) + "1", "BS[00 0102 ff00ff]", `"level10":S"bottom"`} {
		if strings.Count(got, want) < 2 {
			t.Errorf("target lacks %q twice (snapshot and stream copies)", want)
		}
	}
	big := typedItems("")[1]["blob"].(*types.AttributeValueMemberB).Value
	if !bytes.Contains([]byte(got), []byte(fmt.Sprintf("%x", big[:64]))) {
		t.Error("the 350 KB item did not arrive")
	}
}
