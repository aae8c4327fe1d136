package version

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/yaml"
)

// TestReleaseStampsEveryBinary: each binary .goreleaser.yml builds, built
// with the ldflags it gives (its template's version filled in), says that
// version with --version. A typo in the variable's path would leave every
// release saying "dev" without any error from the linker.
func TestReleaseStampsEveryBinary(t *testing.T) {
	data, err := os.ReadFile("../../.goreleaser.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Builds []struct {
			ID      string   `json:"id"`
			Main    string   `json:"main"`
			Ldflags []string `json:"ldflags"`
		} `json:"builds"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Builds) != 3 {
		t.Fatalf(".goreleaser.yml builds %d binaries, want the provider and the two controllers", len(cfg.Builds))
	}
	dir := t.TempDir()
	for _, b := range cfg.Builds {
		t.Run(b.ID, func(t *testing.T) {
			flags := strings.ReplaceAll(strings.Join(b.Ldflags, " "), "{{ .Version }}", "9.8.7")
			if !strings.Contains(flags, "9.8.7") {
				t.Fatalf("the build's ldflags %q do not set the version", b.Ldflags)
			}
			bin := filepath.Join(dir, b.ID)
			build := exec.CommandContext(context.Background(), "go", "build", "-ldflags", flags, "-o", bin, b.Main)
			build.Dir = "../.."
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go build: %v\n%s", err, out)
			}
			out, err := exec.Command(bin, "--version").CombinedOutput()
			if err != nil || !regexp.MustCompile(`^\S+ 9\.8\.7 `).Match(out) {
				t.Fatalf("%s --version: %v, %q; want the version stamped", b.ID, err, out)
			}
		})
	}
}

// TestBuildInfo: one series, carrying the version, revision and Go version.
func TestBuildInfo(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil || len(families) != 1 || len(families[0].GetMetric()) != 1 {
		t.Fatalf("gathered %v, %v; want one telemetry_build_info series", families, err)
	}
	m := families[0].GetMetric()[0]
	labels := map[string]string{}
	for _, l := range m.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	if families[0].GetName() != "telemetry_build_info" || m.GetGauge().GetValue() != 1 || labels["version"] != Version ||
		labels["goversion"] != runtime.Version() || labels["revision"] != Revision() {
		t.Fatalf("%s %v = %v", families[0].GetName(), labels, m.GetGauge().GetValue())
	}
}
