package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ferry-dev/ferry/appliers"
	"github.com/ferry-dev/ferry/internal/dynamo"
)

// ensureTable makes sure the target table exists, creating it from the
// source's description (keys, indexes, billing mode, TTL) when absent.
func (t *target) ensureTable(ctx context.Context, source, src, dst string) error {
	t.mu.Lock()
	ok, state := t.ready[dst], t.state
	t.mu.Unlock()
	if ok {
		return nil
	}
	_, err := t.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(dst)})
	switch {
	case err == nil:
		if err := t.waitActive(ctx, dst); err != nil {
			return err
		}
	case dynamo.IsNotFound(err):
		if state == nil {
			return appliers.Permanent(fmt.Errorf("target %s: table %s does not exist and no source description is at hand to create it; create it first", t.cfg.Name, dst))
		}
		var desc dynamo.TableDesc
		found, err := state.GetJSON(ctx, dynamo.DescKey(source, src), &desc)
		if err != nil {
			return err
		}
		if !found {
			return appliers.Permanent(fmt.Errorf("target %s: table %s does not exist, and source %s recorded no DynamoDB description of table %s to create it from; create the table first", t.cfg.Name, dst, source, src))
		}
		if err := t.create(ctx, dst, &desc, t.renamer(src, dst)); err != nil {
			return err
		}
	default:
		return fmt.Errorf("target %s: describing table %s: %w", t.cfg.Name, dst, err)
	}
	t.mu.Lock()
	t.ready[dst] = true
	t.mu.Unlock()
	return nil
}

func (t *target) create(ctx context.Context, name string, d *dynamo.TableDesc, rename func(string) string) error {
	rn := func(s string) *string {
		if rename != nil {
			s = rename(s)
		}
		return aws.String(s)
	}
	billing := d.BillingMode
	if t.dc.BillingMode != "" {
		billing = t.dc.BillingMode
	}
	units := func(r, w int64) *types.ProvisionedThroughput {
		if billing != "PROVISIONED" {
			return nil
		}
		return &types.ProvisionedThroughput{ReadCapacityUnits: aws.Int64(max(r, 1)), WriteCapacityUnits: aws.Int64(max(w, 1))}
	}
	keys := func(hash, rng string) []types.KeySchemaElement {
		ks := []types.KeySchemaElement{{AttributeName: rn(hash), KeyType: types.KeyTypeHash}}
		if rng != "" {
			ks = append(ks, types.KeySchemaElement{AttributeName: rn(rng), KeyType: types.KeyTypeRange})
		}
		return ks
	}
	proj := func(ix dynamo.IndexDesc) *types.Projection {
		p := &types.Projection{ProjectionType: types.ProjectionType(ix.Projection)}
		for _, a := range ix.NonKeyAttributes {
			p.NonKeyAttributes = append(p.NonKeyAttributes, *rn(a))
		}
		return p
	}
	in := &dynamodb.CreateTableInput{
		TableName:             aws.String(name),
		BillingMode:           types.BillingMode(billing),
		ProvisionedThroughput: units(d.ReadUnits, d.WriteUnits),
	}
	rangeKey := ""
	if d.RangeKey != nil {
		rangeKey = d.RangeKey.Name
	}
	in.KeySchema = keys(d.HashKey.Name, rangeKey)
	for _, a := range d.Attributes {
		in.AttributeDefinitions = append(in.AttributeDefinitions, types.AttributeDefinition{AttributeName: rn(a.Name), AttributeType: types.ScalarAttributeType(a.Type)})
	}
	for _, g := range d.GSIs {
		in.GlobalSecondaryIndexes = append(in.GlobalSecondaryIndexes, types.GlobalSecondaryIndex{
			IndexName: aws.String(g.Name), KeySchema: keys(g.HashKey, g.RangeKey), Projection: proj(g),
			ProvisionedThroughput: units(g.ReadUnits, g.WriteUnits),
		})
	}
	for _, l := range d.LSIs {
		in.LocalSecondaryIndexes = append(in.LocalSecondaryIndexes, types.LocalSecondaryIndex{
			IndexName: aws.String(l.Name), KeySchema: keys(l.HashKey, l.RangeKey), Projection: proj(l),
		})
	}
	_, err := t.db.CreateTable(ctx, in)
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return appliers.Permanent(fmt.Errorf("target %s: creating table %s from the source's description: %w", t.cfg.Name, name, err))
	}
	if err == nil {
		t.log.Info("created table from the source's description", "table", name, "billing", billing, "gsis", len(d.GSIs), "lsis", len(d.LSIs))
	}
	if err := t.waitActive(ctx, name); err != nil {
		return err
	}
	if d.TTLAttribute != "" && !t.dc.SkipTTL && err == nil {
		_, err := t.db.UpdateTimeToLive(ctx, &dynamodb.UpdateTimeToLiveInput{
			TableName:               aws.String(name),
			TimeToLiveSpecification: &types.TimeToLiveSpecification{AttributeName: rn(d.TTLAttribute), Enabled: aws.Bool(true)},
		})
		if err != nil {
			t.log.Warn("could not copy the table's TTL setting", "table", name, "attribute", d.TTLAttribute, "err", dynamo.Scrub(err, t.dc.AWSAccess))
		}
	}
	return nil
}

// waitActive waits until a table can be written.
func (t *target) waitActive(ctx context.Context, name string) error {
	deadline := time.Now().Add(10 * time.Minute)
	for {
		out, err := t.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
		if err != nil && !dynamo.IsNotFound(err) {
			return fmt.Errorf("target %s: describing table %s: %w", t.cfg.Name, name, err)
		}
		if err == nil && out.Table.TableStatus == types.TableStatusActive {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("target %s: table %s is not ACTIVE after 10 minutes", t.cfg.Name, name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
