// Package dynamodb is the DynamoDB source: a parallel Scan of each table
// (segments recorded in KV as they finish), then the tables' DynamoDB
// Streams, every shard followed parents first, each shard's last sequence
// number kept in KV once JetStream acknowledged everything up to it.
package dynamodb

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/dynamo"
	"github.com/ferry-dev/ferry/producers"
	"github.com/ferry-dev/ferry/streams"
)

func init() { producers.Register("dynamodb", open) }

type producer struct {
	cfg     config.Source
	dc      config.DynamoDBSource
	env     producers.Env
	log     *slog.Logger
	db      *dynamodb.Client
	streams *dynamodbstreams.Client
	tables  []*table
	// run numbers this process's attempt, so that messages a crashed run
	// may have stored are stored again, in order, rather than dropped as
	// repeats (see snapshot.go and stream.go).
	run        int
	maxPayload int
	// published counts stream records published by this run.
	published atomic.Int64
	// acked is the highest stream sequence known acknowledged, for the
	// shards' resume floors (resume.go).
	acked atomic.Uint64
	// tips tracks which shards are at their tip, for the cut-over check.
	tips tips
}

// table is one source table and what the run knows of it.
type table struct {
	name      string
	desc      *dynamo.TableDesc
	keyNames  []string
	streamArn string
}

func open(ctx context.Context, cfg config.Source, env producers.Env) (producers.Producer, error) {
	if len(cfg.Tables) == 0 {
		return nil, fmt.Errorf("source %s: tables: name at least one DynamoDB table", cfg.Name)
	}
	ac := dynamo.AWSConfig(cfg.DynamoDB.AWSAccess)
	p := &producer{
		cfg: cfg, dc: cfg.DynamoDB, env: env,
		log:        env.Log.With("source", cfg.Name),
		db:         dynamodb.NewFromConfig(ac),
		streams:    dynamodbstreams.NewFromConfig(ac),
		maxPayload: int(env.Conn.NC.MaxPayload()),
	}
	// An endpoint that cannot be reached at the start is reported as
	// itself (a wrong endpoint or region), not waited for; one lost later
	// is ridden out by the producer's supervisor, which opens it again.
	if err := p.Ping(ctx); err != nil {
		return nil, fmt.Errorf("source %s: cannot reach DynamoDB at %s: %w", cfg.Name, dynamo.Where(cfg.DynamoDB.AWSAccess), err)
	}
	return p, nil
}

// Ping checks that the endpoint answers, for health checks.
func (p *producer) Ping(ctx context.Context) error {
	_, err := p.db.ListTables(ctx, &dynamodb.ListTablesInput{Limit: aws.Int32(1)})
	return dynamo.Scrub(err, p.dc.AWSAccess)
}

// Run describes the tables, scans them unless done, then follows their
// streams until ctx ends.
func (p *producer) Run(ctx context.Context) error {
	return dynamo.Scrub(p.migrate(ctx), p.dc.AWSAccess)
}

// migrate is Run without the scrubbing of its error.
func (p *producer) migrate(ctx context.Context) error {
	for _, name := range p.cfg.Tables {
		t, err := p.describe(ctx, name)
		if err != nil {
			return err
		}
		p.tables = append(p.tables, t)
	}
	if p.cfg.HasCDC() {
		for _, t := range p.tables {
			if err := p.ensureStream(ctx, t); err != nil {
				return err
			}
		}
	}
	for _, t := range p.tables {
		if err := p.saveSchema(ctx, t); err != nil {
			return err
		}
	}
	if _, err := p.env.Conn.EnsureSourceStream(ctx, p.cfg.Name, p.cfg.Partitions); err != nil {
		return err
	}
	var runs struct {
		N int `json:"n"`
	}
	runsKey := streams.SourceKey(p.cfg.Name, "runs")
	if _, err := p.env.State.GetJSON(ctx, runsKey, &runs); err != nil {
		return err
	}
	runs.N++
	p.run = runs.N
	if err := p.env.State.PutJSON(ctx, runsKey, runs); err != nil {
		return err
	}

	var snap streams.SnapshotState
	if _, err := p.env.State.GetJSON(ctx, streams.SnapshotKey(p.cfg.Name), &snap); err != nil {
		return err
	}
	if snap.Done && p.cfg.HasSnapshot() {
		done := map[string]bool{}
		for _, t := range snap.Tables {
			done[t] = true
		}
		for _, t := range p.tables {
			if !done[t.name] {
				return fmt.Errorf("source %s: table %s was added after this source's snapshot finished; move it with a source of its own (another name)", p.cfg.Name, t.name)
			}
		}
	}
	if p.cfg.HasCDC() && p.dc.StreamStart == "latest" {
		for _, t := range p.tables {
			if err := p.markLatest(ctx, t); err != nil {
				return err
			}
		}
	}
	if p.cfg.HasSnapshot() && !snap.Done {
		snap.Tables = p.cfg.Tables
		if err := p.env.State.PutJSON(ctx, streams.SnapshotKey(p.cfg.Name), snap); err != nil {
			return err
		}
		done, err := p.snapshot(ctx)
		if err != nil || !done {
			return err
		}
		snap.Done = true
		if err := p.env.State.PutJSON(ctx, streams.SnapshotKey(p.cfg.Name), snap); err != nil {
			return err
		}
		p.log.Info("snapshot complete", "tables", len(p.tables))
	}
	if !p.cfg.HasCDC() || ctx.Err() != nil {
		return nil
	}
	return p.stream(ctx)
}

// describe reads a table's layout, its TTL setting and its stream.
func (p *producer) describe(ctx context.Context, name string) (*table, error) {
	out, err := p.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
	if dynamo.IsNotFound(err) {
		return nil, fmt.Errorf("source %s: table %s does not exist at %s (tables are case-sensitive)", p.cfg.Name, name, dynamo.Where(p.dc.AWSAccess))
	}
	if err != nil {
		return nil, fmt.Errorf("source %s: describing table %s at %s: %w", p.cfg.Name, name, dynamo.Where(p.dc.AWSAccess), err)
	}
	ttlAttr := ""
	if ttl, err := p.db.DescribeTimeToLive(ctx, &dynamodb.DescribeTimeToLiveInput{TableName: aws.String(name)}); err != nil {
		p.log.Warn("cannot read the table's TTL setting; it is not copied", "table", name, "err", dynamo.Scrub(err, p.dc.AWSAccess))
	} else if d := ttl.TimeToLiveDescription; d != nil && (d.TimeToLiveStatus == types.TimeToLiveStatusEnabled || d.TimeToLiveStatus == types.TimeToLiveStatusEnabling) {
		ttlAttr = aws.ToString(d.AttributeName)
	}
	desc := dynamo.Describe(out.Table, ttlAttr)
	t := &table{name: name, desc: desc, keyNames: desc.KeyNames(), streamArn: aws.ToString(out.Table.LatestStreamArn)}
	if desc.StreamView == "" {
		t.streamArn = ""
	}
	return t, nil
}

// ensureStream checks that the table has a stream carrying new images, and
// turns one on when allowed.
func (p *producer) ensureStream(ctx context.Context, t *table) error {
	switch t.desc.StreamView {
	case "NEW_IMAGE", "NEW_AND_OLD_IMAGES":
		return nil
	case "":
	default:
		return fmt.Errorf("source %s: table %s has a %s stream, which does not carry the items' new images; switch it to NEW_IMAGE or NEW_AND_OLD_IMAGES (disable and re-enable the stream)", p.cfg.Name, t.name, t.desc.StreamView)
	}
	if !p.dc.EnableStream {
		return fmt.Errorf("source %s: table %s has no stream enabled, and mode %s needs one: enable it (aws dynamodb update-table --table-name %s --stream-specification StreamEnabled=true,StreamViewType=NEW_IMAGE) or set sources[].dynamodb.enableStream: true (streamChanges: true in a scylla-migrator config)",
			p.cfg.Name, t.name, p.cfg.Mode, t.name)
	}
	_, err := p.db.UpdateTable(ctx, &dynamodb.UpdateTableInput{
		TableName:           aws.String(t.name),
		StreamSpecification: &types.StreamSpecification{StreamEnabled: aws.Bool(true), StreamViewType: types.StreamViewTypeNewImage},
	})
	if err != nil {
		return fmt.Errorf("source %s: enabling the stream of table %s: %w", p.cfg.Name, t.name, err)
	}
	p.log.Info("enabled a NEW_IMAGE stream", "table", t.name)
	deadline := time.Now().Add(5 * time.Minute)
	for {
		nt, err := p.describe(ctx, t.name)
		if err != nil {
			return err
		}
		if nt.streamArn != "" {
			*t = *nt
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("source %s: the stream of table %s did not appear within 5 minutes of enabling it", p.cfg.Name, t.name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// saveSchema records the table's description (for targets that create the
// table) and its key in KV.
func (p *producer) saveSchema(ctx context.Context, t *table) error {
	if err := p.env.State.PutJSON(ctx, dynamo.DescKey(p.cfg.Name, t.name), t.desc); err != nil {
		return err
	}
	ts := streams.TableSchema{Key: t.keyNames}
	for _, a := range t.desc.Attributes {
		ts.Columns = append(ts.Columns, streams.ColumnSchema{Name: a.Name, Type: a.Type, NotNull: contains(t.keyNames, a.Name)})
	}
	return p.env.State.PutJSON(ctx, streams.SchemaKey(p.cfg.Name, t.name), ts)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// keyText renders a key for messages.
func keyText(names []string, item dynamo.Item) string {
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteString(",")
		}
		switch v := item[n].(type) {
		case *types.AttributeValueMemberS:
			fmt.Fprintf(&b, "%s=%q", n, v.Value)
		case *types.AttributeValueMemberN:
			fmt.Fprintf(&b, "%s=%s", n, v.Value)
		case *types.AttributeValueMemberB:
			fmt.Fprintf(&b, "%s=0x%x", n, v.Value)
		}
	}
	return b.String()
}
