package mysql

import "testing"

func TestParseDSN(t *testing.T) {
	for _, c := range []struct {
		in   string
		want dsn
	}{
		{"mysql://root@127.0.0.1:3306/app", dsn{User: "root", Host: "127.0.0.1", Port: 3306, DB: "app"}},
		{"mysql://u:p%40ss@db.local/shop?tls=false", dsn{User: "u", Password: "p@ss", Host: "db.local", Port: 3306, DB: "shop"}},
		{"root@tcp(127.0.0.1:3307)/app", dsn{User: "root", Host: "127.0.0.1", Port: 3307, DB: "app"}},
		{"u:se:cret@tcp(h:1)/d?parseTime=true", dsn{User: "u", Password: "se:cret", Host: "h", Port: 1, DB: "d"}},
	} {
		got, err := parseDSN(c.in)
		if err != nil || got != c.want {
			t.Errorf("parseDSN(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"mysql://root@h:3306/", "root@unix(/tmp/s)/app", "nothing"} {
		if _, err := parseDSN(bad); err == nil {
			t.Errorf("parseDSN(%q) accepted", bad)
		}
	}
	d, _ := parseDSN("u:secret@tcp(h:1)/d")
	if r := d.redacted(); r != "mysql://u:xxxxx@h:1/d" {
		t.Errorf("redacted = %q", r)
	}
}
