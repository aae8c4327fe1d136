package nlbpolicy

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// Metrics are the controller's Prometheus metrics, in addition to
// controller-runtime's reconcile counts, errors and durations.
type Metrics struct {
	writes       *prometheus.CounterVec
	invalid      prometheus.Counter
	orphans      prometheus.Counter
	managed      prometheus.Gauge
	objects      prometheus.Gauge
	rulesAvoided prometheus.Gauge
	awsRequests  *prometheus.CounterVec
	unenforced   prometheus.Gauge

	mu       sync.Mutex
	services map[types.NamespacedName]serviceStats
	// pending are the Services whose last acknowledgement says their
	// current sources are not enforced.
	pending map[types.NamespacedName]bool
}

type serviceStats struct{ objects, rulesAvoided int }

// NewMetrics registers the metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "telemetry_nlbpolicy_api_writes_total",
			Help: "API writes by kind and operation; zero in steady state."}, []string{"kind", "operation"}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{Name: "telemetry_nlbpolicy_invalid_inputs_total",
			Help: "Invalid source ranges, health-check CIDRs or selectors reported (each once per change)."}),
		orphans: prometheus.NewCounter(prometheus.CounterOpts{Name: "telemetry_nlbpolicy_orphans_deleted_total",
			Help: "Generated objects deleted by the orphan sweep because their Service is gone."}),
		managed: prometheus.NewGauge(prometheus.GaugeOpts{Name: "telemetry_nlbpolicy_managed_services",
			Help: "NLB Services whose policies the controller manages."}),
		objects: prometheus.NewGauge(prometheus.GaugeOpts{Name: "telemetry_nlbpolicy_objects",
			Help: "GlobalNetworkPolicies and GlobalNetworkSets generated."}),
		rulesAvoided: prometheus.NewGauge(prometheus.GaugeOpts{Name: "telemetry_nlbpolicy_security_group_rules_avoided",
			Help: "Security-group rules the AWS Load Balancer Controller would have written for the managed Services: sources x ports + health-check subnets x ports."}),
		awsRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "telemetry_nlbpolicy_aws_requests_total",
			Help: "AWS API requests sent (each attempt, retries included), by operation: the load balancer lookups behind health-check CIDRs and default sources."},
			[]string{"api"}),
		unenforced: prometheus.NewGauge(prometheus.GaugeOpts{Name: "telemetry_nlbpolicy_unenforced_services",
			Help: "Services that opted in whose current sources the controller does not acknowledge as enforced (waiting, refused, failing): their applies wait, and the AWS rules stay as they were."}),
		services: map[types.NamespacedName]serviceStats{},
		pending:  map[types.NamespacedName]bool{},
	}
	reg.MustRegister(m.writes, m.invalid, m.orphans, m.managed, m.objects, m.rulesAvoided, m.awsRequests, m.unenforced)
	return m
}

func (m *Metrics) write(kind, op string) { m.writes.WithLabelValues(kind, op).Inc() }

func (m *Metrics) awsRequest(api string) { m.awsRequests.WithLabelValues(api).Inc() }

// observe records a managed Service's figures.
func (m *Metrics) observe(svc *corev1.Service, objects, sources, healthCheckCIDRs int) {
	protocolsPerPort := map[int32]int{}
	for _, p := range svc.Spec.Ports {
		protocolsPerPort[p.Port]++
	}
	var perPort []int
	for _, n := range protocolsPerPort {
		perPort = append(perPort, n)
	}
	stats := serviceStats{
		objects:      objects,
		rulesAvoided: lbc.PerSourceRules(sources, perPort, healthCheckCIDRs),
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.services[types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}] = stats
	m.refresh()
}

func (m *Metrics) forget(key types.NamespacedName) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.services, key)
	delete(m.pending, key)
	m.refresh()
}

// acknowledged records whether a Service's acknowledgement says its current
// sources are enforced.
func (m *Metrics) acknowledged(key types.NamespacedName, enforced bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if enforced {
		delete(m.pending, key)
	} else {
		m.pending[key] = true
	}
	m.unenforced.Set(float64(len(m.pending)))
}

func (m *Metrics) refresh() {
	objects, rules := 0, 0
	for _, s := range m.services {
		objects += s.objects
		rules += s.rulesAvoided
	}
	m.managed.Set(float64(len(m.services)))
	m.objects.Set(float64(objects))
	m.rulesAvoided.Set(float64(rules))
	m.unenforced.Set(float64(len(m.pending)))
}
