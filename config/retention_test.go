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
	// Without trimming, the change stream is whole and no state stream is
	// kept unless asked for.
	if r.Compacts() || r.MaxAge != 0 {
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
	c, err = Parse([]byte(withRet("{compact: true}")))
	if err != nil || !c.Sources[0].Retention.Compacts() {
		t.Fatalf("compact: true: %v %+v", err, c.Sources[0].Retention)
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
