package mysqltest

import (
	"context"
	"strings"
	"testing"
)

// A server starts with the binary log in ROW format with full images and
// GTIDs, and is gone after Stop.
func TestStartStop(t *testing.T) {
	s, err := Start(context.Background(), Options{Log: func(l string) { t.Log(l) }})
	Require(t, err)
	defer s.Stop()
	r, err := s.Query("", "SELECT @@log_bin, @@binlog_format, @@binlog_row_image, VERSION()")
	if err != nil {
		t.Fatal(err)
	}
	logBin, _ := r.GetInt(0, 0)
	format, _ := r.GetString(0, 1)
	image, _ := r.GetString(0, 2)
	version, _ := r.GetString(0, 3)
	if logBin != 1 || format != "ROW" || image != "FULL" || !strings.Contains(version, "MariaDB") {
		t.Fatalf("log_bin=%d format=%s image=%s version=%s", logBin, format, image, version)
	}
	if err := s.Exec("", "CREATE DATABASE app;\nCREATE TABLE app.t (id int PRIMARY KEY);\nINSERT INTO app.t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	r, err = s.Query("", "SELECT @@gtid_binlog_pos")
	if err != nil {
		t.Fatal(err)
	}
	if g, _ := r.GetString(0, 0); !strings.HasPrefix(g, "0-1-") {
		t.Fatalf("gtid_binlog_pos = %q", g)
	}
}
