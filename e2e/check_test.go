package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
	"github.com/ferry-dev/ferry/internal/preflight"
)

// check runs ferry check on the pipeline's config.
func (p *pipeline) check(args ...string) (int, string) {
	p.t.Helper()
	return p.run(2*time.Minute, append([]string{"check", "--config", p.cfgPath}, args...)...)
}

// checkJSON runs ferry check --json and decodes its findings. The output
// also holds stderr (the exit message), after the JSON array.
func (p *pipeline) checkJSON() (int, []preflight.Finding) {
	p.t.Helper()
	code, out := p.check("--json")
	start := strings.Index(out, "[")
	if start < 0 {
		p.t.Fatalf("no JSON array in the output of check --json:\n%s", out)
	}
	var fs []preflight.Finding
	if err := json.NewDecoder(strings.NewReader(out[start:])).Decode(&fs); err != nil {
		p.t.Fatalf("decoding check --json: %v\n%s", err, out)
	}
	return code, fs
}

// find returns the findings of a check, with the given severity.
func find(fs []preflight.Finding, check string, sev preflight.Severity) []preflight.Finding {
	var out []preflight.Finding
	for _, f := range fs {
		if f.Check == check && f.Severity == sev {
			out = append(out, f)
		}
	}
	return out
}

// mustFind fails unless a finding of check with severity sev has a message
// containing msg. Phrases of messages are checked in the JSON findings: the
// table wraps long messages.
func mustFind(t *testing.T, fs []preflight.Finding, check string, sev preflight.Severity, msg string) preflight.Finding {
	t.Helper()
	for _, f := range find(fs, check, sev) {
		if strings.Contains(f.Message, msg) {
			return f
		}
	}
	t.Fatalf("no %s finding %q with message containing %q in:\n%+v", sev, check, msg, fs)
	return preflight.Finding{}
}

func mustContain(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("output lacks %q:\n%s", w, out)
		}
	}
}

// ferry check reports what each pipeline needs, with a fix for every
// problem, and exits 1 exactly when something blocks.
func TestCheck(t *testing.T) {
	t.Run("healthy pipeline", func(t *testing.T) {
		p := newPipeline(t)
		p.both(`CREATE TABLE public.items (id int PRIMARY KEY, qty int NOT NULL, note text)`)
		p.srcExec(`INSERT INTO items SELECT i, i, 'n' FROM generate_series(1, 100) i`)
		p.writeConfig("mode: snapshot+cdc", "")
		code, out := p.check()
		if code != 0 {
			t.Fatalf("check exited %d, want 0:\n%s", code, out)
		}
		mustContain(t, out, "COMPONENT", "FIX", "OK", "wal_level", "replication_role", "replication_connection",
			"slot", "public.items", "state_table", "partitions", "nothing blocks the migration")
		if strings.Contains(out, "BLOCK") {
			t.Fatalf("a healthy pipeline has a blocking finding:\n%s", out)
		}
		code, fs := p.checkJSON()
		if code != 0 {
			t.Fatalf("check --json exited %d", code)
		}
		for _, c := range []struct{ component, check string }{
			{"nats", "connect"}, {"nats", "jetstream"}, {"nats", "partitions"},
			{"source pg", "connect"}, {"source pg", "wal_level"}, {"source pg", "replication_role"},
			{"source pg", "slot"}, {"source pg", "table"}, {"target dst", "connect"},
			{"target dst", "state_table"}, {"target dst", "table"},
		} {
			ok := false
			for _, f := range find(fs, c.check, preflight.OK) {
				ok = ok || f.Component == c.component
			}
			if !ok {
				t.Errorf("no OK finding %s/%s in %+v", c.component, c.check, fs)
			}
		}
		// The publication does not exist yet: a warning, not a block.
		if w := find(fs, "publication", preflight.Warn); len(w) != 1 || !strings.Contains(w[0].Message, "ferry will create it") {
			t.Errorf("want one publication warning saying ferry will create it, got %+v", w)
		}
		// A check creates nothing on the source.
		var slots, pubs int
		conn, err := p.src.Connect(context.Background(), p.srcDB)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if err := conn.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1), (SELECT count(*) FROM pg_publication)`, p.srcDB).Scan(&slots, &pubs); err != nil {
			t.Fatal(err)
		}
		if slots != 0 || pubs != 0 {
			t.Fatalf("check left %d slots and %d publications behind", slots, pubs)
		}

		// With the pipeline running, check reaches its NATS on nats.listen
		// and finds the slot streaming: a warning, nothing blocks.
		mig := p.start("migrate", "--config", p.cfgPath)
		// The slot is held by the creating session during the snapshot and
		// by the stream after it, but not in the moment between: wait for
		// the stream, and let check look again if it met that moment.
		p.waitCaughtUp()
		ferrytest.Eventually(t, time.Minute, "check to find the slot in use", func() bool {
			code, fs = p.checkJSON()
			for _, f := range find(fs, "slot", preflight.Warn) {
				if code == 0 && strings.Contains(f.Message, "is in use by process") {
					return true
				}
			}
			return false
		})
		if code != 0 {
			t.Fatalf("check of a running pipeline exited %d: %+v", code, fs)
		}
		mustFind(t, fs, "connect", preflight.OK, "a running ferry serves the embedded NATS")
		mustFind(t, fs, "partitions", preflight.OK, "has 8 partitions, as configured")
		mustFind(t, fs, "slot", preflight.Warn, "is in use by process")
		mustFind(t, fs, "publication", preflight.OK, "publishes every table ferry moves")
		mig.Stop(t)
	})

	t.Run("missing source table", func(t *testing.T) {
		p := newPipeline(t)
		p.both(`CREATE TABLE public.items (id int PRIMARY KEY)`)
		p.writeConfig("mode: snapshot\ntables: [public.items, public.nope]", "")
		code, out := p.check()
		if code != 1 {
			t.Fatalf("check exited %d, want 1:\n%s", code, out)
		}
		mustContain(t, out, "create public.nope on the source, or remove it from sources[].tables")
		_, fs := p.checkJSON()
		mustFind(t, fs, "table", preflight.Block, "table public.nope does not exist in the source")
		mustFind(t, fs, "table", preflight.OK, "table public.items: every source column present")
	})

	t.Run("wal_level replica", func(t *testing.T) {
		p := newPipeline(t)
		plain := plainSource(t)
		p.dstExec("CREATE TABLE t (id int PRIMARY KEY)")
		p.writeConfig("mode: snapshot+cdc", "")
		writeFile(t, p.cfgPath, strings.Replace(readFile(t, p.cfgPath), p.src.DSN(p.srcDB), plain.DSN("app"), 1))
		code, out := p.check()
		if code != 1 {
			t.Fatalf("check exited %d, want 1:\n%s", code, out)
		}
		mustContain(t, out, "wal_level", "BLOCK", "ALTER SYSTEM SET wal_level = logical", "1 finding blocks the migration")
		_, fs := p.checkJSON()
		mustFind(t, fs, "wal_level", preflight.Block, `wal_level is "replica"`)
		// The same source in snapshot mode needs no logical decoding.
		p.writeConfig("mode: snapshot", "")
		writeFile(t, p.cfgPath, strings.Replace(readFile(t, p.cfgPath), p.src.DSN(p.srcDB), plain.DSN("app"), 1))
		if code, out := p.check(); code != 0 {
			t.Fatalf("snapshot mode: check exited %d, want 0:\n%s", code, out)
		}
	})

	t.Run("missing target table", func(t *testing.T) {
		p := newPipeline(t)
		p.srcExec(`CREATE TABLE public.lonely (id bigint, region text, v numeric(12,2) NOT NULL, tags text[], PRIMARY KEY (region, id))`)
		p.writeConfig("mode: snapshot", "")
		code, out := p.check()
		if code != 1 {
			t.Fatalf("check exited %d, want 1:\n%s", code, out)
		}
		mustContain(t, out, "public.lonely", "does not exist on the target", `CREATE TABLE "public"."lonely"`)
		// The suggested CREATE TABLE makes the target right.
		_, fs := p.checkJSON()
		b := mustFind(t, fs, "table", preflight.Block, "table public.lonely does not exist on the target")
		ddl := b.Fix[strings.Index(b.Fix, "CREATE TABLE"):]
		p.dstExec(ddl)
		if code, out := p.check(); code != 0 {
			t.Fatalf("after running the suggested DDL:\n%s\ncheck exited %d, want 0:\n%s", ddl, code, out)
		}
	})

	t.Run("missing target column", func(t *testing.T) {
		p := newPipeline(t)
		p.srcExec(`CREATE TABLE public.items (id int PRIMARY KEY, qty int, note text)`)
		p.dstExec(`CREATE TABLE public.items (id int PRIMARY KEY, note text, extra text NOT NULL)`)
		p.writeConfig("mode: snapshot", "")
		code, out := p.check()
		if code != 1 {
			t.Fatalf("check exited %d, want 1:\n%s", code, out)
		}
		mustContain(t, out, "public.items.qty", `ADD COLUMN "qty" integer`, "public.items.extra", "DROP NOT NULL")
		_, fs := p.checkJSON()
		mustFind(t, fs, "column", preflight.Block, "column public.items.qty does not exist on the target")
		mustFind(t, fs, "not_null", preflight.Block, "column public.items.extra is NOT NULL without a default")
		for _, f := range fs {
			if f.Severity == preflight.Block && strings.HasPrefix(f.Fix, "ALTER TABLE") {
				fix, _, _ := strings.Cut(f.Fix, " (or ")
				p.dstExec(fix)
			}
		}
		if code, out := p.check(); code != 0 {
			t.Fatalf("after running the suggested fixes, check exited %d, want 0:\n%s", code, out)
		}
	})

	t.Run("source table without primary key", func(t *testing.T) {
		p := newPipeline(t)
		p.both(`CREATE TABLE public.nopk (id int, v text)`)
		p.writeConfig("mode: snapshot+cdc", "")
		code, out := p.check()
		if code != 1 {
			t.Fatalf("check exited %d, want 1:\n%s", code, out)
		}
		mustContain(t, out, "public.nopk", "primary_key", `ALTER TABLE "public"."nopk" ADD PRIMARY KEY (id);`)
		_, fs := p.checkJSON()
		f := mustFind(t, fs, "primary_key", preflight.Block, "table public.nopk has no primary key (REPLICA IDENTITY DEFAULT)")
		if f.Component != "source pg" || !strings.Contains(f.Message, "ferry needs a primary key") {
			t.Fatalf("want the source to say ferry needs a primary key, got %+v", f)
		}
		p.both(`ALTER TABLE public.nopk ADD PRIMARY KEY (id)`)
		if code, out := p.check(); code != 0 {
			t.Fatalf("after adding the primary key, check exited %d, want 0:\n%s", code, out)
		}
		// FULL still carries the primary key; an identity index other than
		// the primary key does not.
		p.srcExec(`ALTER TABLE public.nopk REPLICA IDENTITY FULL`)
		if code, out := p.check(); code != 0 {
			t.Fatalf("REPLICA IDENTITY FULL: check exited %d, want 0:\n%s", code, out)
		}
		p.srcExec(`ALTER TABLE public.nopk ALTER COLUMN v SET NOT NULL; CREATE UNIQUE INDEX nopk_v ON public.nopk (v); ALTER TABLE public.nopk REPLICA IDENTITY USING INDEX nopk_v`)
		code, out = p.check()
		if code != 1 {
			t.Fatalf("REPLICA IDENTITY USING INDEX: check exited %d, want 1:\n%s", code, out)
		}
		mustContain(t, out, "replica_identity", `ALTER TABLE "public"."nopk" REPLICA IDENTITY DEFAULT;`)
	})

	t.Run("restricted roles", func(t *testing.T) {
		p := newPipeline(t)
		role := "r_" + p.name
		ctx := context.Background()
		for _, db := range []struct {
			exec func(string, ...any)
			srv  interface {
				Exec(context.Context, string, string, ...any) error
			}
			name string
		}{{p.srcExec, p.src, p.srcDB}, {p.dstExec, p.dst, p.dstDB}} {
			if err := db.srv.Exec(ctx, "postgres", "DROP ROLE IF EXISTS "+role); err != nil {
				t.Fatal(err)
			}
			db.exec("CREATE ROLE " + role + " LOGIN")
			srv, name := db.srv, db.name
			t.Cleanup(func() {
				// Roles are server-wide; the test's grants go with DROP OWNED.
				_ = srv.Exec(ctx, name, "DROP OWNED BY "+role)
				_ = srv.Exec(ctx, "postgres", "DROP ROLE IF EXISTS "+role)
			})
		}
		p.both(`CREATE TABLE public.items (id int PRIMARY KEY, v text)`)
		p.writeConfig("mode: snapshot+cdc", "")
		writeFile(t, p.cfgPath, strings.ReplaceAll(readFile(t, p.cfgPath), "postgres://postgres@", "postgres://"+role+"@"))
		code, out := p.check()
		if code != 1 {
			t.Fatalf("check exited %d, want 1:\n%s", code, out)
		}
		mustContain(t, out, fmt.Sprintf(`ALTER ROLE "%s" WITH REPLICATION;`, role), fmt.Sprintf(`GRANT SELECT ON "public"."items" TO "%s";`, role),
			`CREATE PUBLICATION "ferry_pg" FOR TABLE "public"."items";`, "CREATE SCHEMA IF NOT EXISTS ferry_state")
		_, fs := p.checkJSON()
		mustFind(t, fs, "replication_role", preflight.Block, "has neither REPLICATION nor superuser")
		mustFind(t, fs, "publication", preflight.Block, "cannot create it")
		st := mustFind(t, fs, "state_table", preflight.Block, "creating state table ferry_state.applied")
		// Run the fixes as a superuser would; the check then passes.
		p.srcExec(fmt.Sprintf(`ALTER ROLE %s WITH REPLICATION; GRANT SELECT ON public.items TO %s; CREATE PUBLICATION ferry_pg FOR TABLE public.items`, role, role))
		ddl := st.Fix[strings.Index(st.Fix, "run:\n")+len("run:\n") : strings.Index(st.Fix, "\n(or")]
		p.dstExec(ddl)
		_, fs = p.checkJSON()
		grant := mustFind(t, fs, "privileges", preflight.Block, "lacks SELECT, INSERT, UPDATE, DELETE on table public.items")
		p.dstExec(grant.Fix)
		if code, out := p.check(); code != 0 {
			t.Fatalf("after the fixes, check exited %d, want 0:\n%s", code, out)
		}
	})

	t.Run("partitions changed", func(t *testing.T) {
		p := newPipeline(t)
		p.both(`CREATE TABLE public.items (id int PRIMARY KEY)`)
		p.srcExec(`INSERT INTO items SELECT generate_series(1, 10)`)
		p.writeConfig("mode: snapshot", "")
		if code, out := p.run(2*time.Minute, "migrate", "--config", p.cfgPath); code != 0 {
			t.Fatalf("migrate exited %d:\n%s", code, out)
		}
		if code, out := p.check(); code != 0 {
			t.Fatalf("check after migrate exited %d, want 0:\n%s", code, out)
		}
		p.writeConfig("mode: snapshot\npartitions: 4", "")
		code, out := p.check()
		if code != 1 {
			t.Fatalf("check exited %d, want 1:\n%s", code, out)
		}
		mustContain(t, out, "partitions", "set partitions: 8")
		_, fs := p.checkJSON()
		mustFind(t, fs, "partitions", preflight.Block, "has 8 partitions but sources[].partitions is 4")
	})

	t.Run("unreachable source", func(t *testing.T) {
		p := newPipeline(t)
		p.dstExec(`CREATE TABLE public.items (id int PRIMARY KEY)`)
		p.writeConfig("mode: snapshot", "")
		bad := fmt.Sprintf("postgres://ferry:s3cret-pw@127.0.0.1:%d/x?sslmode=disable", ferrytest.FreePort(t))
		writeFile(t, p.cfgPath, strings.Replace(readFile(t, p.cfgPath), p.src.DSN(p.srcDB), bad, 1))
		code, out := p.check()
		if code != 1 {
			t.Fatalf("check exited %d, want 1:\n%s", code, out)
		}
		mustContain(t, out, "start the server, or fix the host and port in sources[].dsn", "state_table")
		if strings.Contains(out, "s3cret-pw") {
			t.Fatalf("the password appears in the output:\n%s", out)
		}
		_, fs := p.checkJSON()
		mustFind(t, fs, "connect", preflight.Block, "cannot connect")
		mustFind(t, fs, "tables", preflight.Warn, "source pg could not be read")
	})

	t.Run("bad usage", func(t *testing.T) {
		p := newPipeline(t)
		p.writeConfig("mode: snapshot\nslotName: oops", "")
		if code, out := p.check(); code != 2 {
			t.Fatalf("check of a bad config exited %d, want 2:\n%s", code, out)
		}
		if code, out := p.run(time.Minute, "check"); code != 2 {
			t.Fatalf("check without --config exited %d, want 2:\n%s", code, out)
		}
	})
}

// Foreign keys and secondary unique indexes on a target table are reported
// as warnings with the statement that drops them until cut-over.
func TestCheckWarnsOfTargetConstraints(t *testing.T) {
	p := newPipeline(t)
	p.both(`CREATE TABLE public.parents (id int PRIMARY KEY, email text);
		CREATE TABLE public.kids (id int PRIMARY KEY, parent int)`)
	p.dstExec(`CREATE UNIQUE INDEX parents_email ON public.parents (email);
		ALTER TABLE public.kids ADD CONSTRAINT kids_parent FOREIGN KEY (parent) REFERENCES public.parents (id)`)
	p.writeConfig("mode: snapshot", "")
	code, out := p.check()
	if code != 0 {
		t.Fatalf("warnings must not block: exit %d:\n%s", code, out)
	}
	mustContain(t, out, "unique index parents_email", "DROP INDEX parents_email;", "foreign key kids_parent", "DROP CONSTRAINT kids_parent;")
}
