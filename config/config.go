// Package config reads and checks ferry's YAML configuration.
package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"golang.org/x/time/rate"
	"gopkg.in/yaml.v3"
)

// Config is a whole ferry pipeline: where NATS is, what to read, what to write.
type Config struct {
	NATS    NATS     `yaml:"nats"`
	Sources []Source `yaml:"sources"`
	Targets []Target `yaml:"targets"`
	Log     Log      `yaml:"log"`
	Metrics Metrics  `yaml:"metrics"`
	// Savepoints, when Path is set, makes snapshot sources that support it
	// also write savepoint files: this config with finished work filled in.
	Savepoints Savepoints `yaml:"savepoints"`
	// Validation holds the tolerances of `ferry validate`.
	Validation Validation `yaml:"validation"`

	// Warnings lists keys of the document that were accepted but have no
	// effect in ferry (from a scylla-migrator config); the CLI prints them.
	Warnings []string `yaml:"-"`
	// Migrator is true when the document was a scylla-migrator config.yaml.
	Migrator bool `yaml:"-"`
}

// Savepoints configures savepoint files (ScyllaDB Migrator's savepoints):
// every IntervalSeconds, on SIGINT/SIGTERM and at the end, the run's config
// with finished work filled in is written to Path/savepoint_<unix>.yaml.
type Savepoints struct {
	Path            string `yaml:"path"`
	IntervalSeconds int    `yaml:"intervalSeconds"`
}

// Validation sets the tolerances of `ferry validate`; the keys are
// ScyllaDB Migrator's.
type Validation struct {
	CompareTimestamps        bool    `yaml:"compareTimestamps"`
	TTLToleranceMillis       int64   `yaml:"ttlToleranceMillis"`
	WritetimeToleranceMillis int64   `yaml:"writetimeToleranceMillis"`
	FailuresToFetch          int     `yaml:"failuresToFetch"`
	FloatingPointTolerance   float64 `yaml:"floatingPointTolerance"`
	TimestampMsTolerance     int64   `yaml:"timestampMsTolerance"`
}

// Metrics says where the operator endpoints listen (/metrics, /_/varz,
// /_/healthz, /debug/pprof/); empty turns them off.
type Metrics struct {
	Addr string `yaml:"addr"`
}

// NATS says where the event log lives. An empty URL runs the embedded server.
type NATS struct {
	URL       string `yaml:"url"`
	Listen    string `yaml:"listen"`
	DataDir   string `yaml:"dataDir"`
	CredsFile string `yaml:"credsFile"`
	TLS       TLS    `yaml:"tls"`
	// Replicas of each stream and bucket on a clustered external NATS.
	Replicas int `yaml:"replicas"`
	// DuplicateWindow is how long JetStream remembers message ids to drop
	// re-published events.
	DuplicateWindow Duration `yaml:"duplicateWindow"`
	// MaxPayload caps one message on the embedded server (bytes).
	MaxPayload int32 `yaml:"maxPayload"`
}

// TLS holds client TLS settings for an external NATS.
type TLS struct {
	CertFile string `yaml:"certFile"`
	KeyFile  string `yaml:"keyFile"`
	CAFile   string `yaml:"caFile"`
}

// Log sets the logger.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text or json
}

// Source is one database ferry reads.
type Source struct {
	Name   string   `yaml:"name"`
	Type   string   `yaml:"type"`
	DSN    string   `yaml:"dsn"`
	Tables []string `yaml:"tables"`
	// Mode is snapshot, cdc or snapshot+cdc.
	Mode        string `yaml:"mode"`
	Slot        string `yaml:"slot"`
	Publication string `yaml:"publication"`
	// Partitions is the number of key lanes of the source's stream. Fixed once
	// the stream exists.
	Partitions int `yaml:"partitions"`
	// ChunkRows is the snapshot's primary-key chunk size.
	ChunkRows int `yaml:"chunkRows"`
	// SnapshotWorkers read chunks in parallel.
	SnapshotWorkers int `yaml:"snapshotWorkers"`
	// StatusInterval is how often the replication client reports its flushed
	// position to the source.
	StatusInterval Duration `yaml:"statusInterval"`
	// ReadRowsPerSecond caps how fast the source is read (snapshot rows and
	// changes); 0 means no cap.
	ReadRowsPerSecond int `yaml:"readRowsPerSecond"`

	// --- Replay and retention (every source type) ---
	// Retention bounds the source's change stream and keeps the state
	// stream a new target is seeded from (docs/replay.md).
	Retention Retention `yaml:"retention"`

	// --- Cassandra/ScyllaDB (type: cassandra, scylla) ---
	// DSN is cassandra://[user[:password]@]host[:port][,host[:port]...]; a
	// password written ${NAME} is read from the environment variable NAME.
	// CQLKeyspace holds the tables to read; Tables names tables in it (empty:
	// every table of the keyspace).
	CQLKeyspace string `yaml:"keyspace"`
	// SplitCount is how many token ranges the ring is cut into.
	SplitCount int `yaml:"splitCount"`
	// CQLConnections is how many token ranges are read at once.
	CQLConnections int `yaml:"connections"`
	// FetchSize is the page size of range scans.
	FetchSize int `yaml:"fetchSize"`
	// CQLConsistency is the read consistency level (default LOCAL_QUORUM).
	CQLConsistency string `yaml:"consistencyLevel"`
	// CQLWhere is an extra CQL condition of every range scan.
	CQLWhere string `yaml:"where"`
	// PreserveTimestamps carries each cell's writetime and TTL.
	PreserveTimestamps bool `yaml:"preserveTimestamps"`
	// SkipTokenRanges are token ranges (start, end] not to read (filled in
	// by savepoint files).
	SkipTokenRanges []TokenRange `yaml:"skipTokenRanges"`
	// CQLProtocolVersion pins the native protocol version (0: negotiate).
	CQLProtocolVersion int `yaml:"protocolVersion"`
	// CQLLocalDC prefers the coordinators of this datacenter.
	CQLLocalDC string `yaml:"localDC"`
	// CQLRun is what savepoint files are made of: the whole config this
	// source came from (not part of the YAML).
	CQLRun *CQLRun `yaml:"-"`

	// --- Oracle (type: oracle) ---
	// PDBDSN connects to the pluggable database whose tables are moved (the
	// snapshot and catalog reads), when dsn connects to the container root
	// where LogMiner runs. Empty: dsn serves both (a non-CDB database).
	PDBDSN string `yaml:"pdbDsn"`
	// SCN, on a first start (nothing saved yet), is the SCN the target
	// already holds: transactions committed at or before it are skipped.
	// With a snapshot it is also the SCN the snapshot reads AS OF.
	SCN uint64 `yaml:"scn"`
	// BackfillFromSCN, on a first start, is where mining begins: the start
	// SCN of the oldest transaction open at SCN, so that none is cut.
	// Default: SCN (or what ferry reads from V$TRANSACTION for its own
	// snapshot).
	BackfillFromSCN uint64 `yaml:"backfillFromSCN"`
	// SCNWindow is how many SCNs one LogMiner session mines.
	SCNWindow uint64 `yaml:"scnWindow"`
	// PollInterval is how long to wait for new redo once caught up.
	PollInterval Duration `yaml:"pollInterval"`
	// TxBufferBytes caps the changes of open transactions held in memory;
	// beyond it, a transaction's changes go to a file in SpillDir.
	TxBufferBytes int `yaml:"txBufferBytes"`
	// SpillDir holds those files (default: the system temp dir).
	SpillDir string `yaml:"spillDir"`

	// --- MySQL/MariaDB (type: mysql) ---
	// DefaultGTIDSet is where the change stream starts when KV holds no
	// position yet (MySQL "uuid:1-N", MariaDB "domain-server-seq"); ignored
	// once a position is saved.
	DefaultGTIDSet string `yaml:"defaultGTIDSet"`
	// ZeroDates says what a zero date ('0000-00-00') becomes: "error"
	// (stop, naming table.column and row key) or "null".
	ZeroDates string `yaml:"zeroDates"`
	// ServerID is the replica server id the binlog reader announces; it
	// must differ from every server and replica of the source.
	ServerID uint32 `yaml:"serverID"`

	// --- DynamoDB (type: dynamodb) ---
	// DynamoDB holds the DynamoDB source's settings; dsn is not used
	// (the endpoint, region and credentials are here).
	DynamoDB DynamoDBSource `yaml:"dynamodb"`
}

// AWSAccess says where a DynamoDB-API endpoint is and how to sign requests.
// The keys are secrets: never logged, published or stored in KV.
type AWSAccess struct {
	// Region of the tables (default us-east-1 when only endpoint is set).
	Region string `yaml:"region"`
	// Endpoint overrides the AWS endpoint (Alternator, an emulator).
	Endpoint string `yaml:"endpoint"`
	// AccessKey and SecretKey are static credentials; empty uses the
	// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN
	// environment variables.
	AccessKey    string `yaml:"accessKey"`
	SecretKey    string `yaml:"secretKey"`
	SessionToken string `yaml:"sessionToken"`
}

// DynamoDBSource is the DynamoDB source's block.
type DynamoDBSource struct {
	AWSAccess `yaml:",inline"`
	// ScanSegments is the number of parallel Scan segments per table.
	ScanSegments int `yaml:"scanSegments"`
	// SkipSegments are segments already copied (ScyllaDB Migrator's
	// skipSegments); they are not scanned.
	SkipSegments []int `yaml:"skipSegments"`
	// ConsistentRead makes the Scan strongly consistent.
	ConsistentRead bool `yaml:"consistentRead"`
	// ReadThroughput caps read capacity units per second per table; with
	// ReadThroughputPercent (0..1.5] the cap is that share of it (or of the
	// table's provisioned read capacity when ReadThroughput is 0).
	ReadThroughput        int     `yaml:"readThroughput"`
	ReadThroughputPercent float64 `yaml:"readThroughputPercent"`
	// EnableStream turns on a NEW_IMAGE stream on a table that has none,
	// rather than failing.
	EnableStream bool `yaml:"enableStream"`
	// StreamPollInterval is how long a shard at its tip waits before the
	// next GetRecords.
	StreamPollInterval Duration `yaml:"streamPollInterval"`
	// StreamStart is where the change stream starts on the first run:
	// trim_horizon (its oldest record, the default) or latest (its newest
	// position, taken before the scan starts).
	StreamStart string `yaml:"streamStart"`
}

// Retention says how long the change stream keeps events and whether the
// state stream (the latest row of every key) is kept beside it.
type Retention struct {
	// MaxAge and MaxBytes trim the change stream: events older than MaxAge,
	// and the oldest events beyond MaxBytes, are removed, but never before
	// the compactor has folded them into the state stream. 0 = keep.
	MaxAge   Duration `yaml:"maxAge"`
	MaxBytes int64    `yaml:"maxBytes"`
	// Compact keeps the state stream FERRY_STATE_<SOURCE>. Default: on when
	// maxAge or maxBytes trims the change stream (it is what a new target is
	// seeded from then), off otherwise: the untrimmed change stream itself
	// rebuilds any target, and the state stream costs storage and NATS
	// memory per key (docs/replay.md).
	Compact *bool `yaml:"compact"`
}

// Compacts reports whether the source keeps a state stream.
func (r Retention) Compacts() bool {
	if r.Compact != nil {
		return *r.Compact
	}
	return r.MaxAge > 0 || r.MaxBytes > 0
}

// Target is one database ferry writes.
type Target struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"`
	DSN  string `yaml:"dsn"`
	// From names the source whose stream this target applies.
	From string `yaml:"from"`
	// BatchSize is the most messages applied in one target transaction.
	BatchSize int `yaml:"batchSize"`
	// Schema, when set, replaces the source schema of every table name.
	Schema string `yaml:"schema"`
	// WriteRowsPerSecond caps how fast rows are written to the target; 0
	// means no cap.
	WriteRowsPerSecond int `yaml:"writeRowsPerSecond"`
	// Tables renames tables: source table name (as in events) → target
	// table name.
	Tables map[string]string `yaml:"tables"`
	// Renames renames columns (or DynamoDB attributes) on the way in.
	Renames []Rename `yaml:"renames"`

	// --- DynamoDB / Alternator (type: dynamodb, alternator) ---
	// DynamoDB holds the DynamoDB/Alternator target's settings; dsn is not
	// used (the endpoint, region and credentials are here).
	// --- ScyllaDB/Cassandra (type: scylla, cassandra) ---
	// DSN as for the CQL source. CQLKeyspace is where tables are written
	// (a table renamed in Tables to "ks.t" names its own keyspace).
	CQLKeyspace string `yaml:"keyspace"`
	// CQLConnections is how many partitions' writes are in flight at once.
	CQLConnections int `yaml:"connections"`
	// CQLConsistency is the write consistency level (default LOCAL_QUORUM).
	CQLConsistency string `yaml:"consistencyLevel"`
	// CQLProtocolVersion pins the native protocol version (0: negotiate).
	CQLProtocolVersion int `yaml:"protocolVersion"`
	// CQLLocalDC prefers the coordinators of this datacenter.
	CQLLocalDC string `yaml:"localDC"`

	DynamoDB DynamoDBTarget `yaml:"dynamodb"`
}

// DynamoDBTarget is the DynamoDB/Alternator target's block.
type DynamoDBTarget struct {
	AWSAccess `yaml:",inline"`
	// BatchItems is the most items in one BatchWriteItem: at most 25 on
	// DynamoDB (the default); Alternator takes more (default 100).
	BatchItems int `yaml:"batchItems"`
	// WriteParallelism is how many BatchWriteItem calls one lane runs at
	// once.
	WriteParallelism int `yaml:"writeParallelism"`
	// StateTable is the target table holding each lane's applied stream
	// sequence (default ferry_state).
	StateTable string `yaml:"stateTable"`
	// BillingMode of tables ferry creates: PROVISIONED or PAY_PER_REQUEST;
	// empty copies the source's.
	BillingMode string `yaml:"billingMode"`
	// SkipTTL leaves the target table's TTL setting alone.
	SkipTTL bool `yaml:"skipTTL"`
}

// Rename is one column rename. An empty Table applies it to every table.
type Rename struct {
	Table string `yaml:"table"`
	From  string `yaml:"from"`
	To    string `yaml:"to"`
}

// Modes of a source.
const (
	ModeSnapshot    = "snapshot"
	ModeCDC         = "cdc"
	ModeSnapshotCDC = "snapshot+cdc"
)

// HasSnapshot reports whether the source's mode includes a snapshot.
func (s Source) HasSnapshot() bool { return s.Mode == ModeSnapshot || s.Mode == ModeSnapshotCDC }

// HasCDC reports whether the source's mode includes the change stream.
func (s Source) HasCDC() bool { return s.Mode == ModeCDC || s.Mode == ModeSnapshotCDC }

// Duration is a time.Duration written as "10s" in YAML.
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (e.g. 10s, 5m)", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as UnmarshalYAML reads it ("10s"), so a
// config written back (a savepoint file) loads again.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ErrInvalid marks configuration errors (exit code 2).
var ErrInvalid = errors.New("invalid config")

// Load reads, decodes and checks the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: reading %s: %v", ErrInvalid, path, err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

var fieldNotFound = regexp.MustCompile(`line (\d+): field (\S+) not found in type config\.(\w+)`)

// Parse decodes and checks a config document. Unknown keys are errors.
func Parse(data []byte) (*Config, error) {
	if isMigratorDoc(data) {
		return parseMigrator(data)
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		msg := err.Error()
		// yaml.v3 names Go types; say it in the config's own words.
		msg = fieldNotFound.ReplaceAllStringFunc(msg, func(m string) string {
			p := fieldNotFound.FindStringSubmatch(m)
			return fmt.Sprintf("line %s: unknown key %q in %s", p[1], p[2], section(p[3]))
		})
		msg = strings.ReplaceAll(msg, "yaml: unmarshal errors:\n  ", "")
		msg = strings.ReplaceAll(msg, "cannot unmarshal !!", "wrong type: got ")
		return nil, fmt.Errorf("%w: %s", ErrInvalid, msg)
	}
	c.setDefaults()
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return &c, nil
}

func section(goType string) string {
	switch goType {
	case "Source":
		return "sources[]"
	case "Target":
		return "targets[]"
	case "NATS":
		return "nats"
	case "TLS":
		return "nats.tls"
	case "Log":
		return "log"
	case "Metrics":
		return "metrics"
	case "Savepoints":
		return "savepoints"
	case "Validation":
		return "validation"
	case "Rename":
		return "targets[].renames[]"
	case "Retention":
		return "sources[].retention"
	case "DynamoDBSource":
		return "sources[].dynamodb"
	case "DynamoDBTarget":
		return "targets[].dynamodb"
	}
	return "the top level"
}

func (c *Config) setDefaults() {
	if c.NATS.Listen == "" {
		c.NATS.Listen = "127.0.0.1:4333"
	}
	if c.NATS.DataDir == "" {
		c.NATS.DataDir = "./ferry-data"
	}
	if c.NATS.Replicas == 0 {
		c.NATS.Replicas = 1
	}
	if c.NATS.DuplicateWindow == 0 {
		c.NATS.DuplicateWindow = Duration(10 * time.Minute)
	}
	if c.NATS.MaxPayload == 0 {
		c.NATS.MaxPayload = 8 << 20
	}
	for i := range c.Sources {
		s := &c.Sources[i]
		if IsCQL(s.Type) {
			c.setCQLSourceDefaults(s)
		}
		if s.Mode == "" {
			s.Mode = ModeSnapshotCDC
		}
		if s.Type == "dynamodb" {
			d := &s.DynamoDB
			if d.ScanSegments == 0 {
				d.ScanSegments = 8
			}
			if d.StreamPollInterval == 0 {
				d.StreamPollInterval = Duration(500 * time.Millisecond)
			}
			if d.StreamStart == "" {
				d.StreamStart = "trim_horizon"
			}
		}
		if s.Slot == "" {
			s.Slot = "ferry_" + IdentSafe(s.Name)
		}
		if s.Publication == "" {
			s.Publication = "ferry_" + IdentSafe(s.Name)
		}
		if s.Partitions == 0 {
			s.Partitions = 8
		}
		if s.ChunkRows == 0 {
			s.ChunkRows = 20000
		}
		if s.Type == "dynamodb" && s.SnapshotWorkers == 0 && s.DynamoDB.ScanSegments > 0 {
			// Every Scan segment in parallel, as ScyllaDB Migrator does.
			s.SnapshotWorkers = min(s.DynamoDB.ScanSegments, 64)
		}
		if s.SnapshotWorkers == 0 {
			s.SnapshotWorkers = 4
		}
		if s.StatusInterval == 0 {
			s.StatusInterval = Duration(time.Second)
		}
		if s.Type == "mysql" || s.Type == "mariadb" {
			if s.ZeroDates == "" {
				s.ZeroDates = "error"
			}
			if s.ServerID == 0 {
				s.ServerID = 0xFE77 // 65143: an id unlikely to be taken
			}
		}
		if s.Type == "oracle" {
			if s.SCNWindow == 0 {
				s.SCNWindow = 50000
			}
			if s.PollInterval == 0 {
				s.PollInterval = Duration(time.Second)
			}
			if s.TxBufferBytes == 0 {
				s.TxBufferBytes = 64 << 20
			}
		}
	}
	for i := range c.Targets {
		t := &c.Targets[i]
		if t.BatchSize == 0 {
			t.BatchSize = 500
		}
		if IsCQL(t.Type) {
			setCQLTargetDefaults(t)
		}
		if t.Type == "dynamodb" || t.Type == "alternator" {
			d := &t.DynamoDB
			if d.BatchItems == 0 {
				d.BatchItems = 25
				if t.Type == "alternator" {
					d.BatchItems = 100
				}
			}
			if d.WriteParallelism == 0 {
				d.WriteParallelism = 4
			}
			if d.StateTable == "" {
				d.StateTable = "ferry_state"
			}
		}
	}
}

// IdentSafe folds a name into a plain lower-case SQL identifier (letters,
// digits, '_'), as ferry's default slot and publication names are made.
func IdentSafe(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (c *Config) check() error {
	var errs []error
	if len(c.Sources) == 0 {
		errs = append(errs, errors.New("sources: at least one source is required"))
	}
	names := map[string]bool{}
	for i, s := range c.Sources {
		at := fmt.Sprintf("sources[%d]", i)
		if !nameRE.MatchString(s.Name) {
			errs = append(errs, fmt.Errorf("%s.name: %q must be 1-64 letters, digits, '_' or '-'", at, s.Name))
		}
		if names[s.Name] {
			errs = append(errs, fmt.Errorf("%s.name: %q is used twice", at, s.Name))
		}
		names[s.Name] = true
		if s.Type == "" {
			errs = append(errs, fmt.Errorf("%s.type: missing", at))
		}
		if s.DSN == "" && s.Type != "dynamodb" {
			errs = append(errs, fmt.Errorf("%s.dsn: missing", at))
		}
		if s.Type == "dynamodb" {
			errs = append(errs, s.DynamoDB.check(at+".dynamodb")...)
		}
		switch s.Mode {
		case ModeSnapshot, ModeCDC, ModeSnapshotCDC:
		default:
			errs = append(errs, fmt.Errorf("%s.mode: %q is not one of snapshot, cdc, snapshot+cdc", at, s.Mode))
		}
		if s.Partitions < 1 || s.Partitions > 1024 {
			errs = append(errs, fmt.Errorf("%s.partitions: %d is outside 1..1024", at, s.Partitions))
		}
		if s.ChunkRows < 1 {
			errs = append(errs, fmt.Errorf("%s.chunkRows: must be positive", at))
		}
		if s.SnapshotWorkers < 1 {
			errs = append(errs, fmt.Errorf("%s.snapshotWorkers: must be positive", at))
		}
		if s.ReadRowsPerSecond < 0 {
			errs = append(errs, fmt.Errorf("%s.readRowsPerSecond: must not be negative", at))
		}
		if IsCQL(s.Type) {
			errs = append(errs, checkCQLSource(at, s)...)
		}
		if r := s.Retention; r.MaxAge < 0 || r.MaxBytes < 0 {
			errs = append(errs, fmt.Errorf("%s.retention: maxAge and maxBytes must not be negative", at))
		} else if (r.MaxAge > 0 || r.MaxBytes > 0) && !r.Compacts() {
			// Trimming without a state stream would leave a new target
			// (or a rebuilt one) nothing complete to start from.
			errs = append(errs, fmt.Errorf("%s.retention: maxAge/maxBytes need compact: true (the state stream is what keeps every key once old events are trimmed)", at))
		}
		if s.Type == "mysql" || s.Type == "mariadb" {
			if s.ZeroDates != "error" && s.ZeroDates != "null" {
				errs = append(errs, fmt.Errorf("%s.zeroDates: %q is not one of error, null", at, s.ZeroDates))
			}
		} else if s.DefaultGTIDSet != "" || s.ZeroDates != "" || s.ServerID != 0 {
			errs = append(errs, fmt.Errorf("%s: defaultGTIDSet, zeroDates and serverID apply to type mysql only", at))
		}
		if s.Type == "oracle" {
			if s.BackfillFromSCN != 0 && s.SCN == 0 {
				errs = append(errs, fmt.Errorf("%s.backfillFromSCN: set scn too (the SCN the target already holds)", at))
			}
			if s.BackfillFromSCN > s.SCN {
				errs = append(errs, fmt.Errorf("%s.backfillFromSCN: %d is after scn %d; it is the start of the oldest transaction open at scn, so at most scn", at, s.BackfillFromSCN, s.SCN))
			}
			if s.TxBufferBytes < 0 {
				errs = append(errs, fmt.Errorf("%s.txBufferBytes: must not be negative", at))
			}
		} else if s.PDBDSN != "" || s.SCN != 0 || s.BackfillFromSCN != 0 || s.SCNWindow != 0 || s.PollInterval != 0 || s.TxBufferBytes != 0 || s.SpillDir != "" {
			errs = append(errs, fmt.Errorf("%s: pdbDsn, scn, backfillFromSCN, scnWindow, pollInterval, txBufferBytes and spillDir are settings of oracle sources, not of type %q", at, s.Type))
		}
	}
	tnames := map[string]bool{}
	for i, t := range c.Targets {
		at := fmt.Sprintf("targets[%d]", i)
		if !nameRE.MatchString(t.Name) {
			errs = append(errs, fmt.Errorf("%s.name: %q must be 1-64 letters, digits, '_' or '-'", at, t.Name))
		}
		if tnames[t.Name] {
			errs = append(errs, fmt.Errorf("%s.name: %q is used twice", at, t.Name))
		}
		tnames[t.Name] = true
		if t.Type == "" {
			errs = append(errs, fmt.Errorf("%s.type: missing", at))
		}
		dynamo := t.Type == "dynamodb" || t.Type == "alternator"
		if t.DSN == "" && !dynamo {
			errs = append(errs, fmt.Errorf("%s.dsn: missing", at))
		}
		if dynamo {
			errs = append(errs, t.DynamoDB.check(at+".dynamodb", t.Type)...)
		}
		if !names[t.From] {
			errs = append(errs, fmt.Errorf("%s.from: %q names no source", at, t.From))
		}
		if t.BatchSize < 1 {
			errs = append(errs, fmt.Errorf("%s.batchSize: must be positive", at))
		}
		if t.WriteRowsPerSecond < 0 {
			errs = append(errs, fmt.Errorf("%s.writeRowsPerSecond: must not be negative", at))
		}
		if IsCQL(t.Type) {
			errs = append(errs, checkCQLTarget(at, t)...)
		}
	}
	return errors.Join(errs...)
}

// Source returns the source called name.
func (c *Config) Source(name string) (*Source, bool) {
	for i := range c.Sources {
		if c.Sources[i].Name == name {
			return &c.Sources[i], true
		}
	}
	return nil, false
}

// Target returns the target called name.
func (c *Config) Target(name string) (*Target, bool) {
	for i := range c.Targets {
		if c.Targets[i].Name == name {
			return &c.Targets[i], true
		}
	}
	return nil, false
}

// Redact hides the password of a URL-style or key=value DSN, for messages.
func Redact(dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		rest := dsn[i+3:]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			userinfo := rest[:at]
			if c := strings.Index(userinfo, ":"); c >= 0 {
				userinfo = userinfo[:c] + ":xxxxx"
			}
			rest = userinfo + rest[at:]
		}
		dsn = dsn[:i+3] + rest
	}
	return passwordKV.ReplaceAllString(dsn, "${1}xxxxx")
}

var passwordKV = regexp.MustCompile(`(?i)(password\s*=\s*)('[^']*'|[^\s&]+)`)

// Limiter returns a limiter of n rows per second (nil for 0, no limit). Its
// burst of one second's worth lets a batch of up to n rows through at once.
func Limiter(n int) *rate.Limiter {
	if n <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(n), n)
}

// WaitRows waits until l allows n more rows; a nil l never waits. A batch
// larger than the burst waits for its whole size in steps.
func WaitRows(ctx context.Context, l *rate.Limiter, n int) error {
	if l == nil {
		return nil
	}
	for n > 0 {
		step := min(n, l.Burst())
		if err := l.WaitN(ctx, step); err != nil {
			return err
		}
		n -= step
	}
	return nil
}
