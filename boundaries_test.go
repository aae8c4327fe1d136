package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The layout's promises (docs/design.md), as Kubernetes keeps them with
// .import-restrictions: the provider and the controllers never import each
// other, and nothing that ships imports the test harness.
const module = "github.com/telemetry-platform/terraform-provider-telemetry"

// harness is the folder of the packages only tests, benchmarks and the
// demo use (localplane, netlab, standin, tfdev, dashboard, awsfence,
// awsfaults, metricread, scenario).
// (internal/calicopolicy is not one: the controller validates users'
// selectors with its parser; its evaluator is what the tests use.)
const harness = "internal/harness/"

func isHarness(rel string) bool { return strings.HasPrefix(rel, harness) }

// shipped are the packages whose code ends up in the three binaries.
func shipped(pkg string) bool {
	rel := strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/")
	return rel == "" || strings.HasPrefix(rel, "provider") || strings.HasPrefix(rel, "controllers") ||
		(strings.HasPrefix(rel, "internal/") && !isHarness(rel))
}

// violations lists the forbidden edges of a package -> dependencies map
// (non-test dependencies, module paths).
func violations(deps map[string][]string) []string {
	var out []string
	for pkg, ds := range deps {
		rel := strings.TrimPrefix(strings.TrimPrefix(pkg, module), "/")
		for _, d := range ds {
			drel, ok := strings.CutPrefix(d, module+"/")
			if !ok {
				continue
			}
			switch {
			case strings.HasPrefix(rel, "provider") && strings.HasPrefix(drel, "controllers"):
				out = append(out, pkg+" imports "+d+": the provider and the controllers meet only on objects (internal/annotations, internal/ack)")
			case strings.HasPrefix(rel, "controllers") && strings.HasPrefix(drel, "provider"):
				out = append(out, pkg+" imports "+d+": the controllers and the provider meet only on objects")
			case shipped(pkg) && isHarness(drel):
				out = append(out, pkg+" imports "+d+": shipped code must not depend on the test harness")
			}
		}
	}
	slices.Sort(out)
	return out
}

func TestImportBoundaries(t *testing.T) {
	// The checker catches what it must (a forbidden import added to each
	// kind of package), so a silent pass below means something.
	for _, bad := range []map[string][]string{
		{module + "/provider": {module + "/controllers/nlbpolicy"}},
		{module + "/controllers/conntrackagent": {module + "/provider"}},
		{module + "/controllers/cmd/conntrack-agent": {module + "/internal/harness/netlab"}},
		{module + "/internal/ack": {module + "/internal/harness/localplane"}},
		{module: {module + "/internal/harness/tfdev"}},
	} {
		if len(violations(bad)) != 1 {
			t.Fatalf("the checker misses %v", bad)
		}
	}
	if v := violations(map[string][]string{
		module + "/internal/harness/localplane": {module + "/controllers/nlbpolicy"}, // the harness runs the controller
		module + "/tools/demo":                  {module + "/internal/harness/netlab"},
	}); len(v) != 0 {
		t.Fatalf("the checker refuses allowed edges: %v", v)
	}

	out, err := exec.Command("go", "list", "-deps=false", "-f", "{{.ImportPath}} {{join .Deps \" \"}}", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		deps[f[0]] = f[1:]
	}
	if len(deps) < 10 {
		t.Fatalf("go list found %d packages", len(deps))
	}
	for _, v := range violations(deps) {
		t.Error(v)
	}
}
