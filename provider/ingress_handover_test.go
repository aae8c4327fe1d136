package provider

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// The hand-over of an NLB the AWS Load Balancer Controller made (a Service
// imported into telemetry_nlb_ingress) from its per-source rules in a group
// of its own to the ingress's frontend group, table-tested on the fakes. The
// controller stand-in here does what the real one does once the Service
// says so (its backend rules off, the ingress's group named): the NLB moves
// to the named group and the controller's per-source rules go. The real
// controller, moto and Felix run the same migration in
// TestAccNLBIngressMigrateFromLBCRules.

// handOverWorld is an ingressWorld holding an NLB the controller made.
type handOverWorld struct {
	*ingressWorld
	lbcGroup string
	sources  []string
	// outages lists the moments a listed source was refused by the NLB's
	// groups: what the migration's order exists to prevent.
	outages []string
}

func newHandOverWorld(t *testing.T, sources []string) *handOverWorld {
	w := &handOverWorld{ingressWorld: newIngressWorld(t), sources: sources}
	var rules []fakeRule
	for _, s := range sources {
		rules = append(rules, fakeRule{proto: "udp", from: 6343, to: 6343, source: s, desc: ""})
	}
	w.lbcGroup = w.ec2.addGroup(testVPC, "k8s-flows-collect-0a1b2c", map[string]string{lbc.StackTag: "flows/collector"}, rules...)
	w.ec2.mu.Lock()
	w.ec2.groups[w.node].rules = append(w.ec2.groups[w.node].rules,
		fakeRule{proto: "udp", from: 30000, to: 32767, source: w.lbcGroup, desc: lbc.RuleDescription})
	w.ec2.mu.Unlock()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "collector", Namespace: "flows", Annotations: map[string]string{
			lbc.NLBTargetType: lbc.TargetInstance, lbc.Scheme: lbc.SchemeInternal}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptrTo(lbc.LoadBalancerClass),
			Selector: map[string]string{"app": "collector"}, LoadBalancerSourceRanges: sources,
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			Ports:                 []corev1.ServicePort{{Name: "sflow", Protocol: corev1.ProtocolUDP, Port: 6343, TargetPort: intstr.FromInt32(6343)}}},
	}
	allocateNodePorts(svc)
	if err := w.store.Create(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
	// The controller stand-in: a Service handed over moves the NLB and takes
	// the controller's rules away.
	w.afterApply = func(ctx context.Context) {
		live := &corev1.Service{}
		if err := w.store.Get(ctx, client.ObjectKeyFromObject(svc), live); err != nil || !handedOver(live.Annotations) {
			return
		}
		w.ec2.mu.Lock()
		defer w.ec2.mu.Unlock()
		w.ec2.groups[w.lbcGroup].rules = nil
		w.ec2.groups[w.node].rules = slices.DeleteFunc(w.ec2.groups[w.node].rules, func(r fakeRule) bool { return r.desc == lbc.RuleDescription })
	}
	w.beforeCall = w.checkAdmitted
	return w
}

// nlbGroup is the group the NLB uses: the controller's until the Service
// hands it over.
func (w *handOverWorld) nlbGroup() string {
	live := &corev1.Service{}
	if err := w.store.Get(context.Background(), client.ObjectKey{Namespace: "flows", Name: "collector"}, live); err == nil && handedOver(live.Annotations) {
		return live.Annotations[lbc.SecurityGroups]
	}
	return w.lbcGroup
}

// checkAdmitted records a moment at which a listed source does not pass
// the NLB's group on the listener port, or the nodes' group does not admit
// the NLB's group on the NodePorts.
func (w *handOverWorld) checkAdmitted(call string) {
	group := w.nlbGroup()
	frontend, node := w.ec2.rulesOf(group), w.ec2.rulesOf(w.node)
	for _, s := range w.sources {
		src := netip.MustParsePrefix(s)
		if !slices.ContainsFunc(frontend, func(r fakeRule) bool {
			p, err := netip.ParsePrefix(r.source)
			return err == nil && r.proto == "udp" && r.from <= 6343 && 6343 <= r.to && p.Bits() <= src.Bits() && p.Contains(src.Addr())
		}) {
			w.outages = append(w.outages, fmt.Sprintf("before %s: %s refused by the NLB's group %s (%v)", call, s, group, frontend))
		}
	}
	if !slices.ContainsFunc(node, func(r fakeRule) bool { return r.source == group && r.proto == "udp" && r.from <= 30000 }) {
		w.outages = append(w.outages, fmt.Sprintf("before %s: the nodes refuse the NLB's group %s (%v)", call, group, node))
	}
}

func ptrTo[T any](v T) *T { return &v }

// TestIngressHandOverFromLBCRules migrates an imported NLB cleanly, then
// again failing each of its calls in turn: no listed source is ever refused
// on the way, no rule is added before the controller acknowledges the
// Service as written, and a retry completes the migration.
func TestIngressHandOverFromLBCRules(t *testing.T) {
	sources := []string{"192.0.2.0/24", "198.51.100.0/24"}
	cfg := ingressChange{sources: sources, ports: []ingressPort{sflow}, target: lbc.TargetInstance, nlbSG: true}
	// The state an import leaves: the Service names no group of the ingress.
	imported := func(*handOverWorld) *ingressModel {
		prior := cfg.plan()
		prior.FrontendSecurityGroupID = types.StringValue("")
		return prior
	}
	clean := newHandOverWorld(t, sources)
	plan := cfg.plan()
	if diags := clean.apply(plan, imported(clean)); diags.HasError() {
		t.Fatalf("clean migration: %v", diags)
	}
	clean.checkAdmitted("the end")
	if len(clean.outages) > 0 || len(clean.early) > 0 {
		t.Fatalf("clean migration:\n%s", strings.Join(append(clean.outages, clean.early...), "\n"))
	}
	want := clean.owned(clean.frontend())
	if got := clean.ec2.rulesOf(clean.lbcGroup); len(got) != 0 {
		t.Fatalf("the controller's rules remain: %v", got)
	}
	if clean.nlbGroup() != clean.frontend() {
		t.Fatalf("the NLB uses %s, not the ingress's group %s", clean.nlbGroup(), clean.frontend())
	}
	total := clean.calls
	for n := 1; n <= total; n++ {
		w := newHandOverWorld(t, sources)
		w.failAt = n
		diags := w.apply(cfg.plan(), imported(w))
		if !diags.HasError() && w.failed != "ec2:DescribeSubnets" {
			t.Fatalf("call %d (%s) failed, the migration did not", n, w.failed)
		}
		w.checkAdmitted("the end")
		if len(w.outages) > 0 || len(w.early) > 0 {
			t.Fatalf("call %d (%s) failing:\n%s", n, w.failed, strings.Join(append(w.outages, w.early...), "\n"))
		}
		w.failAt = 0
		if diags := w.apply(cfg.plan(), imported(w)); diags.HasError() {
			t.Fatalf("call %d (%s) failing, then a retry: %v", n, w.failed, diags)
		}
		if got := w.owned(w.frontend()); !slices.Equal(got, want) || len(w.ec2.rulesOf(w.lbcGroup)) != 0 {
			t.Errorf("call %d (%s) failing, then a retry: the ingress holds %v (want %v), the controller %v",
				n, w.failed, got, want, w.ec2.rulesOf(w.lbcGroup))
		}
		if len(w.outages) > 0 {
			t.Fatalf("call %d (%s) failing, then a retry:\n%s", n, w.failed, strings.Join(w.outages, "\n"))
		}
	}
	t.Logf("%d calls, each failed in turn", total)
}
