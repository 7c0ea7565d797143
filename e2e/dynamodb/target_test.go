package dynamodb

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
	"github.com/ferry-dev/ferry/internal/dynamo"
)

// The target table is created from the source's description: keys, a GSI
// and an LSI, billing mode, the TTL setting; with a table rename and an
// attribute rename.
func TestTargetCreatesTable(t *testing.T) {
	p := newPipeline(t)
	ctx := context.Background()
	_, err := p.sc.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName: aws.String(p.table),
		AttributeDefinitions: []types.AttributeDefinition{
			{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("sk"), AttributeType: types.ScalarAttributeTypeN},
			{AttributeName: aws.String("g"), AttributeType: types.ScalarAttributeTypeS},
			{AttributeName: aws.String("old"), AttributeType: types.ScalarAttributeTypeN},
		},
		KeySchema: []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}, {AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange}},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{
			IndexName: aws.String("by_g"), KeySchema: []types.KeySchemaElement{{AttributeName: aws.String("g"), KeyType: types.KeyTypeHash}},
			Projection:            &types.Projection{ProjectionType: types.ProjectionTypeAll},
			ProvisionedThroughput: &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(5), WriteCapacityUnits: aws.Int64(6)},
		}},
		LocalSecondaryIndexes: []types.LocalSecondaryIndex{{
			IndexName: aws.String("by_old"), KeySchema: []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}, {AttributeName: aws.String("old"), KeyType: types.KeyTypeRange}},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeKeysOnly},
		}},
		BillingMode:           types.BillingModeProvisioned,
		ProvisionedThroughput: &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(10), WriteCapacityUnits: aws.Int64(11)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.sc.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{TableName: aws.String(p.table),
		TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: aws.String("expires"), Enabled: aws.Bool(true)}}); err != nil {
		t.Fatalf("enabling TTL on the source: %v", err)
	}
	var items []dynamo.Item
	for i := range 100 {
		items = append(items, dynamo.Item{"pk": s(fmt.Sprint(i % 7)), "sk": n(fmt.Sprint(i)), "g": s(fmt.Sprint(i % 3)), "old": n(fmt.Sprint(-i)), "expires": n("4102444800")})
	}
	putItems(t, p.sc, p.table, items)
	dstTable := p.table + "_copy"
	p.writeConfig("snapshot", "", "", fmt.Sprintf("tables: {%s: %s}\nrenames: [{from: old, to: renamed}]", p.table, dstTable))
	code, out := p.run(2*time.Minute, "migrate", "--config", p.cfgPath)
	if code != 0 {
		t.Fatalf("migrate exited %d:\n%s", code, out)
	}
	d, err := p.dc.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(dstTable)})
	if err != nil {
		t.Fatal(err)
	}
	tb := d.Table
	if len(tb.KeySchema) != 2 || aws.ToString(tb.KeySchema[0].AttributeName) != "pk" || aws.ToString(tb.KeySchema[1].AttributeName) != "sk" {
		t.Errorf("key schema %+v", tb.KeySchema)
	}
	if len(tb.GlobalSecondaryIndexes) != 1 || aws.ToString(tb.GlobalSecondaryIndexes[0].IndexName) != "by_g" {
		t.Errorf("GSIs %+v", tb.GlobalSecondaryIndexes)
	}
	if len(tb.LocalSecondaryIndexes) != 1 || aws.ToString(tb.LocalSecondaryIndexes[0].KeySchema[1].AttributeName) != "renamed" {
		t.Errorf("LSIs %+v (want by_old on the renamed attribute)", tb.LocalSecondaryIndexes)
	}
	if pt := tb.ProvisionedThroughput; pt == nil || aws.ToInt64(pt.ReadCapacityUnits) != 10 || aws.ToInt64(pt.WriteCapacityUnits) != 11 {
		t.Errorf("provisioned throughput %+v, want 10/11 as on the source", pt)
	}
	ttl, err := p.dc.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(dstTable)})
	if err != nil || ttl.TimeToLiveDescription == nil || aws.ToString(ttl.TimeToLiveDescription.AttributeName) != "expires" {
		t.Errorf("TTL on the target: %+v, %v", ttl, err)
	}
	got := scanAll(t, p.dc, dstTable)
	if len(got) != 100 || !strings.Contains(got[0], `"renamed":N`) || strings.Contains(got[0], `"old"`) {
		t.Errorf("target items (%d) lack the renamed attribute: %s", len(got), got[0])
	}
}

// An item the target refuses (a GSI key of the wrong type) goes to the
// dead-letter stream with its key and the reason; the others are written
// and the run says so in its exit status.
func TestRejectedItemIsDeadLettered(t *testing.T) {
	p := newPipeline(t)
	createTable(t, p.sc, p.table, false, "")
	var items []dynamo.Item
	for i := range 50 {
		items = append(items, dynamo.Item{"pk": s(fmt.Sprintf("k%d", i)), "g": s("ok")})
	}
	items[17]["g"] = n("17") // the target's index wants a string
	putItems(t, p.sc, p.table, items)
	_, err := p.dc.CreateTable(context.Background(), &dynamodb.CreateTableInput{
		TableName:            aws.String(p.table),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}, {AttributeName: aws.String("g"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
		GlobalSecondaryIndexes: []types.GlobalSecondaryIndex{{IndexName: aws.String("by_g"), KeySchema: []types.KeySchemaElement{{AttributeName: aws.String("g"), KeyType: types.KeyTypeHash}},
			Projection: &types.Projection{ProjectionType: types.ProjectionTypeAll}}},
		BillingMode: types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	p.writeConfig("snapshot", "", "", "")
	code, out := p.run(2*time.Minute, "migrate", "--config", p.cfgPath)
	if code == 0 || !strings.Contains(out, "1 rows were rejected") {
		t.Fatalf("want exit != 0 reporting one rejected row, got %d:\n%s", code, out)
	}
	if !strings.Contains(out, `key="pk=\"k17\""`) && !strings.Contains(out, `pk="k17"`) && !strings.Contains(out, `pk=\"k17\"`) {
		t.Errorf("the rejection does not name key k17:\n%s", out)
	}
	if got := len(scanAll(t, p.dc, p.table)); got != 49 {
		t.Errorf("target has %d items, want the 49 accepted ones", got)
	}
}

// throttler is a proxy in front of an emulator that answers every other
// Scan and BatchWriteItem with a throttling error, as DynamoDB does when a
// table's capacity is exceeded.
type throttler struct {
	n, throttled atomic.Int64
}

func (th *throttler) start(t *testing.T, to string) string {
	u, _ := url.Parse(to)
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := r.Header.Get("X-Amz-Target")
		if (strings.HasSuffix(op, ".Scan") || strings.HasSuffix(op, ".BatchWriteItem")) && th.n.Add(1)%2 == 0 {
			th.throttled.Add(1)
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/x-amz-json-1.0")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded"}`)
			return
		}
		proxy.ServeHTTP(w, r)
	})}
	port := ferrytest.FreePort(t)
	go func() { _ = srv.ListenAndServe() }()
	srv.Addr = fmt.Sprintf("127.0.0.1:%d", port)
	t.Cleanup(func() { _ = srv.Close() })
	ln := fmt.Sprintf("http://127.0.0.1:%d", port)
	ferrytest.Eventually(t, 10*time.Second, "the proxy", func() bool {
		resp, err := http.Get(ln)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	return ln
}

// Throttled Scans and BatchWriteItems are retried with backoff; nothing is
// lost.
func TestThrottling(t *testing.T) {
	p := newPipeline(t)
	createTable(t, p.sc, p.table, false, "")
	seed(t, p.sc, p.table, 1000)
	srcTh, dstTh := &throttler{}, &throttler{}
	srcURL, dstURL := srcTh.start(t, src.Endpoint()), dstTh.start(t, dst.Endpoint())
	p.writeConfig("snapshot", "", "scanSegments: 3", "")
	cfg, err := os.ReadFile(p.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg = []byte(strings.Replace(strings.Replace(string(cfg), src.Endpoint(), srcURL, 1), dst.Endpoint(), dstURL, 1))
	if err := os.WriteFile(p.cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := p.run(2*time.Minute, "migrate", "--config", p.cfgPath)
	if code != 0 {
		t.Fatalf("migrate exited %d:\n%s", code, out)
	}
	if srcTh.throttled.Load() == 0 || dstTh.throttled.Load() == 0 {
		t.Fatalf("no throttling happened (source %d, target %d)", srcTh.throttled.Load(), dstTh.throttled.Load())
	}
	p.assertSame(p.table, p.table)
	t.Logf("throttled %d Scans and %d BatchWriteItems", srcTh.throttled.Load(), dstTh.throttled.Load())
}
