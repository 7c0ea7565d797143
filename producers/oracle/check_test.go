package oracle

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/ferry-dev/ferry/config"
	"github.com/ferry-dev/ferry/internal/preflight"
	"github.com/ferry-dev/ferry/producers"
)

func find(fs []preflight.Finding, check, msgPart string) *preflight.Finding {
	for i := range fs {
		if fs[i].Check == check && strings.Contains(fs[i].Message, msgPart) {
			return &fs[i]
		}
	}
	return nil
}

func TestCheckDatabaseAllMissing(t *testing.T) {
	fs := checkDatabase(dbFacts{LogMode: "NOARCHIVELOG", SuppMin: "NO", CDB: "YES", User: "C##FERRY", Privs: map[string]bool{}}, true)
	for _, c := range []struct{ check, msg, fix string }{
		{"archivelog", "NOARCHIVELOG", "ALTER DATABASE ARCHIVELOG;"},
		{"supplemental_logging", "minimal", "ALTER DATABASE ADD SUPPLEMENTAL LOG DATA;"},
		{"privileges", "LOGMINING", "GRANT LOGMINING TO C##FERRY CONTAINER=ALL;"},
		{"privileges", "SELECT ANY TRANSACTION", "GRANT SELECT ANY TRANSACTION TO C##FERRY CONTAINER=ALL;"},
		{"privileges", "EXECUTE_CATALOG_ROLE", "GRANT EXECUTE_CATALOG_ROLE TO C##FERRY CONTAINER=ALL;"},
		{"privileges", "SELECT_CATALOG_ROLE", "GRANT SELECT_CATALOG_ROLE TO C##FERRY CONTAINER=ALL;"},
	} {
		f := find(fs, c.check, c.msg)
		if f == nil {
			t.Errorf("no %s finding about %s in %+v", c.check, c.msg, fs)
			continue
		}
		if f.Severity != preflight.Block || !strings.Contains(f.Fix, c.fix) {
			t.Errorf("%s: severity %v, fix %q; want block with %q", c.check, f.Severity, f.Fix, c.fix)
		}
	}
	if f := find(fs, "flashback", ""); f == nil || f.Severity != preflight.Warn || !strings.Contains(f.Fix, "GRANT FLASHBACK ANY TABLE TO C##FERRY CONTAINER=ALL;") {
		t.Errorf("flashback finding %+v", f)
	}
	if preflight.ExitCode(fs) != 1 {
		t.Error("exit code must be 1")
	}
}

func TestCheckDatabaseReady(t *testing.T) {
	privs := map[string]bool{"LOGMINING": true, "SELECT ANY TRANSACTION": true, "ROLE EXECUTE_CATALOG_ROLE": true, "SELECT ANY DICTIONARY": true, "FLASHBACK ANY TABLE": true}
	fs := checkDatabase(dbFacts{LogMode: "ARCHIVELOG", SuppMin: "IMPLICIT", CDB: "NO", User: "FERRY", Privs: privs}, true)
	for _, f := range fs {
		if f.Severity != preflight.OK {
			t.Errorf("not OK: %+v", f)
		}
	}
	// A snapshot needs no LogMiner.
	fs = checkDatabase(dbFacts{LogMode: "NOARCHIVELOG", SuppMin: "NO", User: "FERRY", Privs: map[string]bool{"FLASHBACK ANY TABLE": true}}, false)
	if preflight.ExitCode(fs) != 0 || len(fs) != 1 {
		t.Errorf("snapshot-only findings %+v", fs)
	}
}

func TestCheckTable(t *testing.T) {
	fs := checkTable(tableFacts{Name: "HR.T", Ident: `"HR"."T"`, HasKey: true}, false, true)
	f := find(fs, "table_supplemental_logging", "HR.T")
	if f == nil || f.Severity != preflight.Block || f.Fix != `ALTER TABLE "HR"."T" ADD SUPPLEMENTAL LOG DATA (ALL) COLUMNS;` {
		t.Errorf("finding %+v", f)
	}
	if fs := checkTable(tableFacts{Name: "HR.T", HasKey: true}, true, true); preflight.ExitCode(fs) != 0 {
		t.Errorf("database-wide ALL logging must satisfy the table: %+v", fs)
	}
	if fs := checkTable(tableFacts{Name: "HR.T", HasKey: true, AllCols: true}, false, true); preflight.ExitCode(fs) != 0 {
		t.Errorf("ALL COLUMN LOGGING group: %+v", fs)
	}
	fs = checkTable(tableFacts{Name: "HR.T", Ident: `"HR"."T"`, HasKey: false, AllCols: true}, false, true)
	if f := find(fs, "primary_key", "HR.T"); f == nil || f.Severity != preflight.Block || !strings.Contains(f.Fix, "ADD PRIMARY KEY") {
		t.Errorf("primary key finding %+v", f)
	}
	fs = checkTable(tableFacts{Name: "HR.GONE", Ident: "HR.GONE", Err: errors.New("does not exist")}, false, true)
	if len(fs) != 1 || fs[0].Severity != preflight.Block || !strings.Contains(fs[0].Message, "HR.GONE") {
		t.Errorf("missing table %+v", fs)
	}
}

func TestConnectAdvice(t *testing.T) {
	if fix := oracleConnectFix(errors.New("ORA-01017: invalid username/password; logon denied")); !strings.Contains(fix, "password") {
		t.Errorf("ORA-01017 fix %q", fix)
	}
	if fix := oracleConnectFix(errors.New("dial tcp 127.0.0.1:1521: connect: connection refused")); !strings.Contains(fix, "listener") {
		t.Errorf("refused fix %q", fix)
	}
}

// checkQuerier answers the preflight's catalog reads.
type checkQuerier struct{ *fakeQuerier }

func (q checkQuerier) Query(ctx context.Context, sql string, args []any, fn func([]any) error) error {
	switch sql {
	case databaseSQL:
		return fn([]any{"ARCHIVELOG", "YES", "NO", "NO", "FERRY", "19.0.0.0.0"})
	case privsSQL:
		for _, p := range []string{"LOGMINING", "SELECT ANY TRANSACTION", "ROLE EXECUTE_CATALOG_ROLE", "ROLE SELECT_CATALOG_ROLE"} {
			if err := fn([]any{p}); err != nil {
				return err
			}
		}
		return nil
	case logGroupSQL:
		return fn([]any{"PRIMARY KEY LOGGING"})
	}
	return q.fakeQuerier.Query(ctx, sql, args, fn)
}

// Check reads the facts through the Querier: here a table without ALL
// COLUMN logging and a user without FLASHBACK ANY TABLE.
func TestProducerCheck(t *testing.T) {
	cfg := testSource(config.ModeSnapshotCDC)
	q := checkQuerier{&fakeQuerier{}}
	p := newProducer(cfg, producers.Env{Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, &fakeMiner{}, q, q)
	fs, tables := p.Check(context.Background())
	if len(tables) != 1 || tables[0].Name != "HR.ORDERS" || len(tables[0].Columns) != 4 || tables[0].Key[0] != "ID" || !tables[0].Changes {
		t.Errorf("tables %+v", tables)
	}
	var blocks []string
	for _, f := range fs {
		if f.Component != "source ora" {
			t.Errorf("component %q", f.Component)
		}
		if f.Severity == preflight.Block {
			blocks = append(blocks, f.Check)
		}
	}
	if len(blocks) != 1 || blocks[0] != "table_supplemental_logging" {
		t.Errorf("blocking checks %v in %+v", blocks, fs)
	}
	if f := find(fs, "flashback", ""); f == nil || f.Severity != preflight.Warn {
		t.Errorf("flashback %+v", f)
	}
}
