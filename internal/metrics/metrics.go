// Package metrics holds ferry's Prometheus metrics and the HTTP endpoints an
// operator scrapes: /metrics and /_/varz (MOLT's path) with the metrics,
// /_/healthz with connectivity, /debug/pprof/ for profiles.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Registry holds every ferry metric and the Go runtime and process ones.
var Registry = prometheus.NewRegistry()

var (
	// Source side.
	EventsPublished = counter("ferry_source_events_published_total",
		"Events a source's producer published and JetStream acknowledged.", "source", "table")
	ProducerRestarts = counter("ferry_source_restarts_total",
		"Times a producer was started again after a connection failure.", "source")
	SnapshotRows = counter("ferry_snapshot_rows_total",
		"Rows the snapshot published.", "source", "table")
	SnapshotRowsEstimate = gauge("ferry_snapshot_rows_estimate",
		"The source's estimate of a table's rows, for progress.", "source", "table")
	SnapshotChunksDone = gauge("ferry_snapshot_chunks_done",
		"Snapshot chunks recorded as done.", "source", "table")
	SnapshotChunksTotal = gauge("ferry_snapshot_chunks_total",
		"Snapshot chunks planned.", "source", "table")
	SourceLag = gauge("ferry_source_lag_seconds",
		"Now minus the commit time of the newest change a producer published; 0 when it has published everything the source sent.", "source")
	SourcePosition = gauge("ferry_source_position",
		"The producer's saved position as a number (PostgreSQL: the LSN).", "source")

	// Target side.
	EventsApplied = counter("ferry_target_events_applied_total",
		"Events a target committed.", "target", "source", "table")
	LaneRestarts = counter("ferry_target_lane_restarts_total",
		"Times an applier lane was started again after a failure that was not permanent (NATS away, its consumer lost).", "target", "source")
	ApplyErrors = counter("ferry_target_apply_errors_total",
		"Failed attempts to apply a batch (each is retried, or stops the applier when permanent).", "target", "source")
	DeadLettered = counter("ferry_target_dead_lettered_total",
		"Rows the target rejected, written to the dead-letter stream.", "target", "table")
	BatchSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ferry_target_batch_seconds",
		Help:    "Time to apply one batch in one target transaction.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
	}, []string{"target", "source"})
	TargetLag = gauge("ferry_target_lag_seconds",
		"Now minus the commit time of the newest change a target applied; 0 when nothing is pending.", "target", "source")
	ConsumerPending = gauge("ferry_target_pending_events",
		"Messages of the source's stream the target has not applied yet (all lanes).", "target", "source")
)

func counter(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

func gauge(name, help string, labels ...string) *prometheus.GaugeVec {
	return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
}

func init() {
	Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		EventsPublished, SnapshotRows, SnapshotRowsEstimate, SnapshotChunksDone, SnapshotChunksTotal,
		ProducerRestarts, SourceLag, SourcePosition,
		EventsApplied, LaneRestarts, ApplyErrors, DeadLettered, BatchSeconds, TargetLag, ConsumerPending,
	)
}
