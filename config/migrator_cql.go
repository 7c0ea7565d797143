package config

// The CQL family (Cassandra and ScyllaDB, as source and as target): its
// defaults and checks, token ranges as configs and savepoints write them,
// and the converter of a scylla-migrator config.yaml whose source.type is
// cassandra or scylla.

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/gocql/gocql"
	"gopkg.in/yaml.v3"
)

func init() {
	migratorConverters["cassandra"] = convertMigratorCQL
	migratorConverters["scylla"] = convertMigratorCQL
}

// IsCQL reports whether a source or target type is of the CQL family.
func IsCQL(typ string) bool { return typ == "cassandra" || typ == "scylla" }

// TokenRange is a Murmur3 token range (Start, End], as the ring is split
// for snapshots. In YAML it is a pair [start, end]; each token may also be
// written as scylla-migrator writes it, {type: long, value: N}.
type TokenRange struct {
	Start, End int64
}

// UnmarshalYAML reads a pair of tokens.
func (r *TokenRange) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode || len(n.Content) != 2 {
		return fmt.Errorf("line %d: a token range is a pair [start, end]", n.Line)
	}
	var err error
	if r.Start, err = token(n.Content[0]); err != nil {
		return err
	}
	r.End, err = token(n.Content[1])
	return err
}

// MarshalYAML writes the pair [start, end].
func (r TokenRange) MarshalYAML() (any, error) {
	n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	n.Content = []*yaml.Node{
		{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(r.Start, 10)},
		{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(r.End, 10)},
	}
	return n, nil
}

func token(n *yaml.Node) (int64, error) {
	if n.Kind == yaml.MappingNode {
		var t struct {
			Type  string `yaml:"type"`
			Value string `yaml:"value"`
		}
		if err := n.Decode(&t); err != nil {
			return 0, err
		}
		if t.Type != "long" {
			return 0, fmt.Errorf("line %d: token type %q: only Murmur3 (long) tokens are supported", n.Line, t.Type)
		}
		n = &yaml.Node{Kind: yaml.ScalarNode, Value: t.Value, Line: n.Line}
	}
	v, err := strconv.ParseInt(strings.TrimSpace(n.Value), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("line %d: %q is not a 64-bit token", n.Line, n.Value)
	}
	return v, nil
}

// CQLRun is the config a CQL source was read from, kept for savepoint
// files: the whole Config, and for a scylla-migrator document also the
// document itself, so that its savepoints keep its shape.
type CQLRun struct {
	Config *Config
	// Migrator is the scylla-migrator document, nil for a ferry config.
	Migrator *yaml.Node
}

func (c *Config) setCQLSourceDefaults(s *Source) {
	if s.CQLRun == nil {
		s.CQLRun = &CQLRun{}
	}
	s.CQLRun.Config = c
	if s.Mode == "" {
		s.Mode = ModeSnapshot // the CQL source has no change stream
	}
	if s.SplitCount == 0 {
		s.SplitCount = 256
	}
	if s.CQLConnections == 0 {
		s.CQLConnections = 4
	}
	if s.FetchSize == 0 {
		s.FetchSize = 1000
	}
	if s.CQLConsistency == "" {
		s.CQLConsistency = "LOCAL_QUORUM"
	}
}

func setCQLTargetDefaults(t *Target) {
	if t.CQLConnections == 0 {
		t.CQLConnections = 16
	}
	if t.CQLConsistency == "" {
		t.CQLConsistency = "LOCAL_QUORUM"
	}
}

func checkCQLSource(at string, s Source) []error {
	var errs []error
	if s.Mode != ModeSnapshot {
		errs = append(errs, fmt.Errorf("%s.mode: %q: the %s source reads snapshots only (mode: snapshot)", at, s.Mode, s.Type))
	}
	if s.CQLKeyspace == "" {
		errs = append(errs, fmt.Errorf("%s.keyspace: missing", at))
	}
	if s.SplitCount < 1 {
		errs = append(errs, fmt.Errorf("%s.splitCount: must be positive", at))
	}
	if s.CQLConnections < 1 {
		errs = append(errs, fmt.Errorf("%s.connections: must be positive", at))
	}
	if s.FetchSize < 1 {
		errs = append(errs, fmt.Errorf("%s.fetchSize: must be positive", at))
	}
	if _, err := gocql.ParseConsistencyWrapper(s.CQLConsistency); err != nil {
		errs = append(errs, fmt.Errorf("%s.consistencyLevel: %q is not a consistency level", at, s.CQLConsistency))
	}
	for i, r := range s.SkipTokenRanges {
		if r.Start >= r.End {
			errs = append(errs, fmt.Errorf("%s.skipTokenRanges[%d]: start %d is not below end %d", at, i, r.Start, r.End))
		}
	}
	if s.DSN != "" {
		if _, err := ParseCQLDSN(s.DSN); err != nil {
			errs = append(errs, fmt.Errorf("%s.dsn: %v", at, err))
		}
	}
	return errs
}

func checkCQLTarget(at string, t Target) []error {
	var errs []error
	if t.CQLKeyspace == "" {
		errs = append(errs, fmt.Errorf("%s.keyspace: missing", at))
	}
	if t.CQLConnections < 1 {
		errs = append(errs, fmt.Errorf("%s.connections: must be positive", at))
	}
	if _, err := gocql.ParseConsistencyWrapper(t.CQLConsistency); err != nil {
		errs = append(errs, fmt.Errorf("%s.consistencyLevel: %q is not a consistency level", at, t.CQLConsistency))
	}
	if t.DSN != "" {
		if _, err := ParseCQLDSN(t.DSN); err != nil {
			errs = append(errs, fmt.Errorf("%s.dsn: %v", at, err))
		}
	}
	return errs
}

// CQLDSN is a parsed cassandra:// DSN.
type CQLDSN struct {
	Hosts    []string
	User     string
	Password string
}

// ParseCQLDSN reads cassandra://[user[:password]@]host[:port][,host...]
// (scheme cassandra, scylla or cql). The error never repeats the password.
func ParseCQLDSN(dsn string) (CQLDSN, error) {
	var d CQLDSN
	scheme, rest, ok := strings.Cut(dsn, "://")
	if !ok || (scheme != "cassandra" && scheme != "scylla" && scheme != "cql") {
		return d, errors.New("must look like cassandra://[user:password@]host[:port][,host[:port]...]")
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		ui := rest[:at]
		rest = rest[at+1:]
		user, pass, _ := strings.Cut(ui, ":")
		var err error
		if d.User, err = url.PathUnescape(user); err != nil {
			return d, errors.New("user name is not URL-escaped correctly")
		}
		if d.Password, err = url.PathUnescape(pass); err != nil {
			return d, errors.New("password is not URL-escaped correctly")
		}
	}
	rest, _, _ = strings.Cut(rest, "/")
	rest, _, _ = strings.Cut(rest, "?")
	for _, h := range strings.Split(rest, ",") {
		if h = strings.TrimSpace(h); h != "" {
			d.Hosts = append(d.Hosts, h)
		}
	}
	if len(d.Hosts) == 0 {
		return d, errors.New("names no host")
	}
	return d, nil
}

// CQLDSNString builds a DSN from its parts.
func CQLDSNString(hosts []string, user, password string) string {
	ui := ""
	if user != "" {
		ui = url.PathEscape(user)
		if password != "" {
			// A ${VARIABLE} reference stays readable.
			if strings.HasPrefix(password, "${") && strings.HasSuffix(password, "}") && !strings.ContainsAny(password, "@/:%") {
				ui += ":" + password
			} else {
				ui += ":" + url.PathEscape(password)
			}
		}
		ui += "@"
	}
	return "cassandra://" + ui + strings.Join(hosts, ",")
}

// --- scylla-migrator config.yaml ---

type migratorCredentials struct {
	Username string `yaml:"username"`
	Password string `yaml:"password"`
}

// migratorCQLConn is what scylla-migrator's CQL source and target sections
// share.
type migratorCQLConn struct {
	Type             string               `yaml:"type"`
	Host             string               `yaml:"host"`
	Port             int                  `yaml:"port"`
	LocalDC          string               `yaml:"localDC"`
	Credentials      *migratorCredentials `yaml:"credentials"`
	SSLOptions       yaml.Node            `yaml:"sslOptions"`
	Keyspace         string               `yaml:"keyspace"`
	Table            string               `yaml:"table"`
	ConsistencyLevel string               `yaml:"consistencyLevel"`
	Connections      int                  `yaml:"connections"`
}

// migratorCQLSource is scylla-migrator's cassandra/scylla source section.
type migratorCQLSource struct {
	migratorCQLConn    `yaml:",inline"`
	PreserveTimestamps bool   `yaml:"preserveTimestamps"`
	SplitCount         int    `yaml:"splitCount"`
	FetchSize          int    `yaml:"fetchSize"`
	Where              string `yaml:"where"`
}

// migratorCQLTarget is scylla-migrator's scylla target section.
type migratorCQLTarget struct {
	migratorCQLConn               `yaml:",inline"`
	StripTrailingZerosForDecimals bool   `yaml:"stripTrailingZerosForDecimals"`
	WriteTTLInS                   *int   `yaml:"writeTTLInS"`
	WriteWritetimestampInuS       *int64 `yaml:"writeWritetimestampInuS"`
	DropNullPrimaryKeys           bool   `yaml:"dropNullPrimaryKeys"`
}

func hostPort(host string, port int) string {
	if port == 0 {
		port = 9042
	}
	return host + ":" + strconv.Itoa(port)
}

// migratorName is the ferry source name of a migrator config: derived from
// the table it moves, so that several such configs run one after another
// from one working directory (sharing ./ferry-data) each keep their own
// stream and progress.
func migratorName(keyspace, table string) string {
	n := "cql_" + IdentSafe(keyspace+"_"+table)
	if len(n) > 64 {
		n = n[:64]
	}
	return n
}

func convertMigratorCQL(doc *MigratorDoc, c *Config) error {
	var src migratorCQLSource
	if err := DecodeStrict(&doc.Source, &src); err != nil {
		return fmt.Errorf("source: %v", err)
	}
	var dst migratorCQLTarget
	if err := DecodeStrict(&doc.Target, &dst); err != nil {
		return fmt.Errorf("target: %v", err)
	}
	var errs []error
	if src.Host == "" {
		errs = append(errs, errors.New("source.host: missing"))
	}
	if src.Keyspace == "" || src.Table == "" {
		errs = append(errs, errors.New("source.keyspace and source.table are required"))
	}
	if dst.Type != "scylla" && dst.Type != "cassandra" {
		errs = append(errs, fmt.Errorf("target.type %q: a cassandra/scylla source migrates to target type scylla", dst.Type))
	}
	if dst.Host == "" {
		errs = append(errs, errors.New("target.host: missing"))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	name := migratorName(src.Keyspace, src.Table)
	s := Source{
		Name: name, Type: src.Type, Mode: ModeSnapshot,
		Tables:             []string{src.Table},
		CQLKeyspace:        src.Keyspace,
		SplitCount:         src.SplitCount,
		CQLConnections:     src.Connections,
		FetchSize:          src.FetchSize,
		CQLConsistency:     src.ConsistencyLevel,
		CQLWhere:           src.Where,
		PreserveTimestamps: src.PreserveTimestamps,
		CQLLocalDC:         src.LocalDC,
		CQLRun:             &CQLRun{Migrator: migratorRoot(doc)},
	}
	var user, pass string
	if src.Credentials != nil {
		user, pass = src.Credentials.Username, src.Credentials.Password
	}
	s.DSN = CQLDSNString([]string{hostPort(src.Host, src.Port)}, user, pass)
	if doc.SkipTokenRanges.Kind != 0 {
		if err := doc.SkipTokenRanges.Decode(&s.SkipTokenRanges); err != nil {
			return fmt.Errorf("skipTokenRanges: %v", err)
		}
	}
	t := Target{
		Name: "to_" + strings.TrimPrefix(name, "cql_"), Type: dst.Type, From: name,
		CQLKeyspace:    dst.Keyspace,
		CQLConnections: dst.Connections,
		CQLConsistency: dst.ConsistencyLevel,
		CQLLocalDC:     dst.LocalDC,
	}
	if t.CQLKeyspace == "" {
		t.CQLKeyspace = src.Keyspace
	}
	if dst.Table != "" && (dst.Table != src.Table || t.CQLKeyspace != src.Keyspace) {
		t.Tables = map[string]string{src.Keyspace + "." + src.Table: t.CQLKeyspace + "." + dst.Table}
	}
	user, pass = "", ""
	if dst.Credentials != nil {
		user, pass = dst.Credentials.Username, dst.Credentials.Password
	}
	t.DSN = CQLDSNString([]string{hostPort(dst.Host, dst.Port)}, user, pass)
	for _, r := range doc.Renames {
		t.Renames = append(t.Renames, Rename{From: r.From, To: r.To})
	}
	if doc.Validation.Kind != 0 {
		if err := DecodeStrict(&doc.Validation, &c.Validation); err != nil {
			return fmt.Errorf("validation: %v", err)
		}
	}
	inert := func(key, why string) {
		c.Warnings = append(c.Warnings, key+" is accepted but has no effect in ferry: "+why)
	}
	if src.SSLOptions.Kind != 0 || dst.SSLOptions.Kind != 0 {
		inert("sslOptions", "TLS to Cassandra/ScyllaDB is not supported yet")
	}
	if dst.StripTrailingZerosForDecimals {
		inert("target.stripTrailingZerosForDecimals", "decimals are written with their scale")
	}
	if dst.WriteTTLInS != nil {
		inert("target.writeTTLInS", "TTLs come from the source with preserveTimestamps")
	}
	if dst.WriteWritetimestampInuS != nil {
		inert("target.writeWritetimestampInuS", "writetimes come from the source with preserveTimestamps")
	}
	if dst.DropNullPrimaryKeys {
		inert("target.dropNullPrimaryKeys", "CQL rows never have NULL key columns")
	}
	if len(doc.SkipSegments) > 0 {
		inert("skipSegments", "it applies to DynamoDB sources")
	}
	// A migrator document has no nats section: the embedded server's
	// address and data directory may come from the environment.
	if v := os.Getenv("FERRY_NATS_URL"); v != "" {
		c.NATS.URL = v
	}
	if v := os.Getenv("FERRY_NATS_LISTEN"); v != "" {
		c.NATS.Listen = v
	}
	if v := os.Getenv("FERRY_NATS_DATADIR"); v != "" {
		c.NATS.DataDir = v
	}
	c.Sources = append(c.Sources, s)
	c.Targets = append(c.Targets, t)
	return nil
}

// migratorRoot rebuilds the document's top-level mapping from its parts,
// for savepoints written in the migrator's own shape.
func migratorRoot(doc *MigratorDoc) *yaml.Node {
	root := &yaml.Node{Kind: yaml.MappingNode}
	add := func(key string, v *yaml.Node) {
		if v == nil || v.Kind == 0 {
			return
		}
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key}, v)
	}
	node := func(v any) *yaml.Node {
		var n yaml.Node
		if err := n.Encode(v); err != nil {
			return nil
		}
		return &n
	}
	add("source", &doc.Source)
	add("target", &doc.Target)
	if len(doc.Renames) > 0 {
		add("renames", node(doc.Renames))
	}
	if doc.Savepoints != nil {
		add("savepoints", node(doc.Savepoints))
	}
	add("validation", &doc.Validation)
	if len(doc.SkipSegments) > 0 {
		add("skipSegments", node(doc.SkipSegments))
	}
	return root
}

// FullRing is the whole Murmur3 token ring as one range: no key has the
// minimum token, so (MinInt64, MaxInt64] holds every key.
var FullRing = TokenRange{Start: math.MinInt64, End: math.MaxInt64}
