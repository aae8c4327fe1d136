package conntrackagent_test

import (
	"context"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/conntrackagent"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/metricread"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/scenario"
)

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard())
	os.Exit(m.Run())
}

type env struct {
	t    *testing.T
	ctx  context.Context
	kube kubernetes.Interface
	lab  *netlab.Lab
	ct   *conntrackagent.Netlink
}

func (e *env) service(name string, port int32, lbIP string) *corev1.Service {
	e.t.Helper()
	s := scenario.UDPService{Kube: e.kube, Namespace: "telemetry", Name: name, Port: port}
	svc, err := s.Create(e.ctx)
	if err == nil && lbIP != "" { // stands in for the load balancer controller's status write
		svc, err = s.AssignLB(e.ctx, svc, netip.MustParseAddr(lbIP))
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return svc
}

// endpoints writes the Service's EndpointSlice (standing in for the
// EndpointSlice controller).
func (e *env) endpoints(service string, port int32, addrs ...netip.Addr) {
	e.t.Helper()
	e.endpointsIn("telemetry", service, port, addrs...)
}

func (e *env) endpointsIn(namespace, service string, port int32, addrs ...netip.Addr) {
	e.t.Helper()
	if err := (scenario.UDPService{Kube: e.kube, Namespace: namespace, Name: service, PodPort: port}).Endpoints(e.ctx, addrs...); err != nil {
		e.t.Fatal(err)
	}
}

// flow starts a receiver in the pod and a constant flow from the client's
// port src to dst; both stop when the test does.
func (e *env) flow(t *testing.T, src uint16, dst, pod netip.AddrPort) *netlab.Receiver {
	t.Helper()
	r, err := e.lab.Listen("pod", pod)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	sender, err := e.lab.Send(src, dst, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sender.Stop)
	return r
}

// entries lists the UDP entries from the client's port.
func (e *env) entries(srcPort uint16) []conntrackagent.Flow {
	e.t.Helper()
	var out []conntrackagent.Flow
	if _, err := e.ct.Scan(e.ctx, func(f conntrackagent.Flow) {
		if f.OrigSrc.Port() == srcPort {
			out = append(out, f)
		}
	}); err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) waitEntry(srcPort uint16, replySrc netip.Addr) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, f := range e.entries(srcPort) {
			if f.ReplySrc.Addr() == replySrc {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Fatalf("no entry from port %d with reply source %s: %v", srcPort, replySrc, e.entries(srcPort))
}

// blackholed checks that a receiver gets nothing for a while: the stale
// entry really pins the flow.
func blackholed(t *testing.T, r *netlab.Receiver) {
	t.Helper()
	before := r.Packets()
	time.Sleep(600 * time.Millisecond)
	if got := r.Packets() - before; got != 0 {
		t.Fatalf("received %d packets before the agent acted: the scenario does not reproduce the bug", got)
	}
}

func receives(t *testing.T, r *netlab.Receiver, within time.Duration) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	start := time.Now()
	at, err := r.WaitPacket(ctx, start)
	if err != nil {
		t.Fatalf("no packet within %v", within)
	}
	return at.Sub(start)
}

func TestAgentEndToEnd(t *testing.T) {
	t.Parallel() // on a plane of its own
	if err := netlab.Check(); err != nil {
		t.Fatal(err)
	}
	p := localplane.New(t, localplane.Options{NoAWS: true})
	kube, err := kubernetes.NewForConfig(p.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "telemetry"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lab, err := netlab.New("ctagent")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lab.Close() })
	ct := &conntrackagent.Netlink{NetNS: lab.NodeNS(), Workers: 2, RecvBuffer: 1 << 20}
	e := &env{t: t, ctx: ctx, kube: kube, lab: lab, ct: ct}

	reg := prometheus.NewRegistry()
	startAgent := func(dryRun bool, reg prometheus.Registerer) (*conntrackagent.Agent, func()) {
		a := conntrackagent.New(conntrackagent.Config{
			Client: kube, Conntrack: ct, NodeName: "node-1", DryRun: dryRun, Period: time.Hour, Debounce: 50 * time.Millisecond,
			TombstoneTTL: time.Minute, Recheck: time.Second, LocalAddrs: ct.LocalAddrs, Metrics: conntrackagent.NewMetrics(reg), Log: testr.New(t),
		})
		actx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- a.Run(actx) }()
		stopped := false
		return a, func() {
			if !stopped {
				stopped = true
				stop()
				if err := <-done; err != nil {
					t.Errorf("agent: %v", err)
				}
			}
		}
	}
	agent, stopAgent := startAgent(false, reg)
	t.Cleanup(func() { stopAgent() })

	lb := netip.AddrPortFrom(netlab.LBIP, 6343)
	podFlows := netip.AddrPortFrom(netlab.PodIP, 16343)
	pod, err := lab.Listen("pod", podFlows)
	if err != nil {
		t.Fatal(err)
	}
	defer pod.Close()

	parent := t // the LB flow goes on through the following subtests
	t.Run("LB IP 0 -> 1: the flow reaches the pod only because the agent deleted the stale entry", func(t *testing.T) {
		e.service("flows", 6343, netlab.LBIP.String())
		sender, err := lab.Send(40000, lb, 20*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		parent.Cleanup(sender.Stop)
		e.waitEntry(40000, netlab.LBIP) // never NATed: the reply would come from the LB IP
		if err := lab.DNAT(lb, podFlows); err != nil {
			t.Fatal(err)
		}
		blackholed(t, pod)
		e.endpoints("flows", 16343, netlab.PodIP)
		d := receives(t, pod, 5*time.Second)
		t.Logf("recovered %v after the EndpointSlice update", d)
		e.waitEntry(40000, netlab.PodIP)
	})

	t.Run("correctly NATed and unrelated flows are left alone", func(t *testing.T) {
		other, err := lab.Send(40001, netip.AddrPortFrom(netlab.Pod2IP, 9999), 20*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Stop()
		e.waitEntry(40001, netlab.Pod2IP)
		res, err := agent.Pass(ctx, "test")
		if err != nil {
			t.Fatal(err)
		}
		if res.Stale != 0 || res.Scanned < 2 {
			t.Fatalf("a pass over healthy flows found %d stale of %d", res.Stale, res.Scanned)
		}
		if len(e.entries(40000)) != 1 || len(e.entries(40001)) != 1 {
			t.Fatal("an entry went missing")
		}
	})

	t.Run("an endpoint replaced by another: the entry NATed to the dead one goes", func(t *testing.T) {
		pod2Flows := netip.AddrPortFrom(netlab.Pod2IP, 16343)
		pod2, err := lab.Listen("pod2", pod2Flows)
		if err != nil {
			t.Fatal(err)
		}
		defer pod2.Close()
		if err := lab.RemoveDNAT(lb, podFlows); err != nil {
			t.Fatal(err)
		}
		if err := lab.DNAT(lb, pod2Flows); err != nil {
			t.Fatal(err)
		}
		blackholed(t, pod2) // still NATed to the old pod
		e.endpoints("flows", 16343, netlab.Pod2IP)
		t.Cleanup(func() {
			if t.Failed() {
				out, _ := lab.Output("node", "conntrack", "-L")
				nat, _ := lab.Output("node", "iptables", "-t", "nat", "-S")
				t.Logf("conntrack:\n%s\nnat:\n%s", out, nat)
			}
		})
		receives(t, pod2, 5*time.Second)
		e.waitEntry(40000, netlab.Pod2IP)
	})

	t.Run("NodePort on the node's address", func(t *testing.T) {
		svc := e.service("np", 4739, "")
		nodePort := netip.AddrPortFrom(netlab.NodeIP, uint16(svc.Spec.Ports[0].NodePort))
		podIPFIX := netip.AddrPortFrom(netlab.PodIP, 14739)
		r := e.flow(t, 40002, nodePort, podIPFIX)
		e.waitEntry(40002, netlab.NodeIP) // delivered locally, never NATed
		if err := lab.DNAT(nodePort, podIPFIX); err != nil {
			t.Fatal(err)
		}
		blackholed(t, r)
		e.endpoints("np", 14739, netlab.PodIP)
		receives(t, r, 5*time.Second)
	})

	t.Run("kube-proxy writes its rule after the endpoint appears: the recheck catches the re-created entry", func(t *testing.T) {
		e.service("lag", 2055, netlab.LBIP.String())
		netflow := netip.AddrPortFrom(netlab.LBIP, 2055)
		podNetflow := netip.AddrPortFrom(netlab.PodIP, 12055)
		r := e.flow(t, 40004, netflow, podNetflow)
		e.waitEntry(40004, netlab.LBIP)
		recheckBefore := counterWith(t, reg, "telemetry_conntrack_passes_total", "recheck")
		e.endpoints("lag", 12055, netlab.PodIP) // the agent deletes; the next packet re-creates it, still not NATed
		time.Sleep(300 * time.Millisecond)
		e.waitEntry(40004, netlab.LBIP) // re-created, never NATed: only another pass can free it
		if r.Packets() != 0 {
			t.Fatal("packets reached the pod before kube-proxy's rule existed")
		}
		if err := lab.DNAT(netflow, podNetflow); err != nil { // kube-proxy, late
			t.Fatal(err)
		}
		receives(t, r, 3*time.Second) // the follow-up pass, one second after the first
		if counterWith(t, reg, "telemetry_conntrack_passes_total", "recheck") <= recheckBefore {
			t.Fatal("recovered without a recheck pass")
		}
	})

	t.Run("an LB IP assigned after the endpoints: no EndpointSlice change, the Service update triggers", func(t *testing.T) {
		svc := e.service("late", 5514, "")
		e.endpoints("late", 15514, netlab.PodIP) // serving before the NLB exists
		lateLB := netip.AddrPortFrom(netlab.LBIP, 5514)
		podSyslog := netip.AddrPortFrom(netlab.PodIP, 15514)
		r := e.flow(t, 40005, lateLB, podSyslog)
		e.waitEntry(40005, netlab.LBIP) // not a Service address yet: never NATed, and nobody's business
		if err := lab.DNAT(lateLB, podSyslog); err != nil {
			t.Fatal(err)
		}
		blackholed(t, r)
		svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: netlab.LBIP.String()}}
		if _, err := kube.CoreV1().Services("telemetry").UpdateStatus(ctx, svc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		receives(t, r, 5*time.Second)
	})

	t.Run("dry run finds and deletes nothing", func(t *testing.T) {
		stopAgent() // only the dry agent sees what follows
		dry, stopDry := startAgent(true, prometheus.NewRegistry())
		svc := e.service("dry", 5140, "")
		nodePort := netip.AddrPortFrom(netlab.NodeIP, uint16(svc.Spec.Ports[0].NodePort))
		sender, err := lab.Send(40003, nodePort, 20*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		defer sender.Stop()
		e.waitEntry(40003, netlab.NodeIP)
		e.endpoints("dry", 15140, netlab.PodIP)
		deadline := time.Now().Add(5 * time.Second)
		for {
			res, err := dry.Pass(ctx, "test")
			if err == nil && res.Stale > 0 {
				if res.Deleted != 0 {
					t.Fatalf("dry run deleted %d", res.Deleted)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("dry run found nothing: %+v %v", res, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond) // let the dry agent's own triggered passes run too
		e.waitEntry(40003, netlab.NodeIP)  // the stale entry is still there
		stopDry()
		agent, stopAgent = startAgent(false, prometheus.NewRegistry())
	})

	t.Run("a deleted UDP Service: entries still NATed to its pods go", func(t *testing.T) {
		// "flows" is served by pod2 through a NATed entry. Deleting the Service,
		// kube-proxy removes its DNAT rule and leaves the entry, so the flow
		// keeps reaching the old pod as if the Service still existed.
		if err := lab.RemoveDNAT(lb, netip.AddrPortFrom(netlab.Pod2IP, 16343)); err != nil {
			t.Fatal(err)
		}
		e.waitEntry(40000, netlab.Pod2IP)
		if err := kube.CoreV1().Services("telemetry").Delete(ctx, "flows", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			fs := e.entries(40000)
			if len(fs) == 1 && fs[0].ReplySrc.Addr() != netlab.Pod2IP {
				return // re-created by the next packet, not NATed any more
			}
			if time.Now().After(deadline) {
				t.Fatalf("the entry NATed for the deleted Service is still there: %v", fs)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	// The first agent deleted at least five entries: LB 0 -> 1, the replaced
	// endpoint, the NodePort, and twice for the late kube-proxy (first pass,
	// recheck); a follow-up pass may catch one more re-created entry.
	if v := counter(t, reg, "telemetry_conntrack_entries_deleted_total"); v < 5 {
		t.Errorf("deleted-entries metric = %v, want at least 5", v)
	}
}

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	v, err := metricread.Sum(reg, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// counterWith sums a counter's series whose label values include value.
func counterWith(t *testing.T, reg *prometheus.Registry, name, value string) float64 {
	t.Helper()
	v, err := metricread.SumWith(reg, name, value)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
