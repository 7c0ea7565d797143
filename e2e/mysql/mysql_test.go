package mysql

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Source and target tables for every type the MySQL source must carry
// losslessly, and what each becomes on PostgreSQL.
const typesSrcDDL = `CREATE TABLE alltypes (
  id INT PRIMARY KEY,
  b1 TINYINT(1), bo BOOL, ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
  mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
  dec65 DECIMAL(65,30), fl FLOAT, db DOUBLE, bits BIT(10),
  d DATE, dt DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL, tm TIME(6), yr YEAR,
  vc VARCHAR(50) CHARACTER SET utf8mb4, tx TEXT CHARACTER SET utf8mb4,
  l1 VARCHAR(50) CHARACTER SET latin1, l1t TEXT CHARACTER SET latin1,
  bin BINARY(4), vb VARBINARY(50), bl BLOB,
  en ENUM('a','b','c d'), st SET('x','y','z'), js JSON,
  gen BIGINT AS (i * 2) VIRTUAL, gens VARCHAR(60) AS (CONCAT(vc, '!')) STORED
) CHARACTER SET utf8mb4`

const typesDstDDL = `CREATE TABLE alltypes (
  id int PRIMARY KEY,
  b1 boolean, bo boolean, ti smallint, tiu smallint, si smallint, siu int,
  mi int, miu int, i int, iu bigint, bi bigint, biu numeric(20),
  dec65 numeric(65,30), fl real, db double precision, bits bigint,
  d date, dt timestamp(6), ts timestamptz, tm time(6), yr int,
  vc text, tx text, l1 text, l1t text, bin bytea, vb bytea, bl bytea,
  en text, st text, js jsonb, gen bigint, gens text)`

const typesCols = `id, b1, bo, ti, tiu, si, siu, mi, miu, i, iu, bi, biu, dec65, fl, db, bits, d, dt, ts, tm, yr, vc, tx, l1, l1t, bin, vb, bl, en, st, js`

// Row 1 holds the extremes, row 2 NULL everywhere, row 3 the other
// boolean, empty values and a zero-free small set.
const typesRows = `INSERT INTO alltypes (` + typesCols + `) VALUES
 (1, 1, TRUE, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295, -9223372036854775808, 18446744073709551615,
  '12345678901234567890123456789012345.123456789012345678901234567890', 3.14159, 2.718281828459045, b'1010101010',
  '2024-02-29', '2024-02-29 12:34:56.789012', '2038-01-19 03:14:07.999999', '23:59:59.999999', 2155,
  'héllo ☃ 😀', 'tab	here\nnewline', 'café €', 'Ÿ œ ‰ ÿ', 0x00FF7F80, 0x00C328FF, 0xDEADBEEF00C3FF28,
  'c d', 'x,z', '{"a": [1, 2.5, "ü"], "b": null}'),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (3, 0, FALSE, 127, 0, 32767, 0, 8388607, 0, 2147483647, 0, 9223372036854775807, 0,
  '-0.000000000000000000000000000001', -1.5, -1e-300, b'0000000000',
  '1000-01-01', '1000-01-01 00:00:00', '1970-01-01 00:00:01', '00:00:00', 1901,
  '', '', '', '', 0x00000000, X'', X'',
  'a', '', '[]')`

// expected1 is row 1 on the target, as PostgreSQL literals per column.
var expected1 = map[string]string{
	"b1": "true", "bo": "true", "ti": "-128", "tiu": "255", "si": "-32768", "siu": "65535",
	"mi": "-8388608", "miu": "16777215", "i": "-2147483648", "iu": "4294967295",
	"bi": "-9223372036854775808", "biu": "18446744073709551615",
	"dec65": "12345678901234567890123456789012345.123456789012345678901234567890",
	"fl":    "3.14159::real", "db": "2.718281828459045::float8", "bits": "682",
	"d": "'2024-02-29'::date", "dt": "'2024-02-29 12:34:56.789012'::timestamp",
	"ts": "'2038-01-19 03:14:07.999999+00'::timestamptz", "tm": "'23:59:59.999999'::time", "yr": "2155",
	"vc": "'héllo ☃ 😀'", "tx": "E'tab\\there\\nnewline'", "l1": "'café €'", "l1t": "'Ÿ œ ‰ ÿ'",
	"bin": `'\x00ff7f80'::bytea`, "vb": `'\x00c328ff'::bytea`, "bl": `'\xdeadbeef00c3ff28'::bytea`,
	"en": "'c d'", "st": "'x,z'", "js": `'{"a": [1, 2.5, "ü"], "b": null}'::jsonb`,
	"gen": "-4294967296", "gens": "'héllo ☃ 😀!'",
}

const bigRows = 200_000

func seed(p *pipeline) {
	seedTypesAndLines(p)
	p.src(`CREATE TABLE big (id BIGINT PRIMARY KEY, payload VARCHAR(40), amount DECIMAL(18,4))`)
	p.dst(`CREATE TABLE big (id bigint PRIMARY KEY, payload text, amount numeric(18,4))`)
	p.src(fmt.Sprintf(`INSERT INTO big SELECT seq, MD5(seq), seq * 1.5 FROM seq_1_to_%d`, bigRows))
}

// seedTypesAndLines creates alltypes (3 rows) and order_lines (15,000 rows,
// a composite key) on the source, and their tables on the target.
func seedTypesAndLines(p *pipeline) {
	p.src(typesSrcDDL)
	p.dst(typesDstDDL)
	p.src(typesRows)
	p.src(`CREATE TABLE order_lines (order_id BIGINT, line_no INT, sku VARCHAR(40) NOT NULL, qty INT, PRIMARY KEY (order_id, line_no))`)
	p.dst(`CREATE TABLE order_lines (order_id bigint, line_no int, sku text NOT NULL, qty int, PRIMARY KEY (order_id, line_no))`)
	p.src(`INSERT INTO order_lines SELECT o.seq, l.seq, CONCAT('sku-', o.seq, '-', l.seq), (o.seq * l.seq) % 97 FROM seq_1_to_3000 o, seq_1_to_5 l`)
}

// checkTypesRow compares one target row with expected1, column by column.
func checkTypesRow(p *pipeline, id int) {
	p.t.Helper()
	for col, lit := range expected1 {
		got := p.dstString(fmt.Sprintf("SELECT (%s IS NOT DISTINCT FROM %s)::text || ' ' || coalesce(%s::text, 'NULL') FROM alltypes WHERE id = %d", col, lit, col, id))
		if !strings.HasPrefix(got, "true") {
			p.t.Errorf("alltypes id=%d column %s: got %s, want %s", id, col, strings.TrimPrefix(got, "false "), lit)
		}
	}
}

// sameRows asserts that two target rows of alltypes are equal in every column.
func sameRows(p *pipeline, a, b int) {
	p.t.Helper()
	for _, col := range append(strings.Split(typesCols, ", ")[1:], "gen", "gens") {
		got := p.dstString(fmt.Sprintf("SELECT (x.%[1]s IS NOT DISTINCT FROM y.%[1]s)::text || ' ' || coalesce(x.%[1]s::text, 'NULL') || ' / ' || coalesce(y.%[1]s::text, 'NULL') FROM alltypes x, alltypes y WHERE x.id = %[2]d AND y.id = %[3]d", col, a, b))
		if !strings.HasPrefix(got, "true") {
			p.t.Errorf("alltypes column %s: row %d (snapshot) and row %d (binlog) differ: %s", col, a, b, got)
		}
	}
}

const (
	bigMy = "CONCAT_WS('|', id, payload, amount, COALESCE(note, '~'))"
	bigPG = "concat_ws('|', id, payload, amount, coalesce(note, '~'))"
	olMy  = "CONCAT_WS('|', order_id, line_no, sku, COALESCE(qty, '~'))"
	olPG  = "concat_ws('|', order_id, line_no, sku, coalesce(qty::text, '~'))"
)

// A snapshot of every type, a composite key and 200k rows, then changes of
// every kind through the binlog: the target ends equal to the source.
func TestSnapshotThenChanges(t *testing.T) {
	p := newPipeline(t)
	seed(p)
	p.writeConfig("mode: snapshot+cdc\nchunkRows: 25000")
	pr := p.migrate()
	eventually(t, 3*time.Minute, "the snapshot on the target", func() bool {
		return p.dstString("SELECT count(*)::text FROM big") == fmt.Sprint(bigRows) || pr.Exited()
	})
	if pr.Exited() {
		t.Fatalf("migrate exited:\n%s", pr.Output())
	}
	checkTypesRow(p, 1)

	// The same values again, now decoded from the binlog's row images.
	cols := strings.TrimPrefix(typesCols, "id, ")
	p.src(fmt.Sprintf("INSERT INTO alltypes (id, %s) SELECT id + 10, %s FROM alltypes WHERE id IN (1, 2, 3) UNION ALL SELECT 22, %s FROM alltypes WHERE id = 2", cols, cols, cols))
	p.dst("ALTER TABLE big ADD COLUMN note text DEFAULT 'n'")
	p.src(`UPDATE big SET payload = 'updated' WHERE id <= 100;
DELETE FROM big WHERE id > 199900;
INSERT INTO big VALUES (300001, 'new', 1.0001), (300002, 'new', -2.5);
UPDATE order_lines SET qty = NULL WHERE order_id = 7;
DELETE FROM order_lines WHERE order_id = 8;
START TRANSACTION;
INSERT INTO order_lines VALUES (9001, 1, 'tx', 1);
UPDATE big SET amount = 42 WHERE id = 5;
DELETE FROM alltypes WHERE id = 12;
COMMIT;
UPDATE big SET id = 400000 WHERE id = 6;
UPDATE order_lines SET line_no = 99 WHERE order_id = 10 AND line_no = 1;
ALTER TABLE big ADD COLUMN note VARCHAR(20) DEFAULT 'n';
INSERT INTO big VALUES (300003, 'after add', 3, 'with note');
UPDATE big SET note = 'changed' WHERE id <= 3`)
	p.waitCaughtUp()
	sameRows(p, 1, 11)
	sameRows(p, 2, 22)
	sameRows(p, 3, 13)
	if n := p.dstString("SELECT count(*)::text FROM alltypes WHERE id = 12"); n != "0" {
		t.Errorf("deleted alltypes row 12 is still on the target")
	}
	p.assertSame("big", bigMy, bigPG, "id")
	p.assertSame("order_lines", olMy, olPG, "order_id, line_no")
	// TINYINT(1) 5 cannot be a boolean: a dead letter naming the column,
	// never a silent true. BIGINT UNSIGNED's maximum fits numeric(20).
	p.src("INSERT INTO alltypes (id, b1, biu) VALUES (31, 1, 18446744073709551615), (30, 5, 1)")
	eventually(t, 30*time.Second, "a dead letter for alltypes.b1", func() bool {
		for _, r := range p.deadLetters() {
			if strings.Contains(r, "alltypes") && strings.Contains(r, "column b1") && strings.Contains(r, "id=30") {
				return true
			}
		}
		return false
	})
	eventually(t, 30*time.Second, "BIGINT UNSIGNED max on the target", func() bool {
		return p.dstString("SELECT coalesce(biu::text, '') FROM alltypes WHERE id = 31 UNION ALL SELECT '' LIMIT 1") == "18446744073709551615"
	})
	// Rows in the dead-letter stream make ferry exit 1 when stopped.
	if code := pr.StopCode(t); code != 1 {
		t.Errorf("migrate exited %d after SIGTERM with a dead letter, want 1", code)
	}
	if !strings.Contains(pr.Output(), "table layout changed") {
		t.Errorf("no schema change logged:\n%s", pr.Output())
	}
}
