// Package dashboard reads the Grafana dashboard the Helm chart ships
// (deploy/helm/telemetry-controllers/dashboards), so that a test can check
// every metric its panels query against what the controllers register.
package dashboard

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
)

// Query is one panel target.
type Query struct {
	Panel, Expr string
}

type panel struct {
	Title   string  `json:"title"`
	Targets []Query `json:"targets"`
	Panels  []panel `json:"panels"` // a collapsed row's
}

// Queries lists the dashboard's PromQL expressions by panel.
func Queries(path string) ([]Query, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d struct {
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []Query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, q := range p.Targets {
				out = append(out, Query{Panel: p.Title, Expr: q.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out, nil
}

// metricName matches the metric families the product's dashboards and
// alerts read: its own, controller-runtime's and client-go's.
var metricName = regexp.MustCompile(`\b(?:telemetry|controller_runtime|workqueue|rest_client)_[a-z0-9_]+`)

// Metrics are the metric families an expression reads (a histogram's
// _bucket, _sum and _count are its family).
func Metrics(expr string) []string {
	seen := map[string]bool{}
	for _, m := range metricName.FindAllString(expr, -1) {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if strings.HasSuffix(m, suffix) && !strings.HasSuffix(m, "_total"+suffix) {
				m = strings.TrimSuffix(m, suffix)
				break
			}
		}
		seen[m] = true
	}
	out := make([]string, 0, len(seen))
	for m := range seen {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}
