package nlbpolicy

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/reasons"
)

// staticSources answers Sources without AWS.
type staticSources struct{ health []string }

func (s staticSources) HealthCheckCIDRs(context.Context, *corev1.Service) ([]string, error) {
	return s.health, nil
}
func (s staticSources) DefaultSources(context.Context, *corev1.Service) ([]string, error) {
	return nil, nil
}
func (s staticSources) HealthCheckPending(*corev1.Service) bool { return false }
func (s staticSources) HealthCheckBound(context.Context, *corev1.Service) ([]string, error) {
	return nil, nil
}

// recordingReconciler is a Reconciler over a fake API server that records
// every create and delete of a generated object, in order.
func recordingReconciler(t *testing.T, objs ...client.Object) (*Reconciler, client.Client, *[]string) {
	t.Helper()
	var ops []string
	record := func(op string, o client.Object) {
		if _, ok := o.(*corev1.Service); !ok {
			ops = append(ops, op+" "+o.GetName())
		}
	}
	c := fake.NewClientBuilder().WithScheme(kubeapi.Scheme()).WithObjects(objs...).
		WithIndex(&calicov3.GlobalNetworkPolicy{}, ownerField, ownerOf).
		WithIndex(&calicov3.GlobalNetworkSet{}, ownerField, ownerOf).
		WithInterceptorFuncs(interceptor.Funcs{
			Create: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.CreateOption) error {
				record("create", o)
				return c.Create(ctx, o, opts...)
			},
			Update: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.UpdateOption) error {
				record("update", o)
				return c.Update(ctx, o, opts...)
			},
			Delete: func(ctx context.Context, c client.WithWatch, o client.Object, opts ...client.DeleteOption) error {
				record("delete", o)
				return c.Delete(ctx, o, opts...)
			},
		}).Build()
	r := NewReconciler(ReconcilerConfig{
		Client: c, Reader: c, Recorder: events.NewFakeRecorder(100),
		Sources: staticSources{health: []string{"10.0.0.0/20"}}, Options: DefaultOptions(),
		Metrics: NewMetrics(prometheus.NewRegistry()),
	})
	// No dataplane here: acknowledge at once (TestAcknowledgementHeld covers the grace).
	r.Options.ProgrammingGrace, r.Options.NetworkPolicyGrace = 0, 0
	return r, c, &ops
}

func reconcileOnce(t *testing.T, r *Reconciler, svc *corev1.Service) {
	t.Helper()
	if _, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: client.ObjectKeyFromObject(svc)}); err != nil {
		t.Fatal(err)
	}
}

// index is the position of the first op with the prefix and suffix, -1 if none.
func index(ops []string, prefix, suffix string) int {
	return slices.IndexFunc(ops, func(op string) bool { return strings.HasPrefix(op, prefix) && strings.HasSuffix(op, suffix) })
}

// TestWritesAreClosedAtEveryStep: the Allow policy is written before the
// Deny behind it, and removed before it, so no intermediate state refuses a
// listed source that both the state before and the one after admit (a
// Service whose flows already run when it opts in, as one adopted from the
// AWS Load Balancer Controller's rules; real Felix shows it packet by packet
// in the provider's TestAccNLBIngressMigrateFromLBCRules) nor admits what
// neither admits (the tier passes what an Allow alone does not match). The
// network set an Allow policy selects exists before it.
func TestWritesAreClosedAtEveryStep(t *testing.T) {
	var ranges []string
	for i := 0; i < 60; i++ {
		ranges = append(ranges, fmt.Sprintf("198.18.%d.0/25", 2*i))
	}
	svc := nlbService(func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = ranges })
	r, c, ops := recordingReconciler(t, svc, TierObject(DefaultTier, DefaultTierOrder))

	reconcileOnce(t, r, svc)
	set, deny, allow := index(*ops, "create", "-sources"), index(*ops, "create", "-deny"), index(*ops, "create", "-allow")
	if set < 0 || deny < 0 || allow < 0 || !(set < allow && allow < deny) {
		t.Fatalf("creates out of order: %v", *ops)
	}

	*ops = nil
	got := &corev1.Service{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(svc), got); err != nil {
		t.Fatal(err)
	}
	got.Annotations[annotations.NLBPolicy] = annotations.Disabled
	if err := c.Update(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	*ops = nil
	reconcileOnce(t, r, svc)
	set, deny, allow = index(*ops, "delete", "-sources"), index(*ops, "delete", "-deny"), index(*ops, "delete", "-allow")
	if set < 0 || deny < 0 || allow < 0 || !(allow < deny && allow < set) {
		t.Fatalf("deletes out of order: %v", *ops)
	}
	var left calicov3.GlobalNetworkPolicyList
	if err := c.List(context.Background(), &left); err != nil || len(left.Items) != 0 {
		t.Fatalf("policies left: %d (%v)", len(left.Items), err)
	}
}

// TestMissingTierFailsClosed: without the product's tier, policies in it
// would enforce nothing; the controller writes none, acknowledges nothing,
// and says what to do.
func TestMissingTierFailsClosed(t *testing.T) {
	svc := nlbService()
	r, c, ops := recordingReconciler(t, svc)
	reconcileOnce(t, r, svc)
	if len(*ops) != 0 {
		t.Fatalf("wrote %v without the tier", *ops)
	}
	got := &corev1.Service{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(svc), got); err != nil {
		t.Fatal(err)
	}
	a, ok := ack.Of(got)
	if !ok || a.Digest != "" || !strings.Contains(a.Problem, `Calico tier "telemetry-nlb" does not exist`) {
		t.Fatalf("acknowledgement %+v (%v)", a, ok)
	}
	if ack.Current(got) {
		t.Fatal("acknowledged without the tier")
	}

	// Once the tier exists (and the cached check expires), the policies follow.
	if err := c.Create(context.Background(), TierObject(DefaultTier, DefaultTierOrder)); err != nil {
		t.Fatal(err)
	}
	r.tierCheckedAt = time.Time{}
	reconcileOnce(t, r, svc)
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(svc), got); err != nil {
		t.Fatal(err)
	}
	if !ack.Current(got) || index(*ops, "create", "-deny") < 0 {
		t.Fatalf("not enforced once the tier exists: %v, %s", *ops, got.Annotations[annotations.Enforced])
	}
}

// TestAcknowledgementHeld: a change is acknowledged only ProgrammingGrace
// after its policies were written (Felix programs them meanwhile; real Felix
// in TestAcknowledgementMeansEnforced), and a controller that has just
// started holds an acknowledgement as long, since its predecessor may have
// written the policies a moment before.
func TestAcknowledgementHeld(t *testing.T) {
	svc := nlbService()
	r, c, _ := recordingReconciler(t, svc, TierObject(DefaultTier, DefaultTierOrder))
	r.Options.ProgrammingGrace = 300 * time.Millisecond
	acked := func() bool {
		got := &corev1.Service{}
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(svc), got); err != nil {
			t.Fatal(err)
		}
		return ack.Current(got)
	}
	res, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: client.ObjectKeyFromObject(svc)})
	if err != nil {
		t.Fatal(err)
	}
	if acked() {
		t.Fatal("acknowledged in the reconcile that wrote the policies")
	}
	// The grace, with its share for each of the Service's 2 source nets.
	if grace := r.Options.grace(BackendCalico, 2); res.RequeueAfter <= 0 || res.RequeueAfter > grace {
		t.Fatalf("requeued after %v, want the rest of the grace (%v)", res.RequeueAfter, grace)
	}
	reconcileOnce(t, r, svc)
	if acked() {
		t.Fatal("acknowledged before the grace ended, with nothing more written")
	}
	time.Sleep(res.RequeueAfter)
	reconcileOnce(t, r, svc)
	if !acked() {
		t.Fatal("not acknowledged after the grace")
	}

	// A new controller (a new leader) finds the policies written and the
	// Service not acknowledged: it holds the acknowledgement too.
	got := &corev1.Service{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(svc), got); err != nil {
		t.Fatal(err)
	}
	delete(got.Annotations, annotations.Enforced)
	if err := c.Update(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	next := NewReconciler(ReconcilerConfig{Client: c, Reader: c, Recorder: events.NewFakeRecorder(100), Sources: r.Sources,
		Options: r.Options, Metrics: NewMetrics(prometheus.NewRegistry())})
	started := time.Now()
	reconcileOnce(t, next, svc)
	if acked() {
		t.Fatal("a controller that had just started acknowledged at once")
	}
	// Reconciled again until it acknowledges: not before the grace has
	// run from its start, and not long after.
	for !acked() {
		if time.Since(started) > r.Options.grace(BackendCalico, 2)+10*time.Second {
			t.Fatal("the new controller did not acknowledge after the grace")
		}
		time.Sleep(20 * time.Millisecond)
		reconcileOnce(t, next, svc)
	}
	if took := time.Since(started); took < r.Options.grace(BackendCalico, 2) {
		t.Fatalf("the new controller acknowledged %v after its start, within the grace (%v)", took, r.Options.grace(BackendCalico, 2))
	}
}

// TestNamespacesAllowList: who may opt in is the admins' choice. With
// --namespaces set, a Service opted in from another namespace gets no policy
// (and loses any it had), no finalizer, an acknowledgement without a digest
// whose problem names the flag (so the provider's apply fails saying why,
// instead of waiting out its timeout), and a Warning Event; one in a listed
// namespace is managed as before.
func TestNamespacesAllowList(t *testing.T) {
	svc := nlbService()
	r, c, ops := recordingReconciler(t, svc, TierObject(DefaultTier, DefaultTierOrder))
	reconcileOnce(t, r, svc)
	if index(*ops, "create", "-deny") < 0 {
		t.Fatalf("not managed with no allow-list: %v", *ops)
	}
	r.Namespaces = []string{"platform"}
	*ops = nil
	reconcileOnce(t, r, svc)
	got := &corev1.Service{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(svc), got); err != nil {
		t.Fatal(err)
	}
	a, ok := ack.Of(got)
	if !ok || a.Digest != "" || !strings.Contains(a.Problem, "--namespaces") || ack.Current(got) {
		t.Errorf("acknowledgement of a Service outside the allow-list: %+v (%v)", a, ok)
	}
	if slices.Contains(got.Finalizers, Finalizer) {
		t.Error("the finalizer stayed on a Service outside the allow-list")
	}
	var left calicov3.GlobalNetworkPolicyList
	if err := c.List(context.Background(), &left); err != nil || len(left.Items) != 0 {
		t.Errorf("policies left for a Service outside the allow-list: %d (%v)", len(left.Items), err)
	}
	found := false
	for rec := r.Recorder.(*events.FakeRecorder); len(rec.Events) > 0; {
		if ev := <-rec.Events; strings.Contains(ev, reasons.NamespaceNotAllowed) {
			found = true
		}
	}
	if !found {
		t.Error("no NamespaceNotAllowed Event")
	}
	if n := testutil.ToFloat64(r.Metrics.unenforced); n != 1 {
		t.Errorf("telemetry_nlbpolicy_unenforced_services = %v with the Service outside the allow-list, want 1", n)
	}
	r.Namespaces = []string{"platform", svc.Namespace}
	*ops = nil
	reconcileOnce(t, r, svc)
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(svc), got); err != nil {
		t.Fatal(err)
	}
	if !ack.Current(got) || index(*ops, "create", "-deny") < 0 {
		t.Errorf("not managed once its namespace is listed: %v", *ops)
	}
	if n := testutil.ToFloat64(r.Metrics.unenforced); n != 0 {
		t.Errorf("telemetry_nlbpolicy_unenforced_services = %v once the Service is enforced, want 0", n)
	}
}

// TestGracePerBackend: each backend waits its own grace (the NetworkPolicy
// enforcers are slower than Felix), plus the same per source net; a grace of
// 0 is no wait.
func TestGracePerBackend(t *testing.T) {
	o := DefaultOptions()
	for _, tc := range []struct {
		backend Backend
		sources int
		want    time.Duration
	}{
		{BackendCalico, 0, DefaultProgrammingGrace},
		{BackendNetworkPolicy, 0, DefaultNetworkPolicyGrace},
		{BackendNetworkPolicy, 10_000, DefaultNetworkPolicyGrace + 10_000*perSourceGrace},
	} {
		if got := o.grace(tc.backend, tc.sources); got != tc.want {
			t.Errorf("%s, %d sources: %v, want %v", tc.backend, tc.sources, got, tc.want)
		}
	}
	if DefaultNetworkPolicyGrace <= DefaultProgrammingGrace {
		t.Errorf("the networkpolicy backend's default grace %v is not longer than Felix's %v", DefaultNetworkPolicyGrace, DefaultProgrammingGrace)
	}
	o.NetworkPolicyGrace = 0
	if got := o.grace(BackendNetworkPolicy, 100); got != 0 {
		t.Errorf("a grace of 0 waits %v", got)
	}
}
