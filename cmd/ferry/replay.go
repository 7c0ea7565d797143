package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/appliers"
	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/streams"
)

// replayFrom is where `ferry apply` replays its targets from, if anywhere.
type replayFrom struct {
	start bool
	time  string
	seq   uint64
}

func (f *replayFrom) flags(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.start, "from-start", false, "rebuild the targets from the whole log (the state stream, then the change stream)")
	cmd.Flags().StringVar(&f.time, "from-time", "", "replay the change stream from this time on (RFC 3339, e.g. 2026-01-02T15:04:05Z)")
	cmd.Flags().Uint64Var(&f.seq, "from-sequence", 0, "replay the change stream from this stream sequence on")
	cmd.MarkFlagsMutuallyExclusive("from-start", "from-time", "from-sequence")
}

func (f replayFrom) set() bool { return f.start || f.time != "" || f.seq > 0 }

// prepareReplay rewinds the targets to the requested point before their
// appliers start: their lane consumers and watermarks.
func prepareReplay(ctx context.Context, cfg *config.Config, tgts []config.Target, from replayFrom) error {
	if !from.set() {
		return nil
	}
	var at time.Time
	if from.time != "" {
		var err error
		if at, err = time.Parse(time.RFC3339Nano, from.time); err != nil {
			return usageErr(fmt.Errorf("--from-time %q: not an RFC 3339 time (e.g. 2026-01-02T15:04:05Z)", from.time))
		}
	}
	log := newLogger(cfg.Log)
	conn, err := streams.Connect(ctx, cfg.NATS, log)
	if err != nil {
		return err
	}
	defer conn.Close()
	for _, t := range tgts {
		seq := uint64(1)
		switch {
		case from.seq > 0:
			seq = from.seq
		case from.time != "":
			if seq, err = conn.SeqAtTime(ctx, t.From, at); err != nil {
				return err
			}
		}
		tg, err := appliers.Open(ctx, t, log)
		if err != nil {
			return err
		}
		err = appliers.Rewind(ctx, conn, t, tg, seq)
		tg.Close()
		if err != nil {
			return err
		}
		log.Info("target rewound for a replay", "target", t.Name, "source", t.From, "fromSequence", seq)
	}
	return nil
}

// startCompactors runs the compactor of every source that keeps a state
// stream, beside its producer.
func startCompactors(ctx context.Context, wg *sync.WaitGroup, conn *streams.Conn, state *streams.State, srcs []config.Source, log *slog.Logger) {
	for _, s := range srcs {
		if !s.Retention.Compacts() {
			continue
		}
		c := streams.NewCompactor(conn, state, s, log)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("compactor stopped", "source", s.Name, "err", err)
			}
		}()
	}
}

// waitCompacted lets the compactors of sources whose producers finished on
// their own (snapshot only) fold what was published, so that the state
// stream is complete when the process exits. A signal ends the wait.
func waitCompacted(ctx context.Context, conn *streams.Conn, state *streams.State, srcs []config.Source, log *slog.Logger) {
	for _, s := range srcs {
		if ctx.Err() != nil || !s.Retention.Compacts() || s.HasCDC() {
			continue
		}
		if err := conn.WaitCompacted(ctx, state, s.Name); err != nil && ctx.Err() == nil {
			log.Warn("waiting for the compactor", "source", s.Name, "err", err)
		}
	}
}
