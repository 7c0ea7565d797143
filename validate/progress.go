package validate

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/streams/pb"
)

// Progress keeps a validation's progress in the KV bucket, under
// validate.<target>.…:
//
//	validate.<target>.run                        the run: id, start, finished
//	validate.<target>.<table>.<pass>.plan        the table's ranges
//	validate.<target>.<table>.<pass>.<n>         a finished range's result
//
// A run that did not finish (killed, stopped) is resumed by the next one:
// the same ranges, and the finished ones are not read again. A finished run
// is replaced by the next run. Nothing secret is stored: key bounds and the
// listed differences (column values) only.
type Progress struct {
	State  *streams.State
	Target string
	// Fresh discards an unfinished run instead of resuming it.
	Fresh bool
	Log   interface{ Info(string, ...any) }
}

type runRecord struct {
	ID       string    `json:"id"`
	Started  time.Time `json:"started"`
	Finished bool      `json:"finished"`
}

type storedRange struct {
	Lo   []byte `json:"lo,omitempty"`
	Hi   []byte `json:"hi,omitempty"`
	Spec string `json:"spec,omitempty"`
}

type storedPlan struct {
	Ranges []storedRange `json:"ranges"`
}

func (p *Progress) key(parts ...string) string {
	return streams.Key(append([]string{"validate", p.Target}, parts...)...)
}

// begin resumes an unfinished run or starts a new one, returning its id.
func (p *Progress) begin(ctx context.Context) (string, error) {
	if p == nil {
		return strconv.FormatInt(time.Now().UnixNano(), 36), nil
	}
	var rr runRecord
	found, err := p.State.GetJSON(ctx, p.key("run"), &rr)
	if err != nil {
		return "", err
	}
	if found && !rr.Finished && !p.Fresh {
		if p.Log != nil {
			p.Log.Info("resuming the unfinished validation run", "run", rr.ID, "started", rr.Started)
		}
		return rr.ID, nil
	}
	if err := p.purge(ctx); err != nil {
		return "", err
	}
	rr = runRecord{ID: strconv.FormatInt(time.Now().UnixNano(), 36), Started: time.Now().UTC()}
	return rr.ID, p.State.PutJSON(ctx, p.key("run"), rr)
}

// purge removes everything an earlier run left.
func (p *Progress) purge(ctx context.Context) error {
	keys, err := p.State.Keys(ctx, streams.Key("validate", p.Target)+".")
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return err
	}
	for _, k := range keys {
		if err := p.State.KV.Purge(ctx, k); err != nil {
			return fmt.Errorf("clearing %s from KV: %w", k, err)
		}
	}
	return nil
}

func (p *Progress) finish(ctx context.Context) error {
	if p == nil {
		return nil
	}
	var rr runRecord
	if _, err := p.State.GetJSON(ctx, p.key("run"), &rr); err != nil {
		return err
	}
	rr.Finished = true
	return p.State.PutJSON(ctx, p.key("run"), rr)
}

func (p *Progress) plan(ctx context.Context, table, pass string) ([]Range, bool, error) {
	if p == nil {
		return nil, false, nil
	}
	var sp storedPlan
	found, err := p.State.GetJSON(ctx, p.key(table, pass, "plan"), &sp)
	if err != nil || !found {
		return nil, false, err
	}
	out := make([]Range, len(sp.Ranges))
	for i, s := range sp.Ranges {
		out[i].Spec = s.Spec
		for _, b := range []struct {
			data []byte
			dst  **pb.Row
		}{{s.Lo, &out[i].Lo}, {s.Hi, &out[i].Hi}} {
			if b.data == nil {
				continue
			}
			r := &pb.Row{}
			if err := r.UnmarshalVT(b.data); err != nil {
				return nil, false, fmt.Errorf("decoding range %d of %s from KV: %w", i, table, err)
			}
			*b.dst = r
		}
	}
	return out, true, nil
}

func (p *Progress) savePlan(ctx context.Context, table, pass string, rs []Range) error {
	if p == nil {
		return nil
	}
	sp := storedPlan{Ranges: make([]storedRange, len(rs))}
	for i, r := range rs {
		sp.Ranges[i].Spec = r.Spec
		var err error
		if r.Lo != nil {
			if sp.Ranges[i].Lo, err = r.Lo.MarshalVT(); err != nil {
				return err
			}
		}
		if r.Hi != nil {
			if sp.Ranges[i].Hi, err = r.Hi.MarshalVT(); err != nil {
				return err
			}
		}
	}
	return p.State.PutJSON(ctx, p.key(table, pass, "plan"), sp)
}

// done returns the finished ranges of a pass by index.
func (p *Progress) done(ctx context.Context, table, pass string) (map[int]*rangeResult, error) {
	out := map[int]*rangeResult{}
	if p == nil {
		return out, nil
	}
	prefix := p.key(table, pass) + "."
	keys, err := p.State.Keys(ctx, prefix)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, err
	}
	for _, k := range keys {
		n, err := strconv.Atoi(strings.TrimPrefix(k, prefix))
		if err != nil {
			continue // the plan
		}
		var r rangeResult
		if _, err := p.State.GetJSON(ctx, k, &r); err != nil {
			return nil, err
		}
		out[n] = &r
	}
	return out, nil
}

func (p *Progress) save(ctx context.Context, table, pass string, i int, r *rangeResult) error {
	if p == nil {
		return nil
	}
	return p.State.PutJSON(ctx, p.key(table, pass, strconv.Itoa(i)), r)
}
