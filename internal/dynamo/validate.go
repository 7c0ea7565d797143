package dynamo

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/streams/pb"
	"github.com/ferry-dev/ferry/validate"
)

// TableReader reads DynamoDB tables for `ferry validate`, on either side of
// a pipeline: ranges are Scan segments, read in parallel by the engine, and
// rows are looked up by key with BatchGetItem. Items become rows as the
// source converts them (ToValue), the key attributes first and then the
// item's other attributes by name (validate.Table.Schemaless). Every read
// is strongly consistent, so that a write acknowledged before the read is
// seen by it and no difference is reported that is only replication lag
// inside DynamoDB.
type TableReader struct {
	DB     *dynamodb.Client
	Access config.AWSAccess
	// Side names the side in messages ("source dyn", "target dst").
	Side string
	// Segments is the scan segment count of a table whose item count is
	// unknown (DynamoDB updates it about every six hours, so a new table
	// shows 0).
	Segments int
}

var (
	_ validate.RangeReader = (*TableReader)(nil)
	_ validate.Lookuper    = (*TableReader)(nil)
)

// maxSegments is DynamoDB's limit on TotalSegments.
const maxSegments = 1_000_000

// batchGetKeys is BatchGetItem's limit on keys per request.
const batchGetKeys = 100

// Ping checks that the endpoint answers and accepts the credentials.
func (r *TableReader) Ping(ctx context.Context) error {
	_, err := r.DB.ListTables(ctx, &dynamodb.ListTablesInput{Limit: aws.Int32(1)})
	if err != nil {
		return Scrub(fmt.Errorf("%s: cannot reach DynamoDB at %s: %w", r.Side, Where(r.Access), err), r.Access)
	}
	return nil
}

func (r *TableReader) describe(ctx context.Context, name string) (*types.TableDescription, error) {
	out, err := r.DB.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(name)})
	if IsNotFound(err) {
		return nil, fmt.Errorf("table %s does not exist at %s (tables are case-sensitive)", name, Where(r.Access))
	}
	if err != nil {
		return nil, Scrub(fmt.Errorf("describing table %s at %s: %w", name, Where(r.Access), err), r.Access)
	}
	return out.Table, nil
}

// Table describes a table: its key (hash key first) is all its fixed
// columns; the items' other attributes travel by name.
func (r *TableReader) Table(ctx context.Context, name string) (validate.Table, error) {
	d, err := r.describe(ctx, name)
	if err != nil {
		return validate.Table{}, err
	}
	key := Describe(d, "").KeyNames()
	return validate.Table{Name: name, Key: key, Columns: key, Schemaless: true}, nil
}

// Ordered: a segment's items come in no key order.
func (r *TableReader) Ordered() bool { return false }

// Ranges splits a table into Scan segments of about rowsPerRange items by
// the table's item count (Segments when it is unknown).
func (r *TableReader) Ranges(ctx context.Context, t validate.Table, rowsPerRange int) ([]validate.Range, error) {
	d, err := r.describe(ctx, t.Name)
	if err != nil {
		return nil, err
	}
	n := max(r.Segments, 1)
	if count, per := aws.ToInt64(d.ItemCount), int64(max(rowsPerRange, 1)); count > 0 {
		n = int(min((count+per-1)/per, maxSegments))
	}
	n = min(max(n, 1), maxSegments)
	out := make([]validate.Range, n)
	for i := range out {
		out[i].Spec = segmentSpec(i, n)
	}
	return out, nil
}

func segmentSpec(seg, total int) string { return fmt.Sprintf("segment %d of %d", seg, total) }

func parseSegment(spec string) (seg, total int, err error) {
	if _, err := fmt.Sscanf(spec, "segment %d of %d", &seg, &total); err != nil || total < 1 || total > maxSegments || seg < 0 || seg >= total {
		return 0, 0, fmt.Errorf("%q is not a scan segment", spec)
	}
	return seg, total, nil
}

// Read scans one segment.
func (r *TableReader) Read(ctx context.Context, t validate.Table, rg validate.Range, emit func(*pb.Row) error) error {
	seg, total, err := parseSegment(rg.Spec)
	if err != nil {
		return err
	}
	var start Item
	wait := newBackoff()
	for {
		out, err := r.DB.Scan(ctx, &dynamodb.ScanInput{
			TableName:         aws.String(t.Name),
			Segment:           aws.Int32(int32(seg)),
			TotalSegments:     aws.Int32(int32(total)),
			ConsistentRead:    aws.Bool(true),
			ExclusiveStartKey: start,
		})
		if IsThrottle(err) {
			if err := wait(ctx); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return Scrub(fmt.Errorf("%s: scanning segment %d of %d of table %s: %w", r.Side, seg, total, t.Name, err), r.Access)
		}
		for _, item := range out.Items {
			row, err := ItemRow(item, t.Columns)
			if err != nil {
				return fmt.Errorf("%s: table %s: %w", r.Side, t.Name, err)
			}
			if err := emit(row); err != nil {
				return err
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return nil
		}
		start = out.LastEvaluatedKey
	}
}

// Lookup reads the items of the given keys (named t.Key) with
// BatchGetItem, batchGetKeys keys a request, retrying the keys DynamoDB
// leaves unprocessed (throttling, the 16 MB answer limit) with backoff.
func (r *TableReader) Lookup(ctx context.Context, t validate.Table, keys []*pb.Row) ([]*pb.Row, error) {
	var reqs []Item
	seen := map[string]bool{}
	for _, k := range keys {
		// BatchGetItem refuses a request that names a key twice.
		b, err := (&pb.Row{Values: k.GetValues()}).MarshalVT()
		if err != nil {
			return nil, err
		}
		if seen[string(b)] {
			continue
		}
		seen[string(b)] = true
		key := make(Item, len(t.Key))
		for i, n := range t.Key {
			if i >= len(k.GetValues()) {
				return nil, fmt.Errorf("%s: a key of table %s lacks attribute %s", r.Side, t.Name, n)
			}
			av, err := FromValue(k.GetValues()[i], "")
			if err != nil {
				return nil, fmt.Errorf("%s: key attribute %s.%s: %w", r.Side, t.Name, n, err)
			}
			key[n] = av
		}
		reqs = append(reqs, key)
	}
	var out []*pb.Row
	for start := 0; start < len(reqs); start += batchGetKeys {
		rows, err := r.batchGet(ctx, t, reqs[start:min(start+batchGetKeys, len(reqs))])
		if err != nil {
			return nil, err
		}
		out = append(out, rows...)
	}
	return out, nil
}

func (r *TableReader) batchGet(ctx context.Context, t validate.Table, keys []Item) ([]*pb.Row, error) {
	var out []*pb.Row
	wait := newBackoff()
	for len(keys) > 0 {
		res, err := r.DB.BatchGetItem(ctx, &dynamodb.BatchGetItemInput{RequestItems: map[string]types.KeysAndAttributes{
			t.Name: {Keys: keys, ConsistentRead: aws.Bool(true)},
		}})
		if IsThrottle(err) {
			if err := wait(ctx); err != nil {
				return nil, err
			}
			continue
		}
		if err != nil {
			return nil, Scrub(fmt.Errorf("%s: reading %d keys of table %s (BatchGetItem): %w", r.Side, len(keys), t.Name, err), r.Access)
		}
		for _, item := range res.Responses[t.Name] {
			row, err := ItemRow(item, t.Columns)
			if err != nil {
				return nil, fmt.Errorf("%s: table %s: %w", r.Side, t.Name, err)
			}
			out = append(out, row)
		}
		keys = res.UnprocessedKeys[t.Name].Keys
		if len(keys) > 0 {
			if err := wait(ctx); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// newBackoff returns a wait of 50 ms doubling up to 5 s, jittered, for
// retrying throttled or unprocessed requests.
func newBackoff() func(context.Context) error {
	attempt := 0
	return func(ctx context.Context) error {
		d, _ := backoff{}.BackoffDelay(attempt, nil)
		attempt++
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
			return nil
		}
	}
}

// ItemRow converts an item into a row for validation: the attributes cols
// (the key) first, in that order, then the others sorted by name, each
// converted as the source converts it, with its DynamoDB type in Types (so
// that the row can be written back, as a repair does).
func ItemRow(item Item, cols []string) (*pb.Row, error) {
	names := make([]string, 0, len(item))
	names = append(names, cols...)
	rest := make([]string, 0, len(item))
	fixed := make(map[string]bool, len(cols))
	for _, c := range cols {
		fixed[c] = true
	}
	for n := range item {
		if !fixed[n] {
			rest = append(rest, n)
		}
	}
	sort.Strings(rest)
	names = append(names, rest...)
	row := &pb.Row{Names: names, Types: make([]string, len(names)), Values: make([]*pb.Value, len(names))}
	for i, n := range names {
		av, ok := item[n]
		if !ok {
			return nil, fmt.Errorf("item has no key attribute %s", n)
		}
		v, typ, err := ToValue(av)
		if err != nil {
			return nil, fmt.Errorf("item %s: attribute %s: %w", keyText(item, cols), n, err)
		}
		row.Values[i], row.Types[i] = v, typ
	}
	return row, nil
}

// keyText renders an item's key for messages.
func keyText(item Item, key []string) string {
	row, err := KeyRow(item, key)
	if err != nil {
		return "(without its key)"
	}
	s := ""
	for i, n := range key {
		if i > 0 {
			s += ", "
		}
		s += n + "=" + validate.Text(row.Values[i])
	}
	return s
}
