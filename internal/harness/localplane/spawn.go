package localplane

import (
	"os/exec"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/spawn"
)

// startChild starts cmd so that it dies with the test process (see package
// spawn: from one long-lived thread, in its own process group).
func startChild(cmd *exec.Cmd) error { return spawn.Start(cmd) }
