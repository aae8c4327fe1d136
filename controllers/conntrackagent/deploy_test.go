package conntrackagent_test

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/mdlayher/netlink"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/ti-mo/conntrack"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/conntrackagent"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/reasons"
)

// The DaemonSet manifests apply cleanly (server-side dry run), and with
// exactly their RBAC the agent watches, deletes a stale entry and reports it
// in an Event, while it may not read Secrets.
func TestDeploymentManifests(t *testing.T) {
	t.Parallel() // on a plane of its own
	if err := netlab.Check(); err != nil {
		t.Fatal(err)
	}
	p := localplane.New(t, localplane.Options{NoAWS: true})
	ctx := context.Background()
	objs, err := localplane.ReadManifests(filepath.Join(localplane.RepoRoot(), "deploy", "conntrack-agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.ApplyManifests(ctx, objs, true); err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if err := p.ApplyManifests(ctx, localplane.RBAC(objs), false); err != nil {
		t.Fatal(err)
	}
	admin, err := kubernetes.NewForConfig(p.Config)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := kubernetes.NewForConfig(p.ServiceAccountConfig("telemetry-system", "conntrack-agent"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sa.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("the agent must not read Secrets (is RBAC enforced?): %v", err)
	}

	// A Service with an endpoint, and a never-NATed entry to its LB IP.
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "flows", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Name: "flows", Protocol: corev1.ProtocolUDP, Port: 6343}}}}
	if svc, err = admin.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "203.0.113.10"}}
	if _, err = admin.CoreV1().Services("default").UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, kube: admin}
	e.endpointsIn("default", "flows", 16343, netip.MustParseAddr("198.51.100.2"))

	ns := "ctdeploy"
	_ = exec.Command("ip", "netns", "del", ns).Run()
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	f, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := conntrack.Dial(&netlink.Config{NetNS: int(f.Fd())})
	if err != nil {
		t.Fatal(err)
	}
	lb := netip.MustParseAddr("203.0.113.10")
	if err := c.Create(conntrack.NewFlow(17, 0, netip.MustParseAddr("192.0.2.2"), lb, 40000, 6343, 60, 0)); err != nil {
		t.Fatal(err)
	}
	c.Close()

	broadcaster := events.NewBroadcaster(&events.EventSinkImpl{Interface: sa.EventsV1()})
	actx, stop := context.WithCancel(ctx)
	defer stop()
	broadcaster.StartRecordingToSink(actx.Done())
	ct := &conntrackagent.Netlink{NetNS: int(f.Fd()), Workers: 1}
	agent := conntrackagent.New(conntrackagent.Config{Client: sa, Conntrack: ct, NodeName: "node-1", Period: time.Hour, Debounce: 10 * time.Millisecond,
		TombstoneTTL: time.Minute, LocalAddrs: ct.LocalAddrs, Metrics: conntrackagent.NewMetrics(prometheus.NewRegistry()),
		Recorder: broadcaster.NewRecorder(kubeapi.Scheme(), "telemetry-conntrack-agent"), Log: testr.New(t),
		// No kube-proxy answers here: the "unknown" dataplane's Warning on the
		// Node, which the ServiceAccount must be allowed to write too.
		Dataplane: conntrackagent.DataplaneProbe{URL: "http://127.0.0.1:1"}.Detect,
		// Its API check (/readyz) must pass under the ServiceAccount too.
		APICheck: 100 * time.Millisecond})
	done := make(chan error, 1)
	go func() { done <- agent.Run(actx) }()
	defer func() { stop(); <-done }()

	deadline := time.Now().Add(15 * time.Second)
	for {
		evs, err := admin.EventsV1().Events("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(evs.Items, func(e eventsv1.Event) bool {
			return e.Reason == reasons.StaleConntrackEntries && e.Regarding.Name == "flows"
		}) && slices.ContainsFunc(evs.Items, func(e eventsv1.Event) bool {
			return e.Reason == reasons.ConntrackAgentDataplane && e.Regarding.Kind == "Node" && e.Regarding.Name == "node-1"
		}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no StaleConntrackEntries Event on the Service and ConntrackAgentDataplane Event on the Node under the ServiceAccount (ready: %v): %v", agent.Ready(), evs.Items)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a few API checks under the ServiceAccount
	if err := agent.Ready(); err != nil {
		t.Fatalf("not ready under the ServiceAccount: %v", err)
	}
	stats, err := ct.Scan(ctx, func(conntrackagent.Flow) {})
	if err != nil || stats.Scanned != 0 {
		t.Fatalf("the stale entry is still there: %d (%v)", stats.Scanned, err)
	}
}
