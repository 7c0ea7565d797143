package metrics

import "testing"

// A metric that is counted but not registered is never exposed: the
// restart counters were once missing from the registry.
func TestRestartCountersExposed(t *testing.T) {
	ProducerRestarts.WithLabelValues("src").Inc()
	LaneRestarts.WithLabelValues("dst", "src").Inc()
	families, err := Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range families {
		got[f.GetName()] = true
	}
	for _, name := range []string{"ferry_source_restarts_total", "ferry_target_lane_restarts_total"} {
		if !got[name] {
			t.Errorf("%s is not exposed", name)
		}
	}
}
