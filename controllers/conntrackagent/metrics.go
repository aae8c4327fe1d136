package conntrackagent

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the agent's Prometheus metrics.
type Metrics struct {
	deleted   *prometheus.CounterVec
	found     *prometheus.CounterVec
	passes    *prometheus.CounterVec
	duration  prometheus.Histogram
	scanned   prometheus.Counter
	lastScan  prometheus.Gauge
	vanished  prometheus.Counter
	failed    *prometheus.CounterVec
	errors    prometheus.Counter
	dataplane *prometheus.GaugeVec
	revoked   *prometheus.CounterVec
	// The index of UDP entries (index.go).
	indexEntries  prometheus.Gauge
	indexComplete prometheus.Gauge
	eventsLost    prometheus.Counter
	passSource    *prometheus.CounterVec
	// changeToDelete: from a change reaching the agent to the first
	// deletion it caused.
	changeToDelete prometheus.Histogram
}

// NewMetrics registers the metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "telemetry_conntrack_entries_deleted_total",
			Help: "Stale UDP conntrack entries the kernel deleted (confirmed by its answer), by Service."}, []string{"namespace", "service"}),
		found: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "telemetry_conntrack_stale_entries_found_total",
			Help: "Stale UDP conntrack entries found (deleted or, in dry run, not), by Service."}, []string{"namespace", "service"}),
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "telemetry_conntrack_passes_total",
			Help: "Passes over the conntrack table, by trigger."}, []string{"trigger"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "telemetry_conntrack_pass_duration_seconds",
			Help: "Duration of a pass (scan and deletions).", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}),
		scanned: prometheus.NewCounter(prometheus.CounterOpts{Name: "telemetry_conntrack_entries_scanned_total",
			Help: "UDP conntrack entries read."}),
		lastScan: prometheus.NewGauge(prometheus.GaugeOpts{Name: "telemetry_conntrack_last_pass_entries_scanned",
			Help: "UDP conntrack entries read by the last pass."}),
		vanished: prometheus.NewCounter(prometheus.CounterOpts{Name: "telemetry_conntrack_entries_vanished_total",
			Help: "Stale entries that were gone by the time they were deleted (timed out, deleted by kube-proxy)."}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "telemetry_conntrack_delete_failures_total",
			Help: "Stale UDP conntrack entries the kernel refused to delete (or not tried, the pass cut short), by Service."}, []string{"namespace", "service"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "telemetry_conntrack_errors_total",
			Help: "Failed scans and passes with failed deletions."}),
	}
	m.dataplane = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "telemetry_conntrack_dataplane_info",
		Help: "The node's service proxy as the agent found it (1 for the current one); acts=false: the agent runs no pass (IPVS)."},
		[]string{"mode", "acts"})
	m.revoked = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "telemetry_conntrack_connections_revoked_total",
		Help: "Connections (TCP and UDP entries) the kernel deleted because their source was removed from the Service's allowed set."},
		[]string{"namespace", "service"})
	m.indexEntries = prometheus.NewGauge(prometheus.GaugeOpts{Name: "telemetry_conntrack_index_entries",
		Help: "UDP conntrack entries in the agent's index (kept from conntrack events), after the last pass."})
	m.indexComplete = prometheus.NewGauge(prometheus.GaugeOpts{Name: "telemetry_conntrack_index_complete",
		Help: "1 when the index is complete (triggered passes read it instead of the kernel's table), 0 when not (no events, events lost, over --index-max-entries) until a full pass rebuilds it."})
	m.eventsLost = prometheus.NewCounter(prometheus.CounterOpts{Name: "telemetry_conntrack_events_lost_total",
		Help: "Times the kernel dropped conntrack events for the agent (its socket buffer overflowed): the index is rebuilt by the next full pass."})
	m.passSource = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "telemetry_conntrack_pass_reads_total",
		Help: "Passes by where they read entries: index (memory), kernel (a dump: the kernel walks its whole table), lookup (rechecks, one GET per entry)."},
		[]string{"source"})
	m.changeToDelete = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "telemetry_conntrack_change_to_delete_seconds",
		Help:    "From a Service or EndpointSlice change reaching the agent to the kernel's first deletion of that Service's stale entries it caused (debounce and pass): the agent's share of a flow's recovery, to which kube-proxy's rule and the flow's next packet add.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 12)})
	reg.MustRegister(m.indexEntries, m.indexComplete, m.eventsLost, m.passSource, m.changeToDelete)
	reg.MustRegister(m.revoked, m.deleted, m.found, m.passes, m.duration, m.scanned, m.lastScan, m.vanished, m.failed, m.errors, m.dataplane)
	return m
}

func (m *Metrics) pass(trigger string, res PassResult, dryRun bool) {
	m.passes.WithLabelValues(trigger).Inc()
	m.duration.Observe(res.Duration.Seconds())
	m.scanned.Add(float64(res.Scanned))
	m.lastScan.Set(float64(res.Scanned))
	m.vanished.Add(float64(res.Vanished))
	for svc, r := range res.PerService {
		m.found.WithLabelValues(svc.Namespace, svc.Name).Add(float64(r.Found))
		if !dryRun {
			m.deleted.WithLabelValues(svc.Namespace, svc.Name).Add(float64(r.Deleted))
			if r.Failed > 0 {
				m.failed.WithLabelValues(svc.Namespace, svc.Name).Add(float64(r.Failed))
			}
		}
	}
}

func (m *Metrics) setDataplane(d Dataplane) {
	m.dataplane.Reset()
	m.dataplane.WithLabelValues(d.Mode, strconv.FormatBool(d.Acts())).Set(1)
}
