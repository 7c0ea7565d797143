// Package dynamodb runs ferry end to end between two DynamoDB emulators
// (e2e/dynamotest), with the ferry binary built once for the package.
package dynamodb

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/e2e/dynamotest"
	"github.com/ferry-dev/ferry/e2e/ferrytest"
	"github.com/ferry-dev/ferry/internal/dynamo"
)

var (
	ferryBin string
	src, dst *dynamotest.Server
	setupErr error
)

func TestMain(m *testing.M) {
	code := func() int {
		bin, cleanup, err := ferrytest.Build("../../cmd/ferry")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer cleanup()
		ferryBin = bin
		ctx := context.Background()
		src, setupErr = dynamotest.Start(ctx)
		if setupErr == nil {
			defer src.Stop()
			dst, setupErr = dynamotest.Start(ctx)
			if setupErr == nil {
				defer dst.Stop()
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// pipeline is one test's tables and ferry config.
type pipeline struct {
	t        *testing.T
	table    string // source table; the target table has the same name unless renamed
	dir      string
	cfgPath  string
	natsPort int
	sc, dc   *dynamodb.Client
}

var nameRE = regexp.MustCompile(`[^A-Za-z0-9_]`)

func newPipeline(t *testing.T) *pipeline {
	t.Helper()
	dynamotest.Require(t, setupErr)
	name := nameRE.ReplaceAllString(t.Name(), "_")
	return &pipeline{t: t, table: name, dir: t.TempDir(), natsPort: ferrytest.FreePort(t), sc: src.Client(), dc: dst.Client()}
}

// writeConfig writes a ferry config; sourceExtra and targetExtra are YAML
// lines added to the source and target entries.
func (p *pipeline) writeConfig(mode, sourceExtra, dynSourceExtra, targetExtra string) {
	p.t.Helper()
	cfg := fmt.Sprintf(`nats:
  url: ""
  listen: 127.0.0.1:%d
  dataDir: %s
  maxPayload: 1048576 # NATS's default: large items must be split by size
sources:
  - name: dyn
    type: dynamodb
    mode: %s
%s
    dynamodb:
      endpoint: %s
      accessKey: test-key-id
      secretKey: test-secret-value
      streamPollInterval: 100ms
%s
targets:
  - name: dst
    type: dynamodb
    from: dyn
%s
    dynamodb:
      endpoint: %s
      accessKey: test-key-id
      secretKey: test-secret-value
      stateTable: ferry_state_%s
`, p.natsPort, filepath.Join(p.dir, "nats"), mode, indent(withTables(sourceExtra, p.table), "    "), src.Endpoint(),
		indent(dynSourceExtra, "      "), indent(targetExtra, "    "), dst.Endpoint(), p.table)
	p.cfgPath = filepath.Join(p.dir, "ferry.yaml")
	if err := os.WriteFile(p.cfgPath, []byte(cfg), 0o600); err != nil {
		p.t.Fatal(err)
	}
}

// withTables adds the pipeline's table unless extra lists tables itself.
func withTables(extra, table string) string {
	if strings.Contains(extra, "tables:") {
		return extra
	}
	return "tables: [" + table + "]\n" + extra
}

func indent(s, pre string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, pre+strings.TrimRight(l, " "))
		}
	}
	return strings.Join(out, "\n")
}

// createTable makes a table with a string hash key "pk" and an optional
// number range key "sk", and a stream when view is not empty.
func createTable(t *testing.T, c *dynamodb.Client, name string, withRange bool, view types.StreamViewType) {
	t.Helper()
	in := &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	}
	if withRange {
		in.AttributeDefinitions = append(in.AttributeDefinitions, types.AttributeDefinition{AttributeName: aws.String("sk"), AttributeType: types.ScalarAttributeTypeN})
		in.KeySchema = append(in.KeySchema, types.KeySchemaElement{AttributeName: aws.String("sk"), KeyType: types.KeyTypeRange})
	}
	if view != "" {
		in.StreamSpecification = &types.StreamSpecification{StreamEnabled: aws.Bool(true), StreamViewType: view}
	}
	if _, err := c.CreateTable(context.Background(), in); err != nil {
		t.Fatalf("creating %s: %v", name, err)
	}
}

// putItems writes items with BatchWriteItem, 25 at a time.
func putItems(t testing.TB, c *dynamodb.Client, table string, items []dynamo.Item) {
	t.Helper()
	for i := 0; i < len(items); i += 25 {
		var reqs []types.WriteRequest
		for _, it := range items[i:min(i+25, len(items))] {
			reqs = append(reqs, types.WriteRequest{PutRequest: &types.PutRequest{Item: it}})
		}
		for len(reqs) > 0 {
			out, err := c.BatchWriteItem(context.Background(), &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{table: reqs}})
			if err != nil {
				t.Fatalf("writing to %s: %v", table, err)
			}
			reqs = out.UnprocessedItems[table]
		}
	}
}

func putItem(t testing.TB, c *dynamodb.Client, table string, item dynamo.Item) {
	t.Helper()
	if _, err := c.PutItem(context.Background(), &dynamodb.PutItemInput{TableName: aws.String(table), Item: item}); err != nil {
		t.Fatalf("putting into %s: %v", table, err)
	}
}

// scanAll reads a whole table as canonical text, one line per item, sorted.
func scanAll(t testing.TB, c *dynamodb.Client, table string) []string {
	t.Helper()
	out, err := tryScanAll(c, table)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func tryScanAll(c *dynamodb.Client, table string) ([]string, error) {
	var out []string
	var start map[string]types.AttributeValue
	for {
		r, err := c.Scan(context.Background(), &dynamodb.ScanInput{TableName: aws.String(table), ExclusiveStartKey: start, ConsistentRead: aws.Bool(true)})
		if err != nil {
			return nil, fmt.Errorf("scanning %s: %v", table, err)
		}
		for _, it := range r.Items {
			out = append(out, canon(&types.AttributeValueMemberM{Value: it}))
		}
		if len(r.LastEvaluatedKey) == 0 {
			break
		}
		start = r.LastEvaluatedKey
	}
	sort.Strings(out)
	return out, nil
}

// canon renders an attribute value deterministically: maps by sorted key,
// sets sorted (they have no order), numbers in plain notation.
func canon(av types.AttributeValue) string {
	switch a := av.(type) {
	case *types.AttributeValueMemberS:
		return fmt.Sprintf("S%q", a.Value)
	case *types.AttributeValueMemberN:
		d, err := dynamo.PlainDecimal(a.Value)
		if err != nil {
			d = "bad:" + a.Value
		}
		return "N" + d
	case *types.AttributeValueMemberB:
		return fmt.Sprintf("B%x", a.Value)
	case *types.AttributeValueMemberBOOL:
		return fmt.Sprintf("BOOL%v", a.Value)
	case *types.AttributeValueMemberNULL:
		return "NULL"
	case *types.AttributeValueMemberSS:
		s := append([]string(nil), a.Value...)
		sort.Strings(s)
		return fmt.Sprintf("SS%q", s)
	case *types.AttributeValueMemberNS:
		var s []string
		for _, n := range a.Value {
			d, _ := dynamo.PlainDecimal(n)
			s = append(s, d)
		}
		sort.Strings(s)
		return fmt.Sprintf("NS%v", s)
	case *types.AttributeValueMemberBS:
		var s []string
		for _, b := range a.Value {
			s = append(s, fmt.Sprintf("%x", b))
		}
		sort.Strings(s)
		return fmt.Sprintf("BS%v", s)
	case *types.AttributeValueMemberL:
		var s []string
		for _, x := range a.Value {
			s = append(s, canon(x))
		}
		return "L[" + strings.Join(s, ",") + "]"
	case *types.AttributeValueMemberM:
		keys := make([]string, 0, len(a.Value))
		for k := range a.Value {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var s []string
		for _, k := range keys {
			s = append(s, fmt.Sprintf("%q:%s", k, canon(a.Value[k])))
		}
		return "M{" + strings.Join(s, ",") + "}"
	}
	return fmt.Sprintf("?%T", av)
}

// assertSame checks that the target table holds exactly the source's items.
func (p *pipeline) assertSame(srcTable, dstTable string) {
	p.t.Helper()
	a, b := scanAll(p.t, p.sc, srcTable), scanAll(p.t, p.dc, dstTable)
	if strings.Join(a, "\n") == strings.Join(b, "\n") {
		return
	}
	p.t.Errorf("%s → %s differs: source %d items, target %d items; %s", srcTable, dstTable, len(a), len(b), diff(a, b))
}

// waitSame polls until the target equals the source.
func (p *pipeline) waitSame(srcTable, dstTable string, timeout time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		a := scanAll(p.t, p.sc, srcTable)
		b, err := tryScanAll(p.dc, dstTable) // the target table may not exist yet
		if err == nil && strings.Join(a, "\n") == strings.Join(b, "\n") {
			return
		}
		if time.Now().After(deadline) {
			if err != nil {
				p.t.Fatal(err)
			}
			p.t.Fatalf("%s → %s still differs after %s: source %d items, target %d items; %s", srcTable, dstTable, timeout, len(a), len(b), diff(a, b))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func diff(a, b []string) string {
	in := func(l []string) map[string]bool {
		m := map[string]bool{}
		for _, x := range l {
			m[x] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for _, x := range a {
		if !mb[x] && len(out) < 3 {
			out = append(out, "only in source: "+trunc(x))
		}
	}
	for _, x := range b {
		if !ma[x] && len(out) < 6 {
			out = append(out, "only in target: "+trunc(x))
		}
	}
	return strings.Join(out, "; ")
}

func trunc(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// proc is a running ferry process.
type proc = ferrytest.Proc

// start runs ferry in the background in the test's directory; its output is
// shown if the test fails.
func (p *pipeline) start(args ...string) *proc {
	p.t.Helper()
	return p.runner().Start(p.t, args...)
}

// run runs ferry to completion and returns its exit code and output.
func (p *pipeline) run(timeout time.Duration, args ...string) (int, string) {
	p.t.Helper()
	return p.runner().Run(p.t, timeout, args...)
}

// runner runs ferry in the test's directory. A scylla-migrator config has
// no NATS section; FERRY_NATS_LISTEN keeps its embedded server off the
// default port, which other tests may use.
func (p *pipeline) runner() ferrytest.Runner {
	return ferrytest.Runner{Bin: ferryBin, Dir: p.dir, Env: []string{fmt.Sprintf("FERRY_NATS_LISTEN=127.0.0.1:%d", p.natsPort)}}
}

// kvKeys lists the keys of ferry's KV bucket matching filter, read from the
// embedded NATS of the running ferry (none while it is not up).
func kvKeys(t *testing.T, port int, filter string) []string {
	t.Helper()
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", port), nats.Timeout(time.Second))
	if err != nil {
		return nil
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, "ferry")
	if err != nil {
		return nil
	}
	l, err := kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil
	}
	var out []string
	for k := range l.Keys() {
		out = append(out, k)
	}
	return out
}

func s(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
func n(v string) types.AttributeValue { return &types.AttributeValueMemberN{Value: v} }
