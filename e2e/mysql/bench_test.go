package mysql

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
)

func benchRows() int {
	if n, err := strconv.Atoi(os.Getenv("FERRY_BENCH_ROWS")); err == nil && n > 0 {
		return n
	}
	return 1_000_000
}

// BenchmarkMySQLMigrateVsPipe moves one table MariaDB → PostgreSQL twice in
// the same run: with the `mariadb --batch` client's tab-separated output
// piped into `COPY … FROM STDIN`, and with `ferry migrate` (snapshot mode,
// embedded NATS), then validates it with `ferry validate`. Rows:
// FERRY_BENCH_ROWS (default 1,000,000). Results go to docs/BENCHMARKS.md.
func BenchmarkMySQLMigrateVsPipe(b *testing.B) {
	if setupErr != nil {
		b.Skip(setupErr)
	}
	rows := benchRows()
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		name := fmt.Sprintf("bench_%d_%d", rows, i)
		src, dst := "s_"+name, "d_"+name
		must(b, srcServer.Exec("", "DROP DATABASE IF EXISTS "+src+";\nCREATE DATABASE "+src))
		must(b, srcServer.Exec(src, `CREATE TABLE bench (id BIGINT PRIMARY KEY, name VARCHAR(40), amount DECIMAL(18,4), at DATETIME(6), doc JSON)`))
		must(b, srcServer.Exec(src, fmt.Sprintf(`INSERT INTO bench SELECT seq, CONCAT('name ', seq), seq * 1.2345,
			TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq * 1000 MICROSECOND, JSON_OBJECT('i', seq, 'tag', CONCAT('t', seq %% 100)) FROM seq_1_to_%d`, rows)))
		must(b, dstServer.Exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+dst+" WITH (FORCE)"))
		must(b, dstServer.Exec(ctx, "postgres", "CREATE DATABASE "+dst))
		must(b, dstServer.Exec(ctx, dst, `CREATE TABLE bench (id bigint PRIMARY KEY, name text, amount numeric(18,4), at timestamp(6), doc jsonb)`))

		pipeDur := clientPipe(b, src, dst)
		must(b, dstServer.Exec(ctx, dst, "TRUNCATE bench"))

		dir := b.TempDir()
		cfg := fmt.Sprintf(`nats: {url: "", listen: "127.0.0.1:%d", dataDir: %q}
sources: [{name: my, type: mysql, dsn: %q, mode: snapshot}]
targets: [{name: dst, type: postgres, dsn: %q, from: my}]
log: {level: warn}
`, ferrytest.FreePort(b), dir+"/nats", srcServer.DSN(src), dstServer.DSN(dst))
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
		conn, err := dstServer.Connect(ctx, dst)
		must(b, err)
		var n int64
		must(b, conn.QueryRow(ctx, "SELECT count(*) FROM bench").Scan(&n))
		conn.Close(ctx)
		if n != int64(rows) {
			b.Fatalf("target has %d rows, want %d", n, rows)
		}
		rss := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss
		// Then prove it: ferry validate over the same table.
		start = time.Now()
		vout, err := exec.Command(ferryBin, "validate", "--config", dir+"/ferry.yaml").CombinedOutput()
		valDur := time.Since(start)
		if err != nil {
			b.Fatalf("ferry validate: %v\n%s", err, vout)
		}
		b.ReportMetric(valDur.Seconds(), "validate-s")
		b.ReportMetric(float64(rows)/valDur.Seconds(), "validate-rows/s")
		b.ReportMetric(pipeDur.Seconds(), "pipe-s")
		b.ReportMetric(ferryDur.Seconds(), "ferry-s")
		b.ReportMetric(pipeDur.Seconds()/ferryDur.Seconds(), "ferry/pipe-speed")
		b.ReportMetric(float64(rows)/ferryDur.Seconds(), "ferry-rows/s")
		b.ReportMetric(float64(rss)/1024, "ferry-peak-RSS-MiB")
		b.StartTimer()
	}
}

// clientPipe runs the baseline: the mariadb client's batch output (tab
// separated, escaped as COPY text expects) into COPY FROM STDIN.
func clientPipe(b *testing.B, src, dst string) time.Duration {
	ctx := context.Background()
	out, err := dstServer.Connect(ctx, dst)
	must(b, err)
	defer out.Close(ctx)
	start := time.Now()
	cmd := exec.Command("mariadb", "--batch", "--skip-column-names", "--quick", "-h", "127.0.0.1", "-P", strconv.Itoa(srcServer.Port), "-u", "root", src,
		"-e", "SELECT id, name, amount, at, doc FROM bench")
	stdout, err := cmd.StdoutPipe()
	must(b, err)
	must(b, cmd.Start())
	if _, err := out.PgConn().CopyFrom(ctx, stdout, "COPY bench FROM STDIN"); err != nil {
		b.Fatal(err)
	}
	must(b, cmd.Wait())
	return time.Since(start)
}

func must(b testing.TB, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}
