package e2e

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/e2e/ferrytest"
)

// typesDDL is a table holding every type the codec must carry losslessly.
const typesDDL = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'ünïcode ☺');
CREATE TABLE public.alltypes (
  id int PRIMARY KEY,
  n numeric, n2 numeric(40,20), f8 float8, f4 real, b bytea,
  tstz timestamptz, ts timestamp, d date, t time, ttz timetz, iv interval,
  u uuid, j json, jb jsonb, ai int[], at text[], a2 int[][], m mood,
  ip inet, cidr_ cidr, bo boolean, tx text, big bigint, sm smallint, vc varchar(20), ch char(5),
  mac macaddr, rng int4range, money_ money, bits bit varying(16)
);`

const typesRows = `
INSERT INTO alltypes VALUES
 (1, 'NaN', 12345678901234567890.12345678901234567890, 'NaN', 'Infinity', '\x00ff10',
  'infinity', '-infinity', 'infinity', '24:00:00', '23:59:59.999999+05:30', 'P1Y2M3DT4H5M6.789S',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"b": 1, "a": [1, 2.50], "b": 2}', '{"z": 1, "a": "ü"}',
  '{1,NULL,3}', '{"a,b","c\"d","NULL",NULL,"","back\\slash"}', '{{1,2},{3,4}}', 'ünïcode ☺',
  '192.168.1.1/24', '10.0.0.0/8', true, E'tab\there\nnewline ☃ 𝄞 שלום', 9223372036854775807, -32768, 'héllo', 'ab',
  '08:00:2b:01:02:03', '[1,10)', '12.34', B'1011'),
 (2, '-Infinity', -0.00000000000000000001, '-Infinity', '-0', '\x',
  '0044-03-15 12:00:00.000001+00 BC', '1999-12-31 23:59:59.999999', '4713-01-01 BC', '00:00:00', '00:00:00-03', 'P-1Y-2M3DT-4H-5M-6.5S',
  '00000000-0000-0000-0000-000000000000', '[]', '[]', '{}', '{}', '{}', 'sad',
  '::1', '2001:db8::/32', false, '', -9223372036854775808, 32767, '', '',
  'ff:ff:ff:ff:ff:ff', 'empty', '-92233720368547758.08', B''),
 (3, 1e-300::numeric * 0 + 3.14159265358979323846264338327950288419716939937510, 1, 1.7976931348623157e308, 1.4e-45, decode(repeat('00ff7f80', 64), 'hex'),
  '294276-12-31 23:59:59.999999+00', '2024-02-29 12:34:56.789012', '2024-02-29', '12:34:56.789012', '12:00:00+14', 'PT0S',
  'ffffffff-ffff-ffff-ffff-ffffffffffff', 'null', '{"deep": {"x": [true, false, null]}}', '{-2147483648,2147483647}', '{"emoji 😀","rtl ‏עברית"}', '{{NULL,NULL}}', 'happy',
  '0.0.0.0', '0.0.0.0/0', NULL, repeat('long ', 1000), 0, 0, 'x', 'abcde',
  NULL, '(,5]', '0', B'1111111111111111'),
 (4, NULL, NULL, 5e-324, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);`

const snapshotDDL = typesDDL + `
CREATE TABLE public.order_lines (order_id bigint, line_no int, sku text NOT NULL, qty int, PRIMARY KEY (order_id, line_no));
CREATE TABLE public.big (id bigint PRIMARY KEY, payload text, amount numeric(18,4), at timestamptz);
`

func seedSnapshot(p *pipeline, bigRows int) {
	p.both(snapshotDDL)
	p.srcExec(typesRows)
	p.srcExec(`INSERT INTO order_lines SELECT o, l, 'sku-' || o || '-' || l, (o * l) % 97 FROM generate_series(1, 3000) o, generate_series(1, 5) l`)
	p.srcExec(fmt.Sprintf(`INSERT INTO big SELECT i, md5(i::text), i * 1.5, timestamptz '2020-01-01' + i * interval '1 second' FROM generate_series(1, %d) i`, bigRows))
}

func assertSnapshotTables(p *pipeline) {
	p.assertEqual("public.alltypes", "id")
	p.assertEqual("public.order_lines", "order_id, line_no")
	p.assertEqual("public.big", "id")
}

// A snapshot of several tables (a composite key, every type, 200k+ rows)
// ends with the targets equal in every row and column, and migrate exits 0.
func TestSnapshot(t *testing.T) {
	p := newPipeline(t)
	seedSnapshot(p, 210_000)
	p.writeConfig("mode: snapshot\nchunkRows: 25000", "")
	code, out := p.run(5*time.Minute, "migrate", "--config", p.cfgPath)
	if code != 0 {
		t.Fatalf("migrate exited %d:\n%s", code, out)
	}
	assertSnapshotTables(p)
	// A second run finds every chunk done and moves nothing again.
	code, out = p.run(2*time.Minute, "migrate", "--config", p.cfgPath)
	if code != 0 {
		t.Fatalf("second migrate exited %d:\n%s", code, out)
	}
	assertSnapshotTables(p)
}

const cdcDDL = typesDDL + `
CREATE TABLE public.accounts (id bigint PRIMARY KEY, owner text NOT NULL, balance numeric(14,2), note text);
CREATE TABLE public.docs (id int PRIMARY KEY, title text, body text);
ALTER TABLE public.docs ALTER COLUMN body SET STORAGE EXTERNAL;
`

// Snapshot then live changes: inserts, updates, deletes, a primary-key
// change, an update that leaves a TOASTed column untouched, a transaction
// over several tables, and a new column; the cut-over check then passes
// with the target equal to the source, and SIGTERM exits 0.
func TestSnapshotThenChanges(t *testing.T) {
	p := newPipeline(t)
	p.both(cdcDDL)
	p.srcExec(typesRows)
	p.srcExec(`INSERT INTO accounts SELECT i, 'owner ' || i, i * 10, NULL FROM generate_series(1, 1000) i`)
	// A body of ~200 kB of incompressible text is stored out of line.
	p.srcExec(`INSERT INTO docs SELECT i, 'doc ' || i, (SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 6000)) FROM generate_series(1, 5) i`)
	p.writeConfig("mode: snapshot+cdc\nchunkRows: 300", "")
	mig := p.start("migrate", "--config", p.cfgPath)
	p.waitCaughtUp()
	p.assertEqual("public.accounts", "id")
	p.assertEqual("public.docs", "id")

	p.srcExec(`INSERT INTO accounts VALUES (5000, 'new', 1.50, 'inserted')`)
	p.srcExec(`UPDATE accounts SET balance = balance + 1, note = 'updated' WHERE id <= 100`)
	p.srcExec(`DELETE FROM accounts WHERE id BETWEEN 200 AND 250`)
	p.srcExec(`UPDATE accounts SET id = 100000 WHERE id = 7`)          // primary-key change
	p.srcExec(`UPDATE docs SET title = 'retitled' WHERE id IN (1, 2)`) // body untouched: TOAST unchanged
	p.srcExec(`UPDATE docs SET id = 50, title = 'moved' WHERE id = 3`) // key change with an untouched TOAST value
	p.srcExec(`BEGIN;
		INSERT INTO accounts VALUES (6000, 'tx', 0, NULL);
		UPDATE docs SET body = 'short now' WHERE id = 4;
		DELETE FROM accounts WHERE id = 300;
		UPDATE alltypes SET tx = 'changed in tx', n = 'NaN' WHERE id = 2;
		COMMIT`)
	p.srcExec(`INSERT INTO accounts VALUES (7000, 'gone', 0, NULL); UPDATE accounts SET balance = 9 WHERE id = 7000; DELETE FROM accounts WHERE id = 7000`)
	p.srcExec(`UPDATE alltypes SET f8 = '-Infinity', b = '\xdeadbeef', tstz = '2001-02-03 04:05:06.000007+00' WHERE id = 1`)
	p.srcExec(`DELETE FROM alltypes WHERE id = 4`)
	// A new column on both sides, then rows that use it.
	p.both(`ALTER TABLE accounts ADD COLUMN tier text`)
	p.srcExec(`UPDATE accounts SET tier = 'gold' WHERE id BETWEEN 10 AND 20`)
	p.srcExec(`INSERT INTO accounts VALUES (8000, 'after ddl', 2, NULL, 'silver')`)

	p.waitCaughtUp()
	p.assertEqual("public.accounts", "id")
	p.assertEqual("public.docs", "id")
	p.assertEqual("public.alltypes", "id")
	mig.Stop(t)
}

// writer makes a steady stream of inserts, updates and deletes, also to the
// same keys, until stopped.
type writer struct {
	stop  chan struct{}
	done  chan struct{}
	n     atomic.Int64
	err   error
	calls sync.WaitGroup
}

func startWriter(t *testing.T, p *pipeline, seed int64) *writer {
	w := &writer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		rng := rand.New(rand.NewSource(seed))
		conn, err := p.src.Connect(context.Background(), p.srcDB)
		if err != nil {
			w.err = err
			return
		}
		defer conn.Close(context.Background())
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			id := rng.Intn(2000) + 1
			var q string
			switch rng.Intn(4) {
			case 0:
				q = fmt.Sprintf(`INSERT INTO big VALUES (%d, 'w%d', %d.25, now()) ON CONFLICT (id) DO UPDATE SET payload = excluded.payload`, 1_000_000+id, rng.Int63(), id)
			case 1:
				q = fmt.Sprintf(`UPDATE big SET payload = 'u%d', amount = amount + 1 WHERE id = %d`, rng.Int63(), id*50)
			case 2:
				q = fmt.Sprintf(`DELETE FROM big WHERE id = %d`, 1_000_000+id)
			case 3:
				q = fmt.Sprintf(`BEGIN; UPDATE big SET payload = 'tx%d' WHERE id = %d; INSERT INTO order_lines VALUES (%d, %d, 'w', 1) ON CONFLICT (order_id, line_no) DO UPDATE SET qty = order_lines.qty + 1; COMMIT`, rng.Int63(), id, 100000+id%50, id%7)
			}
			if _, err := conn.Exec(context.Background(), q); err != nil {
				w.err = fmt.Errorf("%s: %w", q, err)
				return
			}
			w.n.Add(1)
		}
	}()
	return w
}

func (w *writer) finish(t *testing.T) {
	close(w.stop)
	<-w.done
	if w.err != nil {
		t.Fatalf("writer: %v", w.err)
	}
	t.Logf("writer made %d changes", w.n.Load())
}

// kill -9 of the whole process during the snapshot and again during the
// change stream, while the source keeps changing: after restarts the target
// equals the source in every row and column.
func TestKillDuringSnapshotAndChanges(t *testing.T) {
	p := newPipeline(t)
	seedSnapshot(p, 200_000)
	p.writeConfig("mode: snapshot+cdc\nchunkRows: 4000\nsnapshotWorkers: 2", "")
	w := startWriter(t, p, time.Now().UnixNano())

	mig := p.start("migrate", "--config", p.cfgPath)
	ferrytest.Eventually(t, 2*time.Minute, "the snapshot to be under way", func() bool {
		n := count(t, p.dst, p.dstDB, "public.big")
		return n > 20_000 || mig.Exited()
	})
	if mig.Exited() {
		t.Fatalf("ferry exited early:\n%s", mig.Output())
	}
	if n := count(t, p.dst, p.dstDB, "public.big"); n >= 200_000 {
		t.Fatalf("snapshot already finished (%d rows) before the kill; make it bigger", n)
	}
	mig.Kill9()

	mig = p.start("migrate", "--config", p.cfgPath)
	p.waitCaughtUp() // snapshot finished and the change stream running
	time.Sleep(time.Second)
	mig.Kill9()

	mig = p.start("migrate", "--config", p.cfgPath)
	w.finish(t)
	p.waitCaughtUp()
	assertSnapshotTables(p)
	mig.Stop(t)
}

// Producer and applier as separate processes against an external NATS
// server: the same pipeline works across processes.
func TestSeparateProcessesExternalNATS(t *testing.T) {
	p := newPipeline(t)
	url := startNATS(t)
	seedSnapshot(p, 20_000)
	p.writeConfig("mode: snapshot+cdc", url)
	prod := p.start("produce", "--config", p.cfgPath, "--source", "pg")
	app := p.start("apply", "--config", p.cfgPath, "--target", "dst")
	w := startWriter(t, p, 42)
	time.Sleep(2 * time.Second)
	w.finish(t)
	p.waitCaughtUp()
	assertSnapshotTables(p)
	// The applier restarts from its consumers' ack floor.
	app.Stop(t)
	p.srcExec(`UPDATE big SET payload = 'while applier down' WHERE id <= 500`)
	app = p.start("apply", "--config", p.cfgPath, "--target", "dst")
	p.waitCaughtUp()
	p.assertEqual("public.big", "id")
	prod.Stop(t)
	app.Stop(t)
}

// Bad input gets a clear error and the right exit code.
func TestBadInput(t *testing.T) {
	t.Run("unknown config key", func(t *testing.T) {
		p := newPipeline(t)
		p.writeConfig("mode: snapshot\nslotName: oops", "")
		code, out := p.run(time.Minute, "migrate", "--config", p.cfgPath)
		if code != 2 || !strings.Contains(out, `"slotName"`) {
			t.Fatalf("exit %d, want 2 naming slotName:\n%s", code, out)
		}
	})
	t.Run("wrong type", func(t *testing.T) {
		p := newPipeline(t)
		p.writeConfig("mode: snapshot\npartitions: many", "")
		code, out := p.run(time.Minute, "migrate", "--config", p.cfgPath)
		if code != 2 || !strings.Contains(out, "many") {
			t.Fatalf("exit %d, want 2 naming the bad value:\n%s", code, out)
		}
	})
	t.Run("unreachable database", func(t *testing.T) {
		p := newPipeline(t)
		p.writeConfig("mode: snapshot", "")
		bad := fmt.Sprintf("postgres://ferry:s3cret-pw@127.0.0.1:%d/x?sslmode=disable", ferrytest.FreePort(t))
		cfg := strings.Replace(readFile(t, p.cfgPath), p.src.DSN(p.srcDB), bad, 1)
		writeFile(t, p.cfgPath, cfg)
		code, out := p.run(time.Minute, "migrate", "--config", p.cfgPath)
		if code != 1 || !strings.Contains(out, "cannot connect") {
			t.Fatalf("exit %d, want 1 with 'cannot connect':\n%s", code, out)
		}
		if strings.Contains(out, "s3cret-pw") {
			t.Fatalf("the password appears in the output:\n%s", out)
		}
	})
	t.Run("wal_level not logical", func(t *testing.T) {
		p := newPipeline(t)
		plain := plainSource(t)
		p.writeConfig("mode: snapshot+cdc", "")
		writeFile(t, p.cfgPath, strings.Replace(readFile(t, p.cfgPath), p.src.DSN(p.srcDB), plain.DSN("app"), 1))
		code, out := p.run(time.Minute, "migrate", "--config", p.cfgPath)
		if code != 1 || !strings.Contains(out, "wal_level") || !strings.Contains(out, "ALTER SYSTEM SET wal_level = logical") {
			t.Fatalf("exit %d, want 1 explaining how to set wal_level:\n%s", code, out)
		}
	})
	t.Run("missing target table", func(t *testing.T) {
		p := newPipeline(t)
		p.srcExec(`CREATE TABLE public.lonely (id int PRIMARY KEY, v text); INSERT INTO lonely VALUES (1, 'a')`)
		p.writeConfig("mode: snapshot", "")
		code, out := p.run(2*time.Minute, "migrate", "--config", p.cfgPath)
		if code != 1 || !strings.Contains(out, "public.lonely") || !strings.Contains(out, "does not exist") {
			t.Fatalf("exit %d, want 1 naming the missing table:\n%s", code, out)
		}
	})
	t.Run("rejected row goes to dead letters", func(t *testing.T) {
		p := newPipeline(t)
		p.both(`CREATE TABLE public.items (id int PRIMARY KEY, qty int)`)
		p.dstExec(`ALTER TABLE items ADD CONSTRAINT qty_small CHECK (qty < 100)`)
		p.srcExec(`INSERT INTO items SELECT i, i FROM generate_series(1, 150) i`)
		p.writeConfig("mode: snapshot", "")
		code, out := p.run(2*time.Minute, "migrate", "--config", p.cfgPath)
		if code != 1 || !strings.Contains(out, "51 rows were rejected") || !strings.Contains(out, "qty_small") {
			t.Fatalf("exit %d, want 1 reporting 51 dead letters:\n%s", code, out)
		}
		if n := count(t, p.dst, p.dstDB, "public.items"); n != 99 {
			t.Fatalf("target has %d rows, want the 99 acceptable ones", n)
		}
		code, out = p.run(time.Minute, "status", "--config", p.cfgPath, "--json")
		if code != 0 || !strings.Contains(out, `"deadLettered": 51`) {
			t.Fatalf("status exit %d, want deadLettered 51:\n%s", code, out)
		}
	})
}

// mode: cdc moves only what changes after ferry starts; and while no
// published table changes, the slot's confirmed position still advances,
// so the slot never pins WAL.
func TestCDCOnlyAndIdleSlotAdvances(t *testing.T) {
	p := newPipeline(t)
	p.both(`CREATE TABLE public.accounts (id bigint PRIMARY KEY, owner text NOT NULL, balance numeric(14,2))`)
	p.srcExec(`INSERT INTO accounts SELECT i, 'owner ' || i, i FROM generate_series(1, 100) i`)
	p.writeConfig("mode: cdc", "")
	mig := p.start("migrate", "--config", p.cfgPath)
	slotLSN := func() string {
		conn, err := p.src.Connect(context.Background(), p.srcDB)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		var lsn *string
		_ = conn.QueryRow(context.Background(), `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, p.srcDB).Scan(&lsn)
		if lsn == nil {
			return ""
		}
		return *lsn
	}
	ferrytest.Eventually(t, time.Minute, "the replication slot", func() bool { return slotLSN() != "" || mig.Exited() })
	p.srcExec(`INSERT INTO accounts SELECT i, 'new ' || i, i FROM generate_series(101, 110) i`)
	p.srcExec(`UPDATE accounts SET balance = 0 WHERE id = 5`)
	p.srcExec(`DELETE FROM accounts WHERE id = 6`)
	p.waitCaughtUp()
	got := count(t, p.dst, p.dstDB, "public.accounts")
	if got != 11 {
		t.Fatalf("target has %d rows, want the 11 written after start (10 inserts, 1 update)", got)
	}
	p.srcExec(`CREATE TABLE public.elsewhere AS SELECT 1 AS x`) // not published: only WAL
	before := lsnNow(t, p)
	ferrytest.Eventually(t, 30*time.Second, "the slot to confirm WAL written to unpublished tables", func() bool {
		return lsnGE(slotLSN(), before)
	})
	mig.Stop(t)
}

// SIGTERM during the snapshot finishes the chunks in hand, records them and
// exits 0; the next run completes the snapshot.
func TestSigtermDuringSnapshot(t *testing.T) {
	p := newPipeline(t)
	seedSnapshot(p, 200_000)
	p.writeConfig("mode: snapshot\nchunkRows: 4000\nsnapshotWorkers: 2", "")
	mig := p.start("migrate", "--config", p.cfgPath)
	ferrytest.Eventually(t, 2*time.Minute, "the snapshot to be under way", func() bool {
		return count(t, p.dst, p.dstDB, "public.big") > 10_000 || mig.Exited()
	})
	mig.Stop(t)
	code, out := p.run(5*time.Minute, "migrate", "--config", p.cfgPath)
	if code != 0 {
		t.Fatalf("second migrate exited %d:\n%s", code, out)
	}
	assertSnapshotTables(p)
}

func lsnNow(t *testing.T, p *pipeline) string {
	conn, err := p.src.Connect(context.Background(), p.srcDB)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var lsn string
	if err := conn.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	return lsn
}

// lsnGE compares two LSNs in PostgreSQL's text form (X/Y, hex).
func lsnGE(a, b string) bool {
	parse := func(s string) uint64 {
		var hi, lo uint64
		if _, err := fmt.Sscanf(s, "%X/%X", &hi, &lo); err != nil {
			return 0
		}
		return hi<<32 | lo
	}
	return a != "" && parse(a) >= parse(b)
}

// Under REPLICA IDENTITY FULL the stream marks every column as the key;
// ferry still keys each change by the primary key, so one row's changes
// stay in one lane and in order.
func TestReplicaIdentityFull(t *testing.T) {
	p := newPipeline(t)
	p.both(`CREATE TABLE public.accounts (id bigint PRIMARY KEY, owner text NOT NULL, balance numeric(14,2))`)
	p.srcExec(`ALTER TABLE accounts REPLICA IDENTITY FULL`)
	p.srcExec(`INSERT INTO accounts SELECT i, 'owner ' || i, i FROM generate_series(1, 200) i`)
	p.writeConfig("mode: snapshot+cdc", "")
	mig := p.start("migrate", "--config", p.cfgPath)
	p.waitCaughtUp()
	for i := 0; i < 20; i++ {
		p.srcExec(fmt.Sprintf(`UPDATE accounts SET balance = %d, owner = 'o%d' WHERE id <= 50`, i, i))
	}
	p.srcExec(`DELETE FROM accounts WHERE id BETWEEN 40 AND 45`)
	p.srcExec(`UPDATE accounts SET id = id + 1000 WHERE id = 3`)
	p.waitCaughtUp()
	p.assertEqual("public.accounts", "id")
	mig.Stop(t)
}

// A partitioned table: the snapshot reads the root; live changes to its
// partitions arrive under the root's name and are applied.
func TestPartitionedTable(t *testing.T) {
	p := newPipeline(t)
	p.both(`CREATE TABLE public.events (id bigint, at date, note text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
		CREATE TABLE public.events_2024 PARTITION OF public.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
		CREATE TABLE public.events_2025 PARTITION OF public.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')`)
	p.srcExec(`INSERT INTO events SELECT i, date '2024-06-01' + (i % 400), 'n' || i FROM generate_series(1, 1000) i`)
	p.writeConfig("mode: snapshot+cdc\ntables: [public.events]", "")
	mig := p.start("migrate", "--config", p.cfgPath)
	p.waitCaughtUp()
	p.srcExec(`INSERT INTO events VALUES (5000, '2025-03-01', 'live')`)
	p.srcExec(`UPDATE events SET note = 'changed' WHERE id % 10 = 0`)
	p.srcExec(`DELETE FROM events WHERE id % 7 = 0`)
	p.waitCaughtUp()
	p.assertEqual("public.events", "id, at")
	mig.Stop(t)
}

// Changing what a finished pipeline covers is refused with what to do: a
// table added after the snapshot, and a switch from mode snapshot to
// snapshot+cdc (no slot held the changes in between).
func TestChangedPipelineIsRefused(t *testing.T) {
	p := newPipeline(t)
	p.both(`CREATE TABLE public.a (id int PRIMARY KEY); CREATE TABLE public.b (id int PRIMARY KEY)`)
	p.srcExec(`INSERT INTO a SELECT generate_series(1, 10); INSERT INTO b SELECT generate_series(1, 10)`)
	p.writeConfig("mode: snapshot\ntables: [public.a]", "")
	if code, out := p.run(2*time.Minute, "migrate", "--config", p.cfgPath); code != 0 {
		t.Fatalf("first migrate exited %d:\n%s", code, out)
	}
	p.writeConfig("mode: snapshot\ntables: [public.a, public.b]", "")
	if code, out := p.run(time.Minute, "migrate", "--config", p.cfgPath); code != 1 || !strings.Contains(out, "public.b was added after") {
		t.Fatalf("added table: exit %d, want 1 naming public.b:\n%s", code, out)
	}
	p.writeConfig("mode: snapshot+cdc\ntables: [public.a]", "")
	if code, out := p.run(time.Minute, "migrate", "--config", p.cfgPath); code != 1 || !strings.Contains(out, "without a replication slot") {
		t.Fatalf("mode switch: exit %d, want 1 explaining the missing slot:\n%s", code, out)
	}
}
