package provider

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// The fail-closed order of telemetry_nlb_ingress (ingressApply.steps),
// table-tested against an in-memory EC2 (fakeEC2) and controller-runtime's
// fake API server, in milliseconds. The nlb-policy controller is a stand-in
// that acknowledges the Service as it is when asked; the acceptance tests
// run the real one against a real API server and Calico.

// ingressWorld is one AWS account and one cluster.
type ingressWorld struct {
	t     *testing.T
	ec2   *fakeEC2
	store client.Client // the API server's objects, without faults
	kube  client.Client // what the provider uses: faults and the stand-ins
	node  string        // the node security group

	// acknowledging: the nlb-policy controller stand-in acknowledges the
	// Service as it is whenever it is read.
	acknowledging bool
	calls         int    // calls to AWS and the API server so far
	failAt        int    // the call that fails (0: none)
	failed        string // which call failed
	quiet         bool   // the test itself is looking: not counted, never failed
	// beforeCall, when set, is told of each counted call before it runs;
	// afterApply, of each server-side apply once it is stored (stand-ins of
	// other controllers act there).
	beforeCall func(call string)
	afterApply func(ctx context.Context)
	// early lists rules added while the Service was not acknowledged as
	// this apply writes it: the one thing the order exists to prevent.
	early []string
	// want is the sources and ports of the Service the running apply
	// writes, which a rule may be added for once acknowledged.
	want *ingressSpec
}

const testVPC = "vpc-0a"

func newIngressWorld(t *testing.T) *ingressWorld {
	w := &ingressWorld{t: t, ec2: newFakeEC2(), acknowledging: true}
	w.ec2.vpcs[testVPC] = []string{"10.0.0.0/16"}
	w.node = w.ec2.addGroup(testVPC, "eks-nodes", map[string]string{}, fakeRule{proto: "tcp", from: 22, to: 22, source: "10.0.0.0/16", desc: "ssh"})
	w.ec2.before = func(call string) error { return w.next("ec2:" + call) }
	w.ec2.added = w.checkAdded
	kubeSystem := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system", UID: "cluster-1"}}
	w.store = fake.NewClientBuilder().WithObjects(kubeSystem).Build()
	w.kube = interceptor.NewClient(w.store.(client.WithWatch), interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if err := w.next("kube:get"); err != nil {
				return err
			}
			if err := c.Get(ctx, key, obj, opts...); err != nil {
				return err
			}
			return w.acknowledge(ctx, obj)
		},
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if err := w.next("kube:create"); err != nil {
				return err
			}
			allocateNodePorts(obj)
			return c.Create(ctx, obj, opts...)
		},
		Apply: func(ctx context.Context, c client.WithWatch, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			if err := w.next("kube:apply"); err != nil {
				return err
			}
			if err := c.Apply(ctx, obj, opts...); err != nil {
				return err
			}
			if w.afterApply != nil {
				w.afterApply(ctx)
			}
			return w.allocateStored(ctx)
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			if err := w.next("kube:patch"); err != nil {
				return err
			}
			return c.Patch(ctx, obj, patch, opts...)
		},
	})
	return w
}

// next counts a call and fails the one at failAt.
func (w *ingressWorld) next(call string) error {
	if w.quiet {
		return nil
	}
	if w.beforeCall != nil {
		w.quiet = true
		w.beforeCall(call)
		w.quiet = false
	}
	w.calls++
	if w.calls != w.failAt {
		return nil
	}
	w.failed = call
	if strings.HasPrefix(call, "kube:") {
		return apierrors.NewServiceUnavailable("injected fault")
	}
	return awsError("InternalError", "injected fault")
}

// acknowledge is the nlb-policy controller stand-in.
func (w *ingressWorld) acknowledge(ctx context.Context, obj client.Object) error {
	svc, ok := obj.(*corev1.Service)
	if !ok || !w.acknowledging || ack.Current(svc) {
		return nil
	}
	if svc.Annotations == nil {
		svc.Annotations = map[string]string{}
	}
	svc.Annotations[annotations.Enforced] = ack.Ack{Digest: ack.Digest(svc), Time: time.Now()}.Encode()
	return w.store.Update(ctx, svc)
}

// allocateNodePorts gives a new Service's ports NodePorts, as the API server does.
func allocateNodePorts(obj client.Object) bool {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return false
	}
	changed := false
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].NodePort == 0 {
			svc.Spec.Ports[i].NodePort = int32(30000 + 7*i + int(svc.Spec.Ports[i].Port)%7)
			changed = true
		}
	}
	if svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal && svc.Spec.HealthCheckNodePort == 0 {
		svc.Spec.HealthCheckNodePort, changed = 32100, true
	}
	return changed
}

func (w *ingressWorld) allocateStored(ctx context.Context) error {
	for _, svc := range w.services(ctx) {
		if allocateNodePorts(&svc) {
			if err := w.store.Update(ctx, &svc); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *ingressWorld) services(ctx context.Context) []corev1.Service {
	list := &corev1.ServiceList{}
	if err := w.store.List(ctx, list); err != nil {
		w.t.Fatal(err)
	}
	return list.Items
}

// checkAdded records a rule added while the Service is not acknowledged as
// the running apply writes it (its sources and ports).
func (w *ingressWorld) checkAdded(group string, r fakeRule) {
	svc := &corev1.Service{}
	err := w.store.Get(context.Background(), client.ObjectKey{Namespace: w.want.Namespace, Name: w.want.Name}, svc)
	switch {
	case err != nil:
		w.early = append(w.early, fmt.Sprintf("%s %s before the Service exists", group, r))
	case !ack.Current(svc):
		w.early = append(w.early, fmt.Sprintf("%s %s before the Service is acknowledged", group, r))
	case !slices.Equal(svc.Spec.LoadBalancerSourceRanges, w.want.Sources.Strings()) ||
		len(svc.Spec.Ports) != len(servicePorts(w.want.Ports)):
		w.early = append(w.early, fmt.Sprintf("%s %s while the Service holds other sources or ports (%v)", group, r,
			svc.Spec.LoadBalancerSourceRanges))
	}
}

// owned is the ingress's rules in AWS now, as the state lists them.
func (w *ingressWorld) owned(frontend string) []string {
	a := ingressAWS{ec2: w.ec2, cluster: "cluster-1"}
	w.quiet = true
	defer func() { w.quiet = false }()
	rules, err := a.actualRules(context.Background(), ruleOwner("flows", "collector"), frontend, w.node, []string{"10.0.0.0/16"})
	if err != nil {
		w.t.Fatal(err)
	}
	return ruleStrings(sortedRules(rules))
}

// frontend is the ingress's frontend group found by its tags ("" if none).
func (w *ingressWorld) frontend() string {
	for id, g := range w.ec2.groups {
		if g.tags["telemetry-platform.io/ingress"] == "flows/collector" {
			return id
		}
	}
	return ""
}

// apply runs one create (prior nil) or update, as Create and Update do.
func (w *ingressWorld) apply(plan, prior *ingressModel) diag.Diagnostics {
	var diags diag.Diagnostics
	spec, _, d := plan.spec(context.Background())
	if d.HasError() {
		w.t.Fatal(d)
	}
	w.want = &spec
	a := &ingressApply{kube: w.kube, aws: ingressAWS{ec2: w.ec2, cluster: "cluster-1"}, reach: func(err error) string { return err.Error() },
		plan: plan, prior: prior, diags: &diags, spec: spec}
	a.run(context.Background())
	return diags
}

// ingressChange is a configuration as the plan carries it: its computed
// attributes unknown.
type ingressChange struct {
	sources    []string
	ports      []ingressPort
	target     string
	nlbSG      bool
	enforceFor string
}

func (c ingressChange) plan() *ingressModel {
	var sources []attr.Value
	for _, s := range c.sources {
		sources = append(sources, types.StringValue(s))
	}
	timeout := c.enforceFor
	if timeout == "" {
		timeout = "10s" // the stand-in answers at once: this bounds a test that breaks
	}
	return &ingressModel{
		ID: types.StringUnknown(), Name: types.StringValue("collector"), Namespace: types.StringValue("flows"),
		Selector:       types.MapValueMust(types.StringType, map[string]attr.Value{"app": types.StringValue("collector")}),
		Ports:          portsValue(c.ports),
		AllowedSources: types.SetValueMust(types.StringType, sources),
		TargetType:     types.StringValue(c.target), Scheme: types.StringValue(lbc.SchemeInternal),
		Subnets: types.ListNull(types.StringType), ExternalTrafficPolicy: types.StringValue("Local"),
		NodeSecurityGroupID: types.StringValue("sg-00000001"), NLBSecurityGroup: types.BoolValue(c.nlbSG),
		NodePortRange: types.StringValue(defaultNodePortRange), Annotations: types.MapNull(types.StringType),
		WaitForLoadBalancer: types.BoolValue(false), WaitForEnforcement: types.BoolValue(true),
		EnforcementTimeout: types.StringValue(timeout), CoverSize: types.Int64Value(defaultCoverSize),

		SourceRanges: types.ListUnknown(types.StringType), FrontendSecurityGroupID: types.StringUnknown(),
		SecurityGroupRules: types.ListUnknown(types.StringType), PerSourceModel: types.Int64Unknown(),
		VPCID: types.StringUnknown(), LoadBalancerARN: types.StringUnknown(), DNSName: types.StringUnknown(),
		SubnetCIDRs: types.ListUnknown(types.StringType), State: types.StringUnknown(), PolicyEnforced: types.BoolUnknown(),
		ManagedAnnotations: types.MapUnknown(types.StringType), LoadBalancerAsConfigured: types.BoolUnknown(),
		NodePorts: types.MapUnknown(types.Int64Type), HealthCheckNodePort: types.Int64Unknown(),
		Cover: types.ListUnknown(types.StringType), CoverExtra: types.NumberUnknown(),
		Timeouts: timeouts.Value{Object: types.ObjectNull(map[string]attr.Type{
			"create": types.StringType, "update": types.StringType, "delete": types.StringType})},
	}
}

var (
	sflow = ingressPort{Name: "sflow", Protocol: "UDP", Port: 6343, TargetPort: 6343}
	ipfix = ingressPort{Name: "ipfix", Protocol: "UDP", Port: 4739, TargetPort: 4739}
)

// applyScenario is a change of the ingress: from (nil: a create) to to.
type applyScenario struct {
	name     string
	from, to *ingressChange
}

func applyScenarios() []applyScenario {
	base := ingressChange{sources: []string{"192.0.2.0/24"}, ports: []ingressPort{sflow}, target: lbc.TargetInstance, nlbSG: true}
	wider := base
	wider.sources, wider.ports = []string{"192.0.2.0/24", "198.51.100.0/24"}, []ingressPort{sflow, ipfix}
	dual := ingressChange{sources: []string{"192.0.2.0/24", "2001:db8::/48"}, ports: []ingressPort{sflow}, target: lbc.TargetIP, nlbSG: true}
	noSG := base
	noSG.nlbSG = false
	noSGWider := wider
	noSGWider.nlbSG = false
	return []applyScenario{
		{name: "create", to: &base},
		{name: "create dual-stack with ip targets", to: &dual},
		{name: "create without an NLB security group", to: &noSG},
		{name: "widen: a source and a port", from: &base, to: &wider},
		{name: "narrow: a source and a port", from: &wider, to: &base},
		{name: "widen without an NLB security group", from: &noSG, to: &noSGWider},
	}
}

// prepare makes the world a scenario starts from, and its state.
func (s applyScenario) prepare(t *testing.T) (*ingressWorld, *ingressModel) {
	w := newIngressWorld(t)
	if s.from == nil {
		return w, nil
	}
	state := s.from.plan()
	if diags := w.apply(state, nil); diags.HasError() {
		t.Fatalf("preparing %s: %v", s.name, diags)
	}
	w.calls, w.early = 0, nil
	return w, state
}

// TestIngressApplyOrder runs each change once cleanly, then again failing
// each of its calls to AWS and the API server in turn, and checks the
// promises of the order: no rule is ever added before the nlb-policy
// controller acknowledges the Service as written; a failed apply leaves AWS
// no wider than before, except by rules Calico already backs; what the
// state records is what AWS holds; and a retry converges.
func TestIngressApplyOrder(t *testing.T) {
	for _, s := range applyScenarios() {
		t.Run(s.name, func(t *testing.T) {
			w, prior := s.prepare(t)
			plan := s.to.plan()
			if diags := w.apply(plan, prior); diags.HasError() {
				t.Fatalf("clean apply: %v", diags)
			}
			if len(w.early) > 0 {
				t.Fatalf("rules added before Calico enforced the sources:\n%s", strings.Join(w.early, "\n"))
			}
			want := w.owned(w.frontend())
			if got := listStrings(t, plan.SecurityGroupRules); !slices.Equal(got, want) {
				t.Fatalf("clean apply: state lists rules %v, AWS holds %v", got, want)
			}
			assertFullyKnown(t, plan)
			total := w.calls

			for n := 1; n <= total; n++ {
				w, prior := s.prepare(t)
				before := w.owned(w.frontend())
				w.failAt = n
				plan := s.to.plan()
				diags := w.apply(plan, prior)
				if !diags.HasError() {
					if w.failed == "ec2:DescribeSubnets" { // only the per-source figure's subnet count: a warning
						continue
					}
					t.Fatalf("call %d (%s) failed, the apply did not", n, w.failed)
				}
				if len(w.early) > 0 {
					t.Fatalf("call %d (%s) failing: rules added before Calico enforced the sources:\n%s", n, w.failed, strings.Join(w.early, "\n"))
				}
				after := w.owned(w.frontend())
				backed := acknowledgedAsWritten(t, w, plan)
				for _, r := range after {
					if !slices.Contains(before, r) && !(backed && slices.Contains(want, r)) {
						t.Errorf("call %d (%s) failing left AWS wider: %s was not there before (before %v, after %v)", n, w.failed, r, before, after)
					}
				}
				if !plan.SecurityGroupRules.IsUnknown() && !plan.ID.IsUnknown() {
					if got := listStrings(t, plan.SecurityGroupRules); !slices.Equal(got, after) && w.frontend() != "" {
						t.Errorf("call %d (%s) failing: the state would list rules %v, AWS holds %v", n, w.failed, got, after)
					}
				}
				// A retry (an update from what the failed apply leaves) converges.
				w.failAt = 0
				retryPrior := prior
				if retryPrior == nil {
					retryPrior = partialState(t, plan)
				}
				retry := s.to.plan()
				if diags := w.apply(retry, retryPrior); diags.HasError() {
					t.Fatalf("call %d (%s) failing, then a retry: %v", n, w.failed, diags)
				}
				if got := w.owned(w.frontend()); !slices.Equal(got, want) {
					t.Errorf("call %d (%s) failing, then a retry: AWS holds %v, want %v", n, w.failed, got, want)
				}
			}
			t.Logf("%d calls, each failed in turn", total)
		})
	}
}

// TestIngressApplyWithoutController: with the nlb-policy controller absent,
// an apply adds no rule anywhere, says why, and records that nothing is
// enforced.
func TestIngressApplyWithoutController(t *testing.T) {
	for _, s := range applyScenarios() {
		t.Run(s.name, func(t *testing.T) {
			w, prior := s.prepare(t)
			before := w.owned(w.frontend())
			w.acknowledging = false
			cfg := *s.to
			cfg.enforceFor = "20ms"
			plan := cfg.plan()
			diags := w.apply(plan, prior)
			if !diags.HasError() || !strings.Contains(fmt.Sprint(diags), "not acknowledged") {
				t.Fatalf("apply without the controller: %v, want an error naming the missing acknowledgement", diags)
			}
			for _, r := range w.owned(w.frontend()) {
				if !slices.Contains(before, r) {
					t.Errorf("rule %s added without the controller (before: %v)", r, before)
				}
			}
			if plan.PolicyEnforced.ValueBool() {
				t.Error("policy_enforced is true without an acknowledgement")
			}
		})
	}
}

// TestIngressApplyRefusesForeignGroups: a frontend group the state names
// that is not this ingress's in this cluster (made by hand, or another
// cluster's) is neither changed nor used, and the apply says so.
func TestIngressApplyRefusesForeignGroups(t *testing.T) {
	for name, tags := range map[string]map[string]string{
		"made by hand":    {"team": "netops"},
		"another cluster": {"telemetry-platform.io/ingress": "flows/collector", "telemetry-platform.io/cluster": "cluster-2", "app.kubernetes.io/managed-by": "terraform-provider-telemetry"},
	} {
		t.Run(name, func(t *testing.T) {
			w := newIngressWorld(t)
			foreign := w.ec2.addGroup(testVPC, "shared", tags, fakeRule{proto: "udp", from: 6343, to: 6343, source: "203.0.113.0/24", desc: "theirs"})
			cfg := ingressChange{sources: []string{"192.0.2.0/24"}, ports: []ingressPort{sflow}, target: lbc.TargetInstance, nlbSG: true}
			prior := cfg.plan()
			prior.FrontendSecurityGroupID = types.StringValue(foreign)
			diags := w.apply(cfg.plan(), prior)
			if !diags.HasError() || !strings.Contains(fmt.Sprint(diags), "is not the frontend group of this ingress") {
				t.Fatalf("apply naming %s: %v, want it refused", foreign, diags)
			}
			if got := w.ec2.rulesOf(foreign); len(got) != 1 || got[0].source != "203.0.113.0/24" {
				t.Errorf("the foreign group's rules changed: %v", got)
			}
			if len(w.services(context.Background())) != 0 {
				t.Error("the Service was written although the frontend group was refused")
			}
		})
	}
}

// acknowledgedAsWritten reports whether the Service carries the
// controller's acknowledgement of what the plan writes.
func acknowledgedAsWritten(t *testing.T, w *ingressWorld, plan *ingressModel) bool {
	svc := &corev1.Service{}
	if err := w.store.Get(context.Background(), client.ObjectKey{Namespace: "flows", Name: "collector"}, svc); err != nil {
		return false
	}
	spec, _, _ := plan.spec(context.Background())
	return ack.Current(svc) && slices.Equal(svc.Spec.LoadBalancerSourceRanges, spec.Sources.Strings())
}

// partialState is what Create saves of a failed create (savePartial).
func partialState(t *testing.T, plan *ingressModel) *ingressModel {
	state := stateOf(t, plan, true)
	out := &ingressModel{}
	if d := state.Get(context.Background(), out); d.HasError() {
		t.Fatal(d)
	}
	return out
}

func stateOf(t *testing.T, m *ingressModel, partial bool) tfsdk.State {
	t.Helper()
	sr := &resource.SchemaResponse{}
	(&nlbIngressResource{}).Schema(context.Background(), resource.SchemaRequest{}, sr)
	state := tfsdk.State{Schema: sr.Schema}
	var d diag.Diagnostics
	if partial {
		d = savePartial(context.Background(), &state, m)
	} else {
		d = state.Set(context.Background(), m)
	}
	if d.HasError() {
		t.Fatal(d)
	}
	return state
}

// assertFullyKnown fails when a successful apply leaves a value unknown
// (Terraform refuses such a result).
func assertFullyKnown(t *testing.T, m *ingressModel) {
	t.Helper()
	if state := stateOf(t, m, false); !state.Raw.IsFullyKnown() {
		t.Fatalf("the state after apply has unknown values: %v", state.Raw)
	}
}

func listStrings(t *testing.T, l types.List) []string {
	t.Helper()
	var out []string
	if d := l.ElementsAs(context.Background(), &out, false); d.HasError() {
		t.Fatal(d)
	}
	return out
}

// TestIngressApplyClaimsItsLegacyGroup: a frontend group this ingress made
// before groups carried the cluster tag is its own: the apply tags it with
// the cluster and uses it, making no second group.
func TestIngressApplyClaimsItsLegacyGroup(t *testing.T) {
	w := newIngressWorld(t)
	legacy := w.ec2.addGroup(testVPC, frontendGroupName("flows", "collector"), map[string]string{
		annotations.IngressTag: "flows/collector", annotations.ManagedBy: annotations.ProviderManager})
	cfg := ingressChange{sources: []string{"192.0.2.0/24"}, ports: []ingressPort{sflow}, target: lbc.TargetInstance, nlbSG: true}
	prior := cfg.plan()
	prior.FrontendSecurityGroupID = types.StringValue(legacy)
	plan := cfg.plan()
	if diags := w.apply(plan, prior); diags.HasError() {
		t.Fatal(diags)
	}
	if got := plan.FrontendSecurityGroupID.ValueString(); got != legacy {
		t.Errorf("frontend group %s, want the legacy %s", got, legacy)
	}
	if got := w.ec2.groups[legacy].tags[annotations.ClusterTag]; got != "cluster-1" {
		t.Errorf("legacy group's cluster tag %q, want cluster-1", got)
	}
	if n := len(w.ec2.groups); n != 2 {
		t.Errorf("%d groups, want the node group and the legacy one", n)
	}
}
