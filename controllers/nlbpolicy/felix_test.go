package nlbpolicy_test

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/netlab"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/standin"
)

// rootFirewall is the root namespace's iptables and nftables rules, without
// counters: the test asserts Felix never changed them.
func rootFirewall(t *testing.T) string {
	t.Helper()
	var out strings.Builder
	for _, cmd := range [][]string{{"iptables-save"}, {"ip6tables-save"}, {"nft", "list", "ruleset"}} {
		if _, err := exec.LookPath(cmd[0]); err != nil {
			continue
		}
		b, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v: %s", cmd, err, b)
		}
		out.Write(b)
	}
	// Comments with times and counters change without a rule changing.
	return regexp.MustCompile(`(?m)^#.*$|\[\d+:\d+\]`).ReplaceAllString(out.String(), "")
}

// policyChains counts Felix's policy chains (cali-pi-*) in the node.
func policyChains(t *testing.T, f *localplane.Felix) int {
	t.Helper()
	rules, err := f.Rules()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(rules, "\n:cali-pi-")
}

// TestFelixEnforcesPolicies: the real nlb-policy controller generates
// policies from a real Service, Calico's real Felix programs them in the
// lab's node namespace, and packets decide: UDP from a listed source reaches
// the collector through the NodePort, from an unlisted source it does not;
// the NLB subnets' health checks reach the health-check NodePort, others do
// not; a source removed from the Service stops within a second (one-way
// UDP; measured); deleting the Service leaves no policy chain behind; the
// root namespace's firewall is untouched throughout. kube-proxy is stood in
// for by the lab's DNAT rules (the conntrack agent's tests run the real one).
func TestFelixEnforcesPolicies(t *testing.T) {
	if err := netlab.Check(); err != nil {
		t.Fatal(err)
	}
	rootBefore := rootFirewall(t)
	lab, err := netlab.New("fx")
	if err != nil {
		t.Fatal(err)
	}
	defer lab.Close()
	listed, unlisted, health := netlab.ClientIP, netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("10.0.33.1")
	for _, p := range []string{"192.0.2.3/24", "10.0.33.1/20"} {
		if err := lab.AddClientAddress(netip.MustParsePrefix(p)); err != nil {
			t.Fatal(err)
		}
	}

	p := localplane.New(t, localplane.Options{})
	c, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "telemetry"}}); err != nil {
		t.Fatal(err)
	}
	lbs := standin.StartLoadBalancerController(c, p.AWS.Config(), p.AWS.VPCID)
	defer lbs.Stop()
	startController(t, p, false)
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err != nil || len(nodes.Items) == 0 {
		t.Fatalf("no Node in the plane (%v)", err)
	}
	felix, err := p.StartFelix(ctx, lab.NSPath("node"), localplane.FelixNode{Name: nodes.Items[0].Name, IP: netlab.NodeIP})
	if err != nil {
		t.Fatal(err)
	}
	defer felix.Stop()
	baseline := policyChains(t, felix)

	svc := service("telemetry", "flows", func(s *corev1.Service) {
		s.Spec.LoadBalancerSourceRanges = []string{listed.String() + "/32"}
	})
	if err := c.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the controller's acknowledgement", func() (bool, string) {
		got, ok := get(t, c, svc)
		return ok && ack.Current(got) && got.Spec.HealthCheckNodePort != 0, "not yet"
	})
	got, _ := get(t, c, svc)
	nodePort := netip.AddrPortFrom(netlab.NodeIP, uint16(got.Spec.Ports[0].NodePort))
	healthPort := netip.AddrPortFrom(netlab.NodeIP, uint16(got.Spec.HealthCheckNodePort))
	collector, healthTarget := netip.AddrPortFrom(netlab.PodIP, 6343), netip.AddrPortFrom(netlab.PodIP, 10256)
	if err := lab.DNATProto("udp", nodePort, collector); err != nil {
		t.Fatal(err)
	}
	if err := lab.DNATProto("tcp", healthPort, healthTarget); err != nil {
		t.Fatal(err)
	}
	r, err := lab.Listen("pod", collector)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	hl, err := lab.ListenTCP("pod", healthTarget)
	if err != nil {
		t.Fatal(err)
	}
	defer hl.Close()
	for _, src := range []netip.AddrPort{netip.AddrPortFrom(listed, 40001), netip.AddrPortFrom(unlisted, 40002)} {
		s, err := lab.SendFrom(src, nodePort, 20*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Stop()
	}

	eventually(t, "the listed source's flow at the collector", func() (bool, string) {
		n, _ := r.From(listed)
		return n > 0, felix.LogTail(5)
	})
	time.Sleep(time.Second)
	if n, _ := r.From(unlisted); n != 0 {
		t.Fatalf("Felix let %d packets of the unlisted source through", n)
	}
	if err := lab.DialTCP(health, healthPort, 3*time.Second); err != nil {
		t.Errorf("a health check from the NLB's subnet did not reach the health-check NodePort: %v", err)
	}
	if err := lab.DialTCP(unlisted, healthPort, time.Second); err == nil {
		t.Errorf("the unlisted source reached the health-check NodePort")
	}
	if policyChains(t, felix) <= baseline {
		t.Errorf("no policy chain in the node for the Service's policies")
	}

	// The listed source removed: its flow stops.
	update(t, c, svc, func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = []string{"198.51.100.200/32"} })
	edited := time.Now()
	eventually(t, "the removed source's flow to stop", func() (bool, string) {
		_, last := r.From(listed)
		return time.Since(last) > 500*time.Millisecond, fmt.Sprintf("last packet %s ago", time.Since(last))
	})
	_, last := r.From(listed)
	t.Logf("a removed source's one-way UDP flow stopped %.0f ms after the Service edit (its last packet came then)",
		last.Sub(edited).Seconds()*1000)
	if last.Sub(edited) > time.Second {
		t.Errorf("the removed source kept passing for %s after the edit, more than a second", last.Sub(edited))
	}

	// The Service deleted: the policies go, and Felix's chains with them.
	if err := c.Delete(ctx, svc); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Felix's policy chains gone with the Service", func() (bool, string) {
		n := policyChains(t, felix)
		return n == baseline, fmt.Sprintf("%d policy chains, %d before the Service", n, baseline)
	})
	if after := rootFirewall(t); after != rootBefore {
		t.Errorf("the root namespace's firewall changed while Felix ran:\nbefore:\n%s\nafter:\n%s", rootBefore, after)
	}
}
