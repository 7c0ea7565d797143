package mysql

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
)

// TestBadInputCatalogue is the MySQL/MariaDB family's part of the bad-input
// catalogue (docs/RELIABILITY.md): each bad input ends in an exit code and
// words naming what is wrong, or in a dead-letter record, and nothing else
// is lost. No output carries a password.
func TestBadInputCatalogue(t *testing.T) {
	type tc struct {
		name  string
		setup func(p *pipeline) string // returns the source's extra options
		edit  func(p *pipeline, cfg string) string
		code  int
		want  []string
		after func(t *testing.T, p *pipeline)
	}
	cases := []tc{{
		name:  "wrong credentials",
		setup: func(p *pipeline) string { return "mode: snapshot" },
		edit: func(p *pipeline, cfg string) string {
			return strings.Replace(cfg, "mysql://root@", "mysql://nobody:wrong-pw@", 1)
		},
		code: 1, want: []string{"nobody", "Access denied"},
	}, {
		name:  "unreachable server",
		setup: func(p *pipeline) string { return "mode: snapshot" },
		edit: func(p *pipeline, cfg string) string {
			return strings.Replace(cfg, "mysql://root@"+srcServer.Addr(), fmt.Sprintf("mysql://root:wrong-pw@127.0.0.1:%d", ferrytest.FreePort(p.t)), 1)
		},
		code: 1, want: []string{"connect"},
	}, {
		name: "configured table missing on the source",
		setup: func(p *pipeline) string {
			p.src("CREATE TABLE here (id INT PRIMARY KEY)")
			p.dst("CREATE TABLE here (id int PRIMARY KEY)")
			return "mode: snapshot\ntables: [here, gone]"
		},
		code: 1, want: []string{"gone"},
	}, {
		name: "source table without a primary key",
		setup: func(p *pipeline) string {
			p.src("CREATE TABLE heap (v VARCHAR(10))")
			p.dst("CREATE TABLE heap (v text)")
			p.src("INSERT INTO heap VALUES ('a')")
			return "mode: snapshot"
		},
		code: 1, want: []string{"heap", "primary key"},
	}, {
		name: "table missing on the target",
		setup: func(p *pipeline) string {
			p.src("CREATE TABLE orphan (id INT PRIMARY KEY)")
			p.src("INSERT INTO orphan VALUES (1)")
			return "mode: snapshot"
		},
		code: 1, want: []string{"orphan"},
	}, {
		name: "row above the message size limit",
		setup: func(p *pipeline) string {
			p.src("CREATE TABLE blobs (id INT PRIMARY KEY, b LONGTEXT)")
			p.dst("CREATE TABLE blobs (id int PRIMARY KEY, b text)")
			p.src("INSERT INTO blobs VALUES (1, 'small'), (2, REPEAT('x', 300000))")
			return "mode: snapshot"
		},
		edit: func(p *pipeline, cfg string) string {
			return strings.Replace(cfg, "nats:\n", "nats:\n  maxPayload: 131072\n", 1)
		},
		code: 1, want: []string{"blobs", "max_payload"},
	}, {
		name: "value the target column cannot hold",
		setup: func(p *pipeline) string {
			p.src("CREATE TABLE codes (id INT PRIMARY KEY, code VARCHAR(10))")
			p.dst("CREATE TABLE codes (id int PRIMARY KEY, code int)")
			p.src("INSERT INTO codes VALUES (1, '7'), (2, 'seven'), (3, '9')")
			return "mode: snapshot"
		},
		code: 1, want: []string{"1 rows were rejected"},
		after: func(t *testing.T, p *pipeline) {
			if n := p.dstString("SELECT count(*)::text FROM codes"); n != "2" {
				t.Errorf("target holds %s rows, want the 2 that fit", n)
			}
			code, out := p.run(time.Minute, "status", "--config", p.cfgPath, "--json")
			if code != 0 || !strings.Contains(out, `"deadLettered": 1`) {
				t.Errorf("status exit %d, want one dead letter:\n%s", code, out)
			}
		},
	}, {
		name: "source column the target lacks",
		setup: func(p *pipeline) string {
			p.src("CREATE TABLE wide (id INT PRIMARY KEY, a VARCHAR(5), extra VARCHAR(5))")
			p.dst("CREATE TABLE wide (id int PRIMARY KEY, a text)")
			p.src("INSERT INTO wide VALUES (1, 'a', 'e')")
			return "mode: snapshot"
		},
		code: 1, want: []string{"wide", "extra"},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newPipeline(t)
			p.writeConfig(c.setup(p))
			if c.edit != nil {
				b, err := os.ReadFile(p.cfgPath)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p.cfgPath, []byte(c.edit(p, string(b))), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			code, out := p.run(2*time.Minute, "migrate", "--config", p.cfgPath)
			t.Logf("exit %d: %s", code, ferrytest.LastLines(out, 1))
			if code != c.code {
				t.Errorf("exit %d, want %d", code, c.code)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not say %q", w)
				}
			}
			if strings.Contains(out, "wrong-pw") {
				t.Errorf("a password appears in the output")
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
				return
			}
			if c.after != nil {
				c.after(t, p)
			}
		})
	}
}
