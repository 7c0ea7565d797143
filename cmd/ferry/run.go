package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/appliers"
	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/metrics"
	"github.com/ferry-dev/ferry/internal/progress"
	"github.com/ferry-dev/ferry/producers"
	"github.com/ferry-dev/ferry/streams"
)

func migrateCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "migrate --config F",
		Short: "Run every source's producer and every target's applier in this process",
		Long: `Runs the whole pipeline in one process. A pipeline whose sources are all
snapshot-only exits 0 once every row is applied to every target; otherwise it
streams changes until SIGINT/SIGTERM, then finishes in-flight work, records its
positions and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			return run(cmd.Context(), cfg, cfg.Sources, cfg.Targets, true)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "config file (YAML)")
	return cmd
}

func produceCmd() *cobra.Command {
	var cfgPath string
	var names []string
	cmd := &cobra.Command{
		Use:   "produce --config F [--source NAME]",
		Short: "Run source producers only (all, or the named ones)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			var srcs []config.Source
			if len(names) == 0 {
				srcs = cfg.Sources
			}
			for _, n := range names {
				s, ok := cfg.Source(n)
				if !ok {
					return usageErr(fmt.Errorf("--source %s: no such source in %s", n, cfgPath))
				}
				srcs = append(srcs, *s)
			}
			return run(cmd.Context(), cfg, srcs, nil, false)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "config file (YAML)")
	cmd.Flags().StringSliceVar(&names, "source", nil, "source name (repeatable)")
	return cmd
}

func applyCmd() *cobra.Command {
	var cfgPath string
	var names []string
	var from replayFrom
	cmd := &cobra.Command{
		Use:   "apply --config F [--target NAME] [--from-start | --from-time T | --from-sequence N]",
		Short: "Run target appliers only (all, or the named ones) as a service",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			var tgts []config.Target
			if len(names) == 0 {
				tgts = cfg.Targets
			}
			for _, n := range names {
				t, ok := cfg.Target(n)
				if !ok {
					return usageErr(fmt.Errorf("--target %s: no such target in %s", n, cfgPath))
				}
				tgts = append(tgts, *t)
			}
			if err := prepareReplay(cmd.Context(), cfg, tgts, from); err != nil {
				return err
			}
			return run(cmd.Context(), cfg, nil, tgts, false)
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "config file (YAML)")
	cmd.Flags().StringSliceVar(&names, "target", nil, "target name (repeatable)")
	from.flags(cmd)
	return cmd
}

// run runs producers and appliers until they finish or ctx ends. With
// untilApplied (migrate), a pipeline with only snapshot sources ends once
// every target has applied everything.
func run(ctx context.Context, cfg *config.Config, srcs []config.Source, tgts []config.Target, untilApplied bool) error {
	log := newLogger(cfg.Log)
	conn, err := streams.Connect(ctx, cfg.NATS, log)
	if err != nil {
		return err
	}
	defer conn.Close()
	state, err := conn.State(ctx)
	if err != nil {
		return err
	}

	// Producers stop on ctx (a signal); appliers on their own context, so
	// that after the producers are done they can still drain.
	applyCtx, stopApply := context.WithCancel(context.WithoutCancel(ctx))
	defer stopApply()
	go func() {
		<-ctx.Done()
		stopApply()
	}()

	var (
		mu       sync.Mutex
		failures []error
	)
	fail := func(err error) {
		mu.Lock()
		failures = append(failures, err)
		mu.Unlock()
		stopApply()
	}
	prodCtx, stopProd := context.WithCancel(ctx)
	defer stopProd()

	// Open everything before starting anything, so that a bad DSN or an
	// unreachable server is reported as itself.
	var prods []producers.Producer
	for _, s := range srcs {
		p, err := producers.Open(prodCtx, s, producers.Env{Conn: conn, State: state, Log: log})
		if err != nil {
			return err
		}
		prods = append(prods, p)
	}
	var runners []*appliers.Runner
	for _, t := range tgts {
		tg, err := appliers.Open(applyCtx, t, log)
		if err != nil {
			return err
		}
		defer tg.Close()
		runners = append(runners, appliers.NewRunner(t, conn, tg, log))
	}
	if cfg.Metrics.Addr != "" {
		health := &metrics.Health{}
		health.Add("nats", func(ctx context.Context) error {
			_, err := conn.JS.AccountInfo(ctx)
			return err
		})
		for i, p := range prods {
			if pp, ok := p.(interface{ Ping(context.Context) error }); ok {
				health.Add("source "+srcs[i].Name, pp.Ping)
			}
		}
		for _, r := range runners {
			health.Add("target "+r.Name(), r.Ping)
		}
		mctx, stopMetrics := context.WithCancel(context.WithoutCancel(ctx))
		defer stopMetrics()
		go func() {
			if err := metrics.Serve(mctx, cfg.Metrics.Addr, health, log); err != nil {
				fail(err)
				stopProd()
			}
		}()
	}
	var prodWG, applyWG, compactWG sync.WaitGroup
	compactCtx, stopCompact := context.WithCancel(ctx)
	defer stopCompact()
	startCompactors(compactCtx, &compactWG, conn, state, srcs, log)
	for i, p := range prods {
		prodWG.Add(1)
		go func() {
			defer prodWG.Done()
			if err := superviseProducer(prodCtx, p, srcs[i], producers.Env{Conn: conn, State: state, Log: log}); err != nil {
				fail(err)
				stopProd()
			}
		}()
	}
	for _, r := range runners {
		applyWG.Add(1)
		go func() {
			defer applyWG.Done()
			if err := r.Run(applyCtx); err != nil {
				fail(err)
				stopProd()
			}
		}()
	}

	snapshotOnly := len(srcs) > 0
	for _, s := range srcs {
		if s.HasCDC() {
			snapshotOnly = false
		}
	}
	prodDone := make(chan struct{})
	go func() { prodWG.Wait(); close(prodDone) }()
	// Progress: bars on a terminal, else a log line every 10 s. It runs on
	// its own context so that the drain after a signal is shown too, and is
	// stopped, its last numbers drawn, before the summary below.
	progressCtx, stopProgress := context.WithCancel(context.WithoutCancel(ctx))
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		progress.Run(progressCtx, os.Stderr, log, progress.DefaultInterval)
	}()

	finished := false
	for !finished {
		select {
		case <-prodDone:
			if ctx.Err() != nil || failed(&mu, failures) {
				finished = true
				break
			}
			if !untilApplied || !snapshotOnly {
				if len(runners) == 0 {
					finished = true
				}
				prodDone = nil // keep applying until a signal
				break
			}
			if err := waitApplied(applyCtx, runners); err == nil {
				finished = true
			}
		case <-applyCtx.Done():
			finished = true
		}
	}
	stopProd()
	prodWG.Wait()
	if !failed(&mu, failures) {
		waitCompacted(ctx, conn, state, srcs, log)
	}
	stopCompact()
	compactWG.Wait()
	stopApply()
	applyWG.Wait()
	stopProgress()
	<-progressDone

	mu.Lock()
	defer mu.Unlock()
	var dead int64
	for _, r := range runners {
		dead += r.Stats.DeadLettered.Load()
	}
	summary(log, runners)
	if len(failures) > 0 {
		return errors.Join(failures...)
	}
	if dead > 0 {
		return fmt.Errorf("%d rows were rejected by their targets and are in the dead-letter stream %s (see the log for each key and reason)", dead, streams.DLQStream)
	}
	return nil
}

func failed(mu *sync.Mutex, f []error) bool {
	mu.Lock()
	defer mu.Unlock()
	return len(f) > 0
}

// waitApplied waits until no target has anything left to apply.
func waitApplied(ctx context.Context, runners []*appliers.Runner) error {
	return poll(ctx, 100*time.Millisecond, func() (bool, error) {
		for _, r := range runners {
			if n, err := r.Pending(ctx); err != nil || n > 0 {
				return false, nil // not started yet, or still applying
			}
		}
		return true, nil
	})
}

func summary(log *slog.Logger, runners []*appliers.Runner) {
	for _, r := range runners {
		log.Info("applied", "target", r.Name(), "events", r.Stats.Applied.Load(), "batches", r.Stats.Batches.Load(), "deadLettered", r.Stats.DeadLettered.Load())
	}
}

// superviseProducer runs a producer and, when it stops on a passing
// connection failure (the source restarted, a connection was cut, NATS was
// away too long), opens it again and resumes from its saved position, as an
// operator would, backing off up to 30 s between attempts. Errors that
// restarting cannot fix end the run.
func superviseProducer(ctx context.Context, p producers.Producer, cfg config.Source, env producers.Env) error {
	wait := time.Second
	// backoff waits, doubling up to 30 s; false when ctx ended first.
	backoff := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
		return true
	}
	for {
		err := p.Run(ctx)
		if err == nil || !producers.Transient(ctx, err) {
			return err
		}
		env.Log.Warn("source stopped on a connection failure; resuming from its saved position", "source", cfg.Name, "err", err, "in", wait)
		metrics.ProducerRestarts.WithLabelValues(cfg.Name).Inc()
		if !backoff() {
			return nil
		}
		for {
			if p, err = producers.Open(ctx, cfg, env); err == nil {
				break
			}
			if !producers.Transient(ctx, err) {
				return err
			}
			env.Log.Warn("reopening source failed; retrying", "source", cfg.Name, "err", err, "in", wait)
			if !backoff() {
				return nil
			}
		}
	}
}
