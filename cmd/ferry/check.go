package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/appliers"
	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/preflight"
	"github.com/ferry-dev/ferry/producers"
	"github.com/ferry-dev/ferry/streams"
)

func checkCmd() *cobra.Command {
	var (
		cfgPath string
		asJSON  bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "check --config F [--json]",
		Short: "Check that NATS, every source and every target are ready for the pipeline, and say how to fix what is not",
		Long: `Connects to NATS, to every source and to every target, and checks what each
pipeline needs: for a PostgreSQL source with a change stream, wal_level, the
REPLICATION privilege, a free replication slot and WAL sender, the slot and the
publication; for every table, that it exists and has a primary key; on every
target, that each table, column and primary key is there. Every finding that is
not OK says how to fix it.

Exits 0 when nothing blocks the migration (warnings allowed), 1 when anything
does, 2 on a bad config. The check creates no slot, publication or stream; like
every applier, opening a target creates ferry's state table ferry_state.applied
when it is missing and the role may.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cfgPath)
			if err != nil {
				return err
			}
			if timeout <= 0 {
				return usageErr(errors.New("--timeout must be positive (e.g. --timeout 1m)"))
			}
			fs := runChecks(cmd.Context(), cfg, timeout)
			if asJSON {
				err = preflight.WriteJSON(cmd.OutOrStdout(), fs)
			} else {
				err = preflight.Write(cmd.OutOrStdout(), fs)
			}
			if err != nil {
				return err
			}
			if code := preflight.ExitCode(fs); code != 0 {
				_, _, n := preflight.Count(fs)
				what := "findings block the migration; fix them"
				if n == 1 {
					what = "finding blocks the migration; fix it"
				}
				return &exitError{code: code, err: fmt.Errorf("%d %s and run ferry check again", n, what)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "config file (YAML)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the findings as a JSON array")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "how long connecting to and checking each of NATS, a source or a target may take")
	return cmd
}

// runChecks checks NATS, then every source, then every target with the
// tables of its source. One component failing does not stop the others:
// the report should list everything there is to fix at once.
func runChecks(ctx context.Context, cfg *config.Config, timeout time.Duration) []preflight.Finding {
	// The findings are the output; connectors' routine info logs (a
	// connection made) would only interleave with them.
	lc := cfg.Log
	if !strings.EqualFold(lc.Level, "debug") {
		lc.Level = "warn"
	}
	log := newLogger(lc)

	conn, fs := checkNATS(ctx, cfg, timeout)
	env := producers.Env{Conn: conn, Log: log}
	if conn != nil {
		defer conn.Close()
		// Read-only: the bucket is not created when missing (a fresh
		// pipeline has none), and then there is no saved position to
		// compare the slot with.
		if kv, err := conn.JS.KeyValue(ctx, streams.StateBucket); err == nil {
			env.State = &streams.State{KV: kv}
		}
	} else {
		// Opening a producer reads the NATS connection's payload limit.
		// With NATS unreachable (reported above), a connection that never
		// connected lets the sources be checked all the same.
		env.Conn = &streams.Conn{NC: &nats.Conn{}}
	}

	tables := map[string][]preflight.Table{}
	read := map[string]bool{}
	for _, s := range cfg.Sources {
		sfs, ts, ok := checkSource(ctx, s, env, timeout)
		fs = append(fs, sfs...)
		tables[s.Name], read[s.Name] = ts, ok
	}
	for _, t := range cfg.Targets {
		fs = append(fs, checkTarget(ctx, t, tables[t.From], read[t.From], log, timeout)...)
	}
	return fs
}

func checkSource(ctx context.Context, s config.Source, env producers.Env, timeout time.Duration) ([]preflight.Finding, []preflight.Table, bool) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	p, err := producers.Open(ctx, s, env)
	if err != nil {
		return []preflight.Finding{preflight.SourceOpenFailed(s, err)}, nil, false
	}
	if c, ok := p.(interface{ Close() }); ok {
		defer c.Close()
	}
	sc, ok := p.(preflight.SourceChecker)
	if !ok {
		return []preflight.Finding{{
			Component: preflight.SourceComponent(s.Name), Check: "checks", Severity: preflight.Warn,
			Message: fmt.Sprintf("connected, but sources of type %s have no preflight checks", s.Type),
			Fix:     "nothing to do here; the producer checks its source when it starts, and stops with an error saying what to fix",
		}}, nil, false
	}
	fs, ts := sc.Check(ctx)
	return fs, ts, true
}

func checkTarget(ctx context.Context, t config.Target, tables []preflight.Table, sourceRead bool, log *slog.Logger, timeout time.Duration) []preflight.Finding {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tg, err := appliers.Open(ctx, t, log)
	if err != nil {
		return []preflight.Finding{preflight.TargetOpenFailed(t, err)}
	}
	defer tg.Close()
	tc, ok := tg.(preflight.TargetChecker)
	if !ok {
		return []preflight.Finding{{
			Component: preflight.TargetComponent(t.Name), Check: "checks", Severity: preflight.Warn,
			Message: fmt.Sprintf("connected, but targets of type %s have no preflight checks", t.Type),
			Fix:     "nothing to do here; the applier stops with an error naming a missing table or column",
		}}
	}
	fs := tc.CheckTables(ctx, t.From, tables)
	if !sourceRead {
		fs = append(fs, preflight.Finding{
			Component: preflight.TargetComponent(t.Name), Check: "tables", Severity: preflight.Warn,
			Message: fmt.Sprintf("the tables were not checked on this target: source %s could not be read", t.From),
			Fix:     fmt.Sprintf("fix the findings of source %s, then run ferry check again", t.From),
		})
	}
	return fs
}

// checkNATS reaches the event log as `ferry status` does (connectForStatus):
// an external URL as configured; else a running ferry's embedded server on
// nats.listen; else an embedded server of its own on the data dir, on a
// random port. It returns nil when NATS cannot be reached.
func checkNATS(ctx context.Context, cfg *config.Config, timeout time.Duration) (*streams.Conn, []preflight.Finding) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var fs []preflight.Finding
	add := func(check string, sev preflight.Severity, msg, fix string) {
		fs = append(fs, preflight.Finding{Component: preflight.NATSComponent, Check: check, Severity: sev, Message: msg, Fix: fix})
	}
	quiet := newLogger(config.Log{Level: "error"})
	conn, err := connectForStatus(ctx, cfg, quiet, false)
	if err != nil {
		fix := "check nats.url (is the server running and reachable from here?), nats.credsFile and nats.tls; the server must run JetStream (nats-server -js)"
		if cfg.NATS.URL == "" {
			fix = fmt.Sprintf("the embedded NATS could not start: make nats.dataDir (%s) a writable directory that no other NATS server uses", cfg.NATS.DataDir)
		}
		add("connect", preflight.Block, err.Error(), fix)
		return nil, fs
	}
	switch {
	case cfg.NATS.URL != "":
		add("connect", preflight.OK, fmt.Sprintf("NATS %s at %s", conn.NC.ConnectedServerVersion(), conn.NC.ConnectedUrlRedacted()), "")
	case !conn.Embedded():
		add("connect", preflight.OK, fmt.Sprintf("a running ferry serves the embedded NATS on %s", cfg.NATS.Listen), "")
	default:
		add("connect", preflight.OK, fmt.Sprintf("no ferry runs on nats.listen %s; the embedded NATS starts on data dir %s", cfg.NATS.Listen, cfg.NATS.DataDir), "")
		// The embedded server of ferry migrate will need nats.listen;
		// nothing answered NATS there, so it must be free.
		if l, err := net.Listen("tcp", cfg.NATS.Listen); err != nil {
			add("listen", preflight.Block,
				fmt.Sprintf("nats.listen %s is taken by a program that is not a ferry NATS server, so the embedded NATS could not start there: %v", cfg.NATS.Listen, err),
				"set nats.listen to a free address (host:port), or stop the program that holds it")
		} else {
			_ = l.Close()
			add("listen", preflight.OK, fmt.Sprintf("nats.listen %s is free for the embedded NATS", cfg.NATS.Listen), "")
		}
	}
	info, err := conn.JS.AccountInfo(ctx)
	if err != nil {
		add("jetstream", preflight.Block, "reading the JetStream account: "+err.Error(), "run the NATS server with JetStream enabled (nats-server -js) and give the account JetStream limits")
		return conn, fs
	}
	add("jetstream", preflight.OK, fmt.Sprintf("JetStream available: %d streams, %d bytes stored", info.Streams, info.Store), "")

	for _, s := range cfg.Sources {
		name := streams.StreamName(s.Name)
		startOver := fmt.Sprintf("delete stream %s (nats stream rm %s) and the ferry KV bucket, and empty the targets, to start the pipeline over", name, name)
		if _, err := conn.JS.Stream(ctx, name); errors.Is(err, jetstream.ErrStreamNotFound) {
			add("partitions", preflight.OK, fmt.Sprintf("stream %s of source %s does not exist yet; ferry will create it with %d partitions", name, s.Name, s.Partitions), "")
			continue
		} else if err != nil {
			add("partitions", preflight.Block, fmt.Sprintf("reading stream %s of source %s: %v", name, s.Name, err),
				"make sure the NATS account may read stream information (JetStream API $JS.API.STREAM.INFO), then run ferry check again")
			continue
		}
		n, err := conn.SourcePartitions(ctx, s.Name)
		switch {
		case err != nil:
			add("partitions", preflight.Block, fmt.Sprintf("source %s: %v; it was not made by this ferry", s.Name, err), startOver)
		case n != s.Partitions:
			add("partitions", preflight.Block,
				fmt.Sprintf("stream %s of source %s has %d partitions but sources[].partitions is %d; lanes cannot change under a running pipeline", name, s.Name, n, s.Partitions),
				fmt.Sprintf("set partitions: %d for source %s, or %s", n, s.Name, startOver))
		default:
			add("partitions", preflight.OK, fmt.Sprintf("stream %s of source %s has %d partitions, as configured", name, s.Name, n), "")
		}
	}
	return conn, fs
}
