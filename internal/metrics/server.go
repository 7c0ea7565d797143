package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one health check: a name and a probe.
type Check struct {
	Name  string
	Probe func(ctx context.Context) error
}

// Health collects the checks /_/healthz runs.
type Health struct {
	mu     sync.Mutex
	checks []Check
}

// Add registers a check.
func (h *Health) Add(name string, probe func(ctx context.Context) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks = append(h.checks, Check{Name: name, Probe: probe})
}

// Run probes every check, each with a short timeout.
func (h *Health) Run(ctx context.Context) map[string]string {
	h.mu.Lock()
	checks := append([]Check(nil), h.checks...)
	h.mu.Unlock()
	out := make(map[string]string, len(checks))
	for _, c := range checks {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := c.Probe(cctx)
		cancel()
		if err != nil {
			out[c.Name] = err.Error()
		} else {
			out[c.Name] = "ok"
		}
	}
	return out
}

// Serve runs the operator endpoints on addr until ctx ends.
func Serve(ctx context.Context, addr string, health *Health, log *slog.Logger) error {
	mux := http.NewServeMux()
	h := promhttp.HandlerFor(Registry, promhttp.HandlerOpts{Registry: Registry})
	mux.Handle("/metrics", h)
	mux.Handle("/_/varz", h)
	mux.HandleFunc("/_/healthz", func(w http.ResponseWriter, r *http.Request) {
		res := health.Run(r.Context())
		status := http.StatusOK
		for _, v := range res {
			if v != "ok" {
				status = http.StatusServiceUnavailable
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(res)
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics.addr %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Info("serving metrics and health", "addr", ln.Addr().String(), "paths", "/metrics /_/varz /_/healthz /debug/pprof/")
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving metrics: %w", err)
	}
	return nil
}
