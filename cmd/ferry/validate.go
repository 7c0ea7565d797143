package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/metrics"
	"github.com/ferry-dev/ferry/streams"
	"github.com/ferry-dev/ferry/validate"
)

type validateFlags struct {
	cfgPath       string
	sources       []string
	targets       []string
	tables        []string
	repair        bool
	live          bool
	continuous    bool
	report        string
	rangeRows     int
	parallel      int
	rowsPerSecond int
	liveDelay     time.Duration
	liveRetries   int
	interval      time.Duration
	fresh         bool
	repairTimeout time.Duration
}

func validateCmd() *cobra.Command {
	var f validateFlags
	cmd := &cobra.Command{
		Use:   "validate --config F [--source N] [--target N] [--tables T,...] [--repair] [--live] [--continuous] [--report FILE]",
		Short: "Compare every row of the sources with their targets; exit 0 equal, 1 different, 2 error",
		Long: `Reads every table of each source and its target and compares them row by row
(both sides in primary-key ranges, merged by key), honouring the target's table
and column renames and schema, with the tolerances of the config's validation
section. Prints a summary per table and each missing, extraneous and mismatched
row by key and column (up to validation.failuresToFetch); --report writes the
same as JSON. Progress is kept per key range in the KV bucket, so a validation
that was killed continues where it stopped.

--live re-reads a difference every --live-delay and reports it only once it
differed on --live-retries reads in a row with its source row unchanged: rows
still in flight are not differences.
--repair publishes a fresh source read of each missing or mismatched row, and a
delete of each extraneous one, into the source's stream, waits until the
target's applier (ferry apply / migrate, which must run) has applied them, and
reads them again. --continuous validates again every --interval until stopped.

Exit codes: 0 equal, 1 different, 2 error (bad config, unreachable database).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(f.cfgPath)
			if err != nil {
				return err
			}
			return runValidate(cmd.Context(), cmd.OutOrStdout(), cfg, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.cfgPath, "config", "", "config file (YAML)")
	fl.StringSliceVar(&f.sources, "source", nil, "validate the targets of this source (repeatable)")
	fl.StringSliceVar(&f.targets, "target", nil, "validate this target (repeatable); default every target")
	fl.StringSliceVar(&f.tables, "tables", nil, "only these source tables (schema.table or table; comma-separated)")
	fl.BoolVar(&f.repair, "repair", false, "write missing and mismatched rows from the source and delete extraneous ones (through the source's stream)")
	fl.BoolVar(&f.live, "live", false, "re-check differences after --live-delay before reporting them (for a pipeline that is replicating)")
	fl.BoolVar(&f.continuous, "continuous", false, "validate again every --interval until stopped")
	fl.StringVar(&f.report, "report", "", "write the report as JSON to this file")
	fl.IntVar(&f.rangeRows, "range-rows", 0, "rows per key range (default: the source's chunkRows)")
	fl.IntVar(&f.parallel, "parallel", 4, "key ranges compared at once")
	fl.IntVar(&f.rowsPerSecond, "rows-per-second", 0, "cap rows read per second from each side (0: no cap)")
	fl.DurationVar(&f.liveDelay, "live-delay", 5*time.Second, "with --live, wait this long between reads of a difference (above the pipeline's lag)")
	fl.IntVar(&f.liveRetries, "live-retries", 3, "with --live, reads in a row a difference must survive, its source unchanged")
	fl.DurationVar(&f.interval, "interval", time.Minute, "with --continuous, the pause between runs")
	fl.BoolVar(&f.fresh, "fresh", false, "start over instead of resuming an unfinished validation")
	fl.DurationVar(&f.repairTimeout, "repair-timeout", 10*time.Minute, "with --repair, how long to wait for the target to apply the repairs")
	return cmd
}

// validateExit is the outcome of a validation: 0 equal, 1 different.
type validateExit struct {
	Equal   bool               `json:"equal"`
	Reports []*validate.Report `json:"reports"`
}

func runValidate(ctx context.Context, out io.Writer, cfg *config.Config, f validateFlags) error {
	tgts, err := validateTargets(cfg, f)
	if err != nil {
		return usageErr(err)
	}
	log := newLogger(cfg.Log)
	conn, err := connectForStatus(ctx, cfg, log, false)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	defer conn.Close()
	state, err := conn.State(ctx)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if cfg.Metrics.Addr != "" {
		// A long validation can be watched and profiled like the pipeline.
		health := &metrics.Health{}
		health.Add("nats", func(ctx context.Context) error {
			_, err := conn.JS.AccountInfo(ctx)
			return err
		})
		mctx, stopMetrics := context.WithCancel(ctx)
		defer stopMetrics()
		go func() {
			if err := metrics.Serve(mctx, cfg.Metrics.Addr, health, log); err != nil {
				log.Error("metrics server", "err", err)
			}
		}()
	}
	var last *validateExit
	for {
		res, err := validateOnce(ctx, out, cfg, f, tgts, conn, state, log)
		if err != nil {
			if ctx.Err() != nil {
				if last != nil {
					// --continuous stopped between two results: the last
					// complete one stands; the next start resumes the pass.
					return exitFor(last)
				}
				return &exitError{code: 2, err: errors.New("validation stopped before it finished; run it again to continue where it stopped")}
			}
			return &exitError{code: 2, err: err}
		}
		last = res
		if !f.continuous || ctx.Err() != nil {
			return exitFor(res)
		}
		select {
		case <-ctx.Done():
			return exitFor(res)
		case <-time.After(f.interval):
		}
		// Each pass of --continuous is a run of its own (an unfinished one
		// is resumed only by the first).
	}
}

func exitFor(res *validateExit) error {
	if res.Equal {
		return nil
	}
	return &exitError{code: 1, err: validate.ErrDifferent}
}

func validateTargets(cfg *config.Config, f validateFlags) ([]config.Target, error) {
	var out []config.Target
	for _, n := range f.targets {
		t, ok := cfg.Target(n)
		if !ok {
			return nil, fmt.Errorf("--target %s: no such target in %s", n, f.cfgPath)
		}
		out = append(out, *t)
	}
	if len(f.targets) == 0 {
		out = cfg.Targets
	}
	for _, n := range f.sources {
		if _, ok := cfg.Source(n); !ok {
			return nil, fmt.Errorf("--source %s: no such source in %s", n, f.cfgPath)
		}
	}
	if len(f.sources) > 0 {
		var kept []config.Target
		for _, t := range out {
			for _, s := range f.sources {
				if t.From == s {
					kept = append(kept, t)
				}
			}
		}
		out = kept
	}
	if len(out) == 0 {
		return nil, errors.New("no target to validate")
	}
	return out, nil
}

func validateOnce(ctx context.Context, out io.Writer, cfg *config.Config, f validateFlags, tgts []config.Target, conn *streams.Conn, state *streams.State, log *slog.Logger) (*validateExit, error) {
	res := &validateExit{Equal: true}
	for _, t := range tgts {
		s, _ := cfg.Source(t.From)
		rep, err := validateTarget(ctx, cfg, f, *s, t, conn, state, log)
		if err != nil {
			return nil, err
		}
		rep.Summary(out)
		fmt.Fprintln(out)
		res.Reports = append(res.Reports, rep)
		res.Equal = res.Equal && rep.Equal
	}
	if f.report != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return nil, err
		}
		tmp := f.report + ".tmp"
		if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
			return nil, fmt.Errorf("writing the report: %w", err)
		}
		if err := os.Rename(tmp, f.report); err != nil {
			return nil, fmt.Errorf("writing the report: %w", err)
		}
	}
	return res, nil
}

func validateTarget(ctx context.Context, cfg *config.Config, f validateFlags, s config.Source, t config.Target, conn *streams.Conn, state *streams.State, log *slog.Logger) (*validate.Report, error) {
	src, err := validate.OpenSource(ctx, s, log)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	dst, err := validate.OpenTarget(ctx, t, log)
	if err != nil {
		return nil, err
	}
	defer dst.Close()
	rangeRows := f.rangeRows
	if rangeRows <= 0 {
		rangeRows = s.ChunkRows
	}
	opts := validate.Options{
		Source: s, TargetCfg: t,
		Tolerances:      validate.TolerancesFrom(cfg.Validation),
		FailuresToFetch: cfg.Validation.FailuresToFetch,
		Tables:          f.tables,
		RangeRows:       rangeRows,
		Parallel:        f.parallel,
		RowsPerSecond:   f.rowsPerSecond,
		Live:            f.live,
		LiveDelay:       f.liveDelay,
		LiveRetries:     f.liveRetries,
		Progress:        &validate.Progress{State: state, Target: t.Name, Fresh: f.fresh, Log: log},
		Log:             log.With("target", t.Name),
	}
	var repairer *validate.StreamRepairer
	if f.repair {
		repairer = &validate.StreamRepairer{Conn: conn, Source: s.Name, Target: t.Name, Log: log}
		if err := repairer.Open(ctx); err != nil {
			return nil, err
		}
		opts.Repair = &timedRepairer{StreamRepairer: repairer, timeout: f.repairTimeout}
	}
	rep, err := validate.Run(ctx, src, dst, opts)
	if err != nil {
		return nil, err
	}
	return rep, nil
}

// timedRepairer bounds how long Settle waits for the applier.
type timedRepairer struct {
	*validate.StreamRepairer
	timeout time.Duration
}

func (r *timedRepairer) Settle(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	return r.StreamRepairer.Settle(ctx)
}
