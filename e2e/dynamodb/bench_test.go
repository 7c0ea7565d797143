package dynamodb

import (
	"context"
	"fmt"
	"os"
	"os/exec"

	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ferry-dev/ferry/e2e/dynamotest"
	"github.com/ferry-dev/ferry/e2e/ferrytest"
	"github.com/ferry-dev/ferry/internal/dynamo"
)

// BenchmarkDynamoDBToDynamoDB moves one table between the two emulators
// twice in the same run: with a plain program (parallel Scan, each
// segment's pages written with BatchWriteItem of 25, no JetStream) and with
// `ferry migrate` (snapshot mode, embedded NATS), both with the same
// segments; then `ferry validate` compares the two tables. It runs only when FERRY_BENCH_DYNAMO_ITEMS is set (200000 for
// docs/BENCHMARKS.md); FERRY_BENCH_DYNAMO_SEGMENTS sets the segments
// (default 8).
func BenchmarkDynamoDBToDynamoDB(b *testing.B) {
	items, _ := strconv.Atoi(os.Getenv("FERRY_BENCH_DYNAMO_ITEMS"))
	if items <= 0 {
		b.Skip("set FERRY_BENCH_DYNAMO_ITEMS (e.g. 200000) to run")
	}
	segs := 8
	if v, err := strconv.Atoi(os.Getenv("FERRY_BENCH_DYNAMO_SEGMENTS")); err == nil && v > 0 {
		segs = v
	}
	dynamotest.Require(b, setupErr)
	ctx := context.Background()
	sc, dc := src.Client(), dst.Client()
	for i := 0; i < b.N; i++ {
		table := fmt.Sprintf("bench_%d_%d", items, time.Now().UnixNano())
		createTableB(b, sc, table)
		load(b, sc, table, items)

		b.StopTimer()
		plainTable := table + "_plain"
		createTableB(b, dc, plainTable)
		t0 := time.Now()
		copied := plainCopy(b, ctx, sc, dc, table, plainTable, segs)
		plain := time.Since(t0)
		if copied != items {
			b.Fatalf("plain copy moved %d of %d items", copied, items)
		}

		dir := b.TempDir()
		cfg := fmt.Sprintf(`nats: {url: "", listen: "127.0.0.1:%d", dataDir: %q}
sources: [{name: bench, type: dynamodb, mode: snapshot, tables: [%s], dynamodb: {endpoint: %q, accessKey: k, secretKey: s, scanSegments: %d}}]
targets: [{name: dst, type: dynamodb, from: bench, tables: {%s: %s}, dynamodb: {endpoint: %q, accessKey: k, secretKey: s, stateTable: ferry_state_%s}}]
`, ferrytest.FreePort(b), filepath.Join(dir, "nats"), table, src.Endpoint(), segs, table, table+"_ferry", dst.Endpoint(), table)
		cfgPath := filepath.Join(dir, "ferry.yaml")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		out, err := runBin(ferryBin, "migrate", "--config", cfgPath)
		ferry := time.Since(t1)
		if err != nil {
			b.Fatalf("ferry migrate: %v\n%s", err, out)
		}
		if n := count(b, dc, table+"_ferry"); n != items {
			b.Fatalf("ferry moved %d of %d items", n, items)
		}
		// ferry validate on the equal tables: Scan segments of the
		// source, BatchGetItem on the target, then the reverse pass.
		t2 := time.Now()
		vout, err := runBin(ferryBin, "validate", "--config", cfgPath)
		validate := time.Since(t2)
		if err != nil {
			b.Fatalf("ferry validate: %v\n%s", err, vout)
		}
		b.ReportMetric(validate.Seconds(), "validate_s")
		b.Logf("ferry validate %.1fs (%.0f items/s, each item read on both sides and looked up on the other)", validate.Seconds(), float64(items)/validate.Seconds())
		if os.Getenv("FERRY_BENCH_VERBOSE") != "" {
			_ = os.WriteFile(os.Getenv("FERRY_BENCH_VERBOSE"), []byte(out), 0o644)
		}
		b.ReportMetric(plain.Seconds(), "plain_s")
		b.ReportMetric(ferry.Seconds(), "ferry_s")
		b.ReportMetric(plain.Seconds()/ferry.Seconds(), "ferry_speed_ratio")
		b.Logf("%d items, %d segments: plain Scan+BatchWriteItem %.1fs (%.0f items/s), ferry %.1fs (%.0f items/s), ratio %.2f×",
			items, segs, plain.Seconds(), float64(items)/plain.Seconds(), ferry.Seconds(), float64(items)/ferry.Seconds(), plain.Seconds()/ferry.Seconds())
	}
}

func createTableB(b *testing.B, c *dynamodb.Client, name string) {
	b.Helper()
	_, err := c.CreateTable(context.Background(), &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		b.Fatal(err)
	}
}

// load writes items of about 200 bytes: a key, text, a number, a map.
func load(b *testing.B, c *dynamodb.Client, table string, items int) {
	b.Helper()
	var wg sync.WaitGroup
	per := (items + 7) / 8
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var batch []dynamo.Item
			for i := w * per; i < min(items, (w+1)*per); i++ {
				batch = append(batch, dynamo.Item{
					"pk":   s(fmt.Sprintf("item-%09d", i)),
					"name": s(fmt.Sprintf("name %d %s", i, strings.Repeat("x", 60))),
					"qty":  n(fmt.Sprintf("%d.%04d", i, i%10000)),
					"doc":  &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"i": n(fmt.Sprint(i)), "tag": s(fmt.Sprintf("t%d", i%100))}},
				})
				if len(batch) == 1000 {
					putItems(b, c, table, batch)
					batch = batch[:0]
				}
			}
			putItems(b, c, table, batch)
		}()
	}
	wg.Wait()
}

// plainCopy is the baseline: each segment's pages are written as they come,
// BatchWriteItem of 25, unprocessed items retried.
func plainCopy(b *testing.B, ctx context.Context, sc, dc *dynamodb.Client, from, to string, segs int) int {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int
	)
	for seg := range segs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var start map[string]types.AttributeValue
			for {
				out, err := sc.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String(from), Segment: aws.Int32(int32(seg)), TotalSegments: aws.Int32(int32(segs)), ExclusiveStartKey: start})
				if err != nil {
					b.Error(err)
					return
				}
				for i := 0; i < len(out.Items); i += 25 {
					var reqs []types.WriteRequest
					for _, it := range out.Items[i:min(i+25, len(out.Items))] {
						reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: it}})
					}
					for len(reqs) > 0 {
						w, err := dc.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{to: reqs}})
						if err != nil {
							b.Error(err)
							return
						}
						reqs = w.UnprocessedItems[to]
					}
				}
				mu.Lock()
				total += len(out.Items)
				mu.Unlock()
				if len(out.LastEvaluatedKey) == 0 {
					return
				}
				start = out.LastEvaluatedKey
			}
		}()
	}
	wg.Wait()
	return total
}

func count(b *testing.B, c *dynamodb.Client, table string) int {
	b.Helper()
	total := 0
	var start map[string]types.AttributeValue
	for {
		out, err := c.Scan(context.Background(), &dynamodb.ScanInput{TableName: aws.String(table), Select: types.SelectCount, ExclusiveStartKey: start})
		if err != nil {
			b.Fatal(err)
		}
		total += int(out.Count)
		if len(out.LastEvaluatedKey) == 0 {
			return total
		}
		start = out.LastEvaluatedKey
	}
}

func runBin(bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
