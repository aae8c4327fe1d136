// Package standin holds small stand-ins for third-party controllers that
// cannot run on a test machine: they produce the effects the product
// depends on (status fields, finalizers, provisioned load balancers, topics
// in a real Kafka-protocol broker), each saying what it does not model.
// Tests and the demo use them; nothing in the product does.
package standin

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
)

// TopicFinalizer is the Strimzi Topic Operator's finalizer.
const TopicFinalizer = kubeapi.TopicOperatorFinalizer

// TopicOperator stands in for Strimzi's (unidirectional) Topic Operator,
// whose Java cannot run here, over a real Kafka-protocol broker: a cluster of
// three brokers in memory (franz-go's kfake) on loopback, which clients
// (franz-go, librdkafka's kcat, pmacct) produce to and consume from. Like the
// real operator it handles only KafkaTopics labelled with its own
// strimzi.io/cluster; adds its finalizer; creates the topic in the broker
// with the spec's partitions, replicas and config, and reports Ready, at
// status.observedGeneration with the topic name, only once the broker has
// it; grows partitions; sets changed config; refuses, with Ready=False,
// reason NotSupported and Strimzi's messages, a partition decrease and (as
// without Cruise Control) a replication-factor change, keeping the topic as
// it was until the spec is put back; gives a second KafkaTopic for a topic
// another one manages Ready=False, reason ResourceConflict, leaving the topic
// alone; reports a broker's refusal as reason KafkaError; and on deletion
// deletes the topic in the broker before it releases its finalizer (only the
// managing KafkaTopic's).
//
// Not modelled: config values (kfake takes any), config keys removed from
// the spec (Strimzi resets them to the broker's default; here they stay),
// Cruise Control, topic-name changes, paused reconciliation, unmanaged
// topics, and the broker's persistence (its topics live as long as the
// stand-in). It polls rather than watches, to stay small.
type TopicOperator struct {
	c       client.Client
	cluster string
	cancel  context.CancelFunc
	done    chan struct{}
	kafka   *kfake.Cluster
	admin   *kadm.Client
}

// StartTopicOperator starts the broker and runs the stand-in for the Kafka
// cluster named cluster (the strimzi.io/cluster label it handles) until
// Stop.
func StartTopicOperator(c client.Client, cluster string) *TopicOperator {
	kafka, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.ListenFn(func(network, _ string) (net.Listener, error) {
		return net.Listen(network, "127.0.0.1:0") // loopback only
	}))
	if err != nil {
		panic(fmt.Sprintf("starting the in-memory Kafka broker: %v", err))
	}
	// Metadata fresh at each look: kgo answers a topic's metadata from what
	// it read up to MetadataMinAge (5 s) ago, where a topic just created is
	// still unknown.
	admin, err := kadm.NewOptClient(kgo.SeedBrokers(kafka.ListenAddrs()...), kgo.MetadataMinAge(10*time.Millisecond))
	if err != nil {
		kafka.Close()
		panic(fmt.Sprintf("a client of the in-memory Kafka broker: %v", err))
	}
	ctx, cancel := context.WithCancel(context.Background())
	op := &TopicOperator{c: c, cluster: cluster, cancel: cancel, done: make(chan struct{}), kafka: kafka, admin: admin}
	go every(ctx, op.done, op.reconcileAll)
	return op
}

// Brokers are the bootstrap addresses of the Kafka cluster the topics are in.
func (op *TopicOperator) Brokers() []string { return op.kafka.ListenAddrs() }

// Stop ends the stand-in, as if the operator were down (finalizers stay),
// and its broker.
func (op *TopicOperator) Stop() {
	op.cancel()
	<-op.done
	op.admin.Close()
	op.kafka.Close()
}

func (op *TopicOperator) reconcileAll(ctx context.Context) {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(kubeapi.KafkaTopic(kubeapi.KafkaTopicVersions[0]).GroupVersion().WithKind("KafkaTopicList"))
	if err := op.c.List(ctx, list, client.MatchingLabels{kubeapi.StrimziClusterLabel: op.cluster}); err != nil {
		return
	}
	managers := map[string]*unstructured.Unstructured{} // topic name -> the oldest KafkaTopic naming it
	for i := range list.Items {
		t := &list.Items[i]
		name := topicName(t)
		if m, ok := managers[name]; !ok || older(t, m) {
			managers[name] = t
		}
	}
	for i := range list.Items {
		t := &list.Items[i]
		op.reconcile(ctx, t, managers[topicName(t)])
	}
}

// older says whether a was created before b (by name when at the same second).
func older(a, b *unstructured.Unstructured) bool {
	ta, tb := a.GetCreationTimestamp(), b.GetCreationTimestamp()
	if !ta.Equal(&tb) {
		return ta.Before(&tb)
	}
	return a.GetNamespace()+"/"+a.GetName() < b.GetNamespace()+"/"+b.GetName()
}

// topicName is the Kafka topic a KafkaTopic manages.
func topicName(t *unstructured.Unstructured) string {
	if name, _, _ := unstructured.NestedString(t.Object, "spec", "topicName"); name != "" {
		return name
	}
	return t.GetName()
}

func (op *TopicOperator) reconcile(ctx context.Context, t, manager *unstructured.Unstructured) {
	name := topicName(t)
	managing := manager == nil || manager.GetUID() == t.GetUID()
	if t.GetDeletionTimestamp() != nil {
		if f := t.GetFinalizers(); slices.Contains(f, TopicFinalizer) {
			if managing {
				if _, err := op.admin.DeleteTopic(ctx, name); err != nil && !errors.Is(err, kerr.UnknownTopicOrPartition) {
					return // the finalizer stays until the broker has deleted the topic
				}
			}
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
	current := observed == t.GetGeneration()
	if current && readyOf(t)["status"] == "True" {
		return
	}
	ready := map[string]any{"type": "Ready", "status": "True", "lastTransitionTime": time.Now().UTC().Format(time.RFC3339)}
	if !managing {
		ready["status"], ready["reason"] = "False", "ResourceConflict"
		ready["message"] = fmt.Sprintf("Managed by Ref{namespace='%s', name='%s'}", manager.GetNamespace(), manager.GetName())
	} else if reason, message := op.converge(ctx, t, name); reason != "" {
		ready["status"], ready["reason"], ready["message"] = "False", reason, message
	}
	if was := readyOf(t); current && was["status"] == ready["status"] && was["reason"] == ready["reason"] && was["message"] == ready["message"] {
		return // said already: a refusal is retried, not re-reported
	}
	t.Object["status"] = map[string]any{"observedGeneration": t.GetGeneration(), "topicName": name, "topicId": string(t.GetUID()),
		"conditions": []any{ready}}
	_ = op.c.Status().Update(ctx, t)
}

// converge makes the broker's topic what the spec says, or says why not
// (a reason and Strimzi's message).
func (op *TopicOperator) converge(ctx context.Context, t *unstructured.Unstructured, name string) (reason, message string) {
	partitions, replicas := specInt(t, "partitions", 1), specInt(t, "replicas", 1)
	configs := map[string]*string{}
	if raw, found, _ := unstructured.NestedMap(t.Object, "spec", "config"); found {
		for k, v := range raw {
			s := fmt.Sprint(v)
			configs[k] = &s
		}
	}
	details, err := op.admin.ListTopics(ctx, name)
	if err != nil {
		return "KafkaError", err.Error()
	}
	if !details.Has(name) {
		resp, err := op.admin.CreateTopic(ctx, int32(partitions), int16(replicas), configs, name)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			return "KafkaError", fmt.Sprintf("creating topic %s: %v", name, err)
		}
		return "", ""
	}
	have := details[name].Partitions
	switch haveReplicas := int64(have.NumReplicas()); {
	case partitions < int64(len(have)):
		return "NotSupported", "Decreasing partitions not supported"
	case replicas != haveReplicas:
		var all []string
		for i := int64(0); i < max(partitions, int64(len(have))); i++ {
			all = append(all, strconv.FormatInt(i, 10))
		}
		return "NotSupported", "Replication factor change not supported, but required for partitions [" + strings.Join(all, ", ") + "]"
	case partitions > int64(len(have)):
		if _, err := op.admin.CreatePartitions(ctx, int(partitions)-len(have), name); err != nil {
			return "KafkaError", fmt.Sprintf("adding partitions to %s: %v", name, err)
		}
	}
	var alter []kadm.AlterConfig
	for _, k := range slices.Sorted(maps.Keys(configs)) {
		alter = append(alter, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: configs[k]})
	}
	if len(alter) > 0 {
		if _, err := op.admin.AlterTopicConfigs(ctx, alter, name); err != nil {
			return "KafkaError", fmt.Sprintf("changing the config of %s: %v", name, err)
		}
	}
	return "", ""
}

// readyOf is a KafkaTopic's Ready condition (nil without one).
func readyOf(t *unstructured.Unstructured) map[string]any {
	conds, _, _ := unstructured.NestedSlice(t.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Ready" {
			return m
		}
	}
	return nil
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
