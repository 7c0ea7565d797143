package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
	"github.com/ferry-dev/ferry/e2e/pgtest"
)

// benchTable is the table of the baseline in SERVERS.md: bigint key, text,
// numeric(18,4), timestamptz, jsonb.
const benchTable = `CREATE TABLE public.bench (id bigint PRIMARY KEY, name text, amount numeric(18,4), at timestamptz, doc jsonb)`

func benchRows() int {
	if n, err := strconv.Atoi(os.Getenv("FERRY_BENCH_ROWS")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

// BenchmarkMigrateVsCopy moves one table PostgreSQL → PostgreSQL twice in
// the same run: with `COPY … TO STDOUT (FORMAT binary) | COPY … FROM STDIN`
// between the two servers, and with `ferry migrate` (snapshot mode, embedded
// NATS). It reports both times, their ratio and ferry's peak RSS. Rows:
// FERRY_BENCH_ROWS (default 1,000,000). Results go to docs/BENCHMARKS.md.
func BenchmarkMigrateVsCopy(b *testing.B) {
	pgtest.Require(b, setupErr)
	rows := benchRows()
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("bench_%d_%d", rows, i)
		src, dst := "s_"+name, "d_"+name
		for _, x := range []struct {
			s interface {
				Exec(context.Context, string, string, ...any) error
			}
			db string
		}{{srcServer, src}, {dstServer, dst}} {
			must(b, x.s.Exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+x.db+" WITH (FORCE)"))
			must(b, x.s.Exec(ctx, "postgres", "CREATE DATABASE "+x.db))
			must(b, x.s.Exec(ctx, x.db, benchTable))
		}
		must(b, srcServer.Exec(ctx, src, fmt.Sprintf(`INSERT INTO bench SELECT i, 'name ' || i, i * 1.2345, timestamptz '2024-01-01' + i * interval '1 ms',
			jsonb_build_object('i', i, 'tag', 't' || (i %% 100)) FROM generate_series(1, %d) i`, rows)))
		must(b, srcServer.Exec(ctx, src, "VACUUM ANALYZE bench"))

		b.StopTimer()
		copyDur := copyPipe(b, src, dst)
		must(b, dstServer.Exec(ctx, dst, "TRUNCATE bench"))

		dir := b.TempDir()
		cfg := fmt.Sprintf(`nats: {url: "", listen: "127.0.0.1:%d", dataDir: %q}
sources: [{name: pg, type: postgres, dsn: %q, mode: snapshot}]
targets: [{name: dst, type: postgres, dsn: %q, from: pg}]
log: {level: warn}
`, ferrytest.FreePort(b), dir+"/nats", srcServer.DSN(src), dstServer.DSN(dst))
		if addr := os.Getenv("FERRY_BENCH_METRICS"); addr != "" {
			// To take heap profiles of the run from outside
			// (/debug/pprof/heap on this address).
			cfg += fmt.Sprintf("metrics: {addr: %q}\n", addr)
		}
		must(b, os.WriteFile(dir+"/ferry.yaml", []byte(cfg), 0o600))
		b.StartTimer()
		start := time.Now()
		cmd := exec.Command(ferryBin, "migrate", "--config", dir+"/ferry.yaml")
		out, err := cmd.CombinedOutput()
		ferryDur := time.Since(start)
		b.StopTimer()
		if err != nil {
			b.Fatalf("ferry migrate: %v\n%s", err, out)
		}
		var n int64
		conn, err := dstServer.Connect(ctx, dst)
		must(b, err)
		must(b, conn.QueryRow(ctx, "SELECT count(*) FROM bench").Scan(&n))
		conn.Close(ctx)
		if n != int64(rows) {
			b.Fatalf("target has %d rows, want %d", n, rows)
		}
		rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss // KiB on Linux
		b.ReportMetric(copyDur.Seconds(), "copy-s")
		b.ReportMetric(ferryDur.Seconds(), "ferry-s")
		b.ReportMetric(copyDur.Seconds()/ferryDur.Seconds(), "ferry/copy-speed")
		b.ReportMetric(float64(rows)/ferryDur.Seconds(), "ferry-rows/s")
		b.ReportMetric(float64(rss)/1024, "ferry-peak-RSS-MiB")
		b.StartTimer()
	}
}

// copyPipe runs the baseline: binary COPY out of the source piped into
// binary COPY into the target.
func copyPipe(b *testing.B, src, dst string) time.Duration {
	ctx := context.Background()
	in, err := srcServer.Connect(ctx, src)
	must(b, err)
	defer in.Close(ctx)
	out, err := dstServer.Connect(ctx, dst)
	must(b, err)
	defer out.Close(ctx)
	start := time.Now()
	r, w := io.Pipe()
	errc := make(chan error, 1)
	go func() {
		_, err := in.PgConn().CopyTo(ctx, w, "COPY bench TO STDOUT (FORMAT binary)")
		w.CloseWithError(err)
		errc <- err
	}()
	if _, err := out.PgConn().CopyFrom(ctx, r, "COPY bench FROM STDIN (FORMAT binary)"); err != nil {
		b.Fatal(err)
	}
	must(b, <-errc)
	return time.Since(start)
}

func must(b testing.TB, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}
