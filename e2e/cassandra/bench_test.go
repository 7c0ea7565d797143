package cassandra

import (
	"fmt"
	"io"
	"math"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
	"github.com/gocql/gocql"
	"gopkg.in/inf.v0"
)

// Parallelism shared by both copies: token ranges, concurrent range scans,
// concurrent writes.
const (
	benchSplit   = 256
	benchReaders = 4
	benchWriters = 16
)

// BenchmarkCassandraToCassandra moves one table Cassandra → Cassandra twice
// in the same run: with a plain gocql program that scans the same token
// ranges and inserts with the same parallelism (no JetStream), and with
// `ferry migrate`. It reports both times and their ratio. It runs only with
// FERRY_BENCH_ROWS set (rows to move); results go to docs/BENCHMARKS.md.
func BenchmarkCassandraToCassandra(b *testing.B) {
	rows, _ := strconv.Atoi(os.Getenv("FERRY_BENCH_ROWS"))
	if rows <= 0 {
		b.Skip("set FERRY_BENCH_ROWS to the number of rows to move")
	}
	if setupErr != nil {
		b.Fatal(setupErr)
	}
	for i := 0; i < b.N; i++ {
		src, dst := fmt.Sprintf("bench_src_%d", i), fmt.Sprintf("bench_dst_%d", i)
		table := "CREATE TABLE bench (id bigint PRIMARY KEY, name text, amount decimal, at timestamp, n int)"
		for _, ks := range []string{src, dst} {
			must(b, server.Exec("system", "DROP KEYSPACE IF EXISTS "+ks,
				"CREATE KEYSPACE "+ks+" WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"))
			must(b, server.Exec(ks, table))
		}
		srcSess, err := server.Session(src)
		must(b, err)
		dstSess, err := server.Session(dst)
		must(b, err)
		b.StopTimer()
		t0 := time.Now()
		fillBench(b, srcSess, rows)
		b.Logf("filled %d rows in %s", rows, time.Since(t0).Round(time.Millisecond))

		c0 := server.CPU()
		t0 = time.Now()
		plainCopy(b, srcSess, dstSess)
		plain := time.Since(t0)
		plainCass := server.CPU() - c0
		if n := rowCount(b, dstSess, dst, "bench"); n != rows {
			b.Fatalf("plain copy: %d rows in the target, want %d", n, rows)
		}
		must(b, dstSess.Query("TRUNCATE bench").Exec())

		dir := b.TempDir()
		port, mport := ferrytest.FreePort(b), ferrytest.FreePort(b)
		if path := os.Getenv("FERRY_BENCH_CPUPROFILE"); path != "" {
			// A CPU profile of ferry from 3 s into its run, for 10 s.
			go func() {
				time.Sleep(3 * time.Second)
				resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/debug/pprof/profile?seconds=10", mport))
				if err != nil {
					b.Log(err)
					return
				}
				defer resp.Body.Close()
				f, err := os.Create(path)
				if err == nil {
					_, _ = io.Copy(f, resp.Body)
					f.Close()
				}
			}()
		}
		cfg := fmt.Sprintf(`nats: {listen: "127.0.0.1:%d", dataDir: %q}
sources: [{name: cql, type: cassandra, dsn: "cassandra://%s", keyspace: %s, consistencyLevel: ONE, splitCount: %d, connections: %d}]
targets: [{name: dst, type: scylla, dsn: "cassandra://%s", keyspace: %s, consistencyLevel: ONE, connections: %d, from: cql}]
log: {level: warn}
metrics: {addr: "127.0.0.1:%d"}
`, port, filepath.Join(dir, "nats"), server.Hosts(), src, benchSplit, benchReaders, server.Hosts(), dst, benchWriters, mport)
		must(b, os.WriteFile(filepath.Join(dir, "ferry.yaml"), []byte(cfg), 0o600))
		c0 = server.CPU()
		b.StartTimer()
		t0 = time.Now()
		cmd := exec.Command(ferryBin, "migrate", "--config", filepath.Join(dir, "ferry.yaml"))
		out, err := cmd.CombinedOutput()
		ferry := time.Since(t0)
		b.StopTimer()
		ferryCass := server.CPU() - c0
		ferryCPU := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		if err != nil {
			b.Fatalf("ferry migrate: %v\n%s", err, out)
		}
		if n := rowCount(b, dstSess, dst, "bench"); n != rows {
			b.Fatalf("ferry: %d rows in the target, want %d", n, rows)
		}
		b.ReportMetric(plain.Seconds(), "plain-s")
		b.ReportMetric(ferry.Seconds(), "ferry-s")
		b.ReportMetric(float64(rows)/plain.Seconds(), "plain-rows/s")
		b.ReportMetric(float64(rows)/ferry.Seconds(), "ferry-rows/s")
		b.ReportMetric(plain.Seconds()/ferry.Seconds(), "ferry/plain-speed")
		b.Logf("rows=%d plain=%s ferry=%s ferry speed = %.2f× the plain copy; Cassandra CPU %s (plain) / %s (ferry); ferry's own CPU %s",
			rows, plain.Round(time.Millisecond), ferry.Round(time.Millisecond), plain.Seconds()/ferry.Seconds(),
			plainCass.Round(time.Millisecond), ferryCass.Round(time.Millisecond), ferryCPU.Round(time.Millisecond))
	}
}

func must(b testing.TB, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// splitRingForBench cuts the Murmur3 ring into n ranges (start, end] of
// equal width, as the CQL source does.
func splitRingForBench(n int) [][2]int64 {
	width := new(big.Int).Sub(big.NewInt(math.MaxInt64), big.NewInt(math.MinInt64))
	out := make([][2]int64, 0, n)
	prev := int64(math.MinInt64)
	for i := 1; i <= n; i++ {
		end := int64(math.MaxInt64)
		if i < n {
			e := new(big.Int).Mul(width, big.NewInt(int64(i)))
			e.Div(e, big.NewInt(int64(n)))
			end = e.Add(e, big.NewInt(math.MinInt64)).Int64()
		}
		out = append(out, [2]int64{prev, end})
		prev = end
	}
	return out
}

func fillBench(b *testing.B, sess *gocql.Session, rows int) {
	var wg sync.WaitGroup
	var failed atomic.Value
	at := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < rows; i += 32 {
				err := sess.Query("INSERT INTO bench (id, name, amount, at, n) VALUES (?, ?, ?, ?, ?)",
					int64(i), "name "+strconv.Itoa(i), inf.NewDec(int64(i)*12345, 4), at.Add(time.Duration(i)*time.Millisecond), i%1000).Exec()
				if err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
}

// plainCopy is the baseline: the same token ranges scanned by benchReaders
// goroutines, every row inserted by benchWriters goroutines with a prepared
// statement, values passed through as the driver's Go values.
func plainCopy(b *testing.B, src, dst *gocql.Session) {
	ranges := make(chan [2]int64, benchSplit)
	for _, r := range splitRingForBench(benchSplit) {
		ranges <- r
	}
	close(ranges)
	type row struct {
		id     int64
		name   string
		amount *inf.Dec
		at     time.Time
		n      int
	}
	rowsCh := make(chan row, 4096)
	var failed atomic.Value
	var readers, writers sync.WaitGroup
	for range benchReaders {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for r := range ranges {
				iter := src.Query("SELECT id, name, amount, at, n FROM bench WHERE token(id) > ? AND token(id) <= ?", r[0], r[1]).PageSize(1000).Iter()
				var x row
				for iter.Scan(&x.id, &x.name, &x.amount, &x.at, &x.n) {
					rowsCh <- x
					x = row{}
				}
				if err := iter.Close(); err != nil {
					// A range failing midway would need reading again;
					// the baseline has no resume, so it fails.
					failed.Store(err)
					return
				}
			}
		}()
	}
	for range benchWriters {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for x := range rowsCh {
				// Retried on failure as ferry retries timeouts, so that a
				// loaded server does not fail the baseline alone.
				var err error
				for attempt := range 6 {
					if err = dst.Query("INSERT INTO bench (id, name, amount, at, n) VALUES (?, ?, ?, ?, ?)", x.id, x.name, x.amount, x.at, x.n).Exec(); err == nil {
						break
					}
					time.Sleep(time.Duration(100<<attempt) * time.Millisecond)
				}
				if err != nil {
					failed.Store(err)
				}
			}
		}()
	}
	readers.Wait()
	close(rowsCh)
	writers.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
}
