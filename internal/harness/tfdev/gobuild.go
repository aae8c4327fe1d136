package tfdev

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// builds remembers, per build (its folder and arguments), the binaries this
// process linked or linked to: a test process builds the provider once and
// gives each later caller a hard link to it. Linking the provider (the
// Kubernetes, AWS and plugin libraries) costs seconds of CPU each time; the
// suite built it about once per test that runs the CLI. The source does not
// change while tests run.
var builds = struct {
	sync.Mutex
	made map[string][]string
}{made: map[string][]string{}}

// goBuild runs `go build args... -o out main` in dir, or, if this process
// built the same before, hard-links out to that binary (or any link of it
// still present: each lives in a test's temporary folder, which goes when
// its test ends). Callers of one build wait for the first.
func goBuild(ctx context.Context, dir, out, main string, args ...string) error {
	key := strings.Join(append([]string{dir, main}, args...), "\x00")
	builds.Lock()
	defer builds.Unlock()
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	made := builds.made[key]
	for i := len(made) - 1; i >= 0; i-- {
		if err := os.Link(made[i], out); err == nil {
			builds.made[key] = append(slices.Clip(made), out)
			return nil
		}
		made = slices.Delete(made, i, i+1) // its test's folder is gone
	}
	build := exec.CommandContext(ctx, "go", append(append([]string{"build"}, args...), "-o", out, main)...)
	build.Dir = dir
	if output, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("%v\n%s", err, output)
	}
	builds.made[key] = append(made, out)
	return nil
}
