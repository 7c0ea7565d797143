package dynamodb

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
	"github.com/ferry-dev/ferry/internal/dynamo"
	"github.com/ferry-dev/ferry/validate"
)

// validateReport is what `ferry validate --report` writes.
type validateReport struct {
	Equal   bool               `json:"equal"`
	Reports []*validate.Report `json:"reports"`
}

// validate runs `ferry validate` with a JSON report and reads it back.
func (p *pipeline) validate(args ...string) (int, string, validateReport) {
	p.t.Helper()
	path := filepath.Join(p.dir, fmt.Sprintf("report-%d.json", time.Now().UnixNano()))
	code, out := p.run(2*time.Minute, append([]string{"validate", "--config", p.cfgPath, "--report", path}, args...)...)
	var rep validateReport
	if code == 0 || code == 1 {
		b, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(b, &rep)
		}
		if err != nil || len(rep.Reports) != 1 || len(rep.Reports[0].Tables) != 1 {
			p.t.Fatalf("report %s (%v): %+v\n%s", path, err, rep, out)
		}
	}
	return code, out, rep
}

// waitCaughtUp waits until the running pipeline has applied every change
// made so far (the cut-over check).
func (p *pipeline) waitCaughtUp() {
	p.t.Helper()
	if code, out := p.run(time.Minute, "status", "--config", p.cfgPath, "--wait-caught-up", "--timeout", "50s"); code != 0 {
		p.t.Fatalf("status --wait-caught-up exited %d:\n%s", code, out)
	}
}

// validateItems are items with a hash and a range key and attributes of
// several types, some only on some items.
func validateItems(count int) []dynamo.Item {
	var items []dynamo.Item
	for i := range count {
		it := dynamo.Item{"pk": s(fmt.Sprintf("k%d", i%50)), "sk": n(fmt.Sprint(i)), "v": s(fmt.Sprint("value ", i)), "amount": n(fmt.Sprintf("%d.50", i))}
		if i%3 == 0 {
			it["tags"] = &types.AttributeValueMemberSS{Value: []string{"a", fmt.Sprint("t", i)}}
		}
		if i%5 == 0 {
			it["doc"] = &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"n": n(fmt.Sprint(i)), "ok": &types.AttributeValueMemberBOOL{Value: true}}}
		}
		items = append(items, it)
	}
	return items
}

// After a migration to a renamed table with a renamed attribute, equal data
// exits 0; an item deleted on the target, an extra one and a changed
// attribute are each reported with key and attribute and exit 1; --repair
// (migrate still running) fixes them and the next run exits 0.
func TestValidateReportAndRepair(t *testing.T) {
	p := newPipeline(t)
	createTable(t, p.sc, p.table, true, types.StreamViewTypeNewImage)
	putItems(t, p.sc, p.table, validateItems(600))
	dstTable := p.table + "_copy"
	p.writeConfig("snapshot+cdc", "", "scanSegments: 3", fmt.Sprintf("tables: {%s: %s}\nrenames: [{from: v, to: val}]", p.table, dstTable))
	mig := p.start("migrate", "--config", p.cfgPath)
	p.waitCaughtUp()

	code, out, rep := p.validate("--range-rows", "100")
	tb := rep.Reports[0].Tables[0]
	if code != 0 || !rep.Equal || rep.Reports[0].Mode != "lookup" || tb.SourceRows != 600 || tb.TargetRows != 600 || tb.TargetTable != dstTable {
		t.Fatalf("validate of equal tables exited %d: %+v\n%s", code, tb, out)
	}

	ctx := context.Background()
	key := func(pk, sk string) dynamo.Item { return dynamo.Item{"pk": s(pk), "sk": n(sk)} }
	if _, err := p.dc.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(dstTable), Key: key("k10", "10")}); err != nil {
		t.Fatal(err)
	}
	putItem(t, p.dc, dstTable, dynamo.Item{"pk": s("k_extra"), "sk": n("1"), "val": s("only on the target")})
	if _, err := p.dc.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: aws.String(dstTable), Key: key("k20", "20"),
		UpdateExpression:          aws.String("SET val = :v"),
		ExpressionAttributeValues: map[string]types.AttributeValue{":v": s("changed")}}); err != nil {
		t.Fatal(err)
	}
	code, out, rep = p.validate("--range-rows", "100")
	tb = rep.Reports[0].Tables[0]
	if code != 1 || rep.Equal || tb.Missing != 1 || tb.Extraneous != 1 || tb.Mismatched != 1 {
		t.Fatalf("validate of differing tables exited %d, want 1 with one difference of each kind: %+v\n%s", code, tb, out)
	}
	got := map[string]string{}
	for _, f := range tb.Failures {
		var k []string
		for _, c := range f.Key {
			k = append(k, c.Column+"="+c.Value)
		}
		got[f.Kind] = strings.Join(k, ",")
		if f.Kind == "mismatched" {
			if len(f.Columns) != 1 || f.Columns[0].Column != "v" || f.Columns[0].TargetColumn != "val" || f.Columns[0].Source != "value 20" || f.Columns[0].Target != "changed" {
				t.Errorf("mismatched attributes: %+v", f.Columns)
			}
		}
	}
	want := map[string]string{"missing": "pk=k10,sk=10", "extraneous": "pk=k_extra,sk=1", "mismatched": "pk=k20,sk=20"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s item: got %q, want %q (failures %+v)", k, got[k], v, tb.Failures)
		}
	}
	for _, s := range []string{p.table + " missing: pk=k10, sk=10", "v (target val): source value 20, target changed", "result: DIFFERENT"} {
		if !strings.Contains(out, s) {
			t.Errorf("summary lacks %q:\n%s", s, out)
		}
	}

	code, out, rep = p.validate("--range-rows", "100", "--repair", "--repair-timeout", "40s")
	if tb := rep.Reports[0].Tables[0]; code != 0 || tb.Repaired != 3 || tb.Unrepaired != 0 {
		t.Fatalf("validate --repair exited %d, want 0 with 3 items repaired: %+v\n%s", code, tb, out)
	}
	if code, out, _ := p.validate(); code != 0 {
		t.Fatalf("validate after the repair exited %d:\n%s", code, out)
	}
	mig.Stop(t)
}

// A validation killed halfway continues where it stopped: the segments it
// finished are not scanned again.
func TestValidateResume(t *testing.T) {
	p := newPipeline(t)
	createTable(t, p.sc, p.table, true, "")
	putItems(t, p.sc, p.table, validateItems(1000))
	p.writeConfig("snapshot", "", "", "")
	if code, out := p.run(time.Minute, "migrate", "--config", p.cfgPath); code != 0 {
		t.Fatalf("migrate exited %d:\n%s", code, out)
	}
	// Each finished range is logged at debug level.
	f, err := os.OpenFile(p.cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("log: {level: debug}\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	args := []string{"validate", "--config", p.cfgPath, "--range-rows", "100", "--parallel", "1"}
	slow := p.start(append(args, "--rows-per-second", "300")...)
	ferrytest.Eventually(t, time.Minute, "three segments checked", func() bool {
		return strings.Count(slow.Output(), "range checked") >= 3
	})
	slow.Kill9()
	if strings.Contains(slow.Output(), "result:") {
		t.Fatalf("the slow validation finished before it was killed:\n%s", slow.Output())
	}
	checked := strings.Count(slow.Output(), "range checked")

	code, out, rep := p.validate("--range-rows", "100", "--parallel", "1")
	tb := rep.Reports[0].Tables[0]
	if code != 0 || tb.Ranges < 4 || tb.RangesResumed < checked || tb.RangesRead != tb.Ranges-tb.RangesResumed || tb.SourceRows != 1000 || tb.TargetRows != 1000 {
		t.Fatalf("resumed validate exited %d: %+v (the killed run had checked %d segments)\n%s", code, tb, checked, out)
	}
	t.Logf("killed after %d segments; the resumed run read %d of %d", checked, tb.RangesRead, tb.Ranges)
	// A finished validation is not resumed: the next run reads everything.
	if _, _, rep := p.validate("--range-rows", "100"); rep.Reports[0].Tables[0].RangesResumed != 0 {
		t.Errorf("a run after a finished one resumed: %+v", rep.Reports[0].Tables[0])
	}
}

// --live while changes stream: items in flight are not reported, an item
// that really differs is, and --live --repair restores it while the
// changes go on (its repair is ordered with them in the stream).
func TestValidateLive(t *testing.T) {
	p := newPipeline(t)
	createTable(t, p.sc, p.table, false, types.StreamViewTypeNewImage)
	seed(t, p.sc, p.table, 400)
	p.writeConfig("snapshot+cdc", "", "", "")
	mig := p.start("migrate", "--config", p.cfgPath)
	p.waitCaughtUp()
	// k399 is never changed on the source: its deletion on the target is
	// a real difference.
	if _, err := p.dc.DeleteItem(context.Background(), &dynamodb.DeleteItemInput{TableName: aws.String(p.table), Key: dynamo.Item{"pk": s("k399")}}); err != nil {
		t.Fatal(err)
	}

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var writes atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(5, 6))
		for ctx.Err() == nil {
			k := fmt.Sprintf("k%d", r.IntN(399))
			_, err := p.sc.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(p.table),
				Item: dynamo.Item{"pk": s(k), "v": s(fmt.Sprint("change ", writes.Load())), "n": n(fmt.Sprint(writes.Load()))}})
			if err != nil && ctx.Err() == nil {
				t.Error(err)
				return
			}
			writes.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	ferrytest.Eventually(t, 30*time.Second, "changes streaming", func() bool { return writes.Load() > 100 })
	code, out, rep := p.validate("--live", "--live-delay", "1s", "--range-rows", "100")
	rcode, rout, _ := p.validate("--live", "--live-delay", "1s", "--range-rows", "100", "--repair", "--repair-timeout", "40s")
	stop()
	wg.Wait()
	tb := rep.Reports[0].Tables[0]
	if code != 1 || tb.Missing != 1 || tb.Extraneous != 0 || tb.Mismatched != 0 || !strings.Contains(out, p.table+" missing: pk=k399") {
		t.Errorf("validate --live exited %d, want 1 for the one deleted item only (%d changes streamed): %+v\n%s", code, writes.Load(), tb, out)
	}
	if rcode != 0 {
		t.Errorf("validate --live --repair exited %d:\n%s", rcode, rout)
	}
	p.waitCaughtUp()
	p.assertSame(p.table, p.table)
	t.Logf("%d changes streamed; %d in-flight differences re-checked away", writes.Load(), tb.Rechecked)
	mig.Stop(t)
}
