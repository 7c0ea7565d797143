package cqlcodec

import "testing"

// The nodes the driver discovers are reached on the port the DSN names when
// every host names the same one; otherwise on the driver's default.
func TestClusterPortFromDSN(t *testing.T) {
	for _, c := range []struct {
		dsn  string
		port int
	}{
		{"cassandra://10.0.0.1:19042,10.0.0.2:19042", 19042},
		{"cassandra://u:p@[::1]:9142", 9142},
		{"cassandra://10.0.0.1", 9042},
		{"cassandra://10.0.0.1:19042,10.0.0.2:29042", 9042},
		{"cassandra://10.0.0.1:19042,10.0.0.2", 9042},
	} {
		cc, err := Cluster(ClusterOptions{DSN: c.dsn, Consistency: "ONE"})
		if err != nil {
			t.Fatalf("%s: %v", c.dsn, err)
		}
		if cc.Port != c.port {
			t.Errorf("%s: port %d, want %d", c.dsn, cc.Port, c.port)
		}
	}
}
