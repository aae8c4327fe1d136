package tfdev

import (
	"archive/zip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/telemetry-platform/terraform-provider-telemetry/tools/releasecheck/declared"
)

// The provider as users install it: a release archive in a filesystem
// mirror, found by `terraform init` (or `tofu init`) with no dev_overrides,
// checked into the lock file like any provider from a registry.

// CLI is a command-line tool that runs configurations: terraform or OpenTofu.
type CLI struct {
	Name string // "terraform" or "tofu"
	Path string
}

// Terraform is TF_ACC_TERRAFORM_PATH, else terraform on PATH.
func Terraform() (CLI, error) {
	tf := os.Getenv("TF_ACC_TERRAFORM_PATH")
	if tf == "" {
		var err error
		if tf, err = exec.LookPath("terraform"); err != nil {
			return CLI{}, errors.New("terraform not found: put it on PATH or set TF_ACC_TERRAFORM_PATH (nothing is downloaded)")
		}
	}
	return CLI{Name: "terraform", Path: tf}, nil
}

// OpenTofu is $TOFU, else what `make tofu` built (bin/tools/tofu under
// repoRoot), else tofu on PATH.
func OpenTofu(repoRoot string) (CLI, error) {
	for _, p := range []string{os.Getenv("TOFU"), filepath.Join(repoRoot, "bin", "tools", "tofu")} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return CLI{Name: "tofu", Path: p}, nil
		}
	}
	if p, err := exec.LookPath("tofu"); err == nil {
		return CLI{Name: "tofu", Path: p}, nil
	}
	return CLI{}, errors.New("OpenTofu not found: run `make tofu`, which builds it from the Go module proxy (or set TOFU)")
}

// registryHosts are where `source = "telemetry-platform/telemetry"` points:
// terraform's registry, and OpenTofu's.
var registryHosts = []string{"registry.terraform.io", "registry.opentofu.org"}

// goreleaser is the part of .goreleaser.yml the release archive follows.
type goreleaser struct {
	ProjectName string `json:"project_name"`
	Builds      []struct {
		ID      string   `json:"id"`
		Main    string   `json:"main"`
		Binary  string   `json:"binary"`
		Ldflags []string `json:"ldflags"`
	} `json:"builds"`
	Archives []struct {
		IDs          []string `json:"ids"`
		NameTemplate string   `json:"name_template"`
	} `json:"archives"`
}

// Release builds the provider for this platform as .goreleaser.yml's
// provider build and archive say (its binary name and ldflags, its zip
// named by the archive's template, the version the repository declares for
// its release: the examples' version constraints must take it), puts the zip
// in a filesystem mirror under dir for both registries, and writes a CLI
// configuration that installs this provider from the mirror only. The
// archive is made here rather than by goreleaser (a snapshot of every
// platform takes minutes); TestReleaseArchiveFollowsGoreleaser keeps the two
// in step.
func Release(ctx context.Context, repoRoot, dir string, cli CLI) (*Env, error) {
	data, err := os.ReadFile(filepath.Join(repoRoot, ".goreleaser.yml"))
	if err != nil {
		return nil, err
	}
	var cfg goreleaser
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf(".goreleaser.yml: %w", err)
	}
	version, err := declared.Read(repoRoot)
	if err != nil {
		return nil, err
	}
	fill := func(tmpl string) string {
		return strings.NewReplacer("{{ .ProjectName }}", cfg.ProjectName, "{{ .Version }}", version,
			"{{ .Os }}", runtime.GOOS, "{{ .Arch }}", runtime.GOARCH).Replace(tmpl)
	}
	var binary, main string
	var args []string
	for _, b := range cfg.Builds {
		if b.ID == "provider" {
			// Its ldflags (the version stamped), not its flags: -trimpath
			// and CGO_ENABLED=0 change no behaviour of this pure-Go binary
			// but every package's build key, so with them the first build
			// recompiles the whole tree (minutes) instead of sharing the
			// tests' build cache.
			binary, main = fill(b.Binary), b.Main
			args = append(args, "-ldflags", fill(strings.Join(b.Ldflags, " ")))
		}
	}
	var archive string
	for _, a := range cfg.Archives {
		for _, id := range a.IDs {
			if id == "provider" {
				archive = fill(a.NameTemplate) + ".zip"
			}
		}
	}
	if binary == "" || archive == "" || strings.Contains(binary+archive, "{{") {
		return nil, fmt.Errorf(".goreleaser.yml: no provider build and archive this harness can follow (binary %q, archive %q)", binary, archive)
	}
	bin := filepath.Join(dir, "build", binary)
	if err := goBuild(ctx, repoRoot, bin, main, args...); err != nil {
		return nil, fmt.Errorf("building the provider as the release does: %w", err)
	}
	mirror := filepath.Join(dir, "mirror")
	for _, host := range registryHosts {
		pkg := filepath.Join(mirror, host, "telemetry-platform", "telemetry", archive)
		if err := writeZip(pkg, bin); err != nil {
			return nil, err
		}
	}
	rc := fmt.Sprintf(`provider_installation {
  filesystem_mirror {
    path    = %q
    include = ["registry.terraform.io/telemetry-platform/telemetry", "registry.opentofu.org/telemetry-platform/telemetry"]
  }
}
`, mirror)
	cfgPath := filepath.Join(dir, cli.Name+".tfrc")
	if err := os.WriteFile(cfgPath, []byte(rc), 0o644); err != nil {
		return nil, err
	}
	return &Env{Terraform: cli.Path, CLIConfig: cfgPath, Dir: dir}, nil
}

// writeZip packs one executable into a zip at path, as goreleaser's archive
// does (the binary at the root, executable).
func writeZip(path, bin string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	zw := zip.NewWriter(f)
	src, err := os.Open(bin)
	if err != nil {
		return err
	}
	defer src.Close()
	hdr := &zip.FileHeader{Name: filepath.Base(bin), Method: zip.Deflate}
	hdr.SetMode(0o755)
	w, err := zw.CreateHeader(hdr)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, src); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}
