package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	stypes "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	"github.com/ferry-dev/ferry/internal/dynamo"
	"github.com/ferry-dev/ferry/internal/metrics"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

// shardState is a shard's progress in KV: the sequence number of the last
// record JetStream acknowledged, and whether the shard is closed and read
// to its end.
type shardState struct {
	Seq  string `json:"seq,omitempty"`
	Done bool   `json:"done,omitempty"`
	// StreamSeq is a JetStream stream sequence no record of the shard
	// after Seq can be stored at or below: a resumed shard looks past it
	// for the records a crashed run published already (resume.go).
	StreamSeq uint64 `json:"streamSeq,omitempty"`
}

// noteAcked raises the highest stream sequence known acknowledged.
func (p *producer) noteAcked(seq uint64) {
	for {
		cur := p.acked.Load()
		if seq <= cur || p.acked.CompareAndSwap(cur, seq) {
			return
		}
	}
}

func (p *producer) shardKey(t *table, shard string) string {
	return streams.SourceKey(p.cfg.Name, "shard", t.name, shard)
}

// stream follows every table's stream until ctx ends.
func (p *producer) stream(ctx context.Context) error {
	// Everything published before (the snapshot) is acknowledged: any
	// stream record published from now on is stored after this.
	st, err := p.env.Conn.JS.Stream(ctx, streams.StreamName(p.cfg.Name))
	if err != nil {
		return fmt.Errorf("source %s: opening its stream: %w", p.cfg.Name, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Errorf("source %s: reading its stream: %w", p.cfg.Name, err)
	}
	p.noteAcked(info.State.LastSeq)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.savePositions(ctx)
	}()
	for _, t := range p.tables {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.followTable(ctx, t); err != nil {
				cancel(err)
			}
		}()
	}
	wg.Wait()
	p.log.Info("stream stopped", "recordsPublished", p.published.Load())
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// followTable reads every shard of a table's stream: a shard starts only
// once its parent is read to its end (or trimmed away), so one item's
// changes are published in order across splits. New shards are found by
// listing the stream again.
func (p *producer) followTable(ctx context.Context, t *table) error {
	states := map[string]*shardState{}
	keys, err := p.env.State.Keys(ctx, streams.SourceKey(p.cfg.Name, "shard", t.name)+".")
	if err != nil {
		return err
	}
	for _, k := range keys {
		var st shardState
		if _, err := p.env.State.GetJSON(ctx, k, &st); err != nil {
			return err
		}
		tok := k[strings.LastIndex(k, ".")+1:]
		id, err := streams.Untoken(tok)
		if err != nil {
			return err
		}
		states[id] = &st
	}
	var (
		mu      sync.Mutex
		running = map[string]bool{}
		wg      sync.WaitGroup
		failed  error
	)
	finished := make(chan struct{}, 1)
	defer wg.Wait()
	for ctx.Err() == nil {
		shards, err := p.listShards(ctx, t)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return err
		}
		mu.Lock()
		if failed != nil {
			mu.Unlock()
			return failed
		}
		start, waiting := ready(shards, states, running)
		for _, id := range waiting {
			p.tips.pending(t.name, id)
		}
		for _, id := range start {
			running[id] = true
			from := *states[id]
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := p.readShard(ctx, t, id, from)
				mu.Lock()
				defer mu.Unlock()
				running[id] = false
				if err != nil && failed == nil && ctx.Err() == nil {
					failed = err
				}
				if err == nil && ctx.Err() == nil {
					states[id].Done = true
				}
				select {
				case finished <- struct{}{}:
				default:
				}
			}()
		}
		mu.Unlock()
		select {
		case <-ctx.Done():
		case <-finished:
		case <-time.After(5 * time.Second):
		}
	}
	wg.Wait()
	return failed
}

// ready picks, among the listed shards, those to start reading now and
// those that wait for their parent: a shard starts once its parent is read
// to its end, or when its parent is no longer listed (trimmed away). So one
// item's changes are read in order through closes and splits. states gets
// an entry for every listed shard; done and running shards are neither.
func ready(shards []stypes.Shard, states map[string]*shardState, running map[string]bool) (start, waiting []string) {
	present := map[string]bool{}
	for _, s := range shards {
		present[aws.ToString(s.ShardId)] = true
	}
	for _, s := range shards {
		id := aws.ToString(s.ShardId)
		if states[id] == nil {
			states[id] = &shardState{}
		}
		if states[id].Done || running[id] {
			continue
		}
		if parent := aws.ToString(s.ParentShardId); parent != "" && present[parent] {
			if ps := states[parent]; ps == nil || !ps.Done {
				waiting = append(waiting, id)
				continue
			}
		}
		start = append(start, id)
	}
	return start, waiting
}

// listShards lists every shard of the table's stream.
func (p *producer) listShards(ctx context.Context, t *table) ([]stypes.Shard, error) {
	var out []stypes.Shard
	var from *string
	for {
		d, err := p.streams.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: aws.String(t.streamArn), ExclusiveStartShardId: from})
		if err != nil {
			return nil, fmt.Errorf("source %s: describing the stream of table %s: %w", p.cfg.Name, t.name, err)
		}
		if d.StreamDescription == nil {
			return out, nil
		}
		out = append(out, d.StreamDescription.Shards...)
		from = d.StreamDescription.LastEvaluatedShardId
		if from == nil {
			return out, nil
		}
	}
}

// readShard publishes a shard's records from where KV says it stopped, and
// saves each page's last sequence number once JetStream acknowledged the
// page. It returns nil at the end of a closed shard (recorded done) or when
// ctx ends (position saved).
func (p *producer) readShard(ctx context.Context, t *table, shard string, st shardState) error {
	log := p.log.With("table", t.name, "shard", shard)
	p.tips.start(t.name, shard)
	defer p.tips.end(t.name, shard)
	if st.Seq != "" {
		log.Info("resuming shard after its saved sequence number", "sequenceNumber", st.Seq)
	}
	var skip *resumeSkip
	if st.StreamSeq > 0 {
		stored, err := storedRecords(ctx, p.env.Conn.JS, p.cfg.Name, t.name, shard, st.Seq, st.StreamSeq)
		if err != nil {
			return err
		}
		skip = newResumeSkip(stored)
	} else {
		// A shard read for the first time (or saved by an older ferry):
		// its floor before anything of it is published, so that a crash
		// before its first saved page is resumed as above.
		st.StreamSeq = p.acked.Load()
		if err := p.env.State.PutJSON(ctx, p.shardKey(t, shard), st); err != nil {
			return err
		}
	}
	it, err := p.iterator(ctx, t, shard, st.Seq)
	if err != nil || it == nil {
		return err
	}
	ck := streams.NewCheckpointer(context.WithoutCancel(ctx), 4096)
	last, floor := st.Seq, st.StreamSeq
	// save records the shard's state once everything published before it
	// is acknowledged. Its floor: records after it are published after
	// this call, so they are stored after anything acknowledged by now and
	// after this shard's own messages so far.
	save := func(s shardState) func() error {
		s.StreamSeq = max(floor, p.acked.Load())
		floor = s.StreamSeq
		return func() error {
			s.StreamSeq = max(s.StreamSeq, ck.Seq())
			p.noteAcked(ck.Seq())
			return p.env.State.PutJSON(context.WithoutCancel(ctx), p.shardKey(t, shard), s)
		}
	}
	finish := func(err error) error {
		if cerr := ck.Close(); err == nil {
			err = cerr
		}
		return err
	}
	for ctx.Err() == nil {
		asked := time.Now()
		out, err := p.streams.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: it, Limit: aws.Int32(1000)})
		var expired *stypes.ExpiredIteratorException
		if errors.As(err, &expired) {
			// Iterators live 15 minutes; take a new one after what was read.
			if it, err = p.iterator(ctx, t, shard, last); err != nil || it == nil {
				return finish(err)
			}
			continue
		}
		var trimmed *stypes.TrimmedDataAccessException
		if errors.As(err, &trimmed) {
			return finish(fmt.Errorf("source %s: the stream of table %s no longer holds the records of shard %s after sequence number %s (DynamoDB keeps 24 hours): changes were lost; migrate the table again under a new source name", p.cfg.Name, t.name, shard, last))
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if dynamo.IsThrottle(err) {
				sleepCtx(ctx, time.Second)
				continue
			}
			return finish(fmt.Errorf("source %s: reading shard %s of table %s: %w", p.cfg.Name, shard, t.name, err))
		}
		for _, r := range out.Records {
			if r.Dynamodb == nil {
				continue
			}
			seq := aws.ToString(r.Dynamodb.SequenceNumber)
			if skip.active() {
				k, err := recordKey(t, r)
				if err != nil {
					return finish(err)
				}
				if skip.skip(seq, k) {
					last = seq
					if !skip.active() {
						log.Info("passed over records a previous run published", "records", skip.skipped, "superseded", skip.superseded)
					}
					continue
				}
			}
			if err := p.publishRecord(t, shard, r, ck); err != nil {
				return finish(err)
			}
			last = seq
		}
		if err := ck.Err(); err != nil {
			return finish(err)
		}
		if out.NextShardIterator == nil {
			ck.Mark(save(shardState{Seq: last, Done: true}))
			log.Info("shard closed and read to its end")
			return finish(nil)
		}
		if len(out.Records) > 0 {
			ck.Mark(save(shardState{Seq: last}))
		} else {
			// At the tip: once everything before is stored, this shard
			// holds nothing older than asked that is not published.
			ck.Mark(func() error { p.tips.reached(t.name, shard, asked); return nil })
			// An idle shard's floor follows the stream, so that a resume
			// looks through little of it.
			if p.acked.Load() > floor+resumeFloorStep {
				ck.Mark(save(shardState{Seq: last}))
			}
			sleepCtx(ctx, p.dc.StreamPollInterval.D())
		}
		it = out.NextShardIterator
	}
	return finish(nil)
}

// markLatest records, once per table and before the scan starts, the
// newest position of every shard as its starting point (streamStart:
// latest): the stream is read to its tip without publishing anything. The
// scan that follows sees every change made before; the stream brings every
// change made after.
func (p *producer) markLatest(ctx context.Context, t *table) error {
	marker := streams.SourceKey(p.cfg.Name, "streamstart", t.name)
	var done struct {
		At string `json:"at"`
	}
	if found, err := p.env.State.GetJSON(ctx, marker, &done); err != nil || found {
		return err
	}
	shards, err := p.listShards(ctx, t)
	if err != nil {
		return err
	}
	skipped := 0
	for _, sh := range shards {
		id := aws.ToString(sh.ShardId)
		it, err := p.iterator(ctx, t, id, "")
		if err != nil {
			return err
		}
		st := shardState{}
		for it != nil {
			out, err := p.streams.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: it, Limit: aws.Int32(1000)})
			if err != nil {
				return fmt.Errorf("source %s: reading shard %s of table %s to its newest position: %w", p.cfg.Name, id, t.name, err)
			}
			for _, r := range out.Records {
				st.Seq = aws.ToString(r.Dynamodb.SequenceNumber)
				skipped++
			}
			if out.NextShardIterator == nil {
				st.Done = true
			}
			if len(out.Records) == 0 || st.Done {
				break
			}
			it = out.NextShardIterator
		}
		if st.Seq != "" || st.Done {
			if err := p.env.State.PutJSON(ctx, p.shardKey(t, id), st); err != nil {
				return err
			}
		}
	}
	p.log.Info("the stream starts at its newest position", "table", t.name, "shards", len(shards), "recordsSkipped", skipped)
	done.At = time.Now().UTC().Format(time.RFC3339)
	return p.env.State.PutJSON(ctx, marker, done)
}

// iterator opens a shard after seq, or at its oldest record. nil: the
// shard is gone (trimmed, its records all older than 24 hours).
func (p *producer) iterator(ctx context.Context, t *table, shard, seq string) (*string, error) {
	in := &dynamodbstreams.GetShardIteratorInput{StreamArn: aws.String(t.streamArn), ShardId: aws.String(shard), ShardIteratorType: stypes.ShardIteratorTypeTrimHorizon}
	if seq != "" {
		in.ShardIteratorType, in.SequenceNumber = stypes.ShardIteratorTypeAfterSequenceNumber, aws.String(seq)
	}
	out, err := p.streams.GetShardIterator(ctx, in)
	var nf *stypes.ResourceNotFoundException
	if errors.As(err, &nf) && seq == "" {
		return nil, nil
	}
	var trimmed *stypes.TrimmedDataAccessException
	if errors.As(err, &trimmed) || errors.As(err, &nf) {
		return nil, fmt.Errorf("source %s: the stream of table %s no longer holds shard %s after sequence number %s (DynamoDB keeps 24 hours): changes were lost; migrate the table again under a new source name", p.cfg.Name, t.name, shard, seq)
	}
	if err != nil {
		return nil, fmt.Errorf("source %s: opening shard %s of table %s: %w", p.cfg.Name, shard, t.name, err)
	}
	return out.ShardIterator, nil
}

// publishRecord publishes one stream record as one event. The message id
// carries the run, so that after a crash the records from the saved
// position on are all stored again, in order, even those a crashed run
// stored already: a repeat that JetStream dropped in the middle would put
// an older image after a newer one.
func (p *producer) publishRecord(t *table, shard string, r stypes.Record, ck *streams.Checkpointer) error {
	sr := r.Dynamodb
	if sr == nil {
		return nil
	}
	seq := aws.ToString(sr.SequenceNumber)
	keys := fromStreamItem(sr.Keys)
	key, err := dynamo.KeyRow(keys, t.keyNames)
	if err != nil {
		return fmt.Errorf("source %s: table %s stream record %s: %w", p.cfg.Name, t.name, seq, err)
	}
	ev := &pb.Event{Source: p.cfg.Name, Table: t.name, Key: key, PartitionKeyCount: 1,
		Position: seqPosition(seq), PositionText: shard + "/" + seq}
	if sr.ApproximateCreationDateTime != nil {
		ev.CommitTimeUs = sr.ApproximateCreationDateTime.UnixMicro()
	}
	switch r.EventName {
	case stypes.OperationTypeInsert, stypes.OperationTypeModify:
		ev.Op = pb.Op_OP_INSERT
		if r.EventName == stypes.OperationTypeModify {
			ev.Op = pb.Op_OP_UPDATE
		}
		if sr.NewImage == nil {
			return fmt.Errorf("source %s: table %s stream record %s has no new image; the stream must be NEW_IMAGE or NEW_AND_OLD_IMAGES", p.cfg.Name, t.name, seq)
		}
		if ev.After, err = dynamo.ToRow(fromStreamItem(sr.NewImage)); err != nil {
			return fmt.Errorf("source %s: table %s item %s: %w", p.cfg.Name, t.name, keyText(t.keyNames, keys), err)
		}
	case stypes.OperationTypeRemove:
		ev.Op = pb.Op_OP_DELETE
	default:
		return fmt.Errorf("source %s: table %s stream record %s has unknown event %q", p.cfg.Name, t.name, seq, r.EventName)
	}
	if sr.OldImage != nil {
		if ev.Before, err = dynamo.ToRow(fromStreamItem(sr.OldImage)); err != nil {
			return fmt.Errorf("source %s: table %s item %s: %w", p.cfg.Name, t.name, keyText(t.keyNames, keys), err)
		}
	}
	data, err := streams.Encode(ev)
	if err != nil {
		return err
	}
	if len(data)+1024 > p.maxPayload {
		return fmt.Errorf("source %s: item %s of %s is %d bytes encoded, above the NATS server's max_payload of %d; raise max_payload", p.cfg.Name, keyText(t.keyNames, keys), t.name, len(data), p.maxPayload)
	}
	id := fmt.Sprintf("%s:ch:%s:%s:%s:%d", p.cfg.Name, t.name, shard, seq, p.run)
	f, err := p.env.Conn.PublishAsync(streams.EventSubject(p.cfg.Name, t.name, streams.Lane(key, p.cfg.Partitions)), id, data)
	if err != nil {
		return err
	}
	ck.Add(f)
	p.published.Add(1)
	metrics.EventsPublished.WithLabelValues(p.cfg.Name, t.name).Inc()
	return nil
}

// recordKey is a stream record's key as the key row's encoding, as
// storedRecords reads it from published events.
func recordKey(t *table, r stypes.Record) (string, error) {
	key, err := dynamo.KeyRow(fromStreamItem(r.Dynamodb.Keys), t.keyNames)
	if err != nil {
		return "", fmt.Errorf("table %s stream record %s: %w", t.name, aws.ToString(r.Dynamodb.SequenceNumber), err)
	}
	b, err := key.MarshalVT()
	return string(b), err
}

// seqPosition pads a sequence number (decimal, up to 40 digits) so that
// positions of one shard order byte-wise.
func seqPosition(seq string) []byte {
	if len(seq) >= 40 {
		return []byte(seq)
	}
	return []byte(strings.Repeat("0", 40-len(seq)) + seq)
}

// fromStreamItem converts a stream image to the dynamodb package's types.
func fromStreamItem(m map[string]stypes.AttributeValue) dynamo.Item {
	out := make(dynamo.Item, len(m))
	for k, v := range m {
		out[k] = fromStream(v)
	}
	return out
}

func fromStream(av stypes.AttributeValue) types.AttributeValue {
	switch a := av.(type) {
	case *stypes.AttributeValueMemberS:
		return &types.AttributeValueMemberS{Value: a.Value}
	case *stypes.AttributeValueMemberN:
		return &types.AttributeValueMemberN{Value: a.Value}
	case *stypes.AttributeValueMemberB:
		return &types.AttributeValueMemberB{Value: a.Value}
	case *stypes.AttributeValueMemberBOOL:
		return &types.AttributeValueMemberBOOL{Value: a.Value}
	case *stypes.AttributeValueMemberNULL:
		return &types.AttributeValueMemberNULL{Value: a.Value}
	case *stypes.AttributeValueMemberSS:
		return &types.AttributeValueMemberSS{Value: a.Value}
	case *stypes.AttributeValueMemberNS:
		return &types.AttributeValueMemberNS{Value: a.Value}
	case *stypes.AttributeValueMemberBS:
		return &types.AttributeValueMemberBS{Value: a.Value}
	case *stypes.AttributeValueMemberL:
		l := make([]types.AttributeValue, len(a.Value))
		for i, x := range a.Value {
			l[i] = fromStream(x)
		}
		return &types.AttributeValueMemberL{Value: l}
	case *stypes.AttributeValueMemberM:
		return &types.AttributeValueMemberM{Value: fromStreamItem(a.Value)}
	}
	return nil // an unknown member: ToValue names it
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
