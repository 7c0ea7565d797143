package dynamodb

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
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

// mutate makes one random change: a new item, an update of an existing one
// (a put of a whole new image), or a delete.
func mutate(t testing.TB, c *dynamodb.Client, table string, r *rand.Rand, keys int, i int) {
	t.Helper()
	k := fmt.Sprintf("k%d", r.IntN(keys))
	switch r.IntN(3) {
	case 0, 1:
		putItem(t, c, table, dynamo.Item{"pk": s(k), "v": s(fmt.Sprintf("change %d", i)), "n": n(strconv.Itoa(i))})
	case 2:
		if _, err := c.DeleteItem(context.Background(), &dynamodb.DeleteItemInput{TableName: aws.String(table), Key: dynamo.Item{"pk": s(k)}}); err != nil {
			t.Fatalf("deleting %s: %v", k, err)
		}
	}
}

func seed(t testing.TB, c *dynamodb.Client, table string, count int) {
	t.Helper()
	var items []dynamo.Item
	for i := range count {
		items = append(items, dynamo.Item{"pk": s(fmt.Sprintf("k%d", i)), "v": s(fmt.Sprintf("seed %d", i)), "n": n(strconv.Itoa(i))})
	}
	putItems(t, c, table, items)
}

// Puts, updates and deletes made while the scan runs (it is slowed by
// readRowsPerSecond) and after it all arrive through the stream
// (NEW_AND_OLD_IMAGES); the target ends equal to the source.
func TestChangesDuringScan(t *testing.T) {
	p := newPipeline(t)
	createTable(t, p.sc, p.table, false, types.StreamViewTypeNewAndOldImages)
	seed(t, p.sc, p.table, 2000)
	p.writeConfig("snapshot+cdc", "readRowsPerSecond: 800\nsnapshotWorkers: 2", "scanSegments: 4", "")
	pr := p.start("migrate", "--config", p.cfgPath)
	r := rand.New(rand.NewPCG(1, 2))
	i := 0
	for !strings.Contains(pr.Output(), "snapshot complete") {
		mutate(t, p.sc, p.table, r, 2500, i)
		i++
		if i > 20000 {
			t.Fatalf("the snapshot did not complete:\n%s", pr.Output())
		}
	}
	if i < 50 {
		t.Fatalf("only %d changes were made during the scan; the test needs a slower scan", i)
	}
	for range 200 {
		mutate(t, p.sc, p.table, r, 2500, i)
		i++
	}
	// The cut-over check: once it says caught up, the target already
	// holds every change made before it was asked.
	code, out := p.run(2*time.Minute, "status", "--config", p.cfgPath, "--wait-caught-up", "--timeout", "90s")
	if code != 0 {
		t.Fatalf("status --wait-caught-up exited %d:\n%s", code, out)
	}
	p.assertSame(p.table, p.table)
	pr.Stop(t)
	t.Logf("%d changes during and after the scan", i)
}

// A table without a stream and enableStream: true gets a NEW_IMAGE stream
// before the scan; without it, the run fails naming the fix.
func TestEnableStream(t *testing.T) {
	p := newPipeline(t)
	createTable(t, p.sc, p.table, false, "")
	seed(t, p.sc, p.table, 100)

	p.writeConfig("snapshot+cdc", "", "", "")
	code, out := p.run(time.Minute, "migrate", "--config", p.cfgPath)
	if code == 0 || !strings.Contains(out, "table "+p.table+" has no stream enabled") || !strings.Contains(out, "enableStream: true") {
		t.Fatalf("want a failure naming the missing stream and the fix, got exit %d:\n%s", code, out)
	}

	p.writeConfig("snapshot+cdc", "", "enableStream: true", "")
	pr := p.start("migrate", "--config", p.cfgPath)
	ferrytest.Eventually(t, time.Minute, "the snapshot", func() bool { return strings.Contains(pr.Output(), "snapshot complete") })
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 100 {
		mutate(t, p.sc, p.table, r, 150, i)
	}
	p.waitSame(p.table, p.table, time.Minute)
	pr.Stop(t)
}

// A table that does not exist is a clear error.
func TestMissingTable(t *testing.T) {
	p := newPipeline(t)
	p.writeConfig("snapshot", "", "", "")
	code, out := p.run(time.Minute, "migrate", "--config", p.cfgPath)
	if code == 0 || !strings.Contains(out, "table "+p.table+" does not exist at "+src.Endpoint()) {
		t.Fatalf("want a failure naming the missing table, got exit %d:\n%s", code, out)
	}
}

var toScanRE = regexp.MustCompile(`toScan=(\d+)`)

// kill -9 during the scan: the restart scans only the segments not yet
// recorded in KV, continues a segment cut short after its saved key, and
// the result is exact.
func TestKillDuringScan(t *testing.T) {
	p := newPipeline(t)
	createTable(t, p.sc, p.table, false, "")
	// About 3 KB items: each segment spans two or three Scan pages of 1 MB.
	var items []dynamo.Item
	for i := range 3000 {
		items = append(items, dynamo.Item{"pk": s(fmt.Sprintf("k%d", i)), "pad": s(strings.Repeat("p", 3000)), "n": n(strconv.Itoa(i))})
	}
	putItems(t, p.sc, p.table, items)
	p.writeConfig("snapshot", "readRowsPerSecond: 600\nsnapshotWorkers: 1", "scanSegments: 4", "")
	pr := p.start("migrate", "--config", p.cfgPath)
	// Kill once a segment is done and another has saved a position
	// within itself.
	ferrytest.Eventually(t, 2*time.Minute, "a finished segment and one half scanned", func() bool {
		done, partial := kvKeys(t, p.natsPort, "src.dyn.chunk.>"), kvKeys(t, p.natsPort, "src.dyn.segment.>")
		return len(done) >= 1 && len(partial) > len(done)
	})
	pr.Kill9()
	if strings.Contains(pr.Output(), "snapshot complete") {
		t.Fatal("the snapshot finished before the kill; the test needs a slower scan")
	}
	code, out := p.run(2*time.Minute, "migrate", "--config", p.cfgPath)
	if code != 0 {
		t.Fatalf("restart exited %d:\n%s", code, out)
	}
	m := toScanRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no scan plan in the restart's log:\n%s", out)
	}
	if left, _ := strconv.Atoi(m[1]); left >= 4 {
		t.Errorf("the restart scans %d of 4 segments; the finished ones should have been skipped", left)
	}
	if !strings.Contains(out, "resuming segment after its saved key") {
		t.Errorf("the restart did not continue the half-scanned segment:\n%s", out)
	}
	p.assertSame(p.table, p.table)
}

var publishedRE = regexp.MustCompile(`recordsPublished=(\d+)`)

// published is the count of stream records a stopped producer logged.
func published(t *testing.T, out string) int {
	t.Helper()
	m := publishedRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no published count in the log:\n%s", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// kill -9 while streaming: the restart resumes each shard after its saved
// sequence number (it does not read the stream from the start again) and
// the result is exact.
func TestKillDuringStreaming(t *testing.T) {
	p := newPipeline(t)
	createTable(t, p.sc, p.table, false, types.StreamViewTypeNewImage)
	seed(t, p.sc, p.table, 300)
	p.writeConfig("snapshot+cdc", "", "", "")
	pr := p.start("migrate", "--config", p.cfgPath)
	ferrytest.Eventually(t, time.Minute, "the snapshot", func() bool { return strings.Contains(pr.Output(), "snapshot complete") })
	r := rand.New(rand.NewPCG(5, 6))
	const before, after = 400, 100
	// The seed's 300 records are in the stream too (TRIM_HORIZON).
	for i := range before {
		mutate(t, p.sc, p.table, r, 400, i)
	}
	p.waitSame(p.table, p.table, time.Minute)
	// Changes keep coming while the process dies.
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := rand.New(rand.NewPCG(7, 8))
		for i := 0; !stop.Load() && i < after; i++ {
			mutate(t, p.sc, p.table, r, 400, before+i)
		}
	}()
	pr.Kill9()
	stop.Store(true)
	<-done
	for i := range after {
		mutate(t, p.sc, p.table, r, 400, before+after+i)
	}

	pr2 := p.start("migrate", "--config", p.cfgPath)
	p.waitSame(p.table, p.table, time.Minute)
	pr2.Stop(t)
	out := pr2.Output()
	if !strings.Contains(out, "resuming shard after its saved sequence number") {
		t.Errorf("the restart did not resume a shard from KV:\n%s", out)
	}
	// Read from the start again, it would publish the 300 seed records and
	// the 400 changes before the kill once more.
	got := published(t, out)
	t.Logf("the restart published %d stream records", got)
	if got > 2*after+100 {
		t.Errorf("the restart published %d stream records; at most %d (the changes since the kill and an unsaved tail) expected", got, 2*after+100)
	}
}

// ferry check names what would stop the run: a missing table, a table
// without a stream in a mode that needs one, a target table with another
// key.
func TestCheck(t *testing.T) {
	p := newPipeline(t)
	createTable(t, p.sc, p.table, false, "")
	createTable(t, p.dc, p.table, true, "") // key (pk, sk) on the target, (pk) on the source
	p.writeConfig("snapshot+cdc", "tables: ["+p.table+", "+p.table+"_missing]", "", "")
	code, out := p.run(time.Minute, "check", "--config", p.cfgPath, "--json")
	if code != 1 {
		t.Fatalf("check exited %d, want 1:\n%s", code, out)
	}
	for _, want := range []string{"table " + p.table + "_missing does not exist", "table " + p.table + " has no stream", "has key [pk sk] but the source's " + p.table + " has [pk]"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
}

// streamStart: latest takes each shard's newest position before the scan:
// the records written before (the seed) are not published again, changes
// during and after the scan all arrive.
func TestStreamStartLatest(t *testing.T) {
	p := newPipeline(t)
	createTable(t, p.sc, p.table, false, types.StreamViewTypeNewImage)
	seed(t, p.sc, p.table, 500)
	p.writeConfig("snapshot+cdc", "", "streamStart: latest\nscanSegments: 2", "")
	pr := p.start("migrate", "--config", p.cfgPath)
	ferrytest.Eventually(t, time.Minute, "the stream's start", func() bool { return strings.Contains(pr.Output(), "starts at its newest position") })
	r := rand.New(rand.NewPCG(12, 13))
	changes := 0
	for !strings.Contains(pr.Output(), "snapshot complete") || changes < 100 {
		mutate(t, p.sc, p.table, r, 600, changes)
		changes++
	}
	p.waitSame(p.table, p.table, time.Minute)
	pr.Stop(t)
	out := pr.Output()
	if !strings.Contains(out, "recordsSkipped=500") {
		t.Errorf("the 500 seed records were not skipped:\n%s", out)
	}
	// A delete of a missing key leaves no record, so some changes may have
	// none; the 500 seed records must not be among them.
	if got := published(t, out); got > changes || got < changes/2 {
		t.Errorf("published %d stream records, want at most the %d changes made after the start", got, changes)
	}
}
