// Package dynamodb is the DynamoDB and ScyllaDB Alternator target: items
// are written with BatchWriteItem (put and delete requests), the lane's
// applied stream sequence in a small state table after each batch, and a
// table missing on the target is created from the source's description.
//
// DynamoDB cannot write the data and the watermark in one transaction
// (BatchWriteItem has none, TransactWriteItems is capped and costs double).
// This is still exactly-once in effect: every write is a whole-item put or
// a delete, applied in the lane's order, so after a crash between the data
// and the watermark the batch is applied again and the items end where they
// would have. A replay in other batches than the crashed one never takes an
// item back to an older state either (replay.go).
package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ferry-dev/ferry/appliers"
	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/dynamo"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

func init() {
	appliers.Register("dynamodb", open)
	appliers.Register("alternator", open)
}

type target struct {
	cfg config.Target
	dc  config.DynamoDBTarget
	db  *dynamodb.Client
	log *slog.Logger

	mu    sync.Mutex
	state *streams.State
	ready map[string]bool // target tables known to exist
	// intents are the lanes' batches recorded as in flight (replay.go).
	intents map[string]*intent
	// crashAfterItems, in tests, fails a batch between its items and its
	// watermark, as a crash there would.
	crashAfterItems func() error
}

func open(ctx context.Context, cfg config.Target, log *slog.Logger) (appliers.Target, error) {
	t := &target{
		cfg: cfg, dc: cfg.DynamoDB,
		db:      dynamodb.NewFromConfig(dynamo.AWSConfig(cfg.DynamoDB.AWSAccess)),
		log:     log.With("target", cfg.Name),
		ready:   map[string]bool{},
		intents: map[string]*intent{},
	}
	if err := t.ensureStateTable(ctx); err != nil {
		return nil, dynamo.Scrub(err, t.dc.AWSAccess)
	}
	return t, nil
}

// UseState receives the KV bucket where sources describe their tables.
func (t *target) UseState(st *streams.State) {
	t.mu.Lock()
	t.state = st
	t.mu.Unlock()
}

func (t *target) Ping(ctx context.Context) error {
	_, err := t.db.ListTables(ctx, &dynamodb.ListTablesInput{Limit: aws.Int32(1)})
	return dynamo.Scrub(err, t.dc.AWSAccess)
}

func (t *target) Close() {}

func (t *target) laneID(lane appliers.Lane) string {
	return t.cfg.Name + "/" + lane.Source + "/" + strconv.Itoa(lane.Partition)
}

// ensureStateTable creates the table of lane watermarks when absent.
func (t *target) ensureStateTable(ctx context.Context) error {
	name := t.dc.StateTable
	_, err := t.db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
	if err == nil {
		return t.waitActive(ctx, name)
	}
	if !dynamo.IsNotFound(err) {
		return fmt.Errorf("target %s: cannot reach %s: %w", t.cfg.Name, dynamo.Where(t.dc.AWSAccess), err)
	}
	_, err = t.db.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("lane"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("lane"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	var inUse *types.ResourceInUseException
	if err != nil && !errors.As(err, &inUse) {
		return fmt.Errorf("target %s: creating state table %s: %w", t.cfg.Name, name, err)
	}
	return t.waitActive(ctx, name)
}

// Applied reads the lane's watermark from the state table.
func (t *target) Applied(ctx context.Context, lane appliers.Lane) (uint64, error) {
	seq, err := t.applied(ctx, lane)
	return seq, dynamo.Scrub(err, t.dc.AWSAccess)
}

func (t *target) applied(ctx context.Context, lane appliers.Lane) (uint64, error) {
	out, err := t.db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(t.dc.StateTable),
		Key:            map[string]types.AttributeValue{"lane": &types.AttributeValueMemberS{Value: t.laneID(lane)}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return 0, fmt.Errorf("target %s: reading state table %s: %w", t.cfg.Name, t.dc.StateTable, err)
	}
	in, err := decodeIntent(out.Item)
	if err != nil {
		return 0, appliers.Permanent(fmt.Errorf("target %s: state table %s, lane %s: %w", t.cfg.Name, t.dc.StateTable, t.laneID(lane), err))
	}
	t.mu.Lock()
	t.intents[t.laneID(lane)] = in
	t.mu.Unlock()
	n, ok := out.Item["seq"].(*types.AttributeValueMemberN)
	if !ok {
		return 0, nil
	}
	v, err := strconv.ParseUint(n.Value, 10, 64)
	if err != nil {
		return 0, appliers.Permanent(fmt.Errorf("target %s: state table %s holds %q for lane %s", t.cfg.Name, t.dc.StateTable, n.Value, t.laneID(lane)))
	}
	return v, nil
}

// write is one item write of a batch.
type write struct {
	key   string // target table and key
	table string
	req   types.WriteRequest
	item  appliers.Item
	size  int
}

// Apply writes the batch: the last change of each key wins (every change
// is a whole item), so one BatchWriteItem never names a key twice, as
// DynamoDB requires. Then the watermark.
func (t *target) Apply(ctx context.Context, lane appliers.Lane, items []appliers.Item, lastSeq uint64, deadLetter appliers.DeadLetterFunc) ([]appliers.Rejected, error) {
	rj, err := t.apply(ctx, lane, items, lastSeq, deadLetter)
	return rj, dynamo.Scrub(err, t.dc.AWSAccess)
}

func (t *target) apply(ctx context.Context, lane appliers.Lane, items []appliers.Item, lastSeq uint64, deadLetter appliers.DeadLetterFunc) ([]appliers.Rejected, error) {
	var rejected []appliers.Rejected
	index := map[string]int{}
	var writes []*write
	firstSeq := map[string]uint64{}
	repeated := map[string]uint64{} // keys changed more than once: their last change
	for _, it := range items {
		ev := it.Event
		dst := t.tableName(ev.GetTable())
		if err := t.ensureTable(ctx, lane.Source, ev.GetTable(), dst); err != nil {
			return nil, err
		}
		rename := t.renamer(ev.GetTable(), dst)
		key, err := dynamo.FromRow(ev.GetKey(), rename)
		if err != nil {
			rejected = append(rejected, appliers.Rejected{Item: it, Reason: "key: " + err.Error()})
			continue
		}
		w := &write{table: dst, item: it}
		switch ev.GetOp() {
		case pb.Op_OP_DELETE:
			w.req.DeleteRequest = &types.DeleteRequest{Key: key}
			w.size = ev.GetKey().SizeVT()
		case pb.Op_OP_READ, pb.Op_OP_INSERT, pb.Op_OP_UPDATE:
			if len(ev.GetUnchanged()) > 0 {
				rejected = append(rejected, appliers.Rejected{Item: it, Reason: "the event leaves attributes unchanged; a DynamoDB target writes whole items"})
				continue
			}
			item, err := dynamo.FromRow(ev.GetAfter(), rename)
			if err != nil {
				rejected = append(rejected, appliers.Rejected{Item: it, Reason: err.Error()})
				continue
			}
			w.req.PutRequest = &types.PutRequest{Item: item}
			w.size = ev.GetAfter().SizeVT()
		default:
			return nil, appliers.Permanent(fmt.Errorf("target %s: event op %v on %s is not known", t.cfg.Name, ev.GetOp(), ev.GetTable()))
		}
		kb, _ := ev.GetKey().MarshalVT()
		k := dst + "\x00" + string(kb)
		w.key = k
		if i, ok := index[k]; ok {
			writes[i] = w
			if it.Seq != firstSeq[k] {
				repeated[k] = it.Seq
			}
		} else {
			firstSeq[k] = it.Seq
			index[k] = len(writes)
			writes = append(writes, w)
		}
	}
	laneID := t.laneID(lane)
	t.mu.Lock()
	pending := t.intents[laneID]
	t.mu.Unlock()
	if pending != nil {
		kept := writes[:0]
		for _, w := range writes {
			if !pending.older(w.key, w.item.Seq) {
				kept = append(kept, w)
			}
		}
		writes = kept
	}
	next := pending.merge(lastSeq, repeated)
	if next != pending {
		_, err := t.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                 aws.String(t.dc.StateTable),
			Key:                       map[string]types.AttributeValue{"lane": &types.AttributeValueMemberS{Value: laneID}},
			UpdateExpression:          aws.String("SET upto = :u, #k = :k"),
			ExpressionAttributeNames:  map[string]string{"#k": "keys"},
			ExpressionAttributeValues: map[string]types.AttributeValue{":u": &types.AttributeValueMemberN{Value: strconv.FormatUint(next.upto, 10)}, ":k": &types.AttributeValueMemberB{Value: next.encode()}},
		})
		if err != nil {
			return nil, fmt.Errorf("target %s: recording lane %d's batch in %s: %w", t.cfg.Name, lane.Partition, t.dc.StateTable, err)
		}
	}
	rj, err := t.writeAll(ctx, writes)
	if err != nil {
		return nil, err
	}
	rejected = append(rejected, rj...)
	if len(rejected) > 0 && deadLetter != nil {
		if err := deadLetter(ctx, rejected); err != nil {
			return nil, err
		}
	}
	if t.crashAfterItems != nil {
		if err := t.crashAfterItems(); err != nil {
			return nil, err
		}
	}
	seq := &types.AttributeValueMemberN{Value: strconv.FormatUint(lastSeq, 10)}
	if next != nil && lastSeq < next.upto {
		// Still replaying a recorded batch: its record stays.
		_, err = t.db.UpdateItem(ctx, &dynamodb.UpdateItemInput{
			TableName:                 aws.String(t.dc.StateTable),
			Key:                       map[string]types.AttributeValue{"lane": &types.AttributeValueMemberS{Value: laneID}},
			UpdateExpression:          aws.String("SET seq = :s"),
			ExpressionAttributeValues: map[string]types.AttributeValue{":s": seq},
		})
	} else {
		_, err = t.db.PutItem(ctx, &dynamodb.PutItemInput{
			TableName: aws.String(t.dc.StateTable),
			Item:      map[string]types.AttributeValue{"lane": &types.AttributeValueMemberS{Value: laneID}, "seq": seq},
		})
		next = nil
	}
	if err != nil {
		return nil, fmt.Errorf("target %s: recording lane %d's applied sequence in %s: %w", t.cfg.Name, lane.Partition, t.dc.StateTable, err)
	}
	t.mu.Lock()
	t.intents[laneID] = next
	t.mu.Unlock()
	return rejected, nil
}

// maxRequestBytes keeps one BatchWriteItem under DynamoDB's 16 MB.
const maxRequestBytes = 12 << 20

// writeAll splits the writes into BatchWriteItem calls of at most
// batchItems items of one table and runs writeParallelism of them at once.
func (t *target) writeAll(ctx context.Context, writes []*write) ([]appliers.Rejected, error) {
	var chunks [][]*write
	open := map[string]int{} // table → index of its open chunk
	sizes := map[int]int{}
	for _, w := range writes {
		i, ok := open[w.table]
		if !ok || len(chunks[i]) >= t.dc.BatchItems || sizes[i]+w.size > maxRequestBytes {
			i = len(chunks)
			chunks = append(chunks, nil)
			open[w.table] = i
		}
		chunks[i] = append(chunks[i], w)
		sizes[i] += w.size
	}
	var (
		mu       sync.Mutex
		rejected []appliers.Rejected
		firstErr error
		wg       sync.WaitGroup
	)
	sem := make(chan struct{}, t.dc.WriteParallelism)
	for _, c := range chunks {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			rj, err := t.writeChunk(ctx, c)
			mu.Lock()
			defer mu.Unlock()
			rejected = append(rejected, rj...)
			if err != nil && firstErr == nil {
				firstErr = err
			}
		}()
	}
	wg.Wait()
	return rejected, firstErr
}

// writeChunk writes one chunk, retrying unprocessed items and throttling
// with backoff. When DynamoDB refuses the request for its data, the items
// are written one by one to find the ones it refuses.
func (t *target) writeChunk(ctx context.Context, chunk []*write) ([]appliers.Rejected, error) {
	table := chunk[0].table
	reqs := make([]types.WriteRequest, len(chunk))
	for i, w := range chunk {
		reqs[i] = w.req
	}
	wait := 50 * time.Millisecond
	backoff := func() error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
		return nil
	}
	for len(reqs) > 0 {
		out, err := t.db.BatchWriteItem(ctx, &dynamodb.BatchWriteItemInput{RequestItems: map[string][]types.WriteRequest{table: reqs}})
		switch {
		case err == nil:
			reqs = out.UnprocessedItems[table]
			if len(reqs) > 0 {
				if err := backoff(); err != nil {
					return nil, err
				}
			}
		case dynamo.IsThrottle(err):
			t.log.Debug("throttled; backing off", "table", table, "wait", wait)
			if err := backoff(); err != nil {
				return nil, err
			}
		case dynamo.IsValidation(err):
			return t.writeOneByOne(ctx, chunk)
		case dynamo.IsNotFound(err):
			return nil, appliers.Permanent(fmt.Errorf("target %s: table %s does not exist (dropped while ferry writes to it?)", t.cfg.Name, table))
		default:
			return nil, fmt.Errorf("target %s: writing %d items to %s: %w", t.cfg.Name, len(reqs), table, err)
		}
	}
	return nil, nil
}

// writeOneByOne writes each item alone (PutItem, DeleteItem); the items
// DynamoDB refuses are rejected with its reason.
func (t *target) writeOneByOne(ctx context.Context, chunk []*write) ([]appliers.Rejected, error) {
	var rejected []appliers.Rejected
	for _, w := range chunk {
		for {
			var err error
			if w.req.PutRequest != nil {
				_, err = t.db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(w.table), Item: w.req.PutRequest.Item})
			} else {
				_, err = t.db.DeleteItem(ctx, &dynamodb.DeleteItemInput{TableName: aws.String(w.table), Key: w.req.DeleteRequest.Key})
			}
			if dynamo.IsThrottle(err) {
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(200 * time.Millisecond):
				}
				continue
			}
			if dynamo.IsValidation(err) {
				rejected = append(rejected, appliers.Rejected{Item: w.item, Reason: fmt.Sprintf("%s refused the item: %v", w.table, dynamo.Scrub(err, t.dc.AWSAccess))})
			} else if err != nil {
				return nil, fmt.Errorf("target %s: writing to %s: %w", t.cfg.Name, w.table, err)
			}
			break
		}
	}
	return rejected, nil
}

// tableName maps a source table to its target table (targets[].tables).
func (t *target) tableName(src string) string {
	if n, ok := t.cfg.Tables[src]; ok {
		return n
	}
	return src
}

// renamer returns the attribute renames for a table (nil: none).
func (t *target) renamer(src, dst string) func(string) string {
	m := map[string]string{}
	for _, r := range t.cfg.Renames {
		if r.Table == "" || r.Table == src || r.Table == dst {
			m[r.From] = r.To
		}
	}
	if len(m) == 0 {
		return nil
	}
	return func(n string) string {
		if to, ok := m[n]; ok {
			return to
		}
		return n
	}
}
