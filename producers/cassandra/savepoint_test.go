package cassandra

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/config"
)

const migratorDoc = `source:
  type: cassandra
  host: 10.0.0.1
  port: 9042
  credentials:
    username: alice
    password: s3cr3t-src
  keyspace: shop
  table: orders
  splitCount: 64
  preserveTimestamps: true
target:
  type: scylla
  host: 10.0.0.2
  credentials:
    username: bob
    password: s3cr3t-dst
  keyspace: shop2
  table: orders
renames:
  - from: a
    to: b
savepoints:
  path: /tmp/sp
  intervalSeconds: 60
skipTokenRanges:
  - - type: long
      value: -9223372036854775808
    - type: long
      value: -100
`

const ferryDoc = `nats:
  dataDir: /tmp/x
sources:
  - name: src
    type: cassandra
    dsn: cassandra://alice:s3cr3t-src@10.0.0.1:9042
    keyspace: shop
    splitCount: 8
targets:
  - name: pg
    type: postgres
    dsn: postgres://bob:s3cr3t-pg@localhost/db
    from: src
  - name: sc
    type: scylla
    dsn: cassandra://bob:s3cr3t-dst@10.0.0.2
    keyspace: shop2
    from: src
savepoints:
  path: /tmp/sp
`

// TestSavepointRoundTrip renders savepoints of both config shapes and loads
// them back: the finished ranges come back as skipTokenRanges, and no
// password is in the file.
func TestSavepointRoundTrip(t *testing.T) {
	for name, doc := range map[string]string{"migrator": migratorDoc, "ferry": ferryDoc} {
		t.Run(name, func(t *testing.T) {
			c, err := config.Parse([]byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			src := c.Sources[0]
			skip := normalize(append([]tokenRange{{Start: 5, End: 500}, {Start: 1000, End: math.MaxInt64}}, src.SkipTokenRanges...))
			out, err := renderSavepoint(src, skip)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(out), "s3cr3t") {
				t.Fatalf("savepoint holds a password:\n%s", out)
			}
			t.Setenv("FERRY_SOURCE_CREDENTIALS_PASSWORD", "s3cr3t-src")
			back, err := config.Parse(out)
			if err != nil {
				t.Fatalf("savepoint does not load: %v\n%s", err, out)
			}
			if back.Migrator != c.Migrator {
				t.Fatalf("shape changed")
			}
			bs := back.Sources[0]
			if !reflect.DeepEqual(bs.SkipTokenRanges, skip) {
				t.Fatalf("skipTokenRanges %v, want %v", bs.SkipTokenRanges, skip)
			}
			if bs.Name != src.Name || bs.CQLKeyspace != src.CQLKeyspace || bs.SplitCount != src.SplitCount {
				t.Fatalf("source changed: %+v", bs)
			}
			if !strings.Contains(bs.DSN, "${FERRY_") {
				t.Fatalf("source DSN %q has no password reference", bs.DSN)
			}
		})
	}
}

func TestSavepointFileAtomic(t *testing.T) {
	dir := t.TempDir()
	c, err := config.Parse([]byte(strings.ReplaceAll(ferryDoc, "/tmp/sp", dir)))
	if err != nil {
		t.Fatal(err)
	}
	s := newSavepointer(c.Sources[0], nil, &progress{done: map[string][]tokenRange{}}, nil)
	path, err := s.write(timeUnix(1700000000))
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "savepoint_1700000000.yaml" {
		t.Fatalf("file %s", path)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("dir holds %d entries, want only the savepoint", len(ents))
	}
}

func timeUnix(s int64) time.Time { return time.Unix(s, 0) }
