package deploy

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/conntrackagent"
	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/nlbpolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/dashboard"
)

const dashboardPath = "helm/telemetry-controllers/dashboards/telemetry-controllers.json"

// recorder is a prometheus.Registerer that records the metric families
// registered with it (every descriptor, a vector's too before it has a
// series).
type recorder map[string]bool

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r recorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			r[m[1]] = true
		}
	}
	return nil
}

func (r recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r recorder) Unregister(prometheus.Collector) bool { return true }

// registeredIn says whether reg has a metric family of this name: a probe
// with that name and another help string is refused when it does.
func registeredIn(reg prometheus.Registerer, name string) bool {
	probe := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "probe of the dashboard test"})
	if err := reg.Register(probe); err != nil {
		return true
	}
	reg.Unregister(probe)
	return false
}

// Every metric a panel of the chart's Grafana dashboard queries is one the
// controllers register (their own through NewMetrics, controller-runtime's
// in its registry, which the nlb-policy controller serves), and the
// controller label it selects is the nlb-policy controller's name: a
// renamed metric fails here, not as an empty panel in a user's Grafana.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	queries, err := dashboard.Queries(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(queries) < 10 {
		t.Fatalf("%d queries in %s", len(queries), dashboardPath)
	}
	own := recorder{}
	conntrackagent.NewMetrics(own)
	nlbpolicy.NewMetrics(own)
	used := map[string]bool{}
	for _, q := range queries {
		names := dashboard.Metrics(q.Expr)
		if len(names) == 0 {
			t.Errorf("panel %q: %q reads no metric of the controllers", q.Panel, q.Expr)
		}
		for _, name := range names {
			used[name] = true
		}
		checkExported(t, fmt.Sprintf("panel %q", q.Panel), q.Expr, names, own)
	}
	// And the dashboard shows what matters of each: the product's metrics
	// that no panel reads are listed here on purpose.
	unshown := map[string]bool{
		"telemetry_conntrack_stale_entries_found_total": true, // equals deleted outside dry run
		"telemetry_conntrack_entries_scanned_total":     true,
		"telemetry_conntrack_last_pass_entries_scanned": true,
		"telemetry_conntrack_entries_vanished_total":    true,
	}
	for name := range own {
		if !used[name] && !unshown[name] {
			t.Errorf("%s is exported but no panel shows it (add a panel, or list it in unshown with the reason)", name)
		}
	}
}

// The chart's alerts (metrics.prometheusRule) read only metrics the
// controllers export, and the one an operator needs most is there: Services
// whose sources stay unenforced. A renamed metric fails here, not as an
// alert that can never fire.
func TestAlertsQueryExportedMetrics(t *testing.T) {
	own := recorder{}
	conntrackagent.NewMetrics(own)
	nlbpolicy.NewMetrics(own)
	var rules []struct{ Alert, Expr string }
	for _, o := range render(t, "metrics.prometheusRule.enabled=true", "conntrackAgent.enabled=true") {
		if o.GetKind() != "PrometheusRule" {
			continue
		}
		groups, _, _ := unstructured.NestedSlice(o.Object, "spec", "groups")
		for _, g := range groups {
			rs, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
			for _, r := range rs {
				m := r.(map[string]any)
				rules = append(rules, struct{ Alert, Expr string }{fmt.Sprint(m["alert"]), fmt.Sprint(m["expr"])})
			}
		}
	}
	alerts := map[string]bool{}
	for _, r := range rules {
		alerts[r.Alert] = true
		names := dashboard.Metrics(r.Expr)
		if len(names) == 0 {
			t.Errorf("alert %s: %q reads no metric of the controllers", r.Alert, r.Expr)
		}
		checkExported(t, "alert "+r.Alert, r.Expr, names, own)
	}
	for _, want := range []string{"TelemetryServicesUnenforced", "TelemetryNLBPolicyReconcileErrors", "TelemetryNLBPolicyAPIUnreachable",
		"TelemetryConntrackDeleteFailures", "TelemetryConntrackErrors"} {
		if !alerts[want] {
			t.Errorf("no alert %s in the chart's PrometheusRule (alerts: %v)", want, alerts)
		}
	}
}

// checkExported fails for each metric an expression reads that the
// controllers do not export (own: their NewMetrics; controller-runtime's
// registry), and for a controller label that is not the nlb-policy
// controller's.
func checkExported(t *testing.T, what, expr string, names []string, own recorder) {
	t.Helper()
	for _, name := range names {
		switch {
		case strings.HasPrefix(name, "telemetry_"):
			if !own[name] {
				t.Errorf("%s reads %s, which neither controller exports", what, name)
			}
		case !registeredIn(ctrlmetrics.Registry, name):
			t.Errorf("%s reads %s, which controller-runtime does not register", what, name)
		}
	}
	if strings.Contains(expr, "controller=") && !strings.Contains(expr, `controller="`+nlbpolicy.ControllerName+`"`) {
		t.Errorf("%s selects another controller than %q: %s", what, nlbpolicy.ControllerName, expr)
	}
}
