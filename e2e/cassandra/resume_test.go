package cassandra

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
	"github.com/gocql/gocql"
)

// fillBig writes n rows into big(id, v, w) with parallel inserts.
func fillBig(t *testing.T, sess *gocql.Session, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				if err := sess.Query("INSERT INTO big (id, v, w) VALUES (?, ?, ?)", i, fmt.Sprint("value-", i), float64(i)/3).Exec(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

var rowsPublished = regexp.MustCompile(`msg="snapshot rows published" source=\S+ rows=(\d+)`)

// publishedRows is what the run's producer says it read and published.
func publishedRows(t *testing.T, out string) int {
	t.Helper()
	m := rowsPublished.FindAllStringSubmatch(out, -1)
	if len(m) == 0 {
		t.Fatalf("no \"snapshot rows published\" line in the output:\n%s", tail(out))
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	return n
}

// newestSavepoint returns the path of the newest savepoint file in dir.
func newestSavepoint(t *testing.T, dir string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "savepoint_*.yaml"))
	if len(files) == 0 {
		t.Fatalf("no savepoint file in %s", dir)
	}
	sort.Strings(files)
	return files[len(files)-1]
}

// TestKillDuringSnapshotResumeWithOtherSplit kills ferry with SIGKILL in
// the middle of the snapshot and resumes from the newest savepoint file,
// with another split count: the target ends exact, and the resumed run
// reads fewer rows than the table holds. The savepoints hold no password.
func TestKillDuringSnapshotResumeWithOtherSplit(t *testing.T) {
	const n = 20000
	p := newPipeline(t)
	p.both("CREATE TABLE big (id int PRIMARY KEY, v text, w double)")
	fillBig(t, p.srcSess, n)
	spDir := filepath.Join(p.dir, "savepoints")
	p.writeConfig("splitCount: 64\nconnections: 2\nreadRowsPerSecond: 2500", "", "savepoints:\n  path: "+spDir+"\n  intervalSeconds: 1")
	// A password in the DSN, to check that no savepoint keeps it (the test
	// server accepts any).
	cfg, _ := os.ReadFile(p.cfgPath)
	withPW := strings.Replace(string(cfg), "dsn: cassandra://", "dsn: cassandra://ferry:Pa55-w0rd-xyz@", 1)
	if err := os.WriteFile(p.cfgPath, []byte(withPW), 0o600); err != nil {
		t.Fatal(err)
	}

	pr := p.start("", nil, "migrate", "--config", p.cfgPath)
	ferrytest.Eventually(t, 2*time.Minute, "a quarter of the token ranges and a savepoint with finished ranges", func() bool {
		files, _ := filepath.Glob(filepath.Join(spDir, "savepoint_*.yaml"))
		return strings.Count(pr.Output(), `msg="token range done"`) >= 16 && len(files) > 0 &&
			strings.Contains(readFile(t, newestSavepoint(t, spDir)), "skipTokenRanges:\n")
	})
	pr.Kill9()
	if strings.Contains(pr.Output(), "snapshot complete") {
		t.Fatal("the snapshot finished before the kill; the test proves nothing")
	}

	for _, f := range mustGlob(t, filepath.Join(spDir, "savepoint_*.yaml")) {
		if body := readFile(t, f); strings.Contains(body, "Pa55-w0rd-xyz") {
			t.Fatalf("savepoint %s holds the password:\n%s", f, body)
		}
	}
	sp := readFile(t, newestSavepoint(t, spDir))
	sp = strings.Replace(sp, "splitCount: 64", "splitCount: 37", 1)
	sp = strings.Replace(sp, "readRowsPerSecond: 2500", "readRowsPerSecond: 0", 1)
	resume := filepath.Join(p.dir, "resume.yaml")
	if err := os.WriteFile(resume, []byte(sp), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := p.run("", []string{"FERRY_CQL_PASSWORD=Pa55-w0rd-xyz", "FERRY_DST_PASSWORD=unused"}, 3*time.Minute, "migrate", "--config", resume)
	if code != 0 {
		t.Fatalf("resumed ferry migrate exited %d:\n%s", code, tail(out))
	}
	read := publishedRows(t, out)
	if read == 0 || read >= n {
		t.Fatalf("the resumed run read %d rows; want some, and fewer than the table's %d", read, n)
	}
	t.Logf("resumed run read %d of %d rows", read, n)
	if got := p.assertSameRows("big", "id", "v", "w"); got != n {
		t.Fatalf("%d rows in the target, want %d", got, n)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustGlob(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil || len(m) == 0 {
		t.Fatalf("nothing matches %s", pattern)
	}
	return m
}
