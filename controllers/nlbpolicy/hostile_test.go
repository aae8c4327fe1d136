package nlbpolicy_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	"github.com/projectcalico/api/pkg/lib/numorstring"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/nlbpolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

const tenantNS = "tenant-a"

// startFencedPlane is a plane with deploy/nlb-policy-controller.yaml's RBAC
// and admission policies applied for real and the product's tier, and
// clients as the admin, as the controller's ServiceAccount and as a tenant
// who may edit Services in its own namespace only.
func startFencedPlane(t *testing.T) (*localplane.Plane, client.Client, client.Client, client.Client) {
	t.Helper()
	p := localplane.New(t, localplane.Options{Nodes: 1})
	admin, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ctrlClient := applyFence(t, p)
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tenantNS}},
		&corev1.ServiceAccount{ObjectMeta: objectMeta(tenantNS, "tenant")},
		// What the built-in edit role grants on Services (its aggregation is
		// kube-controller-manager's job, which the plane does not run).
		&rbacv1.Role{ObjectMeta: objectMeta(tenantNS, "service-editor"), Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"services"},
			Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}}}},
		&rbacv1.RoleBinding{ObjectMeta: objectMeta(tenantNS, "tenant-edit"),
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "service-editor"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: tenantNS, Name: "tenant"}}},
	} {
		if err := admin.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	tenant, err := client.New(p.ServiceAccountConfig(tenantNS, "tenant"), client.Options{Scheme: kubeapi.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return p, admin, ctrlClient, tenant
}

// applyFence applies deploy/nlb-policy-controller.yaml's RBAC and admission
// policies for real and creates the product's tier, waits until the
// admission policies are enforced, and returns a client acting as the
// controller's ServiceAccount.
func applyFence(t *testing.T, p *localplane.Plane) client.Client {
	t.Helper()
	ctx := context.Background()
	objs, err := localplane.ReadManifests(filepath.Join(localplane.RepoRoot(), "deploy", "nlb-policy-controller.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	fence := localplane.RBAC(objs)
	for _, o := range objs {
		if strings.HasPrefix(o.GetKind(), "ValidatingAdmissionPolicy") {
			fence = append(fence, o)
		}
	}
	if err := p.ApplyManifests(ctx, fence, false); err != nil {
		t.Fatal(err)
	}
	if err := p.CreateProductTier(ctx); err != nil {
		t.Fatal(err)
	}
	ctrlClient, err := client.New(p.ServiceAccountConfig("telemetry-system", "nlb-policy-controller"), client.Options{Scheme: kubeapi.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	// Each admission policy is enforced a moment after it is created, each on
	// its own: wait until every one of them refuses what it must (waiting for
	// one alone let a test race the others on a loaded machine).
	admin, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	// Plain Services, which no controller manages.
	plain := func(name string) *corev1.Service {
		return &corev1.Service{ObjectMeta: objectMeta("default", name), Spec: corev1.ServiceSpec{
			Ports: []corev1.ServicePort{{Name: "p", Protocol: corev1.ProtocolTCP, Port: 80}}}}
	}
	probe := plain("fence-probe")
	if err := admin.Create(ctx, probe); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for what, write := range map[string]func() error{
		"Calico writes": func() error { return ctrlClient.Create(ctx, ownPolicy("nlb-probe", calicov3.Allow), client.DryRunAll) },
		"the acknowledgement": func() error {
			forged := plain("fence-probe-ack")
			forged.Annotations = map[string]string{annotations.Enforced: `{"digest":"x"}`}
			return admin.Create(ctx, forged, client.DryRunAll)
		},
		"Service writes": func() error {
			return ctrlClient.Patch(ctx, probe.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`)), client.DryRunAll)
		},
	} {
		eventually(t, "the admission policy on "+what+" in force", func() (bool, string) {
			err := write()
			return refused(err), fmt.Sprint(err)
		})
	}
	return ctrlClient
}

// refused reports whether the API server refused a write, by RBAC, Calico's
// tiered RBAC or an admission policy.
func refused(err error) bool { return apierrors.IsForbidden(err) || apierrors.IsInvalid(err) }

// ownPolicy is a policy shaped as the controller makes them, in its tier,
// with one rule of the given action.
func ownPolicy(name string, action calicov3.Action) *calicov3.GlobalNetworkPolicy {
	udp := numorstring.ProtocolFromString("UDP")
	return &calicov3.GlobalNetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{annotations.ManagedBy: annotations.NLBPolicyManager}},
		Spec: calicov3.GlobalNetworkPolicySpec{Tier: nlbpolicy.DefaultTier, Selector: "has(kubernetes.io/hostname)",
			PreDNAT: true, ApplyOnForward: true, Types: []calicov3.PolicyType{calicov3.PolicyTypeIngress},
			Ingress: []calicov3.Rule{{Action: action, Protocol: &udp,
				Source: calicov3.EntityRule{Nets: []string{"0.0.0.0/0"}}}}},
	}
}

// TestStolenControllerToken: with the nlb-policy controller's own token, every
// write that could widen access is refused by the API server (Calico's real
// tiered-RBAC webhook, and the admission policies of deploy/), while the
// writes the controller makes are accepted; the controller's start-up check
// passes under this fence and fails, naming what is missing, without it.
func TestStolenControllerToken(t *testing.T) {
	t.Parallel() // on a plane of its own
	_, admin, stolen, _ := startFencedPlane(t)
	ctx := context.Background()

	// The admins' own network set, which their policies select by label.
	trusted := &calicov3.GlobalNetworkSet{ObjectMeta: metav1.ObjectMeta{Name: "trusted-sources", Labels: map[string]string{"role": "trusted"}},
		Spec: calicov3.GlobalNetworkSetSpec{Nets: []string{"198.51.100.0/24"}}}
	if err := admin.Create(ctx, trusted); err != nil {
		t.Fatal(err)
	}
	dns := &corev1.Service{ObjectMeta: objectMeta("kube-system", "kube-dns"), Spec: corev1.ServiceSpec{
		Selector: map[string]string{"k8s-app": "kube-dns"}, Ports: []corev1.ServicePort{{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53}}}}
	if err := admin.Create(ctx, dns); err != nil {
		t.Fatal(err)
	}

	attempts := []struct {
		name  string
		write func() error
	}{
		{"an Allow-all policy in its tier, selecting every endpoint", func() error {
			p := ownPolicy("nlb-x-allow", calicov3.Allow)
			p.Spec.Selector = "all()"
			return stolen.Create(ctx, p)
		}},
		{"an Allow rule in its tier", func() error { return stolen.Create(ctx, ownPolicy("nlb-x-allow", calicov3.Allow)) }},
		{"a policy selecting every endpoint, even with Deny", func() error {
			p := ownPolicy("nlb-x-deny", calicov3.Deny)
			p.Spec.Selector = "global()"
			return stolen.Create(ctx, p)
		}},
		{"an egress rule", func() error {
			p := ownPolicy("nlb-x-deny", calicov3.Deny)
			p.Spec.Types = []calicov3.PolicyType{calicov3.PolicyTypeIngress, calicov3.PolicyTypeEgress}
			p.Spec.Egress = []calicov3.Rule{{Action: calicov3.Deny}}
			return stolen.Create(ctx, p)
		}},
		{"an untracked policy", func() error {
			p := ownPolicy("nlb-x-deny", calicov3.Deny)
			p.Spec.DoNotTrack, p.Spec.PreDNAT = true, false
			return stolen.Create(ctx, p)
		}},
		{"a policy not named as its own", func() error { return stolen.Create(ctx, ownPolicy("cluster-wide", calicov3.Deny)) }},
		{"a policy without its label", func() error {
			p := ownPolicy("nlb-x-deny", calicov3.Deny)
			p.Labels = nil
			return stolen.Create(ctx, p)
		}},
		{"a policy in Calico's default tier", func() error {
			p := ownPolicy("nlb-x-deny", calicov3.Deny)
			p.Spec.Tier = "default"
			return stolen.Create(ctx, p)
		}},
		{"a network set carrying an admin's label", func() error {
			return stolen.Create(ctx, &calicov3.GlobalNetworkSet{ObjectMeta: metav1.ObjectMeta{Name: "nlb-x-sources",
				Labels: map[string]string{annotations.ManagedBy: annotations.NLBPolicyManager, "role": "trusted"}},
				Spec: calicov3.GlobalNetworkSetSpec{Nets: []string{"0.0.0.0/0"}}})
		}},
		{"0.0.0.0/0 added to an admin's network set", func() error {
			got := &calicov3.GlobalNetworkSet{}
			if err := stolen.Get(ctx, client.ObjectKeyFromObject(trusted), got); err != nil {
				return err
			}
			got.Spec.Nets = append(got.Spec.Nets, "0.0.0.0/0")
			return stolen.Update(ctx, got)
		}},
		{"an admin's network set deleted", func() error { return stolen.Delete(ctx, trusted.DeepCopy()) }},
		{"an ownerReference to a made-up owner on kube-dns", func() error {
			patch := fmt.Sprintf(`{"metadata":{"ownerReferences":[{"apiVersion":"v1","kind":"ConfigMap","name":"x","uid":"%s"}]}}`,
				types.UID("0b7f9e2c-0000-4000-8000-000000000001"))
			return stolen.Patch(ctx, dns.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(patch)))
		}},
	}
	for _, a := range attempts {
		t.Run(a.name, func(t *testing.T) {
			if err := a.write(); !refused(err) {
				t.Fatalf("not refused: %v", err)
			}
		})
	}
	// Nothing of the above is in the cluster, and the admins' set is as it was.
	got := &calicov3.GlobalNetworkSet{}
	if err := admin.Get(ctx, client.ObjectKeyFromObject(trusted), got); err != nil || !slices.Equal(got.Spec.Nets, trusted.Spec.Nets) {
		t.Errorf("the admins' network set changed: %v, %v", got.Spec.Nets, err)
	}
	var policies calicov3.GlobalNetworkPolicyList
	if err := admin.List(ctx, &policies); err != nil {
		t.Fatal(err)
	}
	for _, gp := range policies.Items {
		if strings.HasPrefix(gp.Name, "nlb-x") || gp.Name == "cluster-wide" {
			t.Errorf("policy %s was written", gp.Name)
		}
	}

	// What the controller does write is accepted (the fence is not a wall).
	for _, ok := range []client.Object{ownPolicy("nlb-y-allow", calicov3.Pass), ownPolicy("nlb-y-deny", calicov3.Deny),
		&calicov3.GlobalNetworkSet{ObjectMeta: metav1.ObjectMeta{Name: "nlb-y-sources",
			Labels: map[string]string{annotations.ManagedBy: annotations.NLBPolicyManager, annotations.NetSet: "abc"}},
			Spec: calicov3.GlobalNetworkSetSpec{Nets: []string{"192.0.2.0/24"}}}} {
		if err := stolen.Create(ctx, ok, client.DryRunAll); err != nil {
			t.Errorf("the controller's own kind of write %s refused: %v", ok.GetName(), err)
		}
	}

	// The start-up check: passes under the fence; as an unfenced account
	// (the plane's admin) it refuses, naming Calico's tiered RBAC.
	if err := nlbpolicy.CheckWriteFence(ctx, stolen, nlbpolicy.DefaultTier); err != nil {
		t.Errorf("the write-fence check failed under the fence: %v", err)
	}
	err := nlbpolicy.CheckWriteFence(ctx, admin, nlbpolicy.DefaultTier)
	if !errors.Is(err, nlbpolicy.ErrFenceOpen) || !strings.Contains(err.Error(), "tiered RBAC") {
		t.Errorf("the write-fence check of an unfenced account: %v; want ErrFenceOpen naming Calico's tiered RBAC", err)
	}
	if err := admin.List(ctx, &policies); err != nil {
		t.Fatal(err)
	}
	for _, gp := range policies.Items {
		if strings.Contains(gp.Name, "fence-check") {
			t.Errorf("the check stored %s (it must be a dry run)", gp.Name)
		}
	}
}

// TestHostileTenant: a tenant who may edit Services in its own namespace
// cannot use the product to open anything: it cannot forge the
// acknowledgement the provider widens AWS on, its host-endpoint selector
// only narrows (an empty one is refused with an Event), and whatever sources
// and health-check CIDRs it names, the policies generated for its Service
// hold no Allow: what they list is passed on to the cluster's own tiers.
func TestHostileTenant(t *testing.T) {
	t.Parallel() // on a plane of its own
	p, admin, _, tenant := startFencedPlane(t)
	ctx := context.Background()
	startControllerAs(t, p, p.ServiceAccountConfig("telemetry-system", "nlb-policy-controller"), false, ctrl.Options{})

	// A forged acknowledgement at creation, then on a Service it owns.
	forged := service(tenantNS, "forged", func(s *corev1.Service) {
		s.Annotations[annotations.Enforced] = `{"digest":"x"}`
	})
	if err := tenant.Create(ctx, forged); !refused(err) || !strings.Contains(err.Error(), "written only by the nlb-policy controller") {
		t.Fatalf("a tenant created a Service carrying an acknowledgement: %v", err)
	}
	svc := service(tenantNS, "flows", func(s *corev1.Service) {
		s.Annotations[lbc.NLBTargetType] = lbc.TargetIP
		s.Spec.LoadBalancerSourceRanges = []string{"0.0.0.0/0"}
		s.Annotations[annotations.HealthCheckCIDRs] = "0.0.0.0/0"
	})
	if err := tenant.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the controller's acknowledgement", func() (bool, string) {
		got, ok := get(t, admin, svc)
		return ok && ack.Current(got), "not yet"
	})
	current, _ := get(t, admin, svc)
	for _, forge := range []string{`{"digest":"` + ack.Digest(current) + `","problem":""}`, `{"digest":"other"}`} {
		err := tenant.Patch(ctx, current.DeepCopy(), client.RawPatch(types.MergePatchType,
			[]byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, annotations.Enforced, forge))))
		if !refused(err) {
			t.Errorf("a tenant rewrote the acknowledgement to %s: %v", forge, err)
		}
	}
	// Removing it only makes the provider wait: allowed, and the controller
	// writes it again.
	if err := tenant.Patch(ctx, current.DeepCopy(), client.RawPatch(types.MergePatchType,
		[]byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:null}}}`, annotations.Enforced)))); err != nil {
		t.Errorf("a tenant could not remove the acknowledgement: %v", err)
	}
	eventually(t, "the acknowledgement written again", func() (bool, string) {
		got, ok := get(t, admin, svc)
		return ok && ack.Current(got), "not yet"
	})

	// Sources 0.0.0.0/0 and health checks from anywhere: passed on, never allowed.
	ps, _ := owned(t, admin, svc)
	if len(ps) != 2 {
		t.Fatalf("%d policies for the tenant's Service", len(ps))
	}
	for _, gp := range ps {
		for _, r := range gp.Spec.Ingress {
			if r.Action != calicov3.Pass && r.Action != calicov3.Deny {
				t.Errorf("%s holds a %s rule for a tenant's Service", gp.Name, r.Action)
			}
		}
	}

	// An empty host-endpoint selector (instance targets): refused with an
	// Event, the controller's selector kept.
	inst := service(tenantNS, "instance", func(s *corev1.Service) { s.Annotations[annotations.HostEndpointSelector] = "" })
	if err := tenant.Create(ctx, inst); err != nil {
		t.Fatal(err)
	}
	eventually(t, "an Event refusing the empty selector", func() (bool, string) {
		var evs eventsv1.EventList
		if err := admin.List(ctx, &evs, client.InNamespace(tenantNS)); err != nil {
			return false, err.Error()
		}
		return slices.ContainsFunc(evs.Items, func(e eventsv1.Event) bool {
			return e.Regarding.Name == inst.Name && strings.Contains(e.Note, "empty "+annotations.HostEndpointSelector)
		}), fmt.Sprintf("%d events", len(evs.Items))
	})
	eventually(t, "the instance Service's policies", func() (bool, string) {
		ps, _ := owned(t, admin, inst)
		return len(ps) == 2, fmt.Sprintf("%d policies", len(ps))
	})
	ps, _ = owned(t, admin, inst)
	for _, gp := range ps {
		if gp.Spec.Selector != nlbpolicy.DefaultOptions().HostEndpointSelector {
			t.Errorf("%s selects %q with an empty annotation", gp.Name, gp.Spec.Selector)
		}
	}

	// The tenant cannot touch the generated objects at all.
	gp := ps[0].DeepCopy()
	gp.Spec.Ingress = []calicov3.Rule{{Action: calicov3.Allow}}
	if err := tenant.Update(ctx, gp); !refused(err) {
		t.Errorf("a tenant changed a generated policy: %v", err)
	}
}

// TestStolenControllerTokenNetworkPolicies: with the controller's token and
// the networkpolicy backend's RBAC (deploy/nlb-policy-controller-networkpolicy.yaml),
// every NetworkPolicy write that could open what a namespace's own policies
// close is refused by the admission policy of deploy/nlb-policy-controller.yaml,
// while the policy the controller generates is accepted; the start-up check
// passes under the fence and fails, naming the admission policy, without it.
func TestStolenControllerTokenNetworkPolicies(t *testing.T) {
	t.Parallel() // on a plane of its own
	p, admin, stolen, _ := startFencedPlane(t)
	ctx := context.Background()
	objs, err := localplane.ReadManifests(filepath.Join(localplane.RepoRoot(), "deploy", "nlb-policy-controller-networkpolicy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.ApplyManifests(ctx, localplane.RBAC(objs), false); err != nil {
		t.Fatal(err)
	}
	svc := service(tenantNS, "flows", func(s *corev1.Service) { s.UID = "3f1c2d4e-0000-4000-8000-000000000002" })
	generated := nlbpolicy.DesiredNetworkPolicy(nlbpolicy.Input{Service: svc, HealthCheckCIDRs: []string{"10.0.0.0/20"}}, nil).Policy
	// Both in force: the backend's RBAC (its own kind of write accepted) and
	// the admission policy (one selecting every pod refused).
	eventually(t, "the backend's RBAC and admission policy in force", func() (bool, string) {
		err := stolen.Create(ctx, generated.DeepCopy(), client.DryRunAll)
		all := generated.DeepCopy()
		all.Spec.PodSelector = metav1.LabelSelector{}
		errAll := stolen.Create(ctx, all, client.DryRunAll)
		return err == nil && refused(errAll), fmt.Sprintf("own: %v, selecting every pod: %v", err, errAll)
	})
	// The namespace's own default deny, which the admins wrote.
	deny := &networkingv1.NetworkPolicy{ObjectMeta: objectMeta(tenantNS, "default-deny"),
		Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}
	if err := admin.Create(ctx, deny); err != nil {
		t.Fatal(err)
	}
	mutated := func(mutate func(*networkingv1.NetworkPolicy)) func() error {
		return func() error {
			np := generated.DeepCopy()
			mutate(np)
			return stolen.Create(ctx, np)
		}
	}
	for _, a := range []struct {
		name  string
		write func() error
	}{
		{"a namespace's default deny deleted", func() error { return stolen.Delete(ctx, deny.DeepCopy()) }},
		{"a rule added to a namespace's default deny", func() error {
			got := &networkingv1.NetworkPolicy{}
			if err := stolen.Get(ctx, client.ObjectKeyFromObject(deny), got); err != nil {
				return err
			}
			got.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{}}
			return stolen.Update(ctx, got)
		}},
		{"a policy selecting every pod", mutated(func(np *networkingv1.NetworkPolicy) { np.Spec.PodSelector = metav1.LabelSelector{} })},
		{"a policy selecting by expression", mutated(func(np *networkingv1.NetworkPolicy) {
			np.Spec.PodSelector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpExists}}
		})},
		{"a rule from every pod of every namespace", mutated(func(np *networkingv1.NetworkPolicy) {
			np.Spec.Ingress = append(np.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{
				From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{}}}})
		})},
		{"an egress policy", mutated(func(np *networkingv1.NetworkPolicy) {
			np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
			np.Spec.Egress = []networkingv1.NetworkPolicyEgressRule{{}}
		})},
		{"a policy not named as its own", mutated(func(np *networkingv1.NetworkPolicy) { np.Name = "allow-all" })},
		{"a policy without its label", mutated(func(np *networkingv1.NetworkPolicy) { delete(np.Labels, annotations.ManagedBy) })},
		{"a policy with an admin's label", mutated(func(np *networkingv1.NetworkPolicy) { np.Labels["role"] = "trusted" })},
		{"a policy owned by no Service", mutated(func(np *networkingv1.NetworkPolicy) { np.OwnerReferences = nil })},
		{"a policy owned by another Service than its labels name", mutated(func(np *networkingv1.NetworkPolicy) {
			np.OwnerReferences[0].Name = "kube-dns"
		})},
	} {
		t.Run(a.name, func(t *testing.T) {
			if err := a.write(); !refused(err) {
				t.Fatalf("not refused: %v", err)
			}
		})
	}
	var nps networkingv1.NetworkPolicyList
	if err := admin.List(ctx, &nps, client.InNamespace(tenantNS)); err != nil {
		t.Fatal(err)
	}
	if len(nps.Items) != 1 || nps.Items[0].Name != "default-deny" || len(nps.Items[0].Spec.Ingress) != 0 {
		t.Errorf("the namespace's policies changed: %v", nps.Items)
	}
	if err := nlbpolicy.CheckNetworkPolicyFence(ctx, stolen, tenantNS); err != nil {
		t.Errorf("the write-fence check failed under the fence: %v", err)
	}
	err = nlbpolicy.CheckNetworkPolicyFence(ctx, admin, tenantNS)
	if !errors.Is(err, nlbpolicy.ErrFenceOpen) || !strings.Contains(err.Error(), "networkpolicy-writes") {
		t.Errorf("the write-fence check of an unfenced account: %v; want ErrFenceOpen naming the admission policy", err)
	}

	// The controller itself, as its ServiceAccount with this RBAC and under
	// this fence, with the networkpolicy backend alone (no Calico kind
	// watched): it writes, acknowledges and deletes a Service's policy.
	options := nlbpolicy.DefaultOptions()
	options.Backend = nlbpolicy.BackendNetworkPolicy
	awsCfg := p.AWS.Config()
	startControllerFull(t, p, p.ServiceAccountConfig("telemetry-system", "nlb-policy-controller"), false, ctrl.Options{},
		&nlbpolicy.AWSSources{AWS: &awsCfg, TTL: time.Minute}, options)
	flows := service("default", "flows")
	if err := admin.Create(ctx, flows); err != nil {
		t.Fatal(err)
	}
	key := client.ObjectKey{Namespace: "default", Name: nlbpolicy.NetworkPolicyName("default", "flows")}
	eventually(t, "the NetworkPolicy written and acknowledged under the ServiceAccount", func() (bool, string) {
		got, _ := get(t, admin, flows)
		err := admin.Get(ctx, key, &networkingv1.NetworkPolicy{})
		return err == nil && ack.Current(got), fmt.Sprintf("%v; %s", err, got.Annotations[annotations.Enforced])
	})
	if err := admin.Delete(ctx, flows); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the NetworkPolicy deleted with its Service", func() (bool, string) {
		err := admin.Get(ctx, key, &networkingv1.NetworkPolicy{})
		_, exists := get(t, admin, flows)
		return apierrors.IsNotFound(err) && !exists, fmt.Sprint(err)
	})
}
