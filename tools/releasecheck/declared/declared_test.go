package declared

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The repository's own declaration agrees (the chart and the CHANGELOG),
// and each way of disagreeing is refused with what to change.
func TestRead(t *testing.T) {
	if v, err := Read("../../.."); err != nil || v == "" {
		t.Fatalf("the repository's declared version: %q, %v", v, err)
	}
	for _, tc := range []struct {
		name, changelog, chart, want string
	}{
		{"agree", "# Changelog\n\n## 1.2.3 (unreleased)\n\n## 1.2.2\n", "version: 1.2.3\nappVersion: \"1.2.3\"\n", ""},
		{"chart behind", "## 1.2.3\n", "version: 1.2.2\nappVersion: 1.2.2\n", `version "1.2.2"`},
		{"appVersion behind", "## 1.2.3\n", "version: 1.2.3\nappVersion: 1.2.2\n", `appVersion "1.2.2"`},
		{"no heading", "# Changelog\n", "version: 1.2.3\nappVersion: 1.2.3\n", "no \"## <version>\" heading"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, ChartDir), 0o755); err != nil {
				t.Fatal(err)
			}
			_ = os.WriteFile(filepath.Join(root, "CHANGELOG.md"), []byte(tc.changelog), 0o644)
			_ = os.WriteFile(filepath.Join(root, ChartDir, "Chart.yaml"), []byte(tc.chart), 0o644)
			v, err := Read(root)
			switch {
			case tc.want == "" && (err != nil || v != "1.2.3"):
				t.Fatalf("got %q, %v; want 1.2.3", v, err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %q, %v; want an error naming %s", v, err, tc.want)
			}
		})
	}
}
