package mysql

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

type finding struct {
	Component string `json:"component"`
	Check     string `json:"check"`
	Severity  string `json:"severity"`
	Message   string `json:"message"`
	Fix       string `json:"fix"`
}

func (p *pipeline) check() (int, []finding, string) {
	p.t.Helper()
	code, out := p.run(time.Minute, "check", "--config", p.cfgPath, "--json")
	var fs []finding
	// The JSON array comes first; a summary line may follow it.
	if i := strings.Index(out, "[\n"); i >= 0 {
		_ = json.NewDecoder(strings.NewReader(out[i:])).Decode(&fs)
	}
	return code, fs, out
}

// ferry check finds a binlog that is not ROW with full images and a table
// without a primary key, blocks, and gives the statement that fixes each;
// once fixed it passes.
func TestCheck(t *testing.T) {
	p := newPipeline(t)
	p.src("CREATE TABLE orders (id INT PRIMARY KEY, v VARCHAR(10))")
	p.dst("CREATE TABLE orders (id int PRIMARY KEY, v text)")
	p.src("CREATE TABLE nokey (a INT)")
	p.writeConfig("tables: [orders, nokey]")
	if err := srcServer.Exec("", "SET GLOBAL binlog_format = 'MIXED';\nSET GLOBAL binlog_row_image = 'MINIMAL'"); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := srcServer.Exec("", "SET GLOBAL binlog_format = 'ROW';\nSET GLOBAL binlog_row_image = 'FULL'"); err != nil {
			t.Fatal(err)
		}
	}()
	code, fs, out := p.check()
	if code != 1 {
		t.Fatalf("check exited %d, want 1:\n%s", code, out)
	}
	want := map[string]string{
		"binlog_format":    "SET GLOBAL binlog_format = 'ROW';",
		"binlog_row_image": "SET GLOBAL binlog_row_image = 'FULL';",
		"table":            "ADD PRIMARY KEY",
	}
	for check, fix := range want {
		found := false
		for _, f := range fs {
			if f.Check == check && f.Severity == "block" && strings.Contains(f.Fix, fix) {
				found = true
			}
		}
		if !found {
			t.Errorf("no blocking %s finding with fix %q:\n%s", check, fix, out)
		}
	}
	if err := srcServer.Exec("", "SET GLOBAL binlog_format = 'ROW';\nSET GLOBAL binlog_row_image = 'FULL'"); err != nil {
		t.Fatal(err)
	}
	p.writeConfig("tables: [orders]")
	if code, _, out := p.check(); code != 0 {
		t.Fatalf("check exited %d after the fixes:\n%s", code, out)
	}
}
