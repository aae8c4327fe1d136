package provider

import (
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
)

func TestDerivePartitions(t *testing.T) {
	for fps, want := range map[int64]int64{1: 1, 1000: 1, 5000: 1, 5001: 2, 12000: 3, 100000: 20} {
		if got := derivePartitions(fps); got != want {
			t.Errorf("derivePartitions(%d) = %d, want %d", fps, got, want)
		}
	}
}

func TestSiteTopicRoundTrip(t *testing.T) {
	s := siteSpec{Name: "ams01", Cluster: "telemetry", Namespace: "kafka", TopicPrefix: "sfacctd-flows-",
		ExpectedFlowsPerSecond: 12000, Partitions: 3, Replicas: 3, MinInsync: 2, Retention: 7 * 24 * time.Hour,
		FlowSources: []string{"198.51.100.0/24", "192.0.2.0/24"}, Labels: map[string]string{"team": "netops"}}
	u := s.topic("v1")
	if u.GetName() != "sfacctd-flows-ams01" || u.GetLabels()["strimzi.io/cluster"] != "telemetry" {
		t.Fatalf("topic metadata: %v %v", u.GetName(), u.GetLabels())
	}
	if ms := nestedInt(u.Object, "spec", "config", "retention.ms"); ms != 604800000 {
		t.Fatalf("retention.ms = %d", ms)
	}
	// Labels added by others are not reported when the state tracks others.
	labels := u.GetLabels()
	labels["added-by-someone"] = "x"
	u.SetLabels(labels)
	got, err := siteFromTopic(u, []string{"team"})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(s.FlowSources)
	if got.Name != s.Name || got.TopicPrefix != s.TopicPrefix || got.Partitions != 3 || got.Retention != s.Retention ||
		!slices.Equal(got.FlowSources, s.FlowSources) || len(got.Labels) != 1 || got.ExpectedFlowsPerSecond != 12000 {
		t.Fatalf("round trip: got %+v, want %+v", got, s)
	}
	// Import (no prior state) reports every label but the provider's own.
	if got, _ := siteFromTopic(u, nil); len(got.Labels) != 2 {
		t.Fatalf("import labels: %v", got.Labels)
	}
	// Config written by hand as strings still reads.
	u.Object["spec"].(map[string]any)["config"] = map[string]any{"retention.ms": "3600000", "min.insync.replicas": "1"}
	if got, _ := siteFromTopic(u, nil); got.Retention != time.Hour || got.MinInsync != 1 {
		t.Fatalf("string config: %+v", got)
	}
	delete(u.GetLabels(), "x")
	u.SetLabels(map[string]string{})
	if _, err := siteFromTopic(u, nil); err == nil {
		t.Fatal("a topic without the site label is not a site")
	}
}

func TestTopicReady(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{}}
	u.SetGeneration(2)
	if ok, why := topicReady(u); ok || why == "" {
		t.Fatal("no status is not ready")
	}
	u.Object["status"] = map[string]any{"observedGeneration": int64(1), "conditions": []any{map[string]any{"type": "Ready", "status": "True"}}}
	if ok, _ := topicReady(u); ok {
		t.Fatal("ready at an older generation is not ready")
	}
	u.Object["status"].(map[string]any)["observedGeneration"] = int64(2)
	if ok, _ := topicReady(u); !ok {
		t.Fatal("ready at the current generation")
	}
}

// TestSiteFromHandMadeTopic: a KafkaTopic the provider never wrote has no
// expected-flows annotation; what import reads (and -generate-config-out
// writes) is the schema's default, valid as written, not 0.
func TestSiteFromHandMadeTopic(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"partitions": int64(3), "replicas": int64(3),
		"config": map[string]any{"retention.ms": int64(86400000), "min.insync.replicas": int64(2)}}}}
	u.SetGroupVersionKind(kubeapi.KafkaTopic("v1"))
	u.SetNamespace("default")
	u.SetName("sfacctd-flows-hand01")
	u.SetLabels(map[string]string{kubeapi.StrimziClusterLabel: "telemetry"})
	for _, ann := range []map[string]string{nil, {annotations.ExpectedFlowsPerSecond: "0"}, {annotations.ExpectedFlowsPerSecond: "lots"}} {
		u.SetAnnotations(ann)
		got, err := siteFromTopic(u, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got.ExpectedFlowsPerSecond != defaultFlowsPerSecond {
			t.Errorf("annotations %v: expected_flows_per_second = %d, want the default %d", ann, got.ExpectedFlowsPerSecond, defaultFlowsPerSecond)
		}
	}
}
