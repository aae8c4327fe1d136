package standin_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/standin"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
)

func topic(name, cluster string, partitions, replicas int64) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"spec": map[string]any{"partitions": partitions, "replicas": replicas},
	}}
	u.SetGroupVersionKind(kubeapi.KafkaTopic(kubeapi.KafkaTopicVersions[0]))
	u.SetNamespace("default")
	u.SetName(name)
	if cluster != "" {
		u.SetLabels(map[string]string{kubeapi.StrimziClusterLabel: cluster})
	}
	return u
}

// readyAt waits until the topic's status is at its generation and returns
// its Ready condition.
func readyAt(t *testing.T, c client.Client, name string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		u := topic(name, "", 0, 0)
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(u), u); err != nil {
			t.Fatal(err)
		}
		observed, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		if observed == u.GetGeneration() && len(conds) > 0 {
			return conds[0].(map[string]any)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("topic %s never reconciled at its generation", name)
	return nil
}

// TestTopicOperatorStandIn: the stand-in does what the real Topic Operator
// does with what the product writes: only its cluster's topics, Ready at
// the current generation, partitions grow, a decrease and a
// replication-factor change are refused with Ready=False reason
// NotSupported and Strimzi's messages, and a refused topic recovers when
// the spec is put back.
func TestTopicOperatorStandIn(t *testing.T) {
	p := localplane.New(t, localplane.Options{NoAWS: true})
	c, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	op := standin.StartTopicOperator(c, "telemetry")
	defer op.Stop()

	other := topic("other", "another-cluster", 3, 3)
	mine := topic("mine", "telemetry", 3, 3)
	for _, u := range []*unstructured.Unstructured{other, mine} {
		if err := c.Create(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	if cond := readyAt(t, c, "mine"); cond["status"] != "True" {
		t.Fatalf("Ready: %v", cond)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(other), other); err != nil {
		t.Fatal(err)
	}
	if _, has := other.Object["status"]; has || len(other.GetFinalizers()) > 0 {
		t.Fatalf("another cluster's topic was handled: %v, finalizers %v", other.Object["status"], other.GetFinalizers())
	}

	edit := func(partitions, replicas int64) {
		t.Helper()
		if err := c.Get(ctx, client.ObjectKeyFromObject(mine), mine); err != nil {
			t.Fatal(err)
		}
		mine.Object["spec"] = map[string]any{"partitions": partitions, "replicas": replicas}
		if err := c.Update(ctx, mine); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		partitions, replicas int64
		status, reason, msg  string
	}{
		{6, 3, "True", "", ""},
		{2, 3, "False", "NotSupported", "Decreasing partitions not supported"},
		{6, 3, "True", "", ""},
		{6, 2, "False", "NotSupported", "Replication factor change not supported, but required for partitions [0, 1, 2, 3, 4, 5]"},
		{6, 3, "True", "", ""},
	} {
		edit(tc.partitions, tc.replicas)
		cond := readyAt(t, c, "mine")
		got := fmt.Sprintf("%v %v %v", cond["status"], cond["reason"], cond["message"])
		want := fmt.Sprintf("%v %v %v", tc.status, map[bool]any{true: nil, false: tc.reason}[tc.reason == ""], map[bool]any{true: nil, false: tc.msg}[tc.msg == ""])
		if got != want {
			t.Fatalf("partitions %d replicas %d: Ready %s, want %s", tc.partitions, tc.replicas, got, want)
		}
	}
}
