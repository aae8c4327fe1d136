// Package standin holds small stand-ins for third-party controllers that
// cannot run on a test machine: they produce only the visible effects the
// product depends on (status fields, finalizers, provisioned load
// balancers), never the controllers' real work. Tests and the demo use
// them; nothing in the product does.
package standin

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
)

// TopicFinalizer is the Strimzi Topic Operator's finalizer.
const TopicFinalizer = kubeapi.TopicOperatorFinalizer

// TopicOperator stands in for the visible effects of Strimzi's
// (unidirectional) Topic Operator on KafkaTopics, which cannot run here
// (Java). Like the real one it handles only topics labelled with its own
// strimzi.io/cluster; adds its finalizer and releases it on deletion;
// reports at status.observedGeneration, with the topic name; grows
// partitions; and refuses, with Ready=False, reason NotSupported and
// Strimzi's messages, a partition decrease and (as without Cruise Control) a
// replication-factor change, keeping the topic as it was until the spec is
// put back.
//
// Not modelled: Kafka itself (topics exist only in this stand-in's memory,
// so config values are not validated), Cruise Control, topic-name changes,
// paused reconciliation, and two KafkaTopics for one Kafka topic. It polls
// rather than watches, to stay small.
type TopicOperator struct {
	c       client.Client
	cluster string
	cancel  context.CancelFunc
	done    chan struct{}
	// kafka is the stand-in's Kafka: partitions and replicas of each topic,
	// by namespace/name of its KafkaTopic.
	kafka map[string]kafkaTopic
}

type kafkaTopic struct{ partitions, replicas int64 }

// StartTopicOperator runs the stand-in for the Kafka cluster named cluster
// (the strimzi.io/cluster label it handles) until Stop.
func StartTopicOperator(c client.Client, cluster string) *TopicOperator {
	ctx, cancel := context.WithCancel(context.Background())
	op := &TopicOperator{c: c, cluster: cluster, cancel: cancel, done: make(chan struct{}), kafka: map[string]kafkaTopic{}}
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
	if err := op.c.List(ctx, list, client.MatchingLabels{kubeapi.StrimziClusterLabel: op.cluster}); err != nil {
		return
	}
	for i := range list.Items {
		op.reconcile(ctx, &list.Items[i])
	}
}

func (op *TopicOperator) reconcile(ctx context.Context, t *unstructured.Unstructured) {
	key := t.GetNamespace() + "/" + t.GetName()
	if t.GetDeletionTimestamp() != nil {
		if f := t.GetFinalizers(); slices.Contains(f, TopicFinalizer) {
			t.SetFinalizers(slices.DeleteFunc(f, func(s string) bool { return s == TopicFinalizer }))
			if op.c.Update(ctx, t) == nil {
				delete(op.kafka, key) // the topic is deleted in Kafka
			}
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
	want := kafkaTopic{partitions: specInt(t, "partitions", 1), replicas: specInt(t, "replicas", 1)}
	ready := map[string]any{"type": "Ready", "status": "True", "lastTransitionTime": time.Now().UTC().Format(time.RFC3339)}
	have, exists := op.kafka[key]
	switch {
	case !exists:
		op.kafka[key] = want
	case want.partitions < have.partitions:
		ready["status"], ready["reason"], ready["message"] = "False", "NotSupported", "Decreasing partitions not supported"
	case want.replicas != have.replicas:
		var all []string
		for i := int64(0); i < max(want.partitions, have.partitions); i++ {
			all = append(all, strconv.FormatInt(i, 10))
		}
		ready["status"], ready["reason"] = "False", "NotSupported"
		ready["message"] = "Replication factor change not supported, but required for partitions [" + strings.Join(all, ", ") + "]"
	default:
		op.kafka[key] = want // partitions grow
	}
	status := map[string]any{"observedGeneration": t.GetGeneration(), "topicName": name, "topicId": string(t.GetUID()),
		"conditions": []any{ready}}
	t.Object["status"] = status
	_ = op.c.Status().Update(ctx, t)
}

// specInt reads an integer of the spec, with the broker's default when unset.
func specInt(t *unstructured.Unstructured, field string, def int64) int64 {
	if v, found, _ := unstructured.NestedFieldNoCopy(t.Object, "spec", field); found {
		switch n := v.(type) {
		case int64:
			return n
		case float64:
			return int64(n)
		}
	}
	return def
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
