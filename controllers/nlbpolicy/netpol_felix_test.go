package nlbpolicy_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/nlbpolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/pipeline"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// TestNetworkPolicyBackendWithFelix: the controller's NetworkPolicy backend,
// enforced by real Felix on a real workload endpoint (the Pod on Felix's
// node, its link named as Calico's CNI names it), with ip targets, IPv4 and
// IPv6. Listed sources reach the collector and unlisted ones never do; the
// NLB's health checks reach the target port over TCP; the pod's other ports
// stay open to anyone; a removed source's one-way flow stops. A namespace's
// own policy that selects the pods makes the controller withdraw its policy
// and its acknowledgement (closed: the flow stops, nothing is widened), and
// lifting it brings both back. Switching the Service to the calico backend
// and back loses no datagram of a listed flow and passes none of an
// unlisted one. Deleting the Service deletes the policy.
func TestNetworkPolicyBackendWithFelix(t *testing.T) {
	unlisted4, unlisted6, health := netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("2001:db8:2::3"), netip.MustParseAddr("10.0.33.1")
	fl := startFelixLabWith(t, "fn", []nlbpolicy.Backend{nlbpolicy.BackendNetworkPolicy, nlbpolicy.BackendCalico},
		"192.0.2.3/24", "10.0.33.1/20", "2001:db8:2::3/64")
	lab, c := fl.lab, fl.c
	ctx := context.Background()
	listed4, listed6 := netlab.ClientIP, netlab.ClientIP6

	svc := service("telemetry", "np", func(s *corev1.Service) {
		s.Annotations[lbc.NLBTargetType] = lbc.TargetIP
		s.Spec.LoadBalancerSourceRanges = []string{listed4.String() + "/32", listed6.String() + "/128"}
	})
	if err := c.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	acknowledged := func(what string) *corev1.Service {
		t.Helper()
		var got *corev1.Service
		eventually(t, what, func() (bool, string) {
			var ok bool
			got, ok = get(t, c, svc)
			return ok && ack.Current(got), fmt.Sprint(got.Annotations[annotations.Enforced])
		})
		return got
	}
	acknowledged("the acknowledgement of the NetworkPolicy")
	npKey := client.ObjectKey{Namespace: "telemetry", Name: nlbpolicy.NetworkPolicyName("telemetry", "np")}
	if err := c.Get(ctx, npKey, &networkingv1.NetworkPolicy{}); err != nil {
		t.Fatalf("the Service's NetworkPolicy: %v", err)
	}

	// The collector: a Pod whose workload endpoint Felix programs; flows
	// start once its chains are in place (before, the link is not a
	// workload's and Felix does not see it).
	kube := kubernetes.NewForConfigOrDie(fl.plane.Config)
	link, err := pipeline.Workload(ctx, kube, lab, fl.node.Name, "pod", &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "collector-0", Labels: map[string]string{"app": "sfacctd"}}})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "Felix's chains for the workload", func() (bool, string) {
		rules, err := fl.felix.Rules()
		return err == nil && strings.Contains(rules, ":cali-tw-"+link), fl.felix.LogTail(5)
	})
	collector4, collector6 := netip.AddrPortFrom(netlab.PodIP, 6343), netip.AddrPortFrom(netlab.PodIP6, 6343)
	var receivers []*netlab.Receiver
	listen := func(addr netip.AddrPort) *netlab.Receiver {
		r, err := lab.Listen("pod", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
		receivers = append(receivers, r)
		return r
	}
	r4, r6 := listen(collector4), listen(collector6)
	send := func(src netip.Addr, port uint16, dst netip.AddrPort) *netlab.Sender {
		s, err := lab.SendFrom(netip.AddrPortFrom(src, port), dst, 10*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		return s
	}
	l4, l6 := send(listed4, 40001, collector4), send(listed6, 40002, collector6)
	send(unlisted4, 40003, collector4)
	send(unlisted6, 40004, collector6)
	unlistedNever := func(when string) {
		t.Helper()
		if n, _ := r4.From(unlisted4); n != 0 {
			t.Fatalf("%s: %d datagrams of the unlisted IPv4 source reached the collector", when, n)
		}
		if n, _ := r6.From(unlisted6); n != 0 {
			t.Fatalf("%s: %d datagrams of the unlisted IPv6 source reached the collector", when, n)
		}
	}
	eventually(t, "both listed flows at the collector", func() (bool, string) {
		n4, _ := r4.From(listed4)
		n6, _ := r6.From(listed6)
		return n4 > 0 && n6 > 0, fmt.Sprintf("IPv4 %d, IPv6 %d; %s", n4, n6, fl.felix.LogTail(5))
	})
	unlistedNever("enforced")

	// Health checks: TCP to the target port, from the NLB's subnets only.
	hl, err := lab.ListenTCP("pod", netip.AddrPortFrom(netlab.PodIP, 6343))
	if err != nil {
		t.Fatal(err)
	}
	defer hl.Close()
	if err := lab.DialTCP(health, netip.AddrPortFrom(netlab.PodIP, 6343), 3*time.Second); err != nil {
		t.Errorf("a health check from the NLB's subnet did not reach the target port: %v", err)
	}
	if err := lab.DialTCP(unlisted4, netip.AddrPortFrom(netlab.PodIP, 6343), time.Second); err == nil {
		t.Errorf("an unlisted source reached the target port over TCP")
	}
	// The pod's other ports: open to anyone, TCP and UDP, IPv4 and IPv6.
	for _, addr := range []netip.AddrPort{netip.AddrPortFrom(netlab.PodIP, 9100), netip.AddrPortFrom(netlab.PodIP6, 9100)} {
		ln, err := lab.ListenTCP("pod", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		src := unlisted4
		if addr.Addr().Is6() {
			src = unlisted6
		}
		if err := lab.DialTCP(src, addr, 3*time.Second); err != nil {
			t.Errorf("the pod's metrics port %s is cut for %s: %v", addr, src, err)
		}
	}
	other := listen(netip.AddrPortFrom(netlab.PodIP, 9995))
	send(unlisted4, 40005, netip.AddrPortFrom(netlab.PodIP, 9995))
	eventually(t, "an unlisted source's datagrams to another UDP port", func() (bool, string) {
		n, _ := other.From(unlisted4)
		return n > 0, "none yet"
	})

	// A source removed: its one-way flow stops.
	update(t, c, svc, func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = []string{listed6.String() + "/128"} })
	edited := time.Now()
	eventually(t, "the removed source's flow to stop", func() (bool, string) {
		_, last := r4.From(listed4)
		return time.Since(last) > 500*time.Millisecond, fmt.Sprintf("last datagram %s ago", time.Since(last))
	})
	_, last := r4.From(listed4)
	t.Logf("a removed source's one-way UDP flow stopped %.0f ms after the Service edit", last.Sub(edited).Seconds()*1000)
	acknowledged("the acknowledgement of the edit")
	l4.Stop()

	// The namespace's own default deny: the controller cannot narrow
	// beside it, so its policy admits nothing more and the Service is not
	// acknowledged; the pods are as closed as the admin made them. Lifted,
	// the controller's policy, still isolating the pods, keeps them closed
	// until it admits the sources again.
	deny := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "telemetry", Name: "default-deny"},
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}
	if err := c.Create(ctx, deny); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the acknowledgement withdrawn, naming the namespace's policy", func() (bool, string) {
		got, _ := get(t, c, svc)
		a, _ := ack.Of(got)
		np := &networkingv1.NetworkPolicy{}
		err := c.Get(ctx, npKey, np)
		return !ack.Current(got) && strings.Contains(a.Problem, "default-deny") && err == nil && len(np.Spec.Ingress) == 0,
			fmt.Sprintf("%+v, policy: %v %d rules", a, err, len(np.Spec.Ingress))
	})
	eventually(t, "the listed flow stopped by the default deny", func() (bool, string) {
		_, last := r6.From(listed6)
		return time.Since(last) > 500*time.Millisecond, fmt.Sprintf("last datagram %s ago", time.Since(last))
	})
	if err := c.Delete(ctx, deny); err != nil {
		t.Fatal(err)
	}
	acknowledged("the acknowledgement back once the default deny is gone")
	eventually(t, "the listed flow back", func() (bool, string) {
		_, last := r6.From(listed6)
		return time.Since(last) < 100*time.Millisecond, fmt.Sprintf("last datagram %s ago", time.Since(last))
	})
	unlistedNever("around the default deny")

	// Switching backends, both ways, under a counted listed flow.
	l6.Stop()
	for _, to := range []nlbpolicy.Backend{nlbpolicy.BackendCalico, nlbpolicy.BackendNetworkPolicy} {
		before, _ := r6.From(listed6)
		s := send(listed6, 40010, collector6)
		update(t, c, svc, func(s *corev1.Service) { s.Annotations[annotations.PolicyBackend] = string(to) })
		got := acknowledged("the acknowledgement of the switch to " + string(to))
		a, _ := ack.Of(got)
		npErr := c.Get(ctx, npKey, &networkingv1.NetworkPolicy{})
		if (to == nlbpolicy.BackendCalico) != apierrors.IsNotFound(npErr) {
			t.Errorf("switched to %s and acknowledged (%v), the NetworkPolicy: %v", to, a.Policies, npErr)
		}
		if ps, _ := owned(t, c, svc); (to == nlbpolicy.BackendCalico) != (len(ps) > 0) {
			t.Errorf("switched to %s and acknowledged (%v): %d Calico policies", to, a.Policies, len(ps))
		}
		time.Sleep(200 * time.Millisecond) // a flow across the acknowledgement, not stopped with it
		s.Stop()
		eventually(t, "every datagram of the listed flow across the switch to "+string(to), func() (bool, string) {
			n, _ := r6.From(listed6)
			return n-before == s.Sent(), fmt.Sprintf("%d of %d delivered", n-before, s.Sent())
		})
		unlistedNever("switching to " + string(to))
	}

	if err := c.Delete(ctx, svc); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the NetworkPolicy deleted with the Service", func() (bool, string) {
		err := c.Get(ctx, npKey, &networkingv1.NetworkPolicy{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
}
