package config

import (
	"strings"
	"testing"
	"time"
)

func oracleDoc(extra string) []byte {
	return []byte(`
sources:
  - name: ora
    type: oracle
    dsn: oracle://u:p@h:1521/CDB
` + extra)
}

func TestOracleKeys(t *testing.T) {
	c, err := Parse(oracleDoc("    pdbDsn: oracle://u:p@h:1521/PDB1\n    scn: 500\n    backfillFromSCN: 450\n    scnWindow: 1000\n    spillDir: /tmp/x\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Sources[0]
	if s.PDBDSN == "" || s.SCN != 500 || s.BackfillFromSCN != 450 || s.SCNWindow != 1000 || s.SpillDir != "/tmp/x" {
		t.Errorf("parsed %+v", s)
	}
	if s.PollInterval.D() != time.Second || s.TxBufferBytes != 64<<20 {
		t.Errorf("defaults: pollInterval %v, txBufferBytes %d", s.PollInterval.D(), s.TxBufferBytes)
	}
	c, err = Parse(oracleDoc(""))
	if err != nil || c.Sources[0].SCNWindow != 50000 {
		t.Errorf("default window: %v %+v", err, c)
	}
}

func TestOracleKeyErrors(t *testing.T) {
	for doc, want := range map[string]string{
		string(oracleDoc("    backfillFromSCN: 10\n")):              "set scn too",
		string(oracleDoc("    scn: 10\n    backfillFromSCN: 11\n")): "is after scn 10",
		`
sources:
  - name: pg
    type: postgres
    dsn: postgres://h/db
    scn: 5
`: "settings of oracle sources",
	} {
		_, err := Parse([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want an error containing %q", err, want)
		}
	}
}
