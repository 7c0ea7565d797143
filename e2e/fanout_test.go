package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
)

// Two targets read the same source stream, each with its own consumers and
// position: one is down while the source changes and catches up from the
// log when it starts, without holding back the other or the producer.
func TestTwoTargetsOneLate(t *testing.T) {
	p := newPipeline(t)
	second := "d2_" + p.name
	ctx := context.Background()
	if err := p.dst.Exec(ctx, "postgres", "DROP DATABASE IF EXISTS "+second+" WITH (FORCE)"); err != nil {
		t.Fatal(err)
	}
	if err := p.dst.CreateDB(ctx, second); err != nil {
		t.Fatal(err)
	}
	ddl := `CREATE TABLE public.accounts (id bigint PRIMARY KEY, owner text NOT NULL, balance numeric(14,2))`
	p.both(ddl)
	if err := p.dst.Exec(ctx, second, ddl); err != nil {
		t.Fatal(err)
	}
	p.srcExec(`INSERT INTO accounts SELECT i, 'owner ' || i, i FROM generate_series(1, 2000) i`)
	p.writeConfig("mode: snapshot+cdc", "")
	cfg := readFile(t, p.cfgPath) + fmt.Sprintf("  - name: late\n    type: postgres\n    dsn: %s\n    from: pg\n", p.dst.DSN(second))
	writeFile(t, p.cfgPath, cfg)

	prod := p.start("produce", "--config", p.cfgPath)
	first := p.start("apply", "--config", p.cfgPath, "--target", "dst")
	p.srcExec(`UPDATE accounts SET balance = balance * 2 WHERE id % 3 = 0`)
	p.srcExec(`DELETE FROM accounts WHERE id > 1900`)
	ferrytest.Eventually(t, 2*time.Minute, "the first target to hold the changes", func() bool {
		return count(t, p.dst, p.dstDB, "public.accounts") == 1900
	})
	if n := count(t, p.dst, second, "public.accounts"); n != 0 {
		t.Fatalf("the late target has %d rows before its applier started", n)
	}
	late := p.start("apply", "--config", p.cfgPath, "--target", "late")
	p.srcExec(`INSERT INTO accounts VALUES (5000, 'after', 1)`)
	p.waitCaughtUp() // waits for both targets
	p.assertEqual("public.accounts", "id")
	sn, ssum := tableDigest(t, p.src, p.srcDB, "public.accounts", "id")
	ln, lsum := tableDigest(t, p.dst, second, "public.accounts", "id")
	if sn != ln || ssum != lsum {
		t.Fatalf("late target: %d rows (%s), source %d rows (%s)", ln, lsum, sn, ssum)
	}
	code, out := p.run(time.Minute, "status", "--config", p.cfgPath)
	if code != 0 || !strings.Contains(out, "late") {
		t.Fatalf("status exit %d:\n%s", code, out)
	}
	// The process hosting the embedded NATS (the first applier) stops
	// last: the producer records its position in NATS when it stops.
	for _, pr := range []*proc{late, prod, first} {
		pr.Stop(t)
	}
}
