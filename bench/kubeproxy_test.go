package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/conntrackagent"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/scenario"
)

// kpBench is a lab node running the real kube-proxy (the newest built,
// iptables mode) and the agent with its default timings, against a plane.
type kpBench struct {
	ctx   context.Context
	kube  kubernetes.Interface
	lab   *netlab.Lab
	kp    *localplane.KubeProxy
	ct    *conntrackagent.Netlink
	agent *conntrackagent.Agent
	reg   *prometheus.Registry
}

func startKPBench(b *testing.B, prefix string) *kpBench {
	b.Helper()
	if err := netlab.Check(); err != nil {
		b.Fatal(err)
	}
	p := localplane.New(b, localplane.Options{NoAWS: true})
	kube, err := kubernetes.NewForConfig(p.Config)
	if err != nil {
		b.Fatal(err)
	}
	lab, err := netlab.New(prefix)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = lab.Close() })
	ctx := context.Background()
	kp, err := p.StartKubeProxy(ctx, lab.NSPath("node"), localplane.KubeProxyOptions{Mode: "iptables", Node: "bench-node", NodeIPs: []netip.Addr{netlab.NodeIP}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(kp.Stop)
	ct := &conntrackagent.Netlink{NetNS: lab.NodeNS(), Workers: 4, RecvBuffer: 8 << 20}
	reg := prometheus.NewRegistry()
	// The binary's defaults (controllers/cmd/conntrack-agent).
	cfg := conntrackagent.DefaultConfig()
	cfg.Client, cfg.Conntrack, cfg.NodeName, cfg.LocalAddrs = kube, ct, "bench-node", ct.LocalAddrs
	cfg.Metrics = conntrackagent.NewMetrics(reg)
	agent := conntrackagent.New(cfg)
	return &kpBench{ctx: ctx, kube: kube, lab: lab, kp: kp, ct: ct, agent: agent, reg: reg}
}

func (k *kpBench) run(b *testing.B) {
	actx, stop := context.WithCancel(k.ctx)
	done := make(chan error, 1)
	go func() { done <- k.agent.Run(actx) }()
	b.Cleanup(func() { stop(); <-done })
	for k.agent.Ready() != nil {
		time.Sleep(10 * time.Millisecond)
	}
}

func (k *kpBench) service(b *testing.B, name string, port, podPort int32, pod netip.Addr) *corev1.Service {
	b.Helper()
	svc, err := (scenario.UDPService{Kube: k.kube, Namespace: "default", Name: name, Port: port}).Create(k.ctx)
	if err != nil {
		b.Fatal(err)
	}
	k.endpoints(b, name, podPort, pod)
	return svc
}

func (k *kpBench) endpoints(b *testing.B, name string, podPort int32, pod netip.Addr) {
	b.Helper()
	if err := (scenario.UDPService{Kube: k.kube, Namespace: "default", Name: name, PodPort: podPort}).Endpoints(k.ctx, pod); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkConntrackRecoveryKubeProxy: the case the agent exists for, with
// the real kube-proxy: a UDP flow to an LB IP that is written into a ready
// Service's status while the flow already arrives (kube-proxy alone leaves
// it blackholed). 20 trials, each with its own Service and port. Two
// latencies: from the status write to the first packet at the pod (it
// includes kube-proxy's own sync, at most one per second), and from the
// moment kube-proxy's rule for the LB IP is in place (polled every 5 ms) to
// the first packet: what the agent adds. Needs root; -benchtime=1x.
func BenchmarkConntrackRecoveryKubeProxy(b *testing.B) {
	k := startKPBench(b, "ctkprec")
	k.run(b)
	const trials = 20
	for n := 0; n < b.N; n++ {
		var fromWrite, fromRule []time.Duration
		for trial := 0; trial < trials; trial++ {
			name := fmt.Sprintf("late-%d-%d", n, trial)
			port := int32(7000 + 100*n + trial)
			svc := k.service(b, name, port, port+10000, netlab.PodIP)
			pod, err := k.lab.Listen("pod", netip.AddrPortFrom(netlab.PodIP, uint16(port+10000)))
			if err != nil {
				b.Fatal(err)
			}
			lb := netip.AddrPortFrom(netlab.LBIP, uint16(port))
			sender, err := k.lab.Send(uint16(40000+trial), lb, 5*time.Millisecond) // 200 packets/s
			if err != nil {
				b.Fatal(err)
			}
			time.Sleep(1500 * time.Millisecond) // kube-proxy's sync of the endpoints, and the flow pinned
			if pod.Packets() != 0 {
				b.Fatal("packets reached the pod before the LB IP was assigned")
			}
			svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: netlab.LBIP.String()}}
			if _, err := k.kube.CoreV1().Services("default").UpdateStatus(k.ctx, svc, metav1.UpdateOptions{}); err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			rule := fmt.Sprintf("-d %s/32 -p udp -m comment --comment \"default/%s:flows loadbalancer IP\" -m udp --dport %d", netlab.LBIP, name, port)
			var ruleAt time.Time
			for ruleAt.IsZero() && time.Since(t0) < 10*time.Second {
				if rules, _ := k.kp.Rules(); strings.Contains(rules, rule) {
					ruleAt = time.Now()
				} else {
					time.Sleep(5 * time.Millisecond)
				}
			}
			if ruleAt.IsZero() {
				b.Fatalf("kube-proxy wrote no rule %q", rule)
			}
			wctx, cancel := context.WithTimeout(k.ctx, 10*time.Second)
			at, err := pod.WaitPacket(wctx, t0)
			cancel()
			if err != nil {
				b.Fatalf("trial %d: the flow was not restored", trial)
			}
			fromWrite, fromRule = append(fromWrite, at.Sub(t0)), append(fromRule, max(0, at.Sub(ruleAt)))
			sender.Stop()
			pod.Close()
		}
		for _, l := range []struct {
			name string
			d    []time.Duration
		}{{"from the status write", fromWrite}, {"from kube-proxy's rule", fromRule}} {
			slices.Sort(l.d)
			p50, p99 := l.d[len(l.d)/2], l.d[len(l.d)*99/100]
			fmt.Fprintf(os.Stderr, "recovery %s over %d trials: p50 %v, p99 %v, min %v, max %v\n", l.name, trials,
				p50.Round(time.Millisecond), p99.Round(time.Millisecond), l.d[0].Round(time.Millisecond), l.d[len(l.d)-1].Round(time.Millisecond))
		}
		slices.Sort(fromRule)
		b.ReportMetric(float64(fromRule[len(fromRule)/2].Microseconds())/1000, "p50-after-rule-ms")
		b.ReportMetric(float64(fromRule[len(fromRule)*99/100].Microseconds())/1000, "p99-after-rule-ms")
	}
}

// BenchmarkConntrackUnrelatedUpdates: 100 endpoint changes of one UDP
// Service (an endpoint replaced, each a trigger) while the node's table
// holds 200,000 entries of other destinations: the CPU the process spends
// (getrusage) with the agent running, minus the same 100 updates without it
// (the benchmark's own API calls), measured in the same run. Then what the
// index costs: 50,000 entries created and deleted (100,000 conntrack events
// the agent reads), with the agent minus without. Needs root.
func BenchmarkConntrackUnrelatedUpdates(b *testing.B) {
	k := startKPBench(b, "ctkpcpu")
	nsf, err := os.Open(k.lab.NSPath("node"))
	if err != nil {
		b.Fatal(err)
	}
	defer nsf.Close()
	fill(b, int(nsf.Fd()), map[string]int{"unrelated": 200_000})
	k.service(b, "busy", 5000, 15000, netlab.PodIP)
	cpu := func(work func()) float64 {
		var before, after syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
		work()
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
		s := func(r syscall.Rusage) float64 { return float64(r.Utime.Nano()+r.Stime.Nano()) / 1e9 }
		return s(after) - s(before)
	}
	updates := func() {
		for i := 0; i < 100; i++ {
			pod := netlab.PodIP
			if i%2 == 0 {
				pod = netlab.Pod2IP
			}
			k.endpoints(b, "busy", 15000, pod)
			time.Sleep(120 * time.Millisecond) // past the debounce: one pass each
		}
		time.Sleep(2 * time.Second) // rechecks, if any
	}
	// The churn runs in its own process: what this process spends meanwhile
	// is the agent reading the events (and nothing without it).
	churnBin := filepath.Join(b.TempDir(), "ctchurn")
	build := exec.Command("go", "build", "-o", churnBin, "./bench/cmd/ctchurn")
	build.Dir = localplane.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	churn := func() {
		if out, err := exec.Command("nsenter", "--net="+k.lab.NSPath("node"), churnBin, "-n", "50000", "-port", fmt.Sprint(churnPort)).CombinedOutput(); err != nil {
			b.Fatalf("churn: %v\n%s", err, out)
		}
		time.Sleep(time.Second) // the events read
	}
	for n := 0; n < b.N; n++ {
		baseline, churnBaseline := cpu(updates), cpu(churn)
		k.run(b)
		with, churnWith := cpu(updates), cpu(churn)
		kernel := counterWith(b, k.reg, "telemetry_conntrack_pass_reads_total", "kernel")
		index := counterWith(b, k.reg, "telemetry_conntrack_pass_reads_total", "index")
		lost := counter(b, k.reg, "telemetry_conntrack_events_lost_total")
		fmt.Fprintf(os.Stderr, "100 endpoint updates with 200,000 entries in the table: %.2f CPU-s with the agent, %.2f without; the agent's share %.2f CPU-s (passes read from the index %v, from the kernel %v)\n",
			with, baseline, with-baseline, index, kernel)
		fmt.Fprintf(os.Stderr, "50,000 entries created and deleted (100,000 events): %.2f CPU-s with the agent, %.2f without; the agent's share %.2f CPU-s (%.1f µs an event; events lost %v times)\n",
			churnWith, churnBaseline, churnWith-churnBaseline, (churnWith-churnBaseline)/100_000*1e6, lost)
		b.ReportMetric(with-baseline, "agent-cpu-s")
		b.ReportMetric(baseline, "baseline-cpu-s")
		b.ReportMetric((churnWith-churnBaseline)/100_000*1e6, "agent-cpu-us-per-event")
	}
}
