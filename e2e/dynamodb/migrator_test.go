package dynamodb

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
)

func migratorConfig(table, targetType, targetTable string, stream bool) string {
	return fmt.Sprintf(`source:
  type: dynamodb
  table: %s
  region: us-east-1
  endpoint:
    host: http://127.0.0.1
    port: %d
  credentials:
    accessKey: test-key-id
    secretKey: test-secret-value
  scanSegments: 3
  maxMapTasks: 3
target:
  type: %s
  table: %s
  endpoint:
    host: http://127.0.0.1
    port: %d
  credentials:
    accessKey: test-key-id
    secretKey: test-secret-value
  streamChanges: %v
renames: []
skipSegments: []
savepoints:
  path: ./savepoints
  intervalSeconds: 300
`, table, src.Port, targetType, targetTable, dst.Port, stream)
}

// Two scylla-migrator configs, one table each, run one after another from
// the same working directory: each migrates its own table (one with
// streamChanges), a re-run of the first finds its work done, and neither
// AWS key is written to ferry's state on disk.
func TestMigratorConfigs(t *testing.T) {
	p := newPipeline(t)
	a, b := p.table+"_a", p.table+"_b"
	createTable(t, p.sc, a, false, "")
	createTable(t, p.sc, b, true, "")
	seed(t, p.sc, a, 500)
	var items = make([]map[string]types.AttributeValue, 0, 300)
	for i := range 300 {
		items = append(items, map[string]types.AttributeValue{"pk": s(fmt.Sprint(i % 10)), "sk": n(fmt.Sprint(i)), "v": s("b")})
	}
	putItems(t, p.sc, b, items)

	cfgA, cfgB := filepath.Join(p.dir, "a.yaml"), filepath.Join(p.dir, "b.yaml")
	must(t, os.WriteFile(cfgA, []byte(migratorConfig(a, "alternator", a+"_copy", false)), 0o600))
	must(t, os.WriteFile(cfgB, []byte(migratorConfig(b, "dynamodb", b, true)), 0o600))

	code, out := p.run(2*time.Minute, "migrate", "--config", cfgA)
	if code != 0 {
		t.Fatalf("migrate a.yaml exited %d:\n%s", code, out)
	}
	if !strings.Contains(out, "maxMapTasks") {
		t.Errorf("the inert key maxMapTasks was not reported:\n%s", out)
	}
	p.assertSame(a, a+"_copy")

	pr := p.start("migrate", "--config", cfgB)
	ferrytest.Eventually(t, time.Minute, "the snapshot of b", func() bool { return strings.Contains(pr.Output(), "snapshot complete") })
	r := rand.New(rand.NewPCG(10, 11))
	for i := range 100 {
		putItem(t, p.sc, b, map[string]types.AttributeValue{"pk": s(fmt.Sprint(r.IntN(12))), "sk": n(fmt.Sprint(r.IntN(400))), "v": s(fmt.Sprint("change ", i))})
	}
	p.waitSame(b, b, time.Minute)
	pr.Stop(t)

	code, out = p.run(2*time.Minute, "migrate", "--config", cfgA)
	if code != 0 {
		t.Fatalf("re-running a.yaml exited %d:\n%s", code, out)
	}
	if strings.Contains(out, "segment scanned") {
		t.Errorf("re-running a.yaml scanned again:\n%s", out)
	}
	p.assertSame(a, a+"_copy")

	err := filepath.WalkDir(filepath.Join(p.dir, "ferry-data"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, secret := range []string{"test-secret-value", "test-key-id"} {
			if bytes.Contains(data, []byte(secret)) {
				t.Errorf("%s holds an AWS key", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
