package conntrackagent_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/conntrackagent"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/scenario"
)

// The agent against the real kube-proxy (every version `make kubeproxy`
// built, iptables and nftables modes) in a netlab node: each scenario runs
// once with kube-proxy alone and once with the agent, and the outcomes are
// the table in docs/controllers/conntrack-agent.md (checked here; rewritten
// with UPDATE_DOCS=1).

// kpScenario is one way a constant UDP flow meets a Service change.
type kpScenario struct {
	name string
	// group: scenarios of one group run together. kube-proxy's cleanup runs
	// over every UDP Service whenever some UDP Service's endpoints change, so
	// a scenario that changes only a Service must not share its moment with
	// one that changes endpoints.
	group int
	// before sets the Service up and starts the flow (the flow is pinned or
	// refused); change is the event after which the flow must reach the pod.
	before func(s *kpRun) error
	change func(s *kpRun) error
	// delivering: the flow reaches the pod before the change; the outcome
	// is how many packets the change cost it, and whether it still arrives.
	delivering bool
}

// kpFamily is the lab's addresses of one IP family.
type kpFamily struct {
	name                       string
	ipFamily                   corev1.IPFamily
	node, pod, pod2, lb, extIP netip.Addr
}

var kpFamilies = []kpFamily{
	{"IPv4", corev1.IPv4Protocol, netlab.NodeIP, netlab.PodIP, netlab.Pod2IP, netlab.LBIP, netlab.ExtIP},
	{"IPv6", corev1.IPv6Protocol, netlab.NodeIP6, netlab.PodIP6, netlab.Pod2IP6, netlab.LBIP6, netlab.ExtIP6},
}

// kpRun is one scenario's run in one phase.
type kpRun struct {
	fam      kpFamily
	t        *testing.T
	ctx      context.Context
	kube     kubernetes.Interface
	lab      *netlab.Lab
	ns       string
	name     string
	port     uint16 // the Service port and the flow's destination port
	podPort  uint16
	src      uint16
	svc      *corev1.Service
	target   netip.Addr // the pod that must get the flow after the change
	receiver *netlab.Receiver
	sender   *netlab.Sender
}

func (r *kpRun) createService(withLB bool) error {
	var err error
	if r.svc, err = r.scenario().Create(r.ctx); err != nil {
		return err
	}
	if withLB {
		return r.assignLB()
	}
	return nil
}

// scenario is the run's Service as the shared scenario writes it.
func (r *kpRun) scenario() scenario.UDPService {
	return scenario.UDPService{Kube: r.kube, Namespace: r.ns, Name: r.name, Port: int32(r.port), PodPort: int32(r.podPort), Family: r.fam.ipFamily}
}

// assignLB writes the LB IP into the status, as MetalLB or kube-vip do.
func (r *kpRun) assignLB() error {
	var err error
	r.svc, err = r.scenario().AssignLB(r.ctx, r.svc, r.fam.lb)
	return err
}

// endpoints writes the Service's EndpointSlice with these ready pods (none:
// no endpoint), as the EndpointSlice controller would.
func (r *kpRun) endpoints(pods ...netip.Addr) error {
	return r.scenario().Endpoints(r.ctx, pods...)
}

// listen starts the receiver in the pod namespace ns ("pod" or "pod2") that
// must get the flow after the change.
func (r *kpRun) listen(ns string, pod netip.Addr) error {
	var err error
	r.target = pod
	r.receiver, err = r.lab.Listen(ns, netip.AddrPortFrom(pod, r.podPort))
	return err
}

// send starts the constant flow to dst at the run's port (the NodePort for
// the node's address).
func (r *kpRun) send(dst netip.Addr) error {
	port := r.port
	if dst == r.fam.node {
		port = uint16(r.svc.Spec.Ports[0].NodePort)
	}
	var err error
	r.sender, err = r.lab.Send(r.src, netip.AddrPortFrom(dst, port), 20*time.Millisecond)
	return err
}

// flow listens in the pod and sends to dst.
func (r *kpRun) flow(dst netip.Addr) error {
	if err := r.listen("pod", r.fam.pod); err != nil {
		return err
	}
	return r.send(dst)
}

func (r *kpRun) stop() {
	if r.sender != nil {
		r.sender.Stop()
	}
	if r.receiver != nil {
		r.receiver.Close()
	}
}

// The groups: Service changes only; endpoint changes; a Service deleted
// and re-created; kube-proxy down.
const (
	groupService = iota
	groupEndpoints
	groupRecreate
	groupProxyDown
	groups
)

var kpScenarios = []kpScenario{
	{
		name: "LB IP assigned after the endpoints", group: groupService,
		before: func(r *kpRun) error {
			return errors.Join(r.createService(false), r.endpoints(r.fam.pod),
				r.flow(r.fam.lb)) // not a Service address yet: leaves for the LB (the sink), never NATed
		},
		change: func(r *kpRun) error { return r.assignLB() },
	},
	{
		name: "external IP added after the endpoints", group: groupService,
		before: func(r *kpRun) error {
			return errors.Join(r.createService(false), r.endpoints(r.fam.pod), r.flow(r.fam.extIP))
		},
		change: func(r *kpRun) error {
			r.svc.Spec.ExternalIPs = []string{r.fam.extIP.String()}
			var err error
			r.svc, err = r.kube.CoreV1().Services(r.ns).Update(r.ctx, r.svc, metav1.UpdateOptions{})
			return err
		},
	},
	{
		name: "LB IP 0 -> 1 endpoints", group: groupEndpoints,
		before: func(r *kpRun) error {
			return errors.Join(r.createService(true), r.endpoints(), r.flow(r.fam.lb))
		},
		change: func(r *kpRun) error { return r.endpoints(r.fam.pod) },
	},
	{
		name: "NodePort 0 -> 1 endpoints", group: groupEndpoints,
		before: func(r *kpRun) error {
			return errors.Join(r.createService(false), r.endpoints(), r.flow(r.fam.node))
		},
		change: func(r *kpRun) error { return r.endpoints(r.fam.pod) },
	},
	{
		name: "ClusterIP 0 -> 1 endpoints", group: groupEndpoints,
		before: func(r *kpRun) error {
			if err := errors.Join(r.createService(false), r.endpoints()); err != nil {
				return err
			}
			return r.flow(netip.MustParseAddr(r.svc.Spec.ClusterIPs[0]))
		},
		change: func(r *kpRun) error { return r.endpoints(r.fam.pod) },
	},
	{
		name: "LB IP endpoint moved to a new pod", group: groupEndpoints,
		before: func(r *kpRun) error {
			// NATed to the first pod (nothing listens there), received at the second.
			return errors.Join(r.createService(true), r.endpoints(r.fam.pod), r.listen("pod2", r.fam.pod2), r.send(r.fam.lb))
		},
		change: func(r *kpRun) error { return r.endpoints(r.fam.pod2) },
	},
	{
		name: "LB IP 1 -> 0 -> 1 endpoints (a new pod)", group: groupEndpoints,
		before: func(r *kpRun) error {
			// NATed to the old pod (gone: nothing listens), then no endpoint.
			err := errors.Join(r.createService(true), r.endpoints(r.fam.pod2), r.send(r.fam.lb))
			time.Sleep(700 * time.Millisecond)
			return errors.Join(err, r.endpoints(), r.listen("pod", r.fam.pod))
		},
		change: func(r *kpRun) error { return r.endpoints(r.fam.pod) },
	},
	{
		// kubectl replace --force, a chart re-installed: the Service and its
		// EndpointSlice deleted (the slice by the garbage collector), the
		// same Service created again a second later, its pod untouched.
		name: "Service deleted and re-created, pod kept", group: groupRecreate, delivering: true,
		before: func(r *kpRun) error {
			return errors.Join(r.createService(true), r.endpoints(r.fam.pod), r.flow(r.fam.lb))
		},
		change: func(r *kpRun) error {
			err := errors.Join(r.kube.CoreV1().Services(r.ns).Delete(r.ctx, r.name, metav1.DeleteOptions{}),
				r.kube.DiscoveryV1().EndpointSlices(r.ns).Delete(r.ctx, r.name+"-1", metav1.DeleteOptions{}))
			time.Sleep(time.Second)
			return errors.Join(err, r.createService(true), r.endpoints(r.fam.pod))
		},
	},
	{
		name: "Service created while kube-proxy is down (node boot)", group: groupProxyDown,
		before: func(r *kpRun) error {
			return errors.Join(r.createService(true), r.endpoints(r.fam.pod), r.flow(r.fam.lb))
		},
		// change: kube-proxy starts (the test does it for the group).
	},
}

// kpOutcome is a scenario's result in one phase.
type kpOutcome struct {
	recovered bool // the flow reaches the pod at the end of the window
	after     time.Duration
	// For a delivering scenario: packets sent from the change to the end of
	// the window that did not arrive.
	delivering bool
	lost       int64
}

func TestAgentWithRealKubeProxy(t *testing.T) {
	t.Parallel() // on a plane of its own
	if err := netlab.Check(); err != nil {
		t.Fatal(err)
	}
	versions := localplane.KubeProxyVersions()
	if len(versions) == 0 {
		t.Fatal("no kube-proxy built: run `make kubeproxy` (make test does)")
	}
	results := map[string]map[bool]kpOutcome{} // row -> agent? -> outcome
	var mu sync.Mutex
	// Each version and mode has its own plane, lab, kube-proxy and agent, so
	// they run side by side (most of each is waiting for kube-proxy's syncs
	// and the flows' windows); the group returns once all have ended, before
	// the results are judged. Not one plane for all: a kube-proxy sees every
	// Service of its cluster, and any UDP endpoint change anywhere makes it
	// sweep its whole table (CleanStaleEntries, on ConntrackCleanupRequired),
	// which also clears the entries pinned before an address arrived. With
	// the four sharing a plane, each one's churn healed the others' flows and
	// every "blackholed" row read "recovered": true of a busy cluster, not of
	// the quiet node these rows describe.
	t.Run("proxies", func(t *testing.T) {
		for vi, version := range versions {
			for mi, mode := range []string{"iptables", "nftables"} {
				t.Run(version+"/"+mode, func(t *testing.T) {
					t.Parallel()
					p := localplane.New(t, localplane.Options{NoAWS: true})
					kube, err := kubernetes.NewForConfig(p.Config)
					if err != nil {
						t.Fatal(err)
					}
					lab, err := netlab.New(fmt.Sprintf("kp%d%d", vi, mi))
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { _ = lab.Close() })
					// The plane's Service CIDRs (localplane), routed off the node as
					// on a real one.
					for _, cidr := range []string{"10.96.0.0/16", "fd00:10:96::/108"} {
						if err := lab.RouteToSink(netip.MustParsePrefix(cidr)); err != nil {
							t.Fatal(err)
						}
					}
					node := fmt.Sprintf("kp-node-%d-%d", vi, mi)
					ctx := context.Background()
					kpOpts := localplane.KubeProxyOptions{Version: version, Mode: mode, Node: node, NodeIPs: []netip.Addr{netlab.NodeIP, netlab.NodeIP6}}
					kp, err := p.StartKubeProxy(ctx, lab.NSPath("node"), kpOpts)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(kp.Stop)
					for _, withAgent := range []bool{false, true} {
						// One Kubernetes namespace per phase: each kube-proxy sees every
						// Service, so the phases and labs use their own ports.
						ns := fmt.Sprintf("kp-%d-%d-%v", vi, mi, withAgent)
						if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
							t.Fatal(err)
						}
						var stopAgent func()
						var agentReg *prometheus.Registry
						if withAgent {
							var agent *conntrackagent.Agent
							agent, agentReg, stopAgent = startAgentIn(t, kube, lab, node)
							// The agent found this kube-proxy, asking it as on a node.
							if d := agent.Detected(); d.Mode != mode || !d.Acts() {
								t.Fatalf("the agent detected %+v, want kube-proxy in %s mode", d, mode)
							}
						}
						base := uint16(20000 + 1000*vi + 100*mi)
						if withAgent {
							base += 50
						}
						// A healthy flow per family through the whole phase: kube-proxy's
						// rules and the agent must not cost it a packet.
						var healthy []*kpRun
						var sentBefore, receivedBefore []int64
						for _, fam := range kpFamilies {
							h := &kpRun{fam: fam, t: t, ctx: ctx, kube: kube, lab: lab, ns: ns, name: "healthy-" + fam.name[2:],
								port: base + 40, podPort: base + 41, src: base + 42}
							t.Cleanup(h.stop)
							if err := errors.Join(h.createService(true), h.endpoints(fam.pod), h.flow(fam.lb)); err != nil {
								t.Fatal(err)
							}
							healthy = append(healthy, h)
						}
						for _, h := range healthy {
							// Counted once it flows steadily (kube-proxy's first syncs of a
							// new Service send its first packets to the load balancer).
							steady(t, h.receiver)
							sentBefore, receivedBefore = append(sentBefore, h.sender.Sent()), append(receivedBefore, h.receiver.Packets())
						}
						for group := 0; group < groups; group++ {
							if group == groupProxyDown {
								kp.Stop()
							}
							var runs []*kpRun
							var scs []kpScenario
							// Both families at once: kube-proxy runs one proxier, and one
							// cleanup, per family.
							for i, sc := range kpScenarios {
								if sc.group != group {
									continue
								}
								for _, fam := range kpFamilies {
									r := &kpRun{fam: fam, t: t, ctx: ctx, kube: kube, lab: lab, ns: ns, name: fmt.Sprintf("s%d-%s", i, fam.name[2:]),
										port: base + uint16(i), podPort: base + 10 + uint16(i), src: base + 20 + uint16(i)}
									t.Cleanup(r.stop)
									if err := sc.before(r); err != nil {
										t.Fatalf("%s %s: %v", sc.name, fam.name, err)
									}
									runs, scs = append(runs, r), append(scs, sc)
								}
							}
							if group == groupService {
								// kube-proxy's sync of these endpoints, and with it its cleanup,
								// must be over before the change: a sync that took in both
								// would clean the entry, which is not what happens on a node
								// where the address comes later.
								waitEndpointsProgrammed(t, kp, runs)
							}
							time.Sleep(1500 * time.Millisecond) // the flows settle: pinned, or refused
							for i, sc := range scs {
								if sc.delivering {
									steady(t, runs[i].receiver)
								} else if n := runs[i].receiver.Packets(); n != 0 {
									t.Fatalf("%s %s: %d packets reached the pod before the change: the scenario does not set up the failure", sc.name, runs[i].fam.name, n)
								}
							}
							changed := make([]time.Time, len(runs))
							sent0, received0 := make([]int64, len(runs)), make([]int64, len(runs))
							for i, sc := range scs {
								changed[i] = time.Now()
								sent0[i], received0[i] = runs[i].sender.Sent(), runs[i].receiver.Packets()
								if sc.change == nil {
									continue
								}
								if err := sc.change(runs[i]); err != nil {
									t.Fatalf("%s %s: %v", sc.name, runs[i].fam.name, err)
								}
							}
							if group == groupProxyDown {
								if kp, err = p.StartKubeProxy(ctx, lab.NSPath("node"), kpOpts); err != nil {
									t.Fatal(err)
								}
								t.Cleanup(kp.Stop)
							}
							// The window starts once kube-proxy has written its rules for the
							// change (its own sync takes from 0.1 s to seconds on a loaded
							// machine): then the flow recovers within it, or never.
							for _, r := range runs {
								if group == groupService || group == groupRecreate {
									waitAddressProgrammed(t, kp, r)
								} else {
									waitEndpointsProgrammed(t, kp, []*kpRun{r})
								}
							}
							time.Sleep(2 * time.Second)
							lastSecond := make([]int64, len(runs))
							for i := range runs {
								lastSecond[i] = runs[i].receiver.Packets()
							}
							time.Sleep(time.Second)
							for i, sc := range scs {
								n := runs[i].receiver.Packets()
								o := kpOutcome{recovered: n > 0, delivering: sc.delivering}
								switch {
								case sc.delivering:
									o.recovered = n > lastSecond[i]
									sent := runs[i].sender.Sent()
									runs[i].sender.Stop()
									time.Sleep(200 * time.Millisecond) // in flight
									o.lost = (sent - sent0[i]) - (runs[i].receiver.Packets() - received0[i])
									n = runs[i].receiver.Packets() - received0[i]
								case o.recovered:
									o.after = runs[i].receiver.First().Sub(changed[i]).Round(10 * time.Millisecond)
								}
								row := fmt.Sprintf("%s|%s|%s|%s", version, mode, runs[i].fam.name, sc.name)
								mu.Lock()
								if results[row] == nil {
									results[row] = map[bool]kpOutcome{}
								}
								results[row][withAgent] = o
								mu.Unlock()
								t.Logf("%s %-40s agent=%-5v %v (%d packets)", runs[i].fam.name, sc.name, withAgent, o, n)
								runs[i].stop()
							}
						}
						for i, h := range healthy {
							sent := h.sender.Sent()
							time.Sleep(200 * time.Millisecond) // in flight
							h.sender.Stop()
							time.Sleep(100 * time.Millisecond)
							if got, want := h.receiver.Packets()-receivedBefore[i], sent-sentBefore[i]; got < want {
								t.Errorf("healthy %s flow (agent=%v): %d of %d packets received", h.fam.name, withAgent, got, want)
							}
							h.stop()
						}
						if stopAgent != nil {
							// The triggered passes read the index kept from the kernel's
							// events, not a kernel dump (bench/README.md: what it saves).
							if n := counterWith(t, agentReg, "telemetry_conntrack_pass_reads_total", "index"); n == 0 {
								t.Errorf("no pass read the index (kernel: %v)", counterWith(t, agentReg, "telemetry_conntrack_pass_reads_total", "kernel"))
							}
							stopAgent()
						}
					}
					if t.Failed() {
						rules, _ := kp.Rules()
						t.Logf("%s\n%s", rules, kp.LogTail(30))
					}
				})
			}
		}
	})
	if t.Failed() {
		return // a failed run's results are incomplete
	}
	// The agent never makes a case worse than kube-proxy alone, and fixes
	// every case of this list.
	for row, o := range results {
		if !o[true].recovered {
			t.Errorf("%s: not recovered with the agent", row)
		}
	}
	checkDocsTable(t, results)
}

// waitEndpointsProgrammed waits until kube-proxy's rules send to each run's
// endpoint.
func waitEndpointsProgrammed(t *testing.T, kp *localplane.KubeProxy, runs []*kpRun) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		rules, err := kp.Rules()
		missing := ""
		for _, r := range runs {
			pod := r.target
			if !pod.IsValid() {
				pod = r.fam.pod
			}
			if ep := netip.AddrPortFrom(pod, r.podPort).String(); !strings.Contains(rules, ep) {
				missing = ep
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-proxy has no rule to %s (%v)\n%s", missing, err, kp.LogTail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitAddressProgrammed waits until kube-proxy's rules match the run's
// Service address (its LB IP or external IP) with its port: an iptables
// rule "-d ADDR/BITS ... --dport PORT", or an nftables map element
// "ADDR . udp . PORT".
func waitAddressProgrammed(t *testing.T, kp *localplane.KubeProxy, r *kpRun) {
	t.Helper()
	addr := r.fam.lb
	if len(r.svc.Spec.ExternalIPs) > 0 {
		addr = r.fam.extIP
	}
	iptDst := fmt.Sprintf("-d %s/%d ", addr, addr.BitLen())
	iptPort := fmt.Sprintf("--dport %d ", r.port)
	nftElem := fmt.Sprintf("%s . udp . %d", addr, r.port)
	deadline := time.Now().Add(15 * time.Second)
	for {
		rules, _ := kp.Rules()
		for _, line := range strings.Split(rules, "\n") {
			if (strings.Contains(line, iptDst) && strings.Contains(line, iptPort)) || strings.Contains(line, nftElem) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-proxy has no rule for %s port %d\n%s", addr, r.port, rules)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// steady waits until a 20 ms flow has delivered at least 45 packets in the
// last second.
func steady(t *testing.T, r *netlab.Receiver) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for last := r.Packets(); time.Now().Before(deadline); {
		time.Sleep(time.Second)
		n := r.Packets()
		if n-last >= 45 {
			return
		}
		last = n
	}
	t.Fatal("the healthy flow does not reach its pod steadily")
}

func startAgentIn(t *testing.T, kube kubernetes.Interface, lab *netlab.Lab, node string) (*conntrackagent.Agent, *prometheus.Registry, func()) {
	return startAgentInNS(t, kube, lab, "node", node)
}

// startAgentInNS is startAgentIn on the lab's node namespace ns (node2).
func startAgentInNS(t *testing.T, kube kubernetes.Interface, lab *netlab.Lab, ns, node string) (*conntrackagent.Agent, *prometheus.Registry, func()) {
	handle, err := os.Open(lab.NSPath(ns))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { handle.Close() })
	ct := &conntrackagent.Netlink{NetNS: int(handle.Fd()), Workers: 2, RecvBuffer: 1 << 20}
	reg := prometheus.NewRegistry()
	a := conntrackagent.New(conntrackagent.Config{
		Client: kube, Conntrack: ct, NodeName: node, Period: time.Hour, Debounce: 50 * time.Millisecond,
		TombstoneTTL: time.Minute, Recheck: 200 * time.Millisecond, RecheckMax: time.Second, LocalAddrs: ct.LocalAddrs,
		IndexMax: 100_000, // triggered passes read the index kept from the kernel's events
		Metrics:  conntrackagent.NewMetrics(reg), Log: testr.New(t),
		// kube-proxy's metrics address in the node's namespace, as the agent
		// on the host network reaches it.
		Dataplane: conntrackagent.DataplaneProbe{URL: "http://127.0.0.1:10249",
			Dial: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
				err = lab.InNS(ns, func() error {
					conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
					return err
				})
				return conn, err
			}}.Detect,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for a.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatal("agent not ready")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return a, reg, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent: %v", err)
		}
	}
}

const (
	docsPath   = "../../docs/controllers/conntrack-agent.md"
	tableBegin = "<!-- kube-proxy table: written by TestAgentWithRealKubeProxy with UPDATE_DOCS=1; make test checks it -->"
	tableEnd   = "<!-- end of kube-proxy table -->"
)

func (o kpOutcome) String() string {
	switch {
	case !o.recovered:
		return "blackholed"
	case o.delivering && o.lost == 0:
		return "kept (0 packets lost)"
	case o.delivering:
		return fmt.Sprintf("cut (%d packets lost, %.1f s)", o.lost, (time.Duration(o.lost) * 20 * time.Millisecond).Seconds())
	}
	return fmt.Sprintf("recovered (%.1f s)", o.after.Seconds())
}

// category is what the check compares of a cell: blackholed or recovered;
// for a flow that was delivering, only whether it still is (kept or cut
// varies with kube-proxy's timing: v1.37 removes the entries of a Service
// that has no endpoints when its sync falls between the Service's
// re-creation and its EndpointSlice's).
func category(cell string) string {
	switch w := strings.Fields(cell)[0]; w {
	case "kept", "cut":
		return "delivering"
	default:
		return w
	}
}

// checkDocsTable compares the docs' table with the results: blackholed or
// recovered for each row and column (times vary from run to run and are not
// compared). UPDATE_DOCS=1 rewrites the table from this run.
func checkDocsTable(t *testing.T, results map[string]map[bool]kpOutcome) {
	t.Helper()
	data, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	begin, end := strings.Index(doc, tableBegin), strings.Index(doc, tableEnd)
	if begin < 0 || end < begin {
		t.Fatalf("%s has no kube-proxy table between %q and %q", docsPath, tableBegin, tableEnd)
	}
	var rows []string
	for row := range results {
		rows = append(rows, row)
	}
	sort.Strings(rows)
	if os.Getenv("UPDATE_DOCS") == "1" {
		var b strings.Builder
		b.WriteString(tableBegin + "\n\n| kube-proxy | mode | family | scenario | kube-proxy alone | with the agent |\n|---|---|---|---|---|---|\n")
		for _, row := range rows {
			f := strings.Split(row, "|")
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", f[0], f[1], f[2], f[3], results[row][false], results[row][true])
		}
		b.WriteString("\n")
		doc = doc[:begin] + b.String() + doc[end:]
		if err := os.WriteFile(docsPath, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	documented := map[string][2]string{}
	for _, line := range strings.Split(doc[begin:end], "\n") {
		f := strings.Split(strings.Trim(line, "| "), " | ")
		if len(f) == 6 {
			documented[strings.Join(f[:4], "|")] = [2]string{category(f[4]), category(f[5])}
		}
	}
	for _, row := range rows {
		d, ok := documented[row]
		got := [2]string{category(results[row][false].String()), category(results[row][true].String())}
		if !ok || d != got {
			t.Errorf("%s: measured %v, %s says %v: the docs must say what happens "+
				"(UPDATE_DOCS=1 go test -run TestAgentWithRealKubeProxy ./controllers/conntrackagent/ rewrites the table)", row, got, docsPath, d)
		}
	}
}
