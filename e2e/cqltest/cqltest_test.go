package cqltest

import (
	"context"
	"testing"
)

// TestStart starts a server, writes and reads a row, and stops it.
func TestStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Cassandra")
	}
	s, err := Start(context.Background(), Options{Log: func(l string) { t.Log(l) }})
	Require(t, err)
	defer func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	}()
	if err := s.Exec("system",
		"CREATE KEYSPACE k WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}",
		"CREATE TABLE k.t (id int PRIMARY KEY, v text)",
		"INSERT INTO k.t (id, v) VALUES (1, 'one')"); err != nil {
		t.Fatal(err)
	}
	sess, err := s.Session("k")
	if err != nil {
		t.Fatal(err)
	}
	var v string
	if err := sess.Query("SELECT v FROM t WHERE id = 1").Scan(&v); err != nil || v != "one" {
		t.Fatalf("read %q, %v; want one", v, err)
	}
}
