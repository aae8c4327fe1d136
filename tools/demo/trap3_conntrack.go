package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/conntrackagent"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/metricread"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/scenario"
)

// Trap 3: stale UDP conntrack with the real kube-proxy, in network namespaces.

func (d *demo) conntrack() error {
	// Never a skipped trap: the demo stops with the command that sets up
	// what is missing (`make demo` runs `make deps` first).
	if err := netlab.Check(); err != nil {
		return fmt.Errorf("trap 3 cannot run here: %w. As root, `make deps` installs the packages and `make demo` runs it", err)
	}
	lab, err := netlab.New("demo")
	if err != nil {
		return err
	}
	defer lab.Close()
	kp, err := d.plane.StartKubeProxy(d.ctx, lab.NSPath("node"), localplane.KubeProxyOptions{
		Mode: "iptables", Node: "demo-node", NodeIPs: []netip.Addr{netlab.NodeIP}})
	if err != nil {
		return err
	}
	defer kp.Stop()
	d.note("kube-proxy %s (%s mode) runs in the node's namespace against the API server", kp.Version, kp.Mode)
	kube, err := kubernetes.NewForConfig(d.plane.Config)
	if err != nil {
		return err
	}
	sflow := scenario.UDPService{Kube: kube, Namespace: "telemetry", Name: "sflow", Port: 6343, PodPort: 16343}
	svc, err := sflow.Create(d.ctx)
	if err != nil {
		return err
	}
	if err := sflow.Endpoints(d.ctx, netlab.PodIP); err != nil {
		return err
	}
	lb, pod := netip.AddrPortFrom(netlab.LBIP, 6343), netip.AddrPortFrom(netlab.PodIP, 16343)
	// kube-proxy has the endpoint before the flow starts: on a loaded machine
	// its first sync could otherwise see the endpoint and the LB IP together,
	// and the cleanup of a Service's first endpoint would take the flow's
	// entry with it (the case kube-proxy does handle).
	if err := d.waitFor(10*time.Second, func() (bool, error) {
		rules, err := kp.Rules()
		return strings.Contains(rules, pod.String()), err
	}); err != nil {
		return fmt.Errorf("kube-proxy wrote no rule for the collector pod: %w", err)
	}
	r, err := lab.Listen("pod", pod)
	if err != nil {
		return err
	}
	defer r.Close()
	sender, err := lab.Send(40000, lb, 10*time.Millisecond)
	if err != nil {
		return err
	}
	defer sender.Stop()
	d.note("a UDP Service with a ready collector pod; a switch already exports sFlow from 192.0.2.2:40000 to %s, 100 packets/s,", lb)
	d.note("  the address its load balancer (MetalLB, kube-vip) will announce, but has not written into the Service yet")
	time.Sleep(700 * time.Millisecond)
	out, _ := lab.Output("node", "conntrack", "-L", "-p", "udp", "--orig-dst", netlab.LBIP.String())
	d.note("node's entry, never NATed (the address is no Service's yet): %s", firstLine(out))
	if _, err := sflow.AssignLB(d.ctx, svc, netlab.LBIP); err != nil {
		return err
	}
	if err := d.waitFor(10*time.Second, func() (bool, error) {
		rules, err := kp.Rules()
		return strings.Contains(rules, netlab.LBIP.String()+"/32"), err
	}); err != nil {
		return fmt.Errorf("kube-proxy wrote no rule for the LB IP: %w", err)
	}
	d.note("the load balancer writes %s into the Service's status; kube-proxy writes its DNAT rule for it", netlab.LBIP)
	const window = 3 * time.Second
	time.Sleep(window)
	if n := r.Packets(); n != 0 {
		return fmt.Errorf("the pod received %d packets with kube-proxy alone: the flow was not blackholed, so this demo's claim is false", n)
	}
	d.note("%v later the pod has received 0 of %d packets: kube-proxy cleans conntrack only when endpoints change, so the", window, sender.Sent())
	d.note("  never-NATed entry keeps pinning the flow, for as long as the switch sends")

	t0 := time.Now()
	reg := prometheus.NewRegistry()
	if !d.noAgent {
		var stop func()
		reg, stop = d.startAgent(kube, lab.NodeNS(), "demo-node")
		defer stop()
	}
	wctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
	defer cancel()
	at, err := r.WaitPacket(wctx, t0)
	if err != nil {
		return fmt.Errorf("the flow was not restored by the agent: %w", err)
	}
	latency := at.Sub(t0).Round(time.Millisecond)
	deleted, err := metricread.Sum(reg, "telemetry_conntrack_entries_deleted_total")
	if err != nil {
		return err
	}
	if deleted < 1 {
		return fmt.Errorf("the flow came back, but the agent's metric says it deleted %v entries", deleted)
	}
	d.note("the conntrack agent starts: it deleted %v stale entry (its metric, from the kernel's answers); first packet at the pod %v later", deleted, latency)
	time.Sleep(300 * time.Millisecond)
	out, _ = lab.Output("node", "conntrack", "-L", "-p", "udp", "--orig-dst", netlab.LBIP.String())
	d.note("node's entry now, NATed to the pod: %s", firstLine(out))
	d.result("Stale conntrack", fmt.Sprintf("blackholed flow restored %v after the agent started (kube-proxy %s alone: 0 packets in %v)", latency, kp.Version, window))
	return nil
}

// startAgent runs the conntrack agent on the node whose network namespace
// is nsFD until stop, its metrics in reg.
func (d *demo) startAgent(kube kubernetes.Interface, nsFD int, node string) (reg *prometheus.Registry, stop func()) {
	ct := &conntrackagent.Netlink{NetNS: nsFD, Workers: 2}
	reg = prometheus.NewRegistry()
	agent := conntrackagent.New(conntrackagent.Config{Client: kube, Conntrack: ct, NodeName: node, Period: time.Minute, Debounce: 100 * time.Millisecond,
		TombstoneTTL: time.Minute, Recheck: 200 * time.Millisecond, RecheckMax: time.Second, LocalAddrs: ct.LocalAddrs,
		IndexMax: conntrackagent.DefaultIndexMax, Metrics: conntrackagent.NewMetrics(reg), Log: logr.Discard()})
	actx, cancel := context.WithCancel(d.ctx)
	done := make(chan error, 1)
	go func() { done <- agent.Run(actx) }()
	return reg, func() { cancel(); <-done }
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "udp") {
			return strings.Join(strings.Fields(l), " ")
		}
	}
	return "(none)"
}
