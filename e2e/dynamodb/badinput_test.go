package dynamodb

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
	"github.com/ferry-dev/ferry/internal/dynamo"
)

// TestBadInputCatalogue is the DynamoDB family's part of the bad-input
// catalogue (docs/RELIABILITY.md), beside TestMissingTable, TestEnableStream
// and TestRejectedItemIsDeadLettered: each bad input ends in an exit code
// and words naming what is wrong, and no output carries the AWS keys.
func TestBadInputCatalogue(t *testing.T) {
	cases := []struct {
		name  string
		setup func(p *pipeline)
		edit  func(p *pipeline, cfg string) string
		code  int
		want  func(p *pipeline) []string
	}{{
		name:  "unreachable endpoint",
		setup: func(p *pipeline) { createTable(t, p.sc, p.table, false, "") },
		edit: func(p *pipeline, cfg string) string {
			return strings.Replace(cfg, "endpoint: "+src.Endpoint(), fmt.Sprintf("endpoint: http://127.0.0.1:%d", ferrytest.FreePort(p.t)), 1)
		},
		code: 1, want: func(p *pipeline) []string { return []string{"source dyn: cannot reach DynamoDB at http://127.0.0.1:"} },
	}, {
		name:  "unreachable target endpoint",
		setup: func(p *pipeline) { createTable(t, p.sc, p.table, false, "") },
		edit: func(p *pipeline, cfg string) string {
			i := strings.Index(cfg, "targets:")
			return cfg[:i] + strings.Replace(cfg[i:], "endpoint: "+dst.Endpoint(), fmt.Sprintf("endpoint: http://127.0.0.1:%d", ferrytest.FreePort(p.t)), 1)
		},
		code: 1, want: func(p *pipeline) []string { return []string{"target dst: cannot reach http://127.0.0.1:"} },
	}, {
		name:  "misspelled key in the dynamodb block",
		setup: func(p *pipeline) {},
		edit: func(p *pipeline, cfg string) string {
			return strings.Replace(cfg, "streamPollInterval:", "streamPolInterval:", 1)
		},
		code: 2, want: func(p *pipeline) []string { return []string{`unknown key "streamPolInterval" in sources[].dynamodb`} },
	}, {
		name: "item above the message size limit",
		setup: func(p *pipeline) {
			createTable(t, p.sc, p.table, false, "")
			putItems(t, p.sc, p.table, []dynamo.Item{
				{"pk": s("small"), "v": s("x")},
				{"pk": s("big"), "v": s(strings.Repeat("x", 300_000))},
			})
		},
		edit: func(p *pipeline, cfg string) string {
			return strings.Replace(cfg, "maxPayload: 1048576", "maxPayload: 131072", 1)
		},
		code: 1, want: func(p *pipeline) []string { return []string{`item pk="big" of ` + p.table, "max_payload"} },
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newPipeline(t)
			c.setup(p)
			p.writeConfig("snapshot", "", "", "")
			b, err := os.ReadFile(p.cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p.cfgPath, []byte(c.edit(p, string(b))), 0o600); err != nil {
				t.Fatal(err)
			}
			code, out := p.run(2*time.Minute, "migrate", "--config", p.cfgPath)
			t.Logf("exit %d: %s", code, ferrytest.LastLines(out, 1))
			if code != c.code {
				t.Errorf("exit %d, want %d", code, c.code)
			}
			for _, w := range c.want(p) {
				if !strings.Contains(out, w) {
					t.Errorf("output does not say %q", w)
				}
			}
			if strings.Contains(out, "test-secret-value") {
				t.Errorf("the secret key appears in the output")
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
}
