// Package tfdev runs the real terraform CLI against the provider built from
// this checkout: it builds the binary, writes a CLI configuration whose
// dev_overrides point at it, and runs terraform with that configuration.
// Nothing is downloaded: configurations may use only this provider and
// terraform's built-ins, and modules are installed with `terraform get`
// (`terraform init` would ask the registry for the overridden provider).
// The examples' tests, the benchmarks and the demo use it.
package tfdev

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"
)

// Env is a built provider and a CLI configuration that uses it.
type Env struct {
	Terraform string
	CLIConfig string
	Dir       string
	// Environ is added to every command's environment (after the process's
	// own, which it overrides), so tests running side by side can give their
	// commands different variables without t.Setenv.
	Environ []string
}

// Build compiles the provider from repoRoot into dir (once per process:
// later calls link to that binary) and writes the CLI configuration there. TF_ACC_TERRAFORM_PATH, else terraform on PATH, is the
// terraform binary.
func Build(ctx context.Context, repoRoot, dir string) (*Env, error) {
	tf := os.Getenv("TF_ACC_TERRAFORM_PATH")
	if tf == "" {
		var err error
		if tf, err = exec.LookPath("terraform"); err != nil {
			return nil, errors.New("terraform not found: put it on PATH or set TF_ACC_TERRAFORM_PATH (nothing is downloaded)")
		}
	}
	if err := goBuild(ctx, repoRoot, filepath.Join(dir, "terraform-provider-telemetry"), "."); err != nil {
		return nil, fmt.Errorf("building the provider: %w", err)
	}
	cfg := filepath.Join(dir, "terraform.tfrc")
	rc := fmt.Sprintf(`provider_installation {
  dev_overrides {
    "telemetry-platform/telemetry" = %q
  }
  direct {}
}
`, dir)
	if err := os.WriteFile(cfg, []byte(rc), 0o644); err != nil {
		return nil, err
	}
	return &Env{Terraform: tf, CLIConfig: cfg, Dir: dir}, nil
}

// Result is one terraform run.
type Result struct {
	Output   []byte
	ExitCode int
	Duration time.Duration
}

// Run runs terraform in workdir. A non-zero exit is returned as an error
// carrying the output, except exit 2 of `plan -detailed-exitcode` (changes
// present), which callers read from ExitCode.
func (e *Env) Run(ctx context.Context, workdir string, args ...string) (Result, error) {
	cmd := exec.CommandContext(ctx, e.Terraform, args...)
	cmd.Dir = workdir
	cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+e.CLIConfig, "TF_IN_AUTOMATION=1", "CHECKPOINT_DISABLE=1")
	cmd.Env = append(cmd.Env, e.Environ...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	res := Result{Output: out.Bytes(), Duration: time.Since(start)}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		res.ExitCode = exit.ExitCode()
		if res.ExitCode == 2 && slices.Contains(args, "-detailed-exitcode") {
			return res, nil
		}
		return res, fmt.Errorf("terraform %v: exit %d\n%s", args, res.ExitCode, out.Bytes())
	}
	if err != nil {
		return res, fmt.Errorf("terraform %v: %w", args, err)
	}
	return res, nil
}

// CopyDir copies a directory tree (an example) so terraform can run in it
// without writing into the checkout.
func CopyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			if d.Name() == ".terraform" {
				return filepath.SkipDir
			}
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}
