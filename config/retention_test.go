package config

import (
	"strings"
	"testing"
	"time"
)

func TestRetention(t *testing.T) {
	c, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Sources[0].Retention
	if !r.Compacts() || r.MaxAge != 0 {
		t.Fatalf("defaults: %+v", r)
	}
	withRet := func(ret string) string {
		return strings.Replace(good, "    publication: ferry_pg\n", "    publication: ferry_pg\n    retention: "+ret+"\n", 1)
	}
	c, err = Parse([]byte(withRet("{maxAge: 72h, maxBytes: 1000000}")))
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Sources[0].Retention; r.MaxAge.D() != 72*time.Hour || r.MaxBytes != 1000000 || !r.Compacts() {
		t.Fatalf("parsed: %+v", r)
	}
	for ret, want := range map[string]string{
		"{maxAge: 1h, compact: false}": "need compact: true",
		"{maxBytes: -1}":               "must not be negative",
		"{maxage: 1h}":                 `unknown key "maxage" in sources[].retention`,
	} {
		if _, err := Parse([]byte(withRet(ret))); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("retention %s: %v, want an error saying %q", ret, err, want)
		}
	}
}
