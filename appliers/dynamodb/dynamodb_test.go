package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ferry-dev/ferry/appliers"
	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/e2e/dynamotest"
	"github.com/ferry-dev/ferry/streams/pb"
)

var (
	server   *dynamotest.Server
	setupErr error
)

func TestMain(m *testing.M) {
	code := func() int {
		server, setupErr = dynamotest.Start(context.Background())
		if setupErr == nil {
			defer server.Stop()
		}
		return m.Run()
	}()
	os.Exit(code)
}

func text(s string) *pb.Value { return &pb.Value{Kind: &pb.Value_Text{Text: s}} }

func put(pk, v string, seq uint64) appliers.Item {
	return appliers.Item{Seq: seq, Event: &pb.Event{Table: "items", Op: pb.Op_OP_UPDATE,
		Key:   &pb.Row{Names: []string{"pk"}, Values: []*pb.Value{text(pk)}},
		After: &pb.Row{Names: []string{"pk", "v"}, Values: []*pb.Value{text(pk), text(v)}}}}
}

func del(pk string, seq uint64) appliers.Item {
	return appliers.Item{Seq: seq, Event: &pb.Event{Table: "items", Op: pb.Op_OP_DELETE,
		Key: &pb.Row{Names: []string{"pk"}, Values: []*pb.Value{text(pk)}}}}
}

// A batch naming keys several times keeps each key's last change (one
// BatchWriteItem may not name a key twice), records the watermark, and
// applying the same batch again (a crash before the watermark) ends in
// the same state.
func TestApplyLastChangeWinsAndReplayConverges(t *testing.T) {
	dynamotest.Require(t, setupErr)
	ctx := context.Background()
	c := server.Client()
	_, err := c.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String("items"),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Target{Name: "t", Type: "dynamodb", DynamoDB: config.DynamoDBTarget{
		AWSAccess: config.AWSAccess{Endpoint: server.Endpoint(), AccessKey: "k", SecretKey: "s"}, BatchItems: 2, WriteParallelism: 3, StateTable: "ferry_state"}}
	tg, err := open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	lane := appliers.Lane{Source: "src", Partition: 3}
	var batch []appliers.Item
	for i := range 7 {
		batch = append(batch, put(fmt.Sprint("k", i), "first", uint64(10+i)))
	}
	batch = append(batch, del("k1", 20), put("k2", "second", 21), del("k3", 22), put("k3", "back", 23), put("k1", "again", 24), del("k6", 25))
	for attempt := range 2 {
		rj, err := tg.Apply(ctx, lane, batch, 25, nil)
		if err != nil || len(rj) > 0 {
			t.Fatalf("attempt %d: %v %v", attempt, rj, err)
		}
		got := map[string]string{}
		out, err := c.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String("items")})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range out.Items {
			got[it["pk"].(*types.AttributeValueMemberS).Value] = it["v"].(*types.AttributeValueMemberS).Value
		}
		want := map[string]string{"k0": "first", "k1": "again", "k2": "second", "k3": "back", "k4": "first", "k5": "first"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("attempt %d: target %v, want %v", attempt, got, want)
		}
		if seq, err := tg.Applied(ctx, lane); err != nil || seq != 25 {
			t.Errorf("attempt %d: watermark %d, %v; want 25", attempt, seq, err)
		}
	}
	if seq, err := tg.Applied(ctx, appliers.Lane{Source: "src", Partition: 4}); err != nil || seq != 0 {
		t.Errorf("another lane's watermark is %d, %v; want 0", seq, err)
	}
	// A table ferry cannot create (no description at hand) is a permanent error naming it.
	missing := put("x", "y", 30)
	missing.Event.Table = "nope"
	if _, err := tg.Apply(ctx, lane, []appliers.Item{missing}, 30, nil); err == nil || !errorsIsPermanent(err) {
		t.Errorf("missing table: %v, want a permanent error", err)
	}
}

func errorsIsPermanent(err error) bool { return errors.Is(err, appliers.ErrPermanent) }

// After a crash between a batch's items and its watermark, the lane is
// delivered again from the watermark in other batches. A replayed batch
// that ends between two changes of a key the crashed batch wrote at once
// must not take the item back to the earlier change (found by the fault
// trials' kill-applier case): the first replayed batch leaves k1 and k2 as
// the crashed batch wrote them, and the lane ends where it would have.
func TestReplayInOtherBatchesNeverGoesBack(t *testing.T) {
	dynamotest.Require(t, setupErr)
	ctx := context.Background()
	c := server.Client()
	_, err := c.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String("replayed"),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Target{Name: "t", Type: "dynamodb", Tables: map[string]string{"items": "replayed"}, DynamoDB: config.DynamoDBTarget{
		AWSAccess: config.AWSAccess{Endpoint: server.Endpoint(), AccessKey: "k", SecretKey: "s"}, BatchItems: 25, WriteParallelism: 2, StateTable: "ferry_state_replay"}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tg, err := open(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	lane := appliers.Lane{Source: "src", Partition: 0}
	state := func() string {
		got := map[string]string{}
		out, err := c.Scan(ctx, &dynamodb.ScanInput{TableName: aws.String("replayed"), ConsistentRead: aws.Bool(true)})
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range out.Items {
			got[it["pk"].(*types.AttributeValueMemberS).Value] = it["v"].(*types.AttributeValueMemberS).Value
		}
		return fmt.Sprint(got)
	}
	if _, err := tg.Apply(ctx, lane, []appliers.Item{put("k1", "v1", 1), put("k2", "v1", 1)}, 1, nil); err != nil {
		t.Fatal(err)
	}
	crashed := []appliers.Item{put("k1", "v2", 2), put("k3", "v1", 3), put("k1", "v3", 4), put("k2", "v2", 5), del("k2", 6)}
	tg.(*target).crashAfterItems = func() error { return errors.New("crash") }
	if _, err := tg.Apply(ctx, lane, crashed, 6, nil); err == nil {
		t.Fatal("the crash hook did not fail the batch")
	}
	want := "map[k1:v3 k3:v1]"
	if got := state(); got != want {
		t.Fatalf("after the crashed batch: %s, want %s", got, want)
	}

	// A new process: the watermark says 1; the lane comes again in two
	// batches, the first ending between k1's and k2's two changes.
	tg2, err := open(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if seq, err := tg2.Applied(ctx, lane); err != nil || seq != 1 {
		t.Fatalf("watermark %d, %v; want 1", seq, err)
	}
	if _, err := tg2.Apply(ctx, lane, crashed[:2], 3, nil); err != nil {
		t.Fatal(err)
	}
	if got := state(); got != want {
		t.Errorf("after the first replayed batch: %s, want %s (no key back to an older change)", got, want)
	}
	if _, err := tg2.Apply(ctx, lane, crashed[2:], 6, nil); err != nil {
		t.Fatal(err)
	}
	if got := state(); got != want {
		t.Errorf("after the replay: %s, want %s", got, want)
	}
	// The record of the crashed batch is gone once the replay passed it:
	// later batches write every change again.
	if _, err := tg2.Apply(ctx, lane, []appliers.Item{put("k1", "v0", 7)}, 7, nil); err != nil {
		t.Fatal(err)
	}
	if got := state(); got != "map[k1:v0 k3:v1]" {
		t.Errorf("after the replay ended: %s, want k1 written again", got)
	}
	out, err := c.GetItem(ctx, &dynamodb.GetItemInput{TableName: aws.String("ferry_state_replay"), Key: map[string]types.AttributeValue{"lane": &types.AttributeValueMemberS{Value: "t/src/0"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := out.Item["upto"]; ok {
		t.Errorf("the lane's state still records a batch in flight: %v", out.Item)
	}
}
