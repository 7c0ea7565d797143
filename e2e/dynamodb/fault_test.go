package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	stypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/e2e/dynamotest"
	"github.com/ferry-dev/ferry/e2e/ferrytest"
	"github.com/ferry-dev/ferry/internal/dynamo"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

// The fault suite for the DynamoDB family: the source table receives a
// steady stream of puts, updates and deletes (half of them to a hot set of
// keys, each with a fresh `ver` from one counter) while ferry copies it to
// the target emulator, and at a random moment one fault strikes. After
// recovery the target must equal the source, and no key may ever have gone
// back to an older `ver` on the target during the run.
//
// The guard is the target table's own DynamoDB stream (NEW_IMAGE): after
// the run every record of every shard is read in order and, per key, the
// highest `ver` ever written (kept across REMOVEs, so an old item put again
// after a delete is caught too) must never be followed by a lower one.
//
// One regression is in the design and is told apart: the stream is read
// from its oldest record after the scan, so a key the scan read at `ver` M
// is taken back through the stream records written before the scan reached
// it, up to M again (docs/dynamodb.md). A drop from a `ver` that a
// snapshot read of that key carried (ferry's own stream tells which) is
// counted and logged, not failed; every other drop fails the trial.
//
// FERRY_FAULT_TRIALS sets the number of trials (default: one of each
// fault); FERRY_FAULT_SEED replays one trial: every trial logs its seed.

// The faults this family is tried with: all of them. The emulator has no
// way to end a client's connections, so the connection cuts go through
// proxies in front of ferry's source and target endpoints.
var dynFaults = ferrytest.AllFaults

func TestFaultTrials(t *testing.T) {
	dynamotest.Require(t, setupErr)
	ferrytest.Trials(t, dynFaults, runFaultTrial)
}

const (
	faultKeys = 4_000 // key space of the writer; half is seeded before the run
	hotKeys   = 200
)

func faultKey(i int) string { return fmt.Sprintf("k%05d", i) }

func runFaultTrial(t *testing.T, seed uint64, kind ferrytest.Fault, rng *rand.Rand) {
	began := time.Now()
	phase := func(what string) { t.Logf("%5.1fs %s", time.Since(began).Seconds(), what) }
	p := newPipeline(t)
	// Emulators of its own: the package's pair slows down as trials
	// leave tables and stream records behind.
	tsrc, tdst := trialServer(t), trialServer(t)
	p.sc, p.dc = tsrc.Client(), tdst.Client()
	createTable(t, p.sc, p.table, false, types.StreamViewTypeNewImage)
	// The guard: the target table exists before ferry starts, with a
	// stream of its own.
	createTable(t, p.dc, p.table, false, types.StreamViewTypeNewImage)
	// Every other key is seeded, in four parallel writers.
	var wg sync.WaitGroup
	for part := range 4 {
		var items []dynamo.Item
		for i := part; i < faultKeys/2; i += 4 {
			items = append(items, dynamo.Item{"pk": s(faultKey(i * 2)), "ver": n(strconv.Itoa(i * 2)), "val": s("seed")})
		}
		wg.Add(1)
		go func() { defer wg.Done(); putItems(t, p.sc, p.table, items) }()
	}
	wg.Wait()

	// ferry reaches both emulators through proxies that can cut its
	// connections; the writer and the checks talk to them directly.
	srcProxy := ferrytest.StartProxy(t, fmt.Sprintf("127.0.0.1:%d", tsrc.Port))
	dstProxy := ferrytest.StartProxy(t, fmt.Sprintf("127.0.0.1:%d", tdst.Port))
	var natsSrv *ferrytest.NATS
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", p.natsPort)
	// The scan is slowed so that an early fault lands inside it.
	p.writeConfig("snapshot+cdc", "readRowsPerSecond: 1500\nsnapshotWorkers: 2", "scanSegments: 4", "")
	cfg, err := os.ReadFile(p.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	c := strings.Replace(string(cfg), src.Endpoint(), "http://"+srcProxy.Addr, 1)
	c = strings.Replace(c, dst.Endpoint(), "http://"+dstProxy.Addr, 1)
	if kind != ferrytest.KillAll {
		natsSrv = ferrytest.StartNATS(t)
		natsURL = natsSrv.URL
		c = strings.Replace(c, `url: ""`, fmt.Sprintf("url: %q", natsURL), 1)
	}
	if err := os.WriteFile(p.cfgPath, []byte(c), 0o600); err != nil {
		t.Fatal(err)
	}

	phase("source ready")
	w := startFaultWriter(t, p.sc, p.table, rng.Uint64())
	produce := []string{"produce", "--config", p.cfgPath, "--source", "dyn"}
	apply := []string{"apply", "--config", p.cfgPath, "--target", "dst"}
	var procs []*proc
	if kind == ferrytest.KillAll {
		procs = []*proc{p.start("migrate", "--config", p.cfgPath)}
	} else {
		procs = []*proc{p.start(produce...), p.start(apply...)}
	}

	// The fault strikes during the scan (a third of the trials, within
	// the first 1.5 s), at the switch to the stream, or while streaming.
	time.Sleep(ferrytest.Moment(rng, 1500*time.Millisecond, 5*time.Second) + 100*time.Millisecond)
	ferrytest.Strike(t, kind, rng, procs, natsSrv,
		func() { t.Logf("cut %d source connections", srcProxy.Cut()) },
		func() { t.Logf("cut %d target connections", dstProxy.Cut()) })

	phase("fault " + kind.String())
	watcher := ferrytest.Watch(t, procs...)
	time.Sleep(2 * time.Second)
	w.finish(t)
	phase("writer stopped")
	code, out := p.run(2*time.Minute, "status", "--config", p.cfgPath, "--wait-caught-up", "--timeout", "90s")
	if code != 0 {
		t.Fatalf("status --wait-caught-up exited %d:\n%s", code, out)
	}
	phase("caught up: " + ferrytest.LastLines(out, 3))
	procs, restarts := watcher.Stop()
	if restarts > 0 {
		t.Logf("%d processes were started again after exiting", restarts)
	}
	p.assertSame(p.table, p.table)
	snapVers := snapshotVersions(t, natsURL)
	phase("compared")
	for _, pr := range procs {
		pr.Stop(t)
		if strings.Contains(pr.Output(), "passed over records a previous run published") {
			t.Logf("a resumed shard passed over records already in the stream: %s", ferrytest.LastLines(grepLines(pr.Output(), "passed over records"), 1))
		}
	}
	phase("stopped")
	assertNoRegression(t, tdst, p.table, snapVers)
	phase("guard read")
}

// trialServer starts an emulator for one trial.
func trialServer(t *testing.T) *dynamotest.Server {
	t.Helper()
	s, err := dynamotest.Start(context.Background())
	if err != nil {
		t.Fatalf("starting an emulator for the trial: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// faultWriter changes the source steadily: UpdateItem of existing items
// (50 %), DeleteItem (20 %) and PutItem (30 %), half of them to a hot set of
// keys, each with a fresh version from one counter, so any older value
// showing up later on the target is a regression.
type faultWriter struct {
	stop chan struct{}
	done chan struct{}
	n    atomic.Int64
	ver  atomic.Int64
	err  error
}

func startFaultWriter(t *testing.T, c *dynamodb.Client, tableName string, seed uint64) *faultWriter {
	t.Helper()
	w := &faultWriter{stop: make(chan struct{}), done: make(chan struct{})}
	w.ver.Store(1_000_000)
	rng := rand.New(rand.NewPCG(seed, 7))
	go func() {
		defer close(w.done)
		ctx := context.Background()
		table := aws.String(tableName)
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			id := rng.IntN(faultKeys)
			if rng.IntN(2) == 0 {
				id = rng.IntN(hotKeys)
			}
			key := dynamo.Item{"pk": s(faultKey(id))}
			ver := strconv.FormatInt(w.ver.Add(1), 10)
			var err error
			switch r := rng.IntN(10); {
			case r < 5:
				_, err = c.UpdateItem(ctx, &dynamodb.UpdateItemInput{TableName: table, Key: key,
					UpdateExpression:          aws.String("SET ver = :v, val = :s"),
					ConditionExpression:       aws.String("attribute_exists(pk)"),
					ExpressionAttributeValues: dynamo.Item{":v": n(ver), ":s": s("update " + ver)}})
				var cf *types.ConditionalCheckFailedException
				if errors.As(err, &cf) {
					err = nil // no such item: nothing changed
				}
			case r < 7:
				_, err = c.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: table, Key: key})
			default:
				_, err = c.PutItem(ctx, &dynamodb.PutItemInput{TableName: table,
					Item: dynamo.Item{"pk": s(faultKey(id)), "ver": n(ver), "val": s("put " + ver)}})
			}
			if err != nil {
				w.err = err
				return
			}
			w.n.Add(1)
		}
	}()
	return w
}

func (w *faultWriter) finish(t *testing.T) {
	t.Helper()
	close(w.stop)
	<-w.done
	if w.err != nil {
		t.Fatalf("source writer: %v", w.err)
	}
	t.Logf("source writer made %d changes", w.n.Load())
}

// snapshotVersions reads ferry's stream of the source and returns, per key,
// the versions its snapshot reads carried.
func snapshotVersions(t *testing.T, url string) map[string]map[int64]bool {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connecting to NATS at %s: %v", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, streams.StreamName("dyn"), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("reading ferry's stream: %v", err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	left := info.NumPending
	out := map[string]map[int64]bool{}
	for left > 0 {
		batch, err := cons.Fetch(int(min(left, 1000)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatalf("reading ferry's stream: %v", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			b, err := streams.Decode(m.Data())
			if err != nil {
				t.Fatalf("decoding a message of ferry's stream: %v", err)
			}
			for _, e := range b.GetEvents() {
				if e.GetOp() != pb.Op_OP_READ {
					continue
				}
				k, v := eventKeyVer(e)
				if out[k] == nil {
					out[k] = map[int64]bool{}
				}
				out[k][v] = true
			}
		}
		if got == 0 {
			t.Fatalf("ferry's stream ended with %d messages still pending", left)
		}
		left -= uint64(got)
	}
	return out
}

func eventKeyVer(e *pb.Event) (string, int64) {
	k := e.GetKey().GetValues()[0].GetText()
	for i, name := range e.GetAfter().GetNames() {
		if name == "ver" {
			v, _ := strconv.ParseInt(e.GetAfter().GetValues()[i].GetDecimal(), 10, 64)
			return k, v
		}
	}
	return k, -1
}

// regression is a key going back on the target: from the highest version
// it had to a lower one.
type regression struct {
	key       string
	seen, got int64
}

// assertNoRegression reads every record of the target table's stream, shard
// by shard with parents first, and fails for every key whose version went
// back, unless it went back from a version a snapshot read of the key
// carried (the scan-then-stream overlap, see the top of this file).
func assertNoRegression(t *testing.T, dst *dynamotest.Server, table string, snapVers map[string]map[int64]bool) {
	t.Helper()
	regs, records, shards := targetRegressions(t, dst, table)
	// Every item on the target was written at least once: a stream with
	// fewer records is not seeing every write, and the guard would be
	// blind.
	if items := len(scanAll(t, dst.Client(), table)); records < items {
		t.Fatalf("the target's stream holds %d records for %d items; the guard cannot see every write", records, items)
	}
	overlap := 0
	var bad []regression
	for _, r := range regs {
		if snapVers[r.key][r.seen] {
			overlap++
			continue
		}
		bad = append(bad, r)
	}
	t.Logf("guard: %d target stream records in %d shards; %d drops from a scanned version (the scan/stream overlap), %d other drops", records, shards, overlap, len(bad))
	for i, r := range bad {
		if i == 10 {
			t.Errorf("… and %d more", len(bad)-10)
			break
		}
		t.Errorf("key %s went back from version %d to %d on the target", r.key, r.seen, r.got)
	}
}

// targetRegressions walks the target table's stream.
func targetRegressions(t *testing.T, dst *dynamotest.Server, table string) (regs []regression, records, nshards int) {
	t.Helper()
	ctx := context.Background()
	d, err := dst.Client().DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatal(err)
	}
	arn := aws.ToString(d.Table.LatestStreamArn)
	sc := dst.Streams()
	var shards []stypes.Shard
	var from *string
	for {
		ds, err := sc.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: aws.String(arn), ExclusiveStartShardId: from})
		if err != nil {
			t.Fatalf("describing the target's stream: %v", err)
		}
		shards = append(shards, ds.StreamDescription.Shards...)
		if from = ds.StreamDescription.LastEvaluatedShardId; from == nil {
			break
		}
	}
	shards = parentsFirst(shards)
	maxVer := map[string]int64{}
	for _, sh := range shards {
		it, err := sc.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{StreamArn: aws.String(arn), ShardId: sh.ShardId, ShardIteratorType: stypes.ShardIteratorTypeTrimHorizon})
		if err != nil {
			t.Fatalf("opening shard %s of the target's stream: %v", aws.ToString(sh.ShardId), err)
		}
		next := it.ShardIterator
		for next != nil {
			out, err := sc.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: next, Limit: aws.Int32(1000)})
			if err != nil {
				t.Fatalf("reading shard %s of the target's stream: %v", aws.ToString(sh.ShardId), err)
			}
			for _, r := range out.Records {
				records++
				if r.EventName == stypes.OperationTypeRemove {
					continue // the highest version stays, across deletes
				}
				k := r.Dynamodb.Keys["pk"].(*stypes.AttributeValueMemberS).Value
				vn, ok := r.Dynamodb.NewImage["ver"].(*stypes.AttributeValueMemberN)
				if !ok {
					t.Fatalf("target stream record %s of %s has no ver", aws.ToString(r.Dynamodb.SequenceNumber), k)
				}
				v, _ := strconv.ParseInt(vn.Value, 10, 64)
				if m, seen := maxVer[k]; seen && v < m {
					regs = append(regs, regression{key: k, seen: m, got: v})
				}
				maxVer[k] = max(maxVer[k], v)
			}
			if len(out.Records) == 0 {
				break // an open shard's tip: everything is read
			}
			next = out.NextShardIterator
		}
	}
	return regs, records, len(shards)
}

// parentsFirst orders shards so that each comes after its parent.
func parentsFirst(shards []stypes.Shard) []stypes.Shard {
	byID := map[string]bool{}
	for _, s := range shards {
		byID[aws.ToString(s.ShardId)] = true
	}
	var out []stypes.Shard
	done := map[string]bool{}
	for len(out) < len(shards) {
		before := len(out)
		for _, s := range shards {
			id, parent := aws.ToString(s.ShardId), aws.ToString(s.ParentShardId)
			if done[id] || (parent != "" && byID[parent] && !done[parent]) {
				continue
			}
			out = append(out, s)
			done[id] = true
		}
		if len(out) == before { // a cycle cannot happen; keep the rest as listed
			for _, s := range shards {
				if !done[aws.ToString(s.ShardId)] {
					out = append(out, s)
				}
			}
		}
	}
	return out
}

// grepLines returns the lines of s containing sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
