package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/producers"
	"github.com/ferry-dev/ferry/streams"
)

// sourceStatus is what status reports per source.
type sourceStatus struct {
	Name           string  `json:"name"`
	Position       string  `json:"position,omitempty"`
	LagSeconds     float64 `json:"lagSeconds,omitempty"`
	SnapshotDone   bool    `json:"snapshotDone"`
	ChunksDone     int     `json:"chunksDone"`
	ChunksTotal    int     `json:"chunksTotal"`
	SnapshotRows   int64   `json:"snapshotRows"`
	StreamMessages uint64  `json:"streamMessages"`
	LastSequence   uint64  `json:"lastSequence"`
}

// targetStatus is what status reports per target.
type targetStatus struct {
	Name         string `json:"name"`
	From         string `json:"from"`
	Pending      uint64 `json:"pending"`
	AckPending   int    `json:"ackPending"`
	DeadLettered uint64 `json:"deadLettered"`
	// LagSeconds is the age of the oldest message the target has not
	// applied; 0 when nothing is pending.
	LagSeconds float64 `json:"lagSeconds"`
}

type statusReport struct {
	Sources []sourceStatus `json:"sources"`
	Targets []targetStatus `json:"targets"`
}

func statusCmd() *cobra.Command {
	var (
		cfgPath string
		asJSON  bool
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status --config F [--json] [--wait-caught-up --timeout D]",
		Short: "Print positions, pending events and lag; or wait until targets caught up",
		Long: `Prints each source's position and snapshot progress and each target's pending
events and dead letters. With --wait-caught-up, reads every source's current
position and exits 0 once every target has applied everything up to it (the
cut-over check), or 1 when --timeout passes first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			log := newLogger(cfg.Log)
			if wait && timeout <= 0 {
				return usageErr(errors.New("--wait-caught-up needs --timeout (e.g. --timeout 5m)"))
			}
			if wait {
				wctx, cancel := context.WithTimeout(ctx, timeout)
				defer cancel()
				conn, err := connectForStatus(wctx, cfg, log, true)
				if err != nil {
					return err
				}
				defer conn.Close()
				if err := waitCaughtUp(wctx, cfg, conn, log); err != nil {
					if wctx.Err() != nil {
						return fmt.Errorf("targets did not catch up within %s", timeout)
					}
					return err
				}
				// Caught up is not complete while rows wait in the
				// dead-letter stream: cutting over would lose them.
				rep, err := collectStatus(wctx, cfg, conn)
				if err != nil {
					return err
				}
				var dead uint64
				for _, t := range rep.Targets {
					dead += t.DeadLettered
				}
				if dead > 0 {
					return fmt.Errorf("targets caught up, but %d rows are in the dead-letter stream %s and are not on the targets; fix them before cutting over", dead, streams.DLQStream)
				}
				fmt.Fprintln(cmd.OutOrStdout(), "caught up: every target has applied everything up to the sources' positions at the start of this check")
				return nil
			}
			conn, err := connectForStatus(ctx, cfg, log, false)
			if err != nil {
				return err
			}
			defer conn.Close()
			rep, err := collectStatus(ctx, cfg, conn)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			printStatus(cmd.OutOrStdout(), rep)
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "config file (YAML)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&wait, "wait-caught-up", false, "wait until every target applied everything up to the sources' current positions")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "how long --wait-caught-up waits")
	return cmd
}

// connectForStatus reaches the event log: an external URL as configured, or
// the embedded server of a running ferry on nats.listen. With wait (the
// cut-over check, which needs a running pipeline) it keeps trying that
// address; otherwise, when no ferry runs, it opens the data dir with an
// embedded server of its own on a random port, never on nats.listen, which
// a ferry starting meanwhile needs.
func connectForStatus(ctx context.Context, cfg *config.Config, log *slog.Logger, wait bool) (*streams.Conn, error) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if cfg.NATS.URL != "" {
		return streams.Connect(ctx, cfg.NATS, log)
	}
	n := cfg.NATS
	n.URL = "nats://" + n.Listen
	for {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		c, err := streams.Connect(cctx, n, quiet)
		cancel()
		if err == nil {
			return c, nil
		}
		if !wait {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no ferry is serving NATS on %s: %w", n.Listen, err)
		case <-time.After(500 * time.Millisecond):
		}
	}
	own := cfg.NATS
	own.Listen = "127.0.0.1:-1"
	return streams.Connect(ctx, own, quiet)
}

func collectStatus(ctx context.Context, cfg *config.Config, conn *streams.Conn) (*statusReport, error) {
	state, err := conn.State(ctx)
	if err != nil {
		return nil, err
	}
	rep := &statusReport{}
	for _, s := range cfg.Sources {
		ss := sourceStatus{Name: s.Name}
		var pos streams.Position
		if ok, err := state.GetJSON(ctx, streams.PositionKey(s.Name), &pos); err != nil {
			return nil, err
		} else if ok {
			ss.Position = pos.Text
			if pos.CommitTimeUs > 0 {
				ss.LagSeconds = time.Since(time.UnixMicro(pos.CommitTimeUs)).Seconds()
			}
		}
		var snap streams.SnapshotState
		if _, err := state.GetJSON(ctx, streams.SnapshotKey(s.Name), &snap); err != nil {
			return nil, err
		}
		ss.SnapshotDone = snap.Done
		for _, t := range snap.Tables {
			var pl streams.ChunkPlan
			if ok, err := state.GetJSON(ctx, streams.PlanKey(s.Name, t), &pl); err != nil {
				return nil, err
			} else if ok {
				ss.ChunksTotal += pl.Chunks()
			}
			keys, err := state.Keys(ctx, streams.ChunkPrefix(s.Name, t))
			if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
				return nil, err
			}
			ss.ChunksDone += len(keys)
			for _, k := range keys {
				var done streams.ChunkDone
				if _, err := state.GetJSON(ctx, k, &done); err != nil {
					return nil, err
				}
				ss.SnapshotRows += done.Rows
			}
		}
		if st, err := conn.JS.Stream(ctx, streams.StreamName(s.Name)); err == nil {
			info, err := st.Info(ctx)
			if err != nil {
				return nil, err
			}
			ss.StreamMessages, ss.LastSequence = info.State.Msgs, info.State.LastSeq
		}
		rep.Sources = append(rep.Sources, ss)
	}
	dlq, _ := conn.JS.Stream(ctx, streams.DLQStream)
	for _, t := range cfg.Targets {
		ts := targetStatus{Name: t.Name, From: t.From}
		parts, err := conn.SourcePartitions(ctx, t.From)
		if err == nil {
			for lane := range parts {
				c, err := conn.JS.Consumer(ctx, streams.StreamName(t.From), streams.ConsumerName(t.Name, lane))
				if err != nil {
					continue
				}
				info, err := c.Info(ctx)
				if err != nil {
					return nil, err
				}
				ts.Pending += info.NumPending
				ts.AckPending += info.NumAckPending
				if info.NumPending+uint64(info.NumAckPending) > 0 {
					st, err := conn.JS.Stream(ctx, streams.StreamName(t.From))
					if err != nil {
						return nil, err
					}
					m, err := st.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject(streams.LaneFilter(t.From, lane)))
					if err == nil {
						ts.LagSeconds = max(ts.LagSeconds, time.Since(m.Time).Seconds())
					}
				}
			}
		}
		if dlq != nil {
			info, err := dlq.Info(ctx, jetstream.WithSubjectFilter(streams.DLQFilter(t.Name)))
			if err == nil {
				for _, n := range info.State.Subjects {
					ts.DeadLettered += n
				}
			}
		}
		rep.Targets = append(rep.Targets, ts)
	}
	return rep, nil
}

func printStatus(w io.Writer, rep *statusReport) {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tPOSITION\tLAG\tSNAPSHOT\tROWS\tSTREAM MSGS")
	for _, s := range rep.Sources {
		snap := fmt.Sprintf("%d/%d chunks", s.ChunksDone, s.ChunksTotal)
		if s.SnapshotDone {
			snap = "done (" + snap + ")"
		}
		lag := "-"
		if s.LagSeconds > 0 {
			lag = fmt.Sprintf("%.1fs", s.LagSeconds)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\n", s.Name, dash(s.Position), lag, snap, s.SnapshotRows, s.StreamMessages)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "TARGET\tFROM\tPENDING\tIN FLIGHT\tLAG\tDEAD LETTERS")
	for _, t := range rep.Targets {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.1fs\t%d\n", t.Name, t.From, t.Pending, t.AckPending, t.LagSeconds, t.DeadLettered)
	}
	tw.Flush()
	_, _ = w.Write(b.Bytes())
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// waitCaughtUp is the cut-over check. For each source it takes the source's
// position now, waits until the producer has published (and saved) up to it,
// notes the stream's last sequence at that moment, then waits until every
// target of the source has applied every message of each lane up to that
// sequence.
func waitCaughtUp(ctx context.Context, cfg *config.Config, conn *streams.Conn, log *slog.Logger) error {
	state, err := conn.State(ctx)
	if err != nil {
		return err
	}
	for _, s := range cfg.Sources {
		var goal []byte
		if s.HasCDC() {
			p, err := producers.Open(ctx, s, producers.Env{Conn: conn, State: state, Log: log})
			if err != nil {
				return err
			}
			pp, ok := p.(producers.Positioner)
			if !ok {
				return fmt.Errorf("source %s (%s) cannot report its current position", s.Name, s.Type)
			}
			cur, err := pp.CurrentPosition(ctx)
			if c, ok := p.(interface{ Close() }); ok {
				c.Close()
			}
			if err != nil {
				return fmt.Errorf("source %s: %w", s.Name, err)
			}
			goal = cur.Pos
			log.Info("waiting for the producer to reach the source's position", "source", s.Name, "position", cur.Text)
		}
		if err := poll(ctx, 200*time.Millisecond, func() (bool, error) {
			var snap streams.SnapshotState
			if _, err := state.GetJSON(ctx, streams.SnapshotKey(s.Name), &snap); err != nil {
				return false, err
			}
			if s.HasSnapshot() && !snap.Done {
				return false, nil
			}
			if goal == nil {
				return true, nil
			}
			var pos streams.Position
			ok, err := state.GetJSON(ctx, streams.PositionKey(s.Name), &pos)
			return ok && bytes.Compare(pos.Pos, goal) >= 0, err
		}); err != nil {
			return err
		}
		st, err := conn.JS.Stream(ctx, streams.StreamName(s.Name))
		if err != nil {
			return fmt.Errorf("source %s: %w", s.Name, err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		last := info.State.LastSeq
		parts, err := conn.SourcePartitions(ctx, s.Name)
		if err != nil {
			return err
		}
		for _, t := range cfg.Targets {
			if t.From != s.Name {
				continue
			}
			for lane := range parts {
				if err := poll(ctx, 200*time.Millisecond, func() (bool, error) { return laneCaughtUp(ctx, conn, st, s.Name, t.Name, lane, last) }); err != nil {
					return err
				}
			}
			log.Info("target caught up", "target", t.Name, "source", s.Name, "sequence", last)
		}
	}
	return nil
}

// laneCaughtUp reports whether a target's lane consumer has acknowledged
// every message of the lane at or below seq.
func laneCaughtUp(ctx context.Context, conn *streams.Conn, st jetstream.Stream, source, target string, lane int, seq uint64) (bool, error) {
	c, err := conn.JS.Consumer(ctx, streams.StreamName(source), streams.ConsumerName(target, lane))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return false, nil // its applier has not started yet
	}
	if err != nil {
		return false, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return false, err
	}
	if info.AckFloor.Stream >= seq || (info.NumPending == 0 && info.NumAckPending == 0) {
		return true, nil
	}
	// The next unacknowledged message of this lane: caught up if it is past seq.
	m, err := st.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject(streams.LaneFilter(source, lane)))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return m.Sequence > seq, nil
}

// poll checks cond every interval until it holds, fails, or ctx ends.
func poll(ctx context.Context, interval time.Duration, cond func() (bool, error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
