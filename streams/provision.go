package streams

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StateBucket is the KV bucket holding every source's position and snapshot
// progress.
const StateBucket = "ferry"

const partitionsMeta = "ferry.partitions"

// EnsureSourceStream creates (or checks) the durable stream of a source's
// events. The lane count is fixed when the stream is made: changing it later
// would move keys between lanes and break their order, so a mismatch is an
// error.
func (c *Conn) EnsureSourceStream(ctx context.Context, source string, partitions int) (jetstream.Stream, error) {
	name := StreamName(source)
	cfg := jetstream.StreamConfig{
		Name:        name,
		Description: "ferry events of source " + source,
		Subjects:    []string{EventSubjects(source)},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  c.cfg.DuplicateWindow.D(),
		Replicas:    c.cfg.Replicas,
		Metadata:    map[string]string{partitionsMeta: strconv.Itoa(partitions)},
	}
	st, err := c.JS.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		st, err = c.JS.CreateStream(ctx, cfg)
		if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil, fmt.Errorf("creating stream %s: %w", name, err)
		}
		if err == nil {
			return st, nil
		}
		st, err = c.JS.Stream(ctx, name)
	}
	if err != nil {
		return nil, fmt.Errorf("opening stream %s: %w", name, err)
	}
	if got := st.CachedInfo().Config.Metadata[partitionsMeta]; got != "" && got != strconv.Itoa(partitions) {
		return nil, fmt.Errorf("source %s: partitions is %d but stream %s was created with %s; keep %s (lanes cannot change under a running pipeline) or delete the stream to start over",
			source, partitions, name, got, got)
	}
	return st, nil
}

// SourcePartitions reads the lane count a source's stream was created with.
func (c *Conn) SourcePartitions(ctx context.Context, source string) (int, error) {
	st, err := c.JS.Stream(ctx, StreamName(source))
	if err != nil {
		return 0, fmt.Errorf("opening stream of source %s (has its producer run yet?): %w", source, err)
	}
	n, err := strconv.Atoi(st.CachedInfo().Config.Metadata[partitionsMeta])
	if err != nil || n < 1 {
		return 0, fmt.Errorf("stream %s has no valid %s metadata", StreamName(source), partitionsMeta)
	}
	return n, nil
}

// EnsureWorkStream creates the work-queue stream of a source's snapshot
// chunks. Each message is one chunk; any producer process of the source may
// take it, and an unacknowledged chunk is handed out again.
func (c *Conn) EnsureWorkStream(ctx context.Context, source string) (jetstream.Stream, error) {
	name := WorkStreamName(source)
	st, err := c.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        name,
		Description: "ferry snapshot chunks of source " + source,
		Subjects:    []string{"ferry.work." + Token(source) + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.WorkQueuePolicy,
		Duplicates:  c.cfg.DuplicateWindow.D(),
		Replicas:    c.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("creating stream %s: %w", name, err)
	}
	return st, nil
}

// EnsureDLQ creates the dead-letter stream.
func (c *Conn) EnsureDLQ(ctx context.Context) (jetstream.Stream, error) {
	st, err := c.JS.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        DLQStream,
		Description: "rows ferry targets rejected, with the reason",
		Subjects:    []string{"ferry.dlq.>"},
		Storage:     jetstream.FileStorage,
		Replicas:    c.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("creating stream %s: %w", DLQStream, err)
	}
	return st, nil
}

// State opens (creating if needed) the KV bucket of positions and progress.
func (c *Conn) State(ctx context.Context) (*State, error) {
	kv, err := c.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      StateBucket,
		Description: "ferry source positions and snapshot progress",
		History:     5,
		Storage:     jetstream.FileStorage,
		Replicas:    c.cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("opening KV bucket %s: %w", StateBucket, err)
	}
	return &State{KV: kv}, nil
}

// ConsumerName is the durable consumer a target uses for one lane of a
// source. Its ack floor is the target's resume point in that lane.
func ConsumerName(target string, lane int) string {
	return "ferry_" + Token(target) + "_" + strconv.Itoa(lane)
}

// EnsureLaneConsumer creates (or opens) the durable pull consumer of one
// lane for a target, ready to deliver from its ack floor in stream order.
//
// A consumer left by a process that died holds deliveries nobody will ack;
// JetStream would redeliver them only after AckWait, while handing newer
// messages out first, and acknowledging those (AckAll) would acknowledge the
// lost ones too. So a consumer with outstanding deliveries is recreated to
// start right after its ack floor: the ack floor stays the resume point and
// the lane is replayed in order. One process owns a lane at a time.
func (c *Conn) EnsureLaneConsumer(ctx context.Context, source, target string, lane int, maxBatch int) (jetstream.Consumer, error) {
	name := ConsumerName(target, lane)
	stream := StreamName(source)
	cons, err := c.JS.Consumer(ctx, stream, name)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return c.createLaneConsumer(ctx, source, target, lane, maxBatch, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("opening consumer %s on stream %s: %w", name, stream, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading consumer %s on stream %s: %w", name, stream, err)
	}
	if info.NumAckPending == 0 && info.Delivered.Stream <= info.AckFloor.Stream {
		return cons, nil
	}
	return c.ResetLaneConsumer(ctx, source, target, lane, maxBatch, info.AckFloor.Stream+1)
}

// ResetLaneConsumer recreates a lane's consumer to deliver from stream
// sequence start on (the first message of the lane at or after it).
func (c *Conn) ResetLaneConsumer(ctx context.Context, source, target string, lane, maxBatch int, start uint64) (jetstream.Consumer, error) {
	name := ConsumerName(target, lane)
	if err := c.JS.DeleteConsumer(ctx, StreamName(source), name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("resetting consumer %s on stream %s: %w", name, StreamName(source), err)
	}
	return c.createLaneConsumer(ctx, source, target, lane, maxBatch, start)
}

func (c *Conn) createLaneConsumer(ctx context.Context, source, target string, lane, maxBatch int, start uint64) (jetstream.Consumer, error) {
	name := ConsumerName(target, lane)
	cfg := jetstream.ConsumerConfig{
		Durable:       name,
		Description:   fmt.Sprintf("target %s, lane %d of source %s", target, lane, source),
		FilterSubject: LaneFilter(source, lane),
		AckPolicy:     jetstream.AckAllPolicy,
		// Long enough for a slow target transaction; redeliveries that still
		// happen are skipped by the lane's applied sequence in the target.
		AckWait:       2 * time.Minute,
		MaxAckPending: max(4*maxBatch, 1000),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      c.cfg.Replicas,
	}
	if start > 1 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = start
	}
	cons, err := c.JS.CreateOrUpdateConsumer(ctx, StreamName(source), cfg)
	if err != nil {
		return nil, fmt.Errorf("creating consumer %s on stream %s: %w", name, StreamName(source), err)
	}
	return cons, nil
}
