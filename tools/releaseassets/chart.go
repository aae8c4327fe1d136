package main

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// ChartDir is the chart's folder in the repository.
const ChartDir = "deploy/helm/telemetry-controllers"

var (
	repositoryLine = regexp.MustCompile(`^(\s*repository:\s*)(\S+)\s*$`)
	digestLine     = regexp.MustCompile(`^(\s*digest:\s*)""(.*)$`)
)

// PinValues sets, in the chart's values.yaml, each release image's
// repository to repo/<component> and its digest (the `digest: ""` after
// the image's `repository:` line), keeping the rest of the file as it is.
// Every component must be found once: a values file that moved its keys is
// an error, never a chart with an unpinned image.
func PinValues(values []byte, repo string, digests map[string]string) ([]byte, error) {
	lines := strings.Split(string(values), "\n")
	current, done := "", map[string]bool{}
	for i, line := range lines {
		if m := repositoryLine.FindStringSubmatch(line); m != nil {
			current = ""
			if comp, ok := strings.CutPrefix(m[2], Repository+"/"); ok && known(comp) {
				current = comp
				lines[i] = m[1] + repo + "/" + comp
			}
			continue
		}
		if m := digestLine.FindStringSubmatch(line); m != nil && current != "" {
			d, ok := digests[current]
			if !ok || done[current] {
				return nil, fmt.Errorf("values.yaml: no digest for %s, or its image twice", current)
			}
			lines[i] = m[1] + d + m[2]
			done[current], current = true, ""
		}
	}
	for _, c := range Components {
		if !done[c] {
			return nil, fmt.Errorf("values.yaml: no `repository: %s/%s` followed by `digest: \"\"`", Repository, c)
		}
	}
	return []byte(strings.Join(lines, "\n")), nil
}

// PackageChart copies the chart, pins its images (PinValues), packages it
// with helm at the version (chart version and appVersion), and renders the
// package with every component on to check that each image it names is
// repo/<component>:<version>@<digest>. It returns the package's path.
func PackageChart(ctx context.Context, helm, root, out, version, repo string, digests map[string]string) (string, error) {
	src := filepath.Join(root, ChartDir)
	tmp, err := os.MkdirTemp("", "releaseassets-chart-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	dst := filepath.Join(tmp, filepath.Base(src))
	if err := copyDir(src, dst); err != nil {
		return "", err
	}
	values := filepath.Join(dst, "values.yaml")
	b, err := os.ReadFile(values)
	if err != nil {
		return "", err
	}
	if b, err = PinValues(b, repo, digests); err != nil {
		return "", err
	}
	if err := os.WriteFile(values, b, 0o644); err != nil {
		return "", err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	if _, err := run(ctx, helm, "package", dst, "--version", version, "--app-version", version, "--destination", out); err != nil {
		return "", err
	}
	pkg := filepath.Join(out, filepath.Base(src)+"-"+version+".tgz")
	rendered, err := run(ctx, helm, "template", "telemetry", pkg, "--namespace", "telemetry-system",
		"--set", "conntrackAgent.enabled=true", "--set", "nlbPolicyController.enabled=true")
	if err != nil {
		return "", err
	}
	want := map[string]bool{}
	for _, c := range Components {
		want[repo+"/"+c+":"+version+"@"+digests[c]] = true
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(rendered, "\n") {
		if m := imageLine.FindStringSubmatch(line); m != nil {
			if !want[m[2]] {
				os.Remove(pkg)
				return "", fmt.Errorf("the packaged chart renders image %q, not one of the release's pinned images %v", m[2], want)
			}
			seen[m[2]] = true
		}
	}
	if len(seen) != len(want) {
		os.Remove(pkg)
		return "", fmt.Errorf("the packaged chart renders %d of the release's %d images", len(seen), len(want))
	}
	return pkg, nil
}

func run(ctx context.Context, bin string, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
}
