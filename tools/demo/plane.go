package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/standin"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/tfdev"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
)

// The demo's first steps: the local plane with the real controllers, and terraform applying the example to it.

func (d *demo) startPlane() (err error) {
	t0 := time.Now()
	if d.plane, err = localplane.Start(d.ctx, localplane.Options{Nodes: 3}); err != nil {
		return err
	}
	d.onExit(func() { _ = d.plane.Stop() })
	if d.kube, err = d.plane.Client(); err != nil {
		return err
	}
	for _, ns := range []string{"kafka", "telemetry"} {
		if err := d.kube.Create(d.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}
	d.note("API server %s, AWS %s (VPC %s, node group %s), started in %v", d.plane.Config.Host, d.plane.AWS.Endpoint,
		d.plane.AWS.VPCID, d.plane.AWS.NodeSecurityGroupID, time.Since(t0).Round(100*time.Millisecond))
	d.topics = standin.StartTopicOperator(d.kube, "telemetry")
	d.onExit(d.topics.Stop)
	lbc, err := d.plane.StartLoadBalancerController(d.ctx, localplane.LBCOptions{})
	if err != nil {
		return err
	}
	d.onExit(lbc.Stop)
	d.note("the AWS Load Balancer Controller v3.5.0 (built from its pinned source) running against the API server and moto")
	d.note("a stand-in for Strimzi's Topic Operator (Java, not run here), creating the topics in a Kafka-protocol broker in memory")
	if d.stopController, err = d.startNLBPolicyController(); err != nil {
		return err
	}
	d.onExit(func() { d.stopController() })
	d.note("nlb-policy controller running against the API server and moto")
	return nil
}

func (d *demo) startNLBPolicyController() (func(), error) {
	stop, err := d.plane.StartNLBPolicyController(d.ctx, nil)
	if err != nil {
		return nil, err
	}
	return func() { _ = stop() }, nil
}

func (d *demo) terraformApply() (err error) {
	work, err := os.MkdirTemp("", "telemetry-demo-")
	if err != nil {
		return err
	}
	// The plane and everything in it are discarded at the end: only the
	// terraform working folder needs removing.
	d.onExit(func() { os.RemoveAll(work) })
	if d.tf, err = tfdev.Build(d.ctx, localplane.RepoRoot(), work); err != nil {
		return err
	}
	if err := tfdev.CopyDir(filepath.Join(localplane.RepoRoot(), "examples"), filepath.Join(work, "examples")); err != nil {
		return err
	}
	d.dir = filepath.Join(work, "examples", "complete")
	// The collectors' routing names the broker and where the collector pods
	// read it (the pipeline step runs them there).
	d.collectorConfig = filepath.Join(work, "collector-config")
	if err := os.Mkdir(d.collectorConfig, 0o755); err != nil {
		return err
	}
	d.vars = []string{"-var", "kubeconfig=" + d.plane.Kubeconfig, "-var", "aws_endpoint=" + d.plane.AWS.Endpoint,
		"-var", "node_security_group_id=" + d.plane.AWS.NodeSecurityGroupID,
		"-var", fmt.Sprintf("kafka_bootstrap_servers=[%q]", d.topics.Brokers()[0]),
		"-var", "collector_config_path=" + d.collectorConfig, "-var", "collector_flush_interval=1s"}
	os.Setenv("AWS_ACCESS_KEY_ID", localplane.AccessKeyID)
	os.Setenv("AWS_SECRET_ACCESS_KEY", localplane.SecretAccessKey)
	if _, err := d.tf.Run(d.ctx, d.dir, "get", "-no-color"); err != nil {
		return err
	}
	res, err := d.tf.Run(d.ctx, d.dir, append([]string{"apply", "-auto-approve", "-no-color", "-input=false"}, d.vars...)...)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(res.Output), "\n") {
		if strings.HasPrefix(line, "Apply complete!") {
			d.note("%s (%v)", line, res.Duration.Round(100*time.Millisecond))
			d.result("terraform apply", fmt.Sprintf("%s in %v", strings.TrimPrefix(line, "Apply complete! "), res.Duration.Round(100*time.Millisecond)))
		}
	}
	plan, err := d.tf.Run(d.ctx, d.dir, append([]string{"plan", "-detailed-exitcode", "-no-color", "-input=false"}, d.vars...)...)
	if err != nil {
		return err
	}
	if plan.ExitCode != 0 {
		return fmt.Errorf("the plan right after apply is not empty, so the apply did not converge:\n%s", plan.Output)
	}
	d.note("plan right after apply: no changes")
	return nil
}

func (d *demo) outputs() (map[string]json.RawMessage, error) {
	res, err := d.tf.Run(d.ctx, d.dir, "output", "-json")
	if err != nil {
		return nil, err
	}
	var raw map[string]struct{ Value json.RawMessage }
	if err := json.Unmarshal(res.Output, &raw); err != nil {
		return nil, err
	}
	out := map[string]json.RawMessage{}
	for k, v := range raw {
		out[k] = v.Value
	}
	return out, nil
}

func (d *demo) showTopics() error {
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(kubeapi.KafkaTopic("v1").GroupVersion().WithKind("KafkaTopicList"))
	if err := d.kube.List(d.ctx, list, client.InNamespace("kafka")); err != nil {
		return err
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].GetName() < list.Items[j].GetName() })
	// What the broker holds, read with a Kafka client.
	admin, err := kadm.NewOptClient(kgo.SeedBrokers(d.topics.Brokers()...))
	if err != nil {
		return err
	}
	defer admin.Close()
	inBroker, err := admin.ListTopics(d.ctx)
	if err != nil {
		return fmt.Errorf("listing the broker's topics: %w", err)
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "    TOPIC\tPARTITIONS\tREPLICAS\tRETENTION\tREADY\tIN THE BROKER")
	ready, held := 0, 0
	for _, t := range list.Items {
		p, _, _ := unstructured.NestedInt64(t.Object, "spec", "partitions")
		r, _, _ := unstructured.NestedInt64(t.Object, "spec", "replicas")
		ms, _, _ := unstructured.NestedInt64(t.Object, "spec", "config", "retention.ms")
		status := "False"
		conds, _, _ := unstructured.NestedSlice(t.Object, "status", "conditions")
		for _, c := range conds {
			if m, ok := c.(map[string]any); ok && m["type"] == "Ready" {
				status = fmt.Sprint(m["status"])
			}
		}
		if status == "True" {
			ready++
		}
		broker := "no"
		if name, _, _ := unstructured.NestedString(t.Object, "status", "topicName"); inBroker.Has(name) {
			parts := inBroker[name].Partitions
			broker = fmt.Sprintf("%d partitions x %d replicas", len(parts), parts.NumReplicas())
			held++
		}
		fmt.Fprintf(w, "    %s\t%d\t%d\t%dh\t%s\t%s\n", t.GetName(), p, r, ms/3_600_000, status, broker)
	}
	w.Flush()
	out, err := d.outputs()
	if err != nil {
		return err
	}
	var sizing struct {
		Brokers          int64 `json:"brokers"`
		TotalPartitions  int64 `json:"total_partitions"`
		StoragePerBroker int64 `json:"storage_per_broker_bytes"`
		NetworkIn        int64 `json:"network_in_bytes_per_sec"`
	}
	if err := json.Unmarshal(out["kafka_sizing"], &sizing); err != nil {
		return err
	}
	d.note("sizing: %d brokers, %d partitions, %.0f GB of disk per broker, %.1f MB/s into the cluster",
		sizing.Brokers, sizing.TotalPartitions, float64(sizing.StoragePerBroker)/1e9, float64(sizing.NetworkIn)/1e6)
	d.note("the topics are in a Kafka-protocol broker (franz-go's kfake, 3 brokers in memory), read back with a Kafka client")
	d.result("KafkaTopics", fmt.Sprintf("%d created, %d Ready, %d in the broker", len(list.Items), ready, held))
	d.result("Kafka sizing", fmt.Sprintf("%d brokers, %d partitions, %.0f GB/broker", sizing.Brokers, sizing.TotalPartitions, float64(sizing.StoragePerBroker)/1e9))
	return nil
}
