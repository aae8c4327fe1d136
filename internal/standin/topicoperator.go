// Package standin holds small stand-ins for third-party controllers that
// cannot run on a test machine: they produce only the visible effects the
// product depends on (status fields, finalizers, provisioned load
// balancers), never the controllers' real work. Tests and the demo use
// them; nothing in the product does.
package standin

import (
	"context"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
)

// TopicFinalizer is the Strimzi Topic Operator's finalizer.
const TopicFinalizer = "strimzi.io/topic-operator"

// TopicOperator stands in for the Strimzi Topic Operator's visible effects on
// KafkaTopics: it adds its finalizer, reports Ready=True at the current
// generation with the topic name, and releases the finalizer on deletion.
// It polls rather than watches, to stay small.
type TopicOperator struct {
	c      client.Client
	cancel context.CancelFunc
	done   chan struct{}
}

// StartTopicOperator runs the stand-in until Stop.
func StartTopicOperator(c client.Client) *TopicOperator {
	ctx, cancel := context.WithCancel(context.Background())
	op := &TopicOperator{c: c, cancel: cancel, done: make(chan struct{})}
	go every(ctx, op.done, op.reconcileAll)
	return op
}

// Stop ends the stand-in, as if the operator were down: finalizers stay.
func (op *TopicOperator) Stop() {
	op.cancel()
	<-op.done
}

func (op *TopicOperator) reconcileAll(ctx context.Context) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(kubeapi.KafkaTopic(kubeapi.KafkaTopicVersions[0]).GroupVersion().WithKind("KafkaTopicList"))
	if err := op.c.List(ctx, list); err != nil {
		return
	}
	for i := range list.Items {
		op.reconcile(ctx, &list.Items[i])
	}
}

func (op *TopicOperator) reconcile(ctx context.Context, t *unstructured.Unstructured) {
	if t.GetDeletionTimestamp() != nil {
		if f := t.GetFinalizers(); slices.Contains(f, TopicFinalizer) {
			t.SetFinalizers(slices.DeleteFunc(f, func(s string) bool { return s == TopicFinalizer }))
			_ = op.c.Update(ctx, t)
		}
		return
	}
	if !slices.Contains(t.GetFinalizers(), TopicFinalizer) {
		t.SetFinalizers(append(t.GetFinalizers(), TopicFinalizer))
		if err := op.c.Update(ctx, t); err != nil {
			return
		}
	}
	observed, _, _ := unstructured.NestedInt64(t.Object, "status", "observedGeneration")
	if observed == t.GetGeneration() {
		return
	}
	name, _, _ := unstructured.NestedString(t.Object, "spec", "topicName")
	if name == "" {
		name = t.GetName()
	}
	t.Object["status"] = map[string]any{
		"observedGeneration": t.GetGeneration(),
		"topicName":          name,
		"topicId":            string(t.GetUID()),
		"conditions": []any{map[string]any{
			"type": "Ready", "status": "True",
			"lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
		}},
	}
	_ = op.c.Status().Update(ctx, t)
}

// pollInterval is how often a stand-in looks at the cluster.
const pollInterval = 200 * time.Millisecond

// every runs fn every pollInterval until ctx ends, then closes done.
func every(ctx context.Context, done chan struct{}, fn func(context.Context)) {
	defer close(done)
	for {
		fn(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(pollInterval):
		}
	}
}
