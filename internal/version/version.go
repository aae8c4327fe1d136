// Package version says which release a binary is: the provider and both
// controllers report it (the provider to Terraform, the controllers in
// their start-up log, --version and the telemetry_build_info metric), so a
// running controller can be matched against the compatibility table in
// docs/versioning.md.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Version is the release, set by the release build:
//
//	-ldflags "-X github.com/telemetry-platform/terraform-provider-telemetry/internal/version.Version=1.2.3"
//
// A build from source says "dev".
var Version = "dev"

// Revision is the VCS commit the binary was built from, when the Go
// toolchain recorded it ("" otherwise: go test, a build outside the
// repository), with "-dirty" for uncommitted changes.
func Revision() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" {
		return ""
	}
	return rev + dirty
}

// String is the one-line description --version prints.
func String(binary string) string {
	s := fmt.Sprintf("%s %s", binary, Version)
	if rev := Revision(); rev != "" {
		s += " (" + rev + ")"
	}
	return s + " " + runtime.Version()
}

// Register adds telemetry_build_info{version, revision, goversion} 1 to a
// registry: the usual way to tell from the metrics which build runs.
func Register(reg prometheus.Registerer) error {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "telemetry_build_info",
		Help: "The build that runs: its release (version, \"dev\" from source), VCS revision and Go version. Always 1.",
	}, []string{"version", "revision", "goversion"})
	g.WithLabelValues(Version, Revision(), runtime.Version()).Set(1)
	return reg.Register(g)
}
