package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
	"github.com/ferry-dev/ferry/e2e/pgtest"
)

// scrape reads a Prometheus text page and sums each metric over its labels.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		name := line[:sp]
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err == nil {
			out[name] += v
		}
	}
	return out
}

func healthz(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// During a run the metrics show what was published and applied and lag that
// returns to ~0; /_/healthz fails once the target is stopped; status --json
// reports the snapshot's rows as the target holds them; and SIGTERM still
// ends the process cleanly while the target is down.
func TestMetricsHealthAndStatus(t *testing.T) {
	p := newPipeline(t)
	own := pgtest.StartT(t, pgtest.Options{}) // a target of its own, to stop it
	if err := own.CreateDB(context.Background(), "dst"); err != nil {
		t.Fatal(err)
	}
	p.dst, p.dstDB = own, "dst"
	p.both(`CREATE TABLE public.accounts (id bigint PRIMARY KEY, owner text NOT NULL, balance numeric(14,2))`)
	p.srcExec(`INSERT INTO accounts SELECT i, 'owner ' || i, i FROM generate_series(1, 5000) i`)
	p.writeConfig("mode: snapshot+cdc", "")
	port := ferrytest.FreePort(t)
	cfg := readFile(t, p.cfgPath) + fmt.Sprintf("metrics:\n  addr: 127.0.0.1:%d\n", port)
	writeFile(t, p.cfgPath, cfg)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	mig := p.start("migrate", "--config", p.cfgPath)
	p.waitCaughtUp()
	code, out := p.run(time.Minute, "status", "--config", p.cfgPath, "--json")
	if code != 0 {
		t.Fatalf("status --json exited %d:\n%s", code, out)
	}
	var rep struct {
		Sources []struct {
			SnapshotRows int64 `json:"snapshotRows"`
			SnapshotDone bool  `json:"snapshotDone"`
		} `json:"sources"`
		Targets []struct {
			Pending uint64 `json:"pending"`
		} `json:"targets"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("status --json is not JSON: %v\n%s", err, out)
	}
	if n := count(t, own, "dst", "public.accounts"); len(rep.Sources) != 1 || !rep.Sources[0].SnapshotDone || rep.Sources[0].SnapshotRows != n || n != 5000 {
		t.Fatalf("status says %+v; the target holds %d rows", rep, n)
	}

	p.srcExec(`UPDATE accounts SET balance = balance + 1 WHERE id <= 300`)
	p.srcExec(`INSERT INTO accounts SELECT i, 'late ' || i, 0 FROM generate_series(5001, 5100) i`)
	p.waitCaughtUp()
	var m map[string]float64
	ferrytest.Eventually(t, 30*time.Second, "metrics with the changes applied and lag back to ~0", func() bool {
		m = scrape(t, base+"/metrics")
		return m["ferry_source_events_published_total"] >= 5400 && m["ferry_target_events_applied_total"] >= 5400 &&
			m["ferry_source_lag_seconds"] <= 1 && m["ferry_target_lag_seconds"] <= 1 && m["ferry_target_pending_events"] == 0
	})
	if v := scrape(t, base+"/_/varz"); v["ferry_target_events_applied_total"] != m["ferry_target_events_applied_total"] {
		t.Fatalf("/_/varz and /metrics disagree: %v vs %v", v["ferry_target_events_applied_total"], m["ferry_target_events_applied_total"])
	}
	if m["ferry_snapshot_chunks_done"] != m["ferry_snapshot_chunks_total"] || m["ferry_snapshot_rows_total"] != 5000 {
		t.Fatalf("snapshot metrics: chunks %v/%v, rows %v", m["ferry_snapshot_chunks_done"], m["ferry_snapshot_chunks_total"], m["ferry_snapshot_rows_total"])
	}
	if code, body := healthz(base + "/_/healthz"); code != http.StatusOK {
		t.Fatalf("healthz %d with everything up: %s", code, body)
	}

	if err := own.Stop(); err != nil {
		t.Fatal(err)
	}
	ferrytest.Eventually(t, 30*time.Second, "healthz to report the stopped target", func() bool {
		code, body := healthz(base + "/_/healthz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "target dst")
	})
	p.srcExec(`UPDATE accounts SET balance = 0 WHERE id = 1`) // pending while the target is down
	mig.Stop(t)
	_ = os.Remove(p.cfgPath)
}
