package main

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
)

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard()) // as main does
	os.Exit(m.Run())
}

// The demo stays true: it runs to the end and every step reports what it
// should (the conntrack step needs root, as make test has).
func TestDemo(t *testing.T) {
	localplane.HoldSlot(t) // the demo starts its own plane
	d := &demo{ctx: context.Background()}
	if err := d.run(); err != nil {
		t.Fatal(err)
	}
	if want := len(steps()); d.step != want {
		t.Errorf("the demo ran %d steps and announces %d", d.step, want)
	}
	want := map[string]string{
		"KafkaTopics":              "12 created, 12 Ready, 12 in the broker",
		"Security-group rules":     "32 created (per-source model: 294; AWS refuses past 60 per group)",
		"Coarse cover (NLB group)": "10 prefixes",
		"Calico policies":          "4/4 packet checks as expected, cleaned up on delete",
		"Stale conntrack":          "blackholed flow restored",
		"Controller stopped":       "apply refused, new exporter refused by Calico and the NLB group",
		"Pipeline":                 "3 PoPs' sFlow and IPFIX in their own 3 topics",
		"Bare metal":               "unlisted exporter: 0; a flow MetalLB's early announcement pinned restored",
	}
	got := map[string]string{}
	for _, row := range d.summary {
		got[row[0]] = row[1]
	}
	for k, v := range want {
		if !strings.Contains(got[k], v) {
			t.Errorf("%s: %q, want it to contain %q", k, got[k], v)
		}
	}
}

// The demo fails when what it shows did not happen: without the conntrack
// agent, trap 3's flow stays blackholed, and the demo says so and exits
// non-zero instead of printing a restored flow.
func TestDemoFailsWhenAClaimIsFalse(t *testing.T) {
	d := &demo{ctx: context.Background(), noAgent: true, plane: localplane.New(t, localplane.Options{NoAWS: true})}
	kube, err := kubernetes.NewForConfig(d.plane.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Namespaces().Create(d.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "telemetry"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = d.conntrack()
	if err == nil || !strings.Contains(err.Error(), "not restored by the agent") {
		t.Fatalf("trap 3 without the agent: %v, want the demo to fail (flow not restored)", err)
	}
	for _, row := range d.summary {
		if row[0] == "Stale conntrack" {
			t.Fatalf("summary claims %q", row[1])
		}
	}
}
