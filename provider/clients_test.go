package provider

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	fakediscovery "k8s.io/client-go/discovery/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
)

// TestKafkaTopicVersionAskedOnce: the served KafkaTopic version is asked
// once per run, not once per site (100 sites made 100 discovery requests),
// and a cluster that serves none yet is asked again (an apply may install
// Strimzi before its sites).
func TestKafkaTopicVersionAskedOnce(t *testing.T) {
	fake := &fakediscovery.FakeDiscovery{Fake: &clienttesting.Fake{}}
	c := &clients{}
	if v, err := c.kafkaTopicVersion(fake); err != nil || v != "" {
		t.Fatalf("no Strimzi: %q, %v", v, err)
	}
	asked := len(fake.Actions())
	fake.Resources = []*metav1.APIResourceList{{GroupVersion: kubeapi.StrimziGroup + "/v1",
		APIResources: []metav1.APIResource{{Name: "kafkatopics", Kind: "KafkaTopic"}}}}
	for i := 0; i < 100; i++ {
		if v, err := c.kafkaTopicVersion(fake); err != nil || v != "v1" {
			t.Fatalf("site %d: %q, %v", i, v, err)
		}
	}
	if n := len(fake.Actions()) - asked; n != 1 {
		t.Errorf("%d discovery requests for 100 sites once Strimzi is served, want 1", n)
	}
}
