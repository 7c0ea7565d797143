package dynamodb

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/internal/dynamo"
)

// A snapshot-only run copies every item of two tables (several segments, a
// range key), creates the missing target tables, and exits 0; no secret
// reaches the output.
func TestSnapshotCopiesTable(t *testing.T) {
	p := newPipeline(t)
	createTable(t, p.sc, p.table, true, "")
	var items []dynamo.Item
	for i := range 1500 {
		items = append(items, dynamo.Item{"pk": s(fmt.Sprintf("k%d", i%300)), "sk": n(fmt.Sprint(i)), "v": s(strings.Repeat("x", i%50)), "n": n(fmt.Sprintf("%d.25", i))})
	}
	putItems(t, p.sc, p.table, items)
	other := p.table + "_2"
	createTable(t, p.sc, other, false, "")
	seed(t, p.sc, other, 700)
	p.writeConfig("snapshot", "tables: ["+p.table+", "+other+"]", "scanSegments: 5", "")
	code, out := p.run(2*time.Minute, "migrate", "--config", p.cfgPath)
	if code != 0 {
		t.Fatalf("migrate exited %d:\n%s", code, out)
	}
	p.assertSame(p.table, p.table)
	p.assertSame(other, other)
	if strings.Contains(out, "test-secret-value") || strings.Contains(out, "test-key-id") {
		t.Errorf("the AWS keys appear in ferry's output:\n%s", out)
	}
}
