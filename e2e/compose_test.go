package e2e

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/ferry-dev/ferry/e2e/pgtest"
)

// TestComposeConfig validates docker-compose.yml with docker-compose's own
// schema check: no Docker engine runs on these machines, so the compose
// setup is never started here, but a misspelt key or a bad depends_on
// condition still fails this test. (It does not check that mounted files
// exist: docker-compose does not.)
func TestComposeConfig(t *testing.T) {
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		// .ci/run installs it: on CI a missing docker-compose is a setup
		// failure, not a reason to pass quietly.
		if pgtest.InCI() {
			t.Fatalf("docker-compose is not installed (CI=true): %v", err)
		}
		t.Skipf("docker-compose is not installed: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-f", "../docker-compose.yml", "config", "-q")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose -f ../docker-compose.yml config -q: %v\n%s", err, out)
	}
}
