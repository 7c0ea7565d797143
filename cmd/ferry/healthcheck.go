package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// healthcheckCmd asks a running ferry (produce, apply or migrate with
// metrics.addr set) whether it is healthy. It exists for container
// healthchecks: the runtime image is distroless, with no curl or wget, so
// the ferry binary itself does the HTTP GET.
func healthcheckCmd() *cobra.Command {
	var (
		addr    string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "healthcheck [--addr HOST:PORT]",
		Short: "Exit 0 if a running ferry's /_/healthz answers 200, else 1 (for container healthchecks)",
		Long: `Gets http://HOST:PORT/_/healthz from a ferry process serving metrics.addr and
prints its JSON body (one entry per check: nats, each source, each target).
Exits 0 when it answers 200, 1 otherwise (a failing check, no answer, a
timeout). Docker reserves exit code 2 for healthchecks, so every failure
here, a bad flag included, exits 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			url, err := healthzURL(addr)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			if err := healthcheck(cmd.Context(), cmd.OutOrStdout(), url, timeout); err != nil {
				return &exitError{code: 1, err: err}
			}
			return nil
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: 1, err: err} })
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:9090", "HOST:PORT of the ferry's metrics.addr")
	// Below a container healthcheck's usual timeout, and above the 3 s each
	// of /_/healthz's checks may take, so a slow check is reported as one.
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "give up after this long")
	return cmd
}

// healthzURL builds the URL from HOST:PORT (or an http:// URL, for those who
// paste one).
func healthzURL(addr string) (string, error) {
	addr = strings.TrimSpace(addr)
	if addr == "" {
		return "", errors.New("--addr is required (HOST:PORT of metrics.addr)")
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	return strings.TrimSuffix(addr, "/") + "/_/healthz", nil
}

func healthcheck(ctx context.Context, out io.Writer, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck %s: %w", url, err)
	}
	defer resp.Body.Close()
	// The body names the failing check; a container runtime keeps this
	// output with the health status (docker inspect).
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if len(body) > 0 {
		fmt.Fprint(out, string(body))
		if body[len(body)-1] != '\n' {
			fmt.Fprintln(out)
		}
	}
	if err != nil {
		return fmt.Errorf("healthcheck %s: reading the answer: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck %s: %s", url, resp.Status)
	}
	return nil
}
