// Package declared reads the version the repository declares for its next
// (or current) release: the first "## <version>" heading of CHANGELOG.md,
// which the Helm chart's version and appVersion must equal.
package declared

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"sigs.k8s.io/yaml"
)

// ChartDir is the Helm chart, relative to the repository's root.
const ChartDir = "deploy/helm/telemetry-controllers"

var heading = regexp.MustCompile(`^## (\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)(?:\s|$)`)

// Read returns the declared version, or an error naming what disagrees.
func Read(root string) (string, error) {
	changelog, err := os.ReadFile(filepath.Join(root, "CHANGELOG.md"))
	if err != nil {
		return "", err
	}
	version := ""
	sc := bufio.NewScanner(bytes.NewReader(changelog))
	for sc.Scan() {
		if m := heading.FindStringSubmatch(sc.Text()); m != nil {
			version = m[1]
			break
		}
	}
	if version == "" {
		return "", fmt.Errorf("CHANGELOG.md has no \"## <version>\" heading")
	}
	data, err := os.ReadFile(filepath.Join(root, ChartDir, "Chart.yaml"))
	if err != nil {
		return "", err
	}
	var chart struct {
		Version    string `json:"version"`
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(data, &chart); err != nil {
		return "", fmt.Errorf("%s/Chart.yaml: %w", ChartDir, err)
	}
	if chart.Version != version || chart.AppVersion != version {
		return "", fmt.Errorf("CHANGELOG.md's newest release is %s, but %s/Chart.yaml says version %q, appVersion %q: make them one version",
			version, ChartDir, chart.Version, chart.AppVersion)
	}
	return version, nil
}
