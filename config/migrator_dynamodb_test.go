package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

const migratorDynamo = `
source:
  type: dynamodb
  table: Orders.2024
  region: us-east-1
  endpoint:
    host: http://127.0.0.1
    port: 8000
  credentials:
    accessKey: AKIA-source
    secretKey: source-secret
  scanSegments: 12
  readThroughput: 100
  throughputReadPercent: 0.5
  maxMapTasks: 4
target:
  type: alternator
  table: orders
  alternatorEndpoint:
    host: scylla
    port: 8043
  credentials:
    accessKey: a
    secretKey: b
  writeThroughput: 200
  throughputWritePercent: 0.5
  streamChanges: true
  skipInitialSnapshotTransfer: false
  removeConsumedCapacity: true
  billingMode: PAY_PER_REQUEST
renames:
  - from: old
    to: new
skipSegments: [0, 3]
savepoints:
  path: /app/savepoints
  intervalSeconds: 300
`

func TestMigratorDynamoDB(t *testing.T) {
	c, err := Parse([]byte(migratorDynamo))
	if err != nil {
		t.Fatal(err)
	}
	s, tg := c.Sources[0], c.Targets[0]
	if s.Type != "dynamodb" || s.Mode != ModeSnapshotCDC || !s.DynamoDB.EnableStream || s.Tables[0] != "Orders.2024" {
		t.Errorf("source: %+v", s)
	}
	if !strings.HasPrefix(s.Name, "dynamodb-Orders_2024-") || len(s.Name) > 64 {
		t.Errorf("source name %q", s.Name)
	}
	d := s.DynamoDB
	if d.Endpoint != "http://127.0.0.1:8000" || d.AccessKey != "AKIA-source" || d.ScanSegments != 12 || !slices.Equal(d.SkipSegments, []int{0, 3}) || d.ReadThroughput != 100 || d.ReadThroughputPercent != 0.5 {
		t.Errorf("source dynamodb: %+v", d)
	}
	if tg.Type != "alternator" || tg.From != s.Name || tg.DynamoDB.Endpoint != "http://scylla:8043" || tg.DynamoDB.BatchItems != 100 ||
		tg.Tables["Orders.2024"] != "orders" || tg.WriteRowsPerSecond != 100 || tg.Renames[0].To != "new" || tg.DynamoDB.BillingMode != "PAY_PER_REQUEST" {
		t.Errorf("target: %+v", tg)
	}
	for _, w := range []string{"source.maxMapTasks", "target.removeConsumedCapacity", "savepoints"} {
		if !slices.Contains(c.Warnings, w) {
			t.Errorf("warnings %v lack %s", c.Warnings, w)
		}
	}
	if c.Savepoints.Path != "" {
		t.Errorf("savepoint files would be written: %+v", c.Savepoints)
	}

	// Two tables give two sources.
	c2, err := Parse([]byte(strings.Replace(migratorDynamo, "Orders.2024", "Orders_2024", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if c2.Sources[0].Name == s.Name {
		t.Errorf("tables Orders.2024 and Orders_2024 share source name %q", s.Name)
	}
}

func TestMigratorDynamoDBErrors(t *testing.T) {
	for name, tc := range map[string]struct{ from, to, want string }{
		"unknown key":     {"maxMapTasks: 4", "maxMapTask: 4", `field maxMapTask not found`},
		"assume role":     {"    secretKey: source-secret\n", "    secretKey: source-secret\n    assumeRole: {arn: x}\n", "assumeRole: not supported"},
		"skip without":    {"streamChanges: true\n  skipInitialSnapshotTransfer: false", "streamChanges: false\n  skipInitialSnapshotTransfer: true", "would copy nothing"},
		"bad target type": {"type: alternator", "type: parquet", `target.type "parquet"`},
		"bad segment":     {"skipSegments: [0, 3]", "skipSegments: [12]", "skipSegments: 12 is not a segment"},
		"dynamodb batch":  {"type: alternator", "type: dynamodb", ""},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(strings.Replace(migratorDynamo, tc.from, tc.to, 1)))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
