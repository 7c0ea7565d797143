package e2e

import (
	"context"
	"encoding/csv"
	"fmt"
	"image/color"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
	"github.com/ferry-dev/ferry/e2e/pgtest"
)

// BenchmarkCDCLatency measures end-to-end change latency PostgreSQL →
// ferry (embedded NATS) → PostgreSQL at steady insert rates: the time from
// a row's insert on the source (clock_timestamp() in the statement) to its
// write on the target (clock_timestamp() in a target trigger), both on this
// machine's clock. It reports p50/p99/max per rate and writes the lag over
// time, second by second, as CSV and PNG into FERRY_BENCH_OUT (default:
// the test's temp dir).
//
// Set FERRY_BENCH_CDC=1 to run it; FERRY_BENCH_CDC_RATES (default
// "1000,5000") and FERRY_BENCH_CDC_SECONDS (default 30) shape it.
func BenchmarkCDCLatency(b *testing.B) {
	if os.Getenv("FERRY_BENCH_CDC") == "" {
		b.Skip("set FERRY_BENCH_CDC=1 to run the CDC latency benchmark")
	}
	pgtest.Require(b, setupErr)
	rates := []int{1000, 5000}
	if s := os.Getenv("FERRY_BENCH_CDC_RATES"); s != "" {
		rates = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				b.Fatalf("FERRY_BENCH_CDC_RATES=%q: %q is not a positive rate", s, f)
			}
			rates = append(rates, n)
		}
	}
	seconds := 30
	if n, err := strconv.Atoi(os.Getenv("FERRY_BENCH_CDC_SECONDS")); err == nil && n > 0 {
		seconds = n
	}
	out := os.Getenv("FERRY_BENCH_OUT")
	if out == "" {
		out = b.TempDir()
	}
	for _, rate := range rates {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			for range b.N {
				cdcLatencyRun(b, rate, seconds, out)
			}
		})
	}
}

func cdcLatencyRun(b *testing.B, rate, seconds int, outDir string) {
	ctx := context.Background()
	name := fmt.Sprintf("lat_%d", rate)
	src, dst := "s_"+name, "d_"+name
	for _, x := range []struct {
		s  *pgtest.Server
		db string
	}{{srcServer, src}, {dstServer, dst}} {
		must(b, x.s.Exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+x.db+" WITH (FORCE)"))
		must(b, x.s.Exec(ctx, "postgres", "CREATE DATABASE "+x.db))
		must(b, x.s.Exec(ctx, x.db, `CREATE TABLE lat (id bigint PRIMARY KEY, written_at timestamptz NOT NULL, payload text)`))
	}
	defer func() {
		_ = srcServer.Exec(context.Background(), "postgres", "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active", src)
	}()
	// The target stamps each row as it is written; the column is the
	// target's own, ferry does not know it.
	must(b, dstServer.Exec(ctx, dst, `ALTER TABLE lat ADD COLUMN applied_at timestamptz;
CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.applied_at := clock_timestamp(); RETURN NEW; END $$;
CREATE TRIGGER stamp BEFORE INSERT OR UPDATE ON lat FOR EACH ROW EXECUTE FUNCTION stamp();
ALTER TABLE lat ENABLE ALWAYS TRIGGER stamp;`))

	dir := b.TempDir()
	cfgPath := filepath.Join(dir, "ferry.yaml")
	cfg := fmt.Sprintf(`nats: {url: "", listen: "127.0.0.1:%d", dataDir: %q}
sources: [{name: pg, type: postgres, dsn: %q, slot: %s, mode: snapshot+cdc, statusInterval: 200ms}]
targets: [{name: dst, type: postgres, dsn: %q, from: pg}]
log: {level: warn}
`, ferrytest.FreePort(b), filepath.Join(dir, "nats"), srcServer.DSN(src), src, dstServer.DSN(dst))
	must(b, os.WriteFile(cfgPath, []byte(cfg), 0o600))
	mig := ferrytest.Runner{Bin: ferryBin}.Start(b, "migrate", "--config", cfgPath)
	defer mig.StopCode(b)
	ferrytest.Eventually(b, 2*time.Minute, "the pipeline to stream changes", func() bool {
		_, err := runBenchFerry("status", "--config", cfgPath, "--wait-caught-up", "--timeout", "5s")
		return err == nil
	})

	// Writers: four connections, each inserting its share every 10 ms as
	// one multi-row statement (a transaction of rate/400 rows).
	const writers, tick = 4, 10 * time.Millisecond
	perTick := max(1, rate/writers/int(time.Second/tick))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var werr error
	var errOnce sync.Once
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := srcServer.Connect(ctx, src)
			if err != nil {
				errOnce.Do(func() { werr = err })
				return
			}
			defer conn.Close(ctx)
			next := int64(w) * 1_000_000_000
			t := time.NewTicker(tick)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				_, err := conn.Exec(ctx, `INSERT INTO lat SELECT g, clock_timestamp(), md5(g::text) FROM generate_series($1::bigint, $2::bigint) g`, next, next+int64(perTick)-1)
				if err != nil {
					errOnce.Do(func() { werr = err })
					return
				}
				next += int64(perTick)
			}
		}()
	}
	time.Sleep(time.Duration(seconds) * time.Second) // the measured period: the load runs for this long
	close(stop)
	wg.Wait()
	if werr != nil {
		b.Fatal(werr)
	}
	var want int64
	sconn, err := srcServer.Connect(ctx, src)
	must(b, err)
	must(b, sconn.QueryRow(ctx, "SELECT count(*) FROM lat").Scan(&want))
	sconn.Close(ctx)
	ferrytest.Eventually(b, 5*time.Minute, "the target to hold every row", func() bool {
		return count(b, dstServer, dst, "lat") == want
	})

	conn, err := dstServer.Connect(ctx, dst)
	must(b, err)
	defer conn.Close(ctx)
	var p50, p99, pmax float64
	must(b, conn.QueryRow(ctx, `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY l), percentile_cont(0.99) WITHIN GROUP (ORDER BY l), max(l)
		FROM (SELECT extract(epoch FROM applied_at - written_at) * 1000 AS l FROM lat) x`).Scan(&p50, &p99, &pmax))
	achieved := float64(want) / float64(seconds)
	b.ReportMetric(achieved, "changes/s")
	b.ReportMetric(p50, "p50-ms")
	b.ReportMetric(p99, "p99-ms")
	b.ReportMetric(pmax, "max-ms")

	// Lag over time: per second of writing, the p50/p99/max latency of
	// the rows written in it.
	rows, err := conn.Query(ctx, `SELECT extract(epoch FROM s - min(s) OVER ()), p50, p99, mx FROM (
		SELECT date_trunc('second', written_at) s,
		       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM applied_at - written_at) * 1000) p50,
		       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM applied_at - written_at) * 1000) p99,
		       max(extract(epoch FROM applied_at - written_at) * 1000) mx
		FROM lat GROUP BY 1) x ORDER BY 1`)
	must(b, err)
	type sec struct{ t, p50, p99, mx float64 }
	series, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (sec, error) {
		var s sec
		return s, r.Scan(&s.t, &s.p50, &s.p99, &s.mx)
	})
	must(b, err)
	base := filepath.Join(outDir, fmt.Sprintf("cdc-lag-%d", rate))
	f, err := os.Create(base + ".csv")
	must(b, err)
	cw := csv.NewWriter(f)
	_ = cw.Write([]string{"second", "p50_ms", "p99_ms", "max_ms"})
	for _, s := range series {
		_ = cw.Write([]string{fmt.Sprint(s.t), fmt.Sprintf("%.1f", s.p50), fmt.Sprintf("%.1f", s.p99), fmt.Sprintf("%.1f", s.mx)})
	}
	cw.Flush()
	must(b, f.Close())
	pl := plot.New()
	pl.Title.Text = fmt.Sprintf("ferry CDC latency, PostgreSQL → PostgreSQL, %d inserts/s", rate)
	pl.X.Label.Text = "seconds"
	pl.Y.Label.Text = "latency (ms)"
	for _, l := range []struct {
		name string
		get  func(sec) float64
	}{{"p50", func(s sec) float64 { return s.p50 }}, {"p99", func(s sec) float64 { return s.p99 }}, {"max", func(s sec) float64 { return s.mx }}} {
		pts := make(plotter.XYs, len(series))
		for i, s := range series {
			pts[i].X, pts[i].Y = s.t, l.get(s)
		}
		line, err := plotter.NewLine(pts)
		must(b, err)
		line.Color = map[string]plotColor{"p50": blue, "p99": orange, "max": grey}[l.name].rgba()
		pl.Add(line)
		pl.Legend.Add(l.name, line)
	}
	pl.Legend.Top = true
	must(b, pl.Save(8*vg.Inch, 4*vg.Inch, base+".png"))
	b.Logf("rate %d/s: %d rows, p50 %.1f ms, p99 %.1f ms, max %.1f ms; lag series in %s.{csv,png}", rate, want, p50, p99, pmax, base)
}

type plotColor struct{ r, g, b uint8 }

func (c plotColor) rgba() color.RGBA { return color.RGBA{R: c.r, G: c.g, B: c.b, A: 255} }

var (
	blue   = plotColor{31, 119, 180}
	orange = plotColor{255, 127, 14}
	grey   = plotColor{150, 150, 150}
)

func runBenchFerry(args ...string) (string, error) {
	out, err := exec.Command(ferryBin, args...).CombinedOutput()
	return string(out), err
}
