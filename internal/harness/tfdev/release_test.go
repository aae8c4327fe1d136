package tfdev

import (
	"archive/zip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/telemetry-platform/terraform-provider-telemetry/tools/releasecheck/declared"
)

// TestReleaseArchiveFollowsGoreleaser: the archive Release puts in the
// mirror is what the release publishes for this platform, as
// .goreleaser.yml names it: terraform-provider-telemetry_<version>_<os>_<arch>.zip
// holding terraform-provider-telemetry_v<version> alone, executable, which
// says that version; for both registries' hosts, in the packed layout
// terraform and OpenTofu read (<host>/<namespace>/<type>/<zip>).
func TestReleaseArchiveFollowsGoreleaser(t *testing.T) {
	root, _ := filepath.Abs("../../..")
	version, err := declared.Read(root)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	env, err := Release(context.Background(), root, dir, CLI{Name: "terraform", Path: "terraform"})
	if err != nil {
		t.Fatal(err)
	}
	if rc, err := os.ReadFile(env.CLIConfig); err != nil || !strings.Contains(string(rc), "filesystem_mirror") || strings.Contains(string(rc), "dev_overrides") {
		t.Fatalf("CLI configuration: %v\n%s", err, rc)
	}
	name := "terraform-provider-telemetry_" + version + "_" + runtime.GOOS + "_" + runtime.GOARCH + ".zip"
	binary := "terraform-provider-telemetry_v" + version
	for _, host := range []string{"registry.terraform.io", "registry.opentofu.org"} {
		zr, err := zip.OpenReader(filepath.Join(dir, "mirror", host, "telemetry-platform", "telemetry", name))
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		defer zr.Close()
		if len(zr.File) != 1 || zr.File[0].Name != binary || zr.File[0].Mode()&0o111 == 0 {
			t.Fatalf("%s holds %v, want %s alone, executable", name, zr.File, binary)
		}
		f, err := zr.File[0].Open()
		if err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(t.TempDir(), binary)
		data, err := io.ReadAll(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, data, 0o755); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(bin, "--version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "terraform-provider-telemetry "+version+" ") {
			t.Fatalf("%s --version: %v, %q; want version %s", binary, err, out, version)
		}
	}
}
