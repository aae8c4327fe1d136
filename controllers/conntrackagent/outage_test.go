package conntrackagent_test

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/conntrackagent"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
)

// TestAgentAPIServerOutage: the API server goes away for 10 s while the
// agent runs (localplane.Outage cuts it), and the Service's endpoint appears
// meanwhile; once the API server is back the agent sees it, with no
// restart, and deletes the stale entry: the blackholed flow reaches the pod.
func TestAgentAPIServerOutage(t *testing.T) {
	t.Parallel() // on a plane of its own
	if err := netlab.Check(); err != nil {
		t.Fatal(err)
	}
	p := localplane.New(t, localplane.Options{NoAWS: true})
	admin, err := kubernetes.NewForConfig(p.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "telemetry"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	outage, viaOutage := newOutage(t, p)
	lab, err := netlab.New("ctout")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lab.Close() })
	ct := &conntrackagent.Netlink{NetNS: lab.NodeNS(), Workers: 2, RecvBuffer: 1 << 20}
	e := &env{t: t, ctx: ctx, kube: admin, lab: lab, ct: ct}
	a := conntrackagent.New(conntrackagent.Config{Client: viaOutage, Conntrack: ct, NodeName: "node-1", Period: time.Hour, Debounce: 50 * time.Millisecond,
		TombstoneTTL: time.Minute, Recheck: time.Second, LocalAddrs: ct.LocalAddrs, APICheck: 200 * time.Millisecond,
		Metrics: conntrackagent.NewMetrics(prometheus.NewRegistry()), Log: testr.New(t)})
	actx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	}()

	lb, podFlows := netip.AddrPortFrom(netlab.LBIP, 6343), netip.AddrPortFrom(netlab.PodIP, 16343)
	pod, err := lab.Listen("pod", podFlows)
	if err != nil {
		t.Fatal(err)
	}
	defer pod.Close()
	e.service("flows", 6343, netlab.LBIP.String())
	sender, err := lab.Send(40000, lb, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Stop()
	e.waitEntry(40000, netlab.LBIP) // never NATed
	if err := lab.DNAT(lb, podFlows); err != nil {
		t.Fatal(err)
	}

	for a.Ready() != nil {
		time.Sleep(20 * time.Millisecond)
	}
	outage.Down()
	e.endpoints("flows", 16343, netlab.PodIP) // written while the agent cannot see it
	// The agent says it cannot see the cluster: not ready within a few checks.
	deadline := time.Now().Add(3 * time.Second)
	for a.Ready() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the agent stayed ready with the API server unreachable")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(10 * time.Second)
	blackholed(t, pod)
	up := time.Now()
	t.Logf("ready again %v after the API server came back", upAndReady(t, outage, a, 2*time.Second).Round(10*time.Millisecond))
	receives(t, pod, 60*time.Second)
	d := time.Since(up)
	t.Logf("after a 10 s API server outage, the flow reached the pod %v after the API server was back", d.Round(10*time.Millisecond))
	// The agent restarts its informers when the API server answers again,
	// rather than waiting out their backoff (8.4 s here before it did).
	if d > 2*time.Second {
		t.Errorf("the flow came back %v after the API server, want within 2 s", d)
	}
}

// TestAgentStartsDuringAPIServerOutage: an agent started while the API
// server does not answer says so at once (it logged nothing before, only
// /readyz told), and starts within --api-check of the API server's return,
// as it does for an outage that begins while it runs (before: on client-go's
// backoff, 6.7 s after an 8 s outage, 11.3 s after a 30 s one).
func TestAgentStartsDuringAPIServerOutage(t *testing.T) {
	t.Parallel() // on a plane of its own
	outage, viaOutage := newOutage(t, localplane.New(t, localplane.Options{NoAWS: true}))
	var (
		mu    sync.Mutex
		lines []string
	)
	logger := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, args)
	}, funcr.Options{})
	logged := func(s string) bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, s) })
	}
	outage.Down()
	ct := &conntrackagent.Fake{}
	a := conntrackagent.New(conntrackagent.Config{Client: viaOutage, Conntrack: ct, NodeName: "node-1", Period: time.Hour, Debounce: 50 * time.Millisecond,
		TombstoneTTL: time.Minute, Recheck: time.Second, APICheck: 200 * time.Millisecond,
		LocalAddrs: func() ([]netip.Addr, error) { return nil, nil },
		Metrics:    conntrackagent.NewMetrics(prometheus.NewRegistry()), Log: logger})
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil && ctx.Err() == nil {
			t.Errorf("agent: %v", err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !logged("API server unreachable at start") {
		if time.Now().After(deadline) {
			t.Fatalf("nothing logged while the API server does not answer at start: %q", lines)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if a.Ready() == nil {
		t.Fatal("ready with the API server unreachable")
	}
	t.Logf("started during an outage: ready %v after the API server came back (--api-check 200ms)",
		upAndReady(t, outage, a, 30*time.Second).Round(10*time.Millisecond))
	if !logged("API server reachable: starting") {
		t.Errorf("the return of the API server was not logged: %q", lines)
	}
}

// upAndReady ends the outage and waits until the agent is ready again, at
// most limit; it returns how long that took.
func upAndReady(t *testing.T, outage *localplane.Outage, a *conntrackagent.Agent, limit time.Duration) time.Duration {
	t.Helper()
	if err := outage.Up(); err != nil {
		t.Fatal(err)
	}
	up := time.Now()
	for a.Ready() != nil {
		if time.Since(up) > limit {
			t.Fatalf("the agent not ready %v after the API server came back: %v", limit, a.Ready())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(up)
}

// newOutage puts an outage switch in front of the plane's API server and
// returns it with a client that goes through it; it is closed when the test
// ends.
func newOutage(t *testing.T, p *localplane.Plane) (*localplane.Outage, kubernetes.Interface) {
	t.Helper()
	outage, err := p.NewOutage()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(outage.Close)
	viaOutage, err := kubernetes.NewForConfig(outage.Config)
	if err != nil {
		t.Fatal(err)
	}
	return outage, viaOutage
}
