package config

// ScyllaDB Migrator's DynamoDB → DynamoDB/Alternator job: a config.yaml with
// source.type dynamodb and target.type dynamodb or alternator becomes one
// ferry source and one target. The source name is derived from the table, so
// several such configs run one after another from the same working directory
// (sharing ./ferry-data) each keep their own stream and progress.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

func init() {
	migratorConverters["dynamodb"] = convertMigratorDynamoDB
	migratorConverters["dynamo"] = convertMigratorDynamoDB
}

// migratorEndpoint is the migrator's endpoint: {host, port}.
type migratorEndpoint struct {
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
}

func (e *migratorEndpoint) url() string {
	if e == nil || e.Host == "" {
		return ""
	}
	h := e.Host
	if !strings.Contains(h, "://") {
		h = "http://" + h
	}
	if e.Port != 0 {
		h = fmt.Sprintf("%s:%d", strings.TrimRight(h, "/"), e.Port)
	}
	return h
}

type migratorAWSCredentials struct {
	AccessKey  string    `yaml:"accessKey"`
	SecretKey  string    `yaml:"secretKey"`
	AssumeRole yaml.Node `yaml:"assumeRole"`
}

type migratorDynamoSource struct {
	Type                   string                  `yaml:"type"`
	Endpoint               *migratorEndpoint       `yaml:"endpoint"`
	Region                 string                  `yaml:"region"`
	Credentials            *migratorAWSCredentials `yaml:"credentials"`
	Table                  string                  `yaml:"table"`
	ScanSegments           int                     `yaml:"scanSegments"`
	ReadThroughput         int                     `yaml:"readThroughput"`
	ThroughputReadPercent  float64                 `yaml:"throughputReadPercent"`
	MaxMapTasks            yaml.Node               `yaml:"maxMapTasks"`
	RemoveConsumedCapacity yaml.Node               `yaml:"removeConsumedCapacity"`
	Alternator             yaml.Node               `yaml:"alternator"`
}

type migratorDynamoTarget struct {
	Type                        string                  `yaml:"type"`
	Endpoint                    *migratorEndpoint       `yaml:"endpoint"`
	AlternatorEndpoint          *migratorEndpoint       `yaml:"alternatorEndpoint"`
	Region                      string                  `yaml:"region"`
	Credentials                 *migratorAWSCredentials `yaml:"credentials"`
	Table                       string                  `yaml:"table"`
	WriteThroughput             int                     `yaml:"writeThroughput"`
	ThroughputWritePercent      float64                 `yaml:"throughputWritePercent"`
	StreamChanges               bool                    `yaml:"streamChanges"`
	SkipInitialSnapshotTransfer bool                    `yaml:"skipInitialSnapshotTransfer"`
	RemoveConsumedCapacity      yaml.Node               `yaml:"removeConsumedCapacity"`
	BillingMode                 string                  `yaml:"billingMode"`
	AlternatorConfig            yaml.Node               `yaml:"alternatorConfig"`
}

func (c *migratorAWSCredentials) access(at string) (AWSAccess, error) {
	if c == nil {
		return AWSAccess{}, nil
	}
	if c.AssumeRole.Kind != 0 {
		return AWSAccess{}, fmt.Errorf("%s.credentials.assumeRole: not supported by ferry; give accessKey/secretKey, or set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN of the assumed role", at)
	}
	return AWSAccess{AccessKey: c.AccessKey, SecretKey: c.SecretKey}, nil
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// nameFromTable derives a ferry source or target name from a DynamoDB
// table name (3-255 of [A-Za-z0-9_.-]): distinct tables give distinct names.
func nameFromTable(prefix, table string) string {
	n := prefix + unsafeName.ReplaceAllString(table, "_")
	if n == prefix+table && len(n) <= 64 {
		return n
	}
	// Folded or long: a hash keeps names of different tables apart.
	sum := sha256.Sum256([]byte(table))
	h := hex.EncodeToString(sum[:4])
	return n[:min(len(n), 64-9)] + "-" + h
}

func convertMigratorDynamoDB(doc *MigratorDoc, c *Config) error {
	var src migratorDynamoSource
	if err := DecodeStrict(&doc.Source, &src); err != nil {
		return fmt.Errorf("source: %v", err)
	}
	var head struct {
		Type string `yaml:"type"`
	}
	if err := doc.Target.Decode(&head); err != nil {
		return fmt.Errorf("target: %v", err)
	}
	switch head.Type {
	case "dynamodb", "dynamo", "alternator":
	default:
		return fmt.Errorf("target.type %q: a DynamoDB source migrates to type dynamodb or alternator", head.Type)
	}
	var dst migratorDynamoTarget
	if err := DecodeStrict(&doc.Target, &dst); err != nil {
		return fmt.Errorf("target: %v", err)
	}
	if src.Table == "" {
		return fmt.Errorf("source.table: missing")
	}
	if dst.Table == "" {
		return fmt.Errorf("target.table: missing")
	}
	sa, err := src.Credentials.access("source")
	if err != nil {
		return err
	}
	sa.Region, sa.Endpoint = src.Region, src.Endpoint.url()
	ta, err := dst.Credentials.access("target")
	if err != nil {
		return err
	}
	ta.Region, ta.Endpoint = dst.Region, dst.Endpoint.url()
	if dst.AlternatorEndpoint != nil {
		ta.Endpoint = dst.AlternatorEndpoint.url()
	}

	mode := ModeSnapshot
	if dst.StreamChanges {
		mode = ModeSnapshotCDC
		if dst.SkipInitialSnapshotTransfer {
			mode = ModeCDC
		}
	} else if dst.SkipInitialSnapshotTransfer {
		return fmt.Errorf("target.skipInitialSnapshotTransfer: true without streamChanges: true would copy nothing")
	}
	s := Source{
		Name: nameFromTable("dynamodb-", src.Table), Type: "dynamodb", Mode: mode, Tables: []string{src.Table},
		DynamoDB: DynamoDBSource{
			AWSAccess: sa, ScanSegments: src.ScanSegments, SkipSegments: doc.SkipSegments,
			ReadThroughput: src.ReadThroughput, ReadThroughputPercent: src.ThroughputReadPercent,
			// ScyllaDB Migrator turns the stream on itself for streamChanges.
			EnableStream: dst.StreamChanges,
		},
	}
	typ := "dynamodb"
	if head.Type == "alternator" {
		typ = "alternator"
	}
	t := Target{
		Name: nameFromTable("to-", dst.Table), Type: typ, From: s.Name,
		DynamoDB: DynamoDBTarget{AWSAccess: ta, BillingMode: dst.BillingMode},
	}
	if dst.Table != src.Table {
		t.Tables = map[string]string{src.Table: dst.Table}
	}
	if dst.WriteThroughput > 0 {
		pct := dst.ThroughputWritePercent
		if pct == 0 {
			pct = 1
		}
		// One write unit writes an item of up to 1 KB: items per second.
		t.WriteRowsPerSecond = max(1, int(float64(dst.WriteThroughput)*pct))
	} else if dst.ThroughputWritePercent != 0 {
		c.Warnings = append(c.Warnings, "target.throughputWritePercent (without writeThroughput; set target writeRowsPerSecond in a ferry config to cap writes)")
	}
	for _, r := range doc.Renames {
		t.Renames = append(t.Renames, Rename{From: r.From, To: r.To})
	}
	inert := map[string]bool{
		"source.maxMapTasks":            src.MaxMapTasks.Kind != 0,
		"source.removeConsumedCapacity": src.RemoveConsumedCapacity.Kind != 0,
		"source.alternator":             src.Alternator.Kind != 0,
		"target.removeConsumedCapacity": dst.RemoveConsumedCapacity.Kind != 0,
		"target.alternatorConfig":       dst.AlternatorConfig.Kind != 0,
		"skipTokenRanges":               doc.SkipTokenRanges.Kind != 0,
		// Finished segments are kept in ferry's KV state, not in files.
		"savepoints": doc.Savepoints != nil,
	}
	for _, k := range []string{"source.maxMapTasks", "source.removeConsumedCapacity", "source.alternator", "target.removeConsumedCapacity", "target.alternatorConfig", "skipTokenRanges", "savepoints"} {
		if inert[k] {
			c.Warnings = append(c.Warnings, k)
		}
	}
	if err := DecodeStrict(&doc.Validation, &c.Validation); err != nil {
		return fmt.Errorf("validation: %v", err)
	}
	// A migrator config has no NATS section: the embedded server's defaults
	// apply (127.0.0.1:4333, ./ferry-data); this moves its address.
	if v := os.Getenv("FERRY_NATS_LISTEN"); v != "" {
		c.NATS.Listen = v
	}
	c.Savepoints = Savepoints{}
	c.Sources = append(c.Sources, s)
	c.Targets = append(c.Targets, t)
	return nil
}
