package standin_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
	var ready map[string]any
	eventually(t, "topic "+name+" reconciled at its generation", func() bool {
		u := topic(name, "", 0, 0)
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(u), u); err != nil {
			t.Fatal(err)
		}
		observed, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		if observed == u.GetGeneration() && len(conds) > 0 {
			ready = conds[0].(map[string]any)
		}
		return ready != nil
	})
	return ready
}

// eventually waits up to 10 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTopicOperatorStandIn: the stand-in does what the real Topic Operator
// does with what the product writes, in one plane.
func TestTopicOperatorStandIn(t *testing.T) {
	p := localplane.New(t, localplane.Options{NoAWS: true})
	c, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	op := standin.StartTopicOperator(c, "telemetry")
	defer op.Stop()
	t.Run("generations and refusals", func(t *testing.T) { generationsAndRefusals(t, c, op) })
	t.Run("the broker", func(t *testing.T) { theBroker(t, c, op) })
}

// generationsAndRefusals: only its cluster's topics, Ready at the current
// generation, partitions grow, a decrease and a replication-factor change
// are refused with Ready=False reason NotSupported and Strimzi's messages,
// and a refused topic recovers when the spec is put back.
func generationsAndRefusals(t *testing.T, c client.Client, op *standin.TopicOperator) {
	ctx := context.Background()

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
		// The broker holds what was accepted: a refused change leaves it.
		if parts, reps := brokerTopic(t, op, "mine"); parts != 6 || reps != 3 {
			t.Fatalf("partitions %d replicas %d: the broker's topic has %d partitions of %d replicas, want 6 of 3",
				tc.partitions, tc.replicas, parts, reps)
		}
	}
}

// brokerTopic reads a topic's partitions and replicas from the broker
// (-1, -1 when it has no such topic).
func brokerTopic(t *testing.T, op *standin.TopicOperator, name string) (partitions, replicas int) {
	t.Helper()
	admin, err := kadm.NewOptClient(kgo.SeedBrokers(op.Brokers()...))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	details, err := admin.ListTopics(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	if !details.Has(name) {
		return -1, -1
	}
	return len(details[name].Partitions), details[name].Partitions.NumReplicas()
}

// theBroker: the topics are in a real Kafka-protocol broker that a Kafka
// client produces to and consumes from; a second KafkaTopic for a managed
// topic is refused as Strimzi refuses it and leaves the topic alone;
// deleting the managing KafkaTopic deletes the topic before the finalizer
// goes.
func theBroker(t *testing.T, c client.Client, op *standin.TopicOperator) {
	ctx := context.Background()
	flows := topic("pop-ams", "telemetry", 3, 3)
	flows.Object["spec"].(map[string]any)["config"] = map[string]any{"retention.ms": "3600000"}
	if err := c.Create(ctx, flows); err != nil {
		t.Fatal(err)
	}
	if cond := readyAt(t, c, "pop-ams"); cond["status"] != "True" {
		t.Fatalf("Ready: %v", cond)
	}
	if parts, reps := brokerTopic(t, op, "pop-ams"); parts != 3 || reps != 3 {
		t.Fatalf("the broker's topic: %d partitions of %d replicas, want 3 of 3", parts, reps)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(op.Brokers()...), kgo.ConsumeTopics("pop-ams"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(pctx, &kgo.Record{Topic: "pop-ams", Value: []byte("flow")}).FirstErr(); err != nil {
		t.Fatalf("producing: %v", err)
	}
	fetches := cl.PollRecords(pctx, 1)
	if err := fetches.Err(); err != nil || len(fetches.Records()) != 1 || string(fetches.Records()[0].Value) != "flow" {
		t.Fatalf("consuming: %v, %v", fetches.Records(), err)
	}

	second := topic("pop-ams-again", "telemetry", 6, 3)
	second.Object["spec"].(map[string]any)["topicName"] = "pop-ams"
	if err := c.Create(ctx, second); err != nil {
		t.Fatal(err)
	}
	cond := readyAt(t, c, "pop-ams-again")
	if cond["status"] != "False" || cond["reason"] != "ResourceConflict" || cond["message"] != "Managed by Ref{namespace='default', name='pop-ams'}" {
		t.Fatalf("a second KafkaTopic for the topic: %v", cond)
	}
	if parts, _ := brokerTopic(t, op, "pop-ams"); parts != 3 {
		t.Fatalf("the second KafkaTopic changed the topic: %d partitions", parts)
	}
	if err := c.Delete(ctx, second); err != nil {
		t.Fatal(err)
	}
	waitGone(t, c, second)
	if parts, _ := brokerTopic(t, op, "pop-ams"); parts != 3 {
		t.Fatal("deleting the conflicting KafkaTopic deleted the topic another manages")
	}
	if err := c.Delete(ctx, flows); err != nil {
		t.Fatal(err)
	}
	waitGone(t, c, flows)
	if parts, _ := brokerTopic(t, op, "pop-ams"); parts != -1 {
		t.Fatalf("the topic outlived its KafkaTopic: %d partitions", parts)
	}
}

// waitGone waits until the KafkaTopic is deleted (its finalizer released).
func waitGone(t *testing.T, c client.Client, u *unstructured.Unstructured) {
	t.Helper()
	eventually(t, "KafkaTopic "+u.GetName()+" deleted", func() bool {
		return apierrors.IsNotFound(c.Get(context.Background(), client.ObjectKeyFromObject(u), u.DeepCopy()))
	})
}
