// Command ferry moves a live database into another through a durable
// JetStream event log: a snapshot, then the change stream until cut-over.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/progress"

	// Connectors register themselves.
	_ "github.com/ferry-dev/ferry/appliers/dynamodb"
	_ "github.com/ferry-dev/ferry/appliers/postgres"
	_ "github.com/ferry-dev/ferry/appliers/scylla"
	_ "github.com/ferry-dev/ferry/producers/cassandra"
	_ "github.com/ferry-dev/ferry/producers/dynamodb"
	_ "github.com/ferry-dev/ferry/producers/mysql"
	_ "github.com/ferry-dev/ferry/producers/oracle"
	_ "github.com/ferry-dev/ferry/producers/postgres"
)

// defaultMemoryLimit is the soft memory limit when GOMEMLIMIT is unset. It
// counts only what the Go runtime holds (the embedded NATS server's block
// caches included); the process's resident size adds about 25-35 MiB of
// program text and runtime beside it, and the limit leaves room for that
// under 512 MiB. ferry's live set in a large snapshot is about 200 MiB.
const defaultMemoryLimit = 448 << 20

// Set by the build (-ldflags "-X main.version=...").
var version = "dev"

// exitError carries a process exit code: 1 failure, 2 bad usage or config.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErr(err error) error { return &exitError{code: 2, err: err} }

func main() {
	root := &cobra.Command{
		Use:           "ferry",
		Short:         "Move a live database into another without losing a row",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageErr(err) })
	root.AddCommand(migrateCmd(), produceCmd(), applyCmd(), statusCmd(), versionCmd(),
		checkCmd(), healthcheckCmd(), validateCmd(),
		checkCmd(), healthcheckCmd(), eventsCmd(),
	)

	if os.Getenv("GOMEMLIMIT") == "" {
		// ferry's live memory is bounded (batches and chunks are bounded);
		// without a limit the garbage collector lets the heap grow to
		// twice what is live. A soft limit keeps peak memory flat whatever
		// the table size; GOMEMLIMIT overrides it.
		debug.SetMemoryLimit(defaultMemoryLimit)
		if os.Getenv("GOGC") == "" {
			// With peak memory held by the limit, collecting at 5x the
			// live heap instead of 2x costs nothing in peak memory and
			// saves about a tenth of ferry's CPU on a large snapshot.
			debug.SetGCPercent(400)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stopProfile := startCPUProfile(os.Getenv("FERRY_CPUPROFILE"))
	err := root.ExecuteContext(ctx)
	stopProfile()
	if err == nil {
		return
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	} else if errors.Is(err, config.ErrInvalid) || strings.HasPrefix(err.Error(), "unknown command") ||
		strings.HasPrefix(err.Error(), "required flag") || strings.Contains(err.Error(), "accepts ") {
		code = 2
	}
	fmt.Fprintln(os.Stderr, "ferry:", err)
	os.Exit(code)
}

// startCPUProfile writes a CPU profile of the whole run to path (the
// FERRY_CPUPROFILE environment variable), for `go tool pprof`. A run that
// ends by a signal still writes it; one killed with SIGKILL does not.
func startCPUProfile(path string) (stop func()) {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferry: FERRY_CPUPROFILE:", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print ferry's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "ferry", version)
		},
	}
}

// loadConfig reads the config file named by --config.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return nil, usageErr(errors.New("--config is required"))
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, usageErr(err)
	}
	// Accepted keys that do nothing in ferry are said, never ignored
	// silently (a scylla-migrator config may carry Spark-only settings).
	for _, w := range cfg.Warnings {
		fmt.Fprintf(os.Stderr, "ferry: %s: %s\n", path, w)
	}
	return cfg, nil
}

func newLogger(c config.Log) *slog.Logger {
	level := slog.LevelInfo
	switch strings.ToLower(c.Level) {
	case "debug":
		level = slog.LevelDebug
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(c.Format, "json") {
		return slog.New(slog.NewJSONHandler(progress.LogWriter(os.Stderr), opts))
	}
	// Through the progress writer, log lines print above the bars instead
	// of being drawn over.
	return slog.New(slog.NewTextHandler(progress.LogWriter(os.Stderr), opts))
}
