package provider

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// siteSpec is a site in plain Go: what telemetry_site writes into its
// KafkaTopic and reads back from it. Conversions here are pure, so the
// mapping is table-tested without a server.
type siteSpec struct {
	Name, Cluster, Namespace, TopicPrefix string
	ExpectedFlowsPerSecond                int64
	Partitions, Replicas, MinInsync       int64
	Retention                             time.Duration
	FlowSources                           []string
	Labels                                map[string]string
}

// Sizing rules of thumb, shared with telemetry_kafka_sizing and documented
// there.
const (
	// defaultBytesPerFlow is the size of one flow record on Kafka (sfacctd's
	// JSON output of an sFlow/IPFIX record is a few hundred bytes).
	defaultBytesPerFlow = 500
	// partitionWriteBudget is the produce rate one partition is planned for:
	// a deliberately small share of the tens of MB/s a partition can take,
	// so consumers can catch up after a lag and a broker can be lost.
	partitionWriteBudget = 2.5 * 1000 * 1000 // bytes per second
	// maxFlowsPerSecond is the largest expected_flows_per_second accepted:
	// well above any one PoP, and small enough that no derived figure
	// overflows.
	maxFlowsPerSecond = 100_000_000
	// defaultFlowsPerSecond is expected_flows_per_second's default, and what
	// import reads from a KafkaTopic the provider never wrote.
	defaultFlowsPerSecond = 1000
	// maxPartitions is the largest partition count accepted, explicit or
	// derived: what maxFlowsPerSecond derives.
	maxPartitions int64 = maxFlowsPerSecond * defaultBytesPerFlow / partitionWriteBudget
	// flowsPerPartition is the rate one derived partition takes.
	flowsPerPartition = partitionWriteBudget / defaultBytesPerFlow
	// Topic defaults: three replicas, two of which must acknowledge a write,
	// so one broker may be down while acks=all producers still write.
	defaultReplicas  = 3
	defaultMinInsync = 2
	// defaultRetention is how long a site's flows are kept by default.
	defaultRetention = "24h"
	// telemetry_kafka_sizing's other defaults.
	defaultConsumerGroups = 1
	defaultDiskFillTarget = 0.6
)

// Figures of the rules above as the descriptions print them.
var (
	partitionBudgetText   = fmt.Sprintf("%g MB/s", partitionWriteBudget/1e6)
	flowsPerPartitionText = thousands(flowsPerPartition)
)

// thousands prints n with thousands separators (5,000).
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// derivePartitions is the default partition count of a site's topic:
// enough partitions that each takes at most partitionWriteBudget at the
// expected rate, and at least one.
func derivePartitions(flowsPerSecond int64) int64 {
	n := math.Ceil(float64(flowsPerSecond) * defaultBytesPerFlow / partitionWriteBudget)
	return max(1, int64(n))
}

// topicName is the Kafka topic (and KafkaTopic object) name of a site.
func (s siteSpec) topicName() string { return s.TopicPrefix + s.Name }

// reservedLabels are set by the provider itself; user labels may not use them.
var reservedLabels = []string{kubeapi.StrimziClusterLabel, annotations.ManagedBy, annotations.Site}

// topic renders the KafkaTopic at the given API version. Only the fields the
// provider owns are set: applied server-side, everything else on the object
// (status, finalizers, config keys others add) is left alone.
func (s siteSpec) topic(version string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(kubeapi.KafkaTopic(version))
	u.SetNamespace(s.Namespace)
	u.SetName(s.topicName())
	labels := map[string]string{}
	for k, v := range s.Labels {
		labels[k] = v
	}
	labels[kubeapi.StrimziClusterLabel] = s.Cluster
	labels[annotations.ManagedBy] = annotations.ProviderManager
	labels[annotations.Site] = s.Name
	u.SetLabels(labels)
	sources := slices.Clone(s.FlowSources)
	slices.Sort(sources)
	u.SetAnnotations(map[string]string{
		annotations.FlowSources:            strings.Join(sources, ","),
		annotations.ExpectedFlowsPerSecond: strconv.FormatInt(s.ExpectedFlowsPerSecond, 10),
	})
	u.Object["spec"] = map[string]any{
		"topicName":  s.topicName(),
		"partitions": s.Partitions,
		"replicas":   s.Replicas,
		"config": map[string]any{
			"retention.ms":        s.Retention.Milliseconds(),
			"min.insync.replicas": s.MinInsync,
		},
	}
	return u
}

// siteFromTopic reads a site back from its KafkaTopic. knownLabels are the
// user label keys to report (those in the prior state); nil means all labels
// that are not the provider's own (for import).
func siteFromTopic(u *unstructured.Unstructured, knownLabels []string) (siteSpec, error) {
	labels := u.GetLabels()
	ann := u.GetAnnotations()
	s := siteSpec{
		Name:      labels[annotations.Site],
		Cluster:   labels[kubeapi.StrimziClusterLabel],
		Namespace: u.GetNamespace(),
		Labels:    map[string]string{},
	}
	topic, _, _ := unstructured.NestedString(u.Object, "spec", "topicName")
	if topic == "" {
		topic = u.GetName()
	}
	if s.Cluster == "" {
		return s, fmt.Errorf("KafkaTopic %s/%s has no %s label, so no Topic Operator manages it: label it with its Kafka "+
			"cluster (kubectl label kafkatopic -n %s %s %s=<cluster>), then import it", u.GetNamespace(), u.GetName(),
			kubeapi.StrimziClusterLabel, u.GetNamespace(), u.GetName(), kubeapi.StrimziClusterLabel)
	}
	if s.Name == "" {
		// Made without telemetry_site: the site is the topic name without the
		// default prefix, or the whole name (with an empty prefix).
		s.Name = strings.TrimPrefix(topic, defaultTopicPrefix)
		if errs := validation.IsDNS1123Label(s.Name); len(errs) > 0 {
			return s, fmt.Errorf("KafkaTopic %s/%s has no %s label and its topic %q does not give a site name (%s): label it "+
				"with the site's name (kubectl label kafkatopic -n %s %s %s=<site>, where the topic is <prefix><site>), then "+
				"import it", u.GetNamespace(), u.GetName(), annotations.Site, topic, strings.Join(errs, "; "),
				u.GetNamespace(), u.GetName(), annotations.Site)
		}
	}
	prefix, ok := strings.CutSuffix(topic, s.Name)
	if !ok {
		return s, fmt.Errorf("KafkaTopic %s/%s: topic %q does not end with the site name %q", u.GetNamespace(), u.GetName(), topic, s.Name)
	}
	s.TopicPrefix = prefix
	s.Partitions = nestedInt(u.Object, "spec", "partitions")
	s.Replicas = nestedInt(u.Object, "spec", "replicas")
	s.MinInsync = nestedInt(u.Object, "spec", "config", "min.insync.replicas")
	s.Retention = time.Duration(nestedInt(u.Object, "spec", "config", "retention.ms")) * time.Millisecond
	// A topic the provider never wrote has no such annotation: the schema's
	// default, so that imported (and generated) configuration is valid.
	s.ExpectedFlowsPerSecond = defaultFlowsPerSecond
	if n, err := strconv.ParseInt(ann[annotations.ExpectedFlowsPerSecond], 10, 64); err == nil && n >= 1 && n <= maxFlowsPerSecond {
		s.ExpectedFlowsPerSecond = n
	}
	s.FlowSources = lbc.SplitList(ann[annotations.FlowSources]) // the same comma-separated format as the LBC's lists
	for k, v := range labels {
		if slices.Contains(reservedLabels, k) {
			continue
		}
		if knownLabels == nil || slices.Contains(knownLabels, k) {
			s.Labels[k] = v
		}
	}
	return s, nil
}

// nestedInt reads an integer that may be stored as a number or a string
// (Strimzi's config is free-form; people write "86400000").
func nestedInt(obj map[string]any, fields ...string) int64 {
	v, found, err := unstructured.NestedFieldNoCopy(obj, fields...)
	if !found || err != nil {
		return 0
	}
	switch n := v.(type) {
	case int64:
		return n
	case int:
		return int64(n)
	case float64:
		return int64(n)
	case string:
		i, _ := strconv.ParseInt(strings.TrimSpace(n), 10, 64)
		return i
	}
	return 0
}

// topicReady reports whether the Topic Operator has reconciled the current
// generation and reports Ready=True, with the condition's message otherwise.
func topicReady(u *unstructured.Unstructured) (bool, string) {
	observed := nestedInt(u.Object, "status", "observedGeneration")
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if !ok || m["type"] != "Ready" {
			continue
		}
		if m["status"] == "True" && observed == u.GetGeneration() {
			return true, ""
		}
		return false, fmt.Sprintf("Ready=%v (%v: %v), observedGeneration %d of %d", m["status"], m["reason"], m["message"], observed, u.GetGeneration())
	}
	return false, fmt.Sprintf("no Ready condition yet, observedGeneration %d of %d", observed, u.GetGeneration())
}

// topicRefused reports a topic the Topic Operator refused at its current
// generation (Ready=False, e.g. NotSupported for a partition decrease or a
// replication-factor change): waiting longer changes nothing.
func topicRefused(u *unstructured.Unstructured) (string, bool) {
	if nestedInt(u.Object, "status", "observedGeneration") != u.GetGeneration() {
		return "", false
	}
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Ready" && m["status"] == "False" {
			return fmt.Sprintf("Ready=False, %v: %v", m["reason"], m["message"]), true
		}
	}
	return "", false
}

// topicPrefixPattern keeps topic names valid both as Kafka topics and as
// Kubernetes object names.
var topicPrefixPattern = regexp.MustCompile(`^([a-z0-9][a-z0-9.-]*)?$`)
