package cassandra

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
)

// TestBadInputCatalogue is the rest of the Cassandra family's part of the
// bad-input catalogue (docs/RELIABILITY.md), beside TestBadInput and
// TestRejectedRowGoesToDeadLetters: unreachable hosts on either side, a
// table the target lacks, a row above the message size limit. Each ends in
// an exit code and words naming what is wrong.
func TestBadInputCatalogue(t *testing.T) {
	p := newPipeline(t)
	p.both("CREATE TABLE ok (id int PRIMARY KEY, v text)")
	p.srcExec("INSERT INTO ok (id, v) VALUES (1, 'x')")
	if err := server.Exec(p.src, "CREATE TABLE srconly (id int PRIMARY KEY, v text)", "CREATE TABLE blobs (id int PRIMARY KEY, b text)"); err != nil {
		t.Fatal(err)
	}
	if err := server.Exec(p.dst, "CREATE TABLE blobs (id int PRIMARY KEY, b text)"); err != nil {
		t.Fatal(err)
	}
	p.srcExec("INSERT INTO srconly (id, v) VALUES (1, 'x')")
	p.srcExec("INSERT INTO blobs (id, b) VALUES (1, 'small')")
	p.srcExec("INSERT INTO blobs (id, b) VALUES (2, ?)", strings.Repeat("x", 300_000))
	dead := fmt.Sprintf("127.0.0.1:%d", ferrytest.FreePort(t))
	cases := []struct {
		name, source string
		edit         func(cfg string) string
		want         []string
	}{{
		name: "unreachable source host", source: "tables: [ok]",
		edit: func(cfg string) string {
			return strings.Replace(cfg, "dsn: cassandra://"+server.Hosts(), "dsn: cassandra://"+dead, 1)
		},
		want: []string{"source cql", dead},
	}, {
		name: "unreachable target host", source: "tables: [ok]",
		edit: func(cfg string) string {
			i := strings.Index(cfg, "targets:")
			return cfg[:i] + strings.Replace(cfg[i:], "dsn: cassandra://"+server.Hosts(), "dsn: cassandra://"+dead, 1)
		},
		want: []string{"target dst", dead},
	}, {
		name: "table missing on the target", source: "tables: [srconly]",
		want: []string{p.dst + ".srconly"},
	}, {
		name: "row above the message size limit", source: "tables: [blobs]",
		edit: func(cfg string) string { return strings.Replace(cfg, "nats:\n", "nats:\n  maxPayload: 131072\n", 1) },
		want: []string{"blobs", "id=2", "max_payload"},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// A fresh event log each: what one case left must not reach
			// the next.
			p.t, p.dir = t, t.TempDir()
			p.writeConfig(c.source, "", "")
			if c.edit != nil {
				if err := os.WriteFile(p.cfgPath, []byte(c.edit(readFile(t, p.cfgPath))), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			code, out := p.run("", nil, 2*time.Minute, "migrate", "--config", p.cfgPath)
			t.Logf("exit %d: %s", code, ferrytest.LastLines(out, 1))
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not say %q", w)
				}
			}
			if t.Failed() {
				t.Logf("output:\n%s", tail(out))
			}
		})
	}
}
