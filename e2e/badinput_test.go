package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBadInputCatalogue is the table of bad inputs a user can give a
// PostgreSQL pipeline, beside those of TestBadInput and TestCheck: each must
// end in a clear error (exit code and words naming what is wrong) or in a
// dead-letter record, and lose nothing. docs/RELIABILITY.md lists the whole
// catalogue, across source families.
func TestBadInputCatalogue(t *testing.T) {
	type tc struct {
		name string
		// setup prepares the databases and returns the extra source
		// options of the config.
		setup func(p *pipeline) string
		// edit changes the written config, when the case is about it.
		edit func(p *pipeline, cfg string) string
		code int
		want []string // all must appear in the output
		// after checks what was kept, when the run gets that far.
		after func(t *testing.T, p *pipeline)
	}
	cases := []tc{{
		name:  "unknown source type",
		setup: func(p *pipeline) string { return "mode: snapshot" },
		edit: func(p *pipeline, cfg string) string {
			return strings.Replace(cfg, "type: postgres\n    dsn: "+p.src.DSN(p.srcDB), "type: sybase\n    dsn: "+p.src.DSN(p.srcDB), 1)
		},
		code: 1, want: []string{`unknown type "sybase"`, "postgres"},
	}, {
		name:  "target reads a source that does not exist",
		setup: func(p *pipeline) string { return "mode: snapshot" },
		edit:  func(p *pipeline, cfg string) string { return strings.Replace(cfg, "from: pg", "from: pgx", 1) },
		code:  2, want: []string{"targets[0].from", `"pgx"`},
	}, {
		name:  "mode misspelled",
		setup: func(p *pipeline) string { return "mode: snapshot-cdc" },
		code:  2, want: []string{"sources[0].mode", "snapshot-cdc"},
	}, {
		// The test servers trust local logins, so the credentials that
		// fail are those of a role that does not exist.
		name:  "wrong credentials",
		setup: func(p *pipeline) string { return "mode: snapshot" },
		edit: func(p *pipeline, cfg string) string {
			dsn := strings.Replace(p.src.DSN(p.srcDB), "postgres@", "nobody:wrong-pw@", 1)
			return strings.Replace(cfg, p.src.DSN(p.srcDB), dsn, 1)
		},
		code: 1, want: []string{`"nobody"`},
	}, {
		name: "configured table missing on the source",
		setup: func(p *pipeline) string {
			p.both(`CREATE TABLE public.here (id int PRIMARY KEY)`)
			return "mode: snapshot\ntables: [public.here, public.gone]"
		},
		code: 1, want: []string{"public.gone"},
	}, {
		name: "source table without a primary key",
		setup: func(p *pipeline) string {
			p.both(`CREATE TABLE public.heap (v text)`)
			p.srcExec(`INSERT INTO heap VALUES ('a')`)
			return "mode: snapshot"
		},
		code: 1, want: []string{"public.heap", "primary key"},
	}, {
		name: "row above the message size limit",
		setup: func(p *pipeline) string {
			p.both(`CREATE TABLE public.blobs (id int PRIMARY KEY, b text)`)
			p.srcExec(`INSERT INTO blobs VALUES (1, 'small'), (2, repeat('x', 300000))`)
			return "mode: snapshot"
		},
		edit: func(p *pipeline, cfg string) string {
			return strings.Replace(cfg, "nats:\n", "nats:\n  maxPayload: 131072\n", 1)
		},
		code: 1, want: []string{"public.blobs", "max_payload"},
	}, {
		name: "value the target column cannot hold",
		setup: func(p *pipeline) string {
			p.srcExec(`CREATE TABLE public.codes (id int PRIMARY KEY, code text)`)
			p.dstExec(`CREATE TABLE public.codes (id int PRIMARY KEY, code int)`)
			p.srcExec(`INSERT INTO codes VALUES (1, '7'), (2, 'seven'), (3, '9')`)
			return "mode: snapshot"
		},
		code: 1, want: []string{"1 rows were rejected"},
		after: func(t *testing.T, p *pipeline) {
			if n := count(t, p.dst, p.dstDB, "public.codes"); n != 2 {
				t.Errorf("target holds %d rows, want the 2 that fit", n)
			}
			code, out := p.run(time.Minute, "status", "--config", p.cfgPath, "--json")
			if code != 0 || !strings.Contains(out, `"deadLettered": 1`) {
				t.Errorf("status exit %d, want one dead letter:\n%s", code, out)
			}
		},
	}, {
		name: "target unique constraint the source does not have",
		setup: func(p *pipeline) string {
			p.both(`CREATE TABLE public.users (id int PRIMARY KEY, email text)`)
			p.dstExec(`CREATE UNIQUE INDEX ON users (email)`)
			p.srcExec(`INSERT INTO users VALUES (1, 'a@x'), (2, 'a@x'), (3, 'b@x')`)
			return "mode: snapshot"
		},
		code: 1, want: []string{"1 rows were rejected", "users_email_idx"},
	}, {
		name: "source column the target lacks",
		setup: func(p *pipeline) string {
			p.srcExec(`CREATE TABLE public.wide (id int PRIMARY KEY, a text, extra text)`)
			p.dstExec(`CREATE TABLE public.wide (id int PRIMARY KEY, a text)`)
			p.srcExec(`INSERT INTO wide VALUES (1, 'a', 'e')`)
			return "mode: snapshot"
		},
		code: 1, want: []string{"public.wide", "extra"},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := newPipeline(t)
			p.writeConfig(c.setup(p), "")
			if c.edit != nil {
				writeFile(t, p.cfgPath, c.edit(p, readFile(t, p.cfgPath)))
			}
			code, out := p.run(2*time.Minute, "migrate", "--config", p.cfgPath)
			if code != c.code {
				t.Errorf("exit %d, want %d", code, c.code)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output does not say %q", w)
				}
			}
			for _, secret := range []string{"wrong-pw"} {
				if strings.Contains(out, secret) {
					t.Errorf("a password appears in the output")
				}
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

// A stream recreated under a target that applied more of the old one (the
// event log's store was deleted and the source read again): the target's
// applied sequences would skip the new stream's first events, so the
// applier refuses, saying how to start the target over, and writes nothing.
func TestStreamRecreatedUnderTarget(t *testing.T) {
	p := newPipeline(t)
	p.both(`CREATE TABLE public.items (id int PRIMARY KEY, v text)`)
	p.srcExec(`INSERT INTO items SELECT i, 'first' FROM generate_series(1, 2000) i`)
	p.writeConfig("mode: snapshot\nchunkRows: 100", "")
	if code, out := p.run(2*time.Minute, "migrate", "--config", p.cfgPath); code != 0 {
		t.Fatalf("first migration exited %d:\n%s", code, out)
	}
	// The log is lost; the source now holds fewer rows, so the new stream
	// ends before the sequences the target applied.
	if err := os.RemoveAll(filepath.Join(p.dir, "nats")); err != nil {
		t.Fatal(err)
	}
	p.srcExec(`DELETE FROM items WHERE id > 100`)
	p.srcExec(`UPDATE items SET v = 'second'`)
	code, out := p.run(2*time.Minute, "migrate", "--config", p.cfgPath)
	if code != 1 {
		t.Fatalf("second migration exited %d, want 1:\n%s", code, out)
	}
	for _, w := range []string{"the stream was recreated", "Start the target over", "ferry_state.applied"} {
		if !strings.Contains(out, w) {
			t.Errorf("output does not say %q:\n%s", w, out)
		}
	}
	// Nothing of the new stream was written over the old rows.
	if n := count(t, p.dst, p.dstDB, "public.items WHERE v = 'second'"); n != 0 {
		t.Errorf("%d rows of the new stream were applied under the old watermark", n)
	}
}
