package e2e

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/nlbpolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/baremetal"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/pipeline"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/tfdev"
)

// TestModuleOnBareMetalOverBGP: the telemetry-pop module, platform
// "metal", applied by the real terraform CLI to a bare-metal cluster with
// every part real: MetalLB giving the collectors' Service an address of a
// pool and announcing it over BGP (native mode) to the PoP's router
// (Debian's gobgpd, which has no other route to it), kube-proxy forwarding
// it to the collector pod, kube-router enforcing the NetworkPolicy the
// nlb-policy controller writes (the networkpolicy backend alone: no Calico,
// no cloud firewall). A listed and an unlisted exporter behind the router
// send from before the apply: the listed one's datagrams reach the pod, the
// unlisted one's never, at any moment of the apply, the plan and the
// destroy; the plan after the apply is empty; the destroy withdraws the
// route and leaves no Service or policy. IPv4: MetalLB's native BGP mode
// refuses IPv6 pools.
func TestModuleOnBareMetalOverBGP(t *testing.T) {
	t.Parallel() // on a plane and in a lab of its own
	if os.Getenv("TF_ACC") == "" {
		t.Fatal("TF_ACC is not set: run the tests with `make test`")
	}
	listed, unlisted := netip.MustParseAddr("100.64.1.1"), netip.MustParseAddr("100.64.9.1")
	lb := netip.MustParseAddr("203.0.113.70")
	p := localplane.New(t, localplane.Options{NoAWS: true})
	c, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(p.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, ns := range []string{"kafka", "telemetry"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	// The cluster's controller, as on a cluster without Calico.
	stopCtl, err := p.StartNLBPolicyControllerWith(ctx, localplane.ControllerOptions{Backends: []nlbpolicy.Backend{nlbpolicy.BackendNetworkPolicy}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stopCtl(); err != nil {
			t.Errorf("nlb-policy controller: %v", err)
		}
	})
	site, err := baremetal.Start(ctx, p, baremetal.Options{Prefix: "ebm",
		Exporters: []netip.Prefix{netip.PrefixFrom(listed, 32), netip.PrefixFrom(unlisted, 32)},
		Pool:      "exporters", Addresses: []netip.Prefix{netip.PrefixFrom(lb, 32)},
		Collector: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "collector-0", Labels: map[string]string{"app": "collector"}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(site.Stop)
	lab, router, node := site.Lab, site.Router, site.Node
	logs := func() string { return site.Logs(10) }

	// The exporters send from before anything exists.
	receiver, err := lab.Listen("pod", netip.AddrPortFrom(netlab.PodIP, 6343))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(receiver.Close)
	for i, src := range []netip.Addr{listed, unlisted} {
		s, err := lab.SendFrom(netip.AddrPortFrom(src, uint16(41000+i)), netip.AddrPortFrom(lb, 6343), 20*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
	}
	never := func(when string) {
		t.Helper()
		if n, _ := receiver.From(unlisted); n != 0 {
			t.Fatalf("%s: %d datagrams of the unlisted exporter reached the collector pod\n%s", when, n, logs())
		}
	}

	tf, err := tfdev.Build(ctx, localplane.RepoRoot(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	config := baremetal.Module(p.ProviderBlock(), "telemetry", "exporters", "ams", netip.PrefixFrom(listed, 32))
	if err := os.WriteFile(filepath.Join(work, "main.tf"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	terraform := func(args ...string) tfdev.Result {
		t.Helper()
		res, err := tf.Run(ctx, work, args...)
		if err != nil {
			t.Fatalf("terraform %s: %v\n%s", strings.Join(args, " "), err, logs())
		}
		return res
	}
	terraform("get", "-no-color")
	applied := time.Now()
	terraform("apply", "-auto-approve", "-no-color", "-input=false")
	never("during the apply")
	// The Service's endpoints, as the EndpointSlice controller (which the
	// plane does not run) writes them: the collector pod on the node.
	if err := pipeline.Endpoints(ctx, kube, "telemetry", "flows", netlab.PodIP, node, map[string]int32{"sflow": 6343}); err != nil {
		t.Fatal(err)
	}
	// With wait = false (no topic operator runs here) the apply does not
	// wait for MetalLB's address either: the state has it after the
	// address is in the Service's status and a refresh read it.
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		svc, err := kube.CoreV1().Services("telemetry").Get(ctx, "flows", metav1.GetOptions{})
		return err == nil && len(svc.Status.LoadBalancer.Ingress) > 0, err
	}); err != nil {
		t.Fatalf("MetalLB gave the Service no address within a minute of the apply: %v\n%s", err, logs())
	}
	terraform("apply", "-refresh-only", "-auto-approve", "-no-color", "-input=false")
	out := string(terraform("output", "-no-color").Output)
	if !strings.Contains(out, `"`+lb.String()+`"`) || !strings.Contains(out, "policy_enforced = true") {
		t.Fatalf("outputs after apply, want MetalLB's %s and the policy enforced:\n%s", lb, out)
	}
	route := netip.PrefixFrom(lb, 32)
	var first time.Time
	deadline := time.Now().Add(time.Minute)
	for {
		if n, at := receiver.From(listed); n > 0 {
			first = at
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the listed exporter's datagrams never reached the collector pod (route at the router: %v)\n%s", router.NextHops(route), logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("the listed exporter's datagrams at the pod %v after the apply began", first.Sub(applied).Round(10*time.Millisecond))
	never("after the apply")
	if plan := terraform("plan", "-detailed-exitcode", "-no-color", "-input=false"); plan.ExitCode != 0 {
		t.Fatalf("plan after apply is not empty:\n%s", plan.Output)
	}
	terraform("destroy", "-auto-approve", "-no-color", "-input=false")
	never("through the destroy")
	deadline = time.Now().Add(30 * time.Second)
	for len(router.NextHops(route)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the route to %s is still at the router after the destroy\n%s", lb, logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	var svcs corev1.ServiceList
	if err := c.List(ctx, &svcs, client.InNamespace("telemetry")); err != nil || len(svcs.Items) != 0 {
		t.Errorf("Services left in telemetry after the destroy: %d (%v)", len(svcs.Items), err)
	}
	nps, err := kube.NetworkingV1().NetworkPolicies("telemetry").List(ctx, metav1.ListOptions{})
	if err != nil || len(nps.Items) != 0 {
		t.Errorf("NetworkPolicies left in telemetry after the destroy (%v)", err)
	}
	never("after the destroy")
}
