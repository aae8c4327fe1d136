package nlbpolicy

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/reasons"
)

// ControllerName is the controller's name in controller-runtime's metrics
// (the controller label) and logs; the chart's dashboard selects on it.
const ControllerName = "nlb-policy"

// Finalizer holds a managed Service until its policies are deleted.
const Finalizer = annotations.NLBPolicyFinalizer

// Sources resolves what Desired needs from outside the Service.
type Sources interface {
	// HealthCheckCIDRs are the CIDRs the NLB's health checks come from.
	HealthCheckCIDRs(ctx context.Context, svc *corev1.Service) ([]string, error)
	// HealthCheckBound is where health checks can come from at all (the
	// NLB's VPC), when known: health-check CIDRs outside it are dropped.
	HealthCheckBound(ctx context.Context, svc *corev1.Service) ([]string, error)
	// DefaultSources apply when the Service lists no source range.
	DefaultSources(ctx context.Context, svc *corev1.Service) ([]string, error)
	// HealthCheckPending reports that the NLB does not exist yet.
	HealthCheckPending(svc *corev1.Service) bool
}

// ReconcilerConfig is what a Reconciler is made of: its clients, where it
// resolves sources, and its settings.
type ReconcilerConfig struct {
	Client client.Client
	// Reader reads from the API server, for when the cache is behind.
	Reader   client.Reader
	Recorder events.EventRecorder
	Sources  Sources
	Options  Options
	// ManageAll manages every NLB Service whose backend security-group rules
	// are switched off, without the opt-in annotation (opt out with
	// telemetry-platform.io/nlb-policy: disabled).
	ManageAll bool
	// Namespaces, when set, are the only namespaces whose Services may opt
	// in (the admins' allow-list, --namespaces); empty: every namespace.
	Namespaces []string
	Metrics    *Metrics
}

// Reconciler applies Desired for each NLB Service, in the LBC's shape: build
// the model (Desired, desired.go), deploy it in a safe order (deployer.go),
// then acknowledge it on the Service (acknowledge.go). Make one with
// NewReconciler.
type Reconciler struct {
	ReconcilerConfig

	mu       sync.Mutex
	reported map[types.UID]string // problems last reported per Service, so Events are not repeated
	// tierCheckedAt and tierProblemSeen cache tierProblem.
	tierCheckedAt   time.Time
	tierProblemSeen string
	// written is when the reconciler last wrote a Service's objects, until
	// that change is acknowledged; started is the first reconcile (see
	// settled).
	written map[types.NamespacedName]time.Time
	started time.Time
	// lastWrite is when each Service's NetworkPolicy was last written (see
	// settling).
	lastWrite map[types.NamespacedName]time.Time
	// own is what the reconciler last wrote, so its own watch events are skipped.
	own ownWrites
}

// NewReconciler returns a Reconciler with its state initialised.
func NewReconciler(cfg ReconcilerConfig) *Reconciler {
	return &Reconciler{ReconcilerConfig: cfg, reported: map[types.UID]string{}, written: map[types.NamespacedName]time.Time{},
		lastWrite: map[types.NamespacedName]time.Time{}}
}

// SetupWithManager watches Services (NLBs, other load balancers that opt
// in, and those that carry the finalizer) and the generated objects, mapped
// back to their Service by label, so a hand edit or deletion is restored.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	relevant := predicate.NewPredicateFuncs(func(o client.Object) bool {
		svc, ok := o.(*corev1.Service)
		return ok && (lbc.IsNLB(svc) || Qualifies(svc, false) || controllerutil.ContainsFinalizer(svc, Finalizer))
	})
	toOwner := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		l := o.GetLabels()
		if l[annotations.ManagedBy] != annotations.NLBPolicyManager || l[annotations.OwnerName] == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: l[annotations.OwnerNamespace], Name: l[annotations.OwnerName]}}}
	})
	b := ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		For(&corev1.Service{}, builder.WithPredicates(relevant, r.own.predicate()))
	// Only the kinds of the backends the controller runs are watched (and
	// need RBAC): a cluster without Calico has no Calico kinds.
	if r.Options.Allows(BackendCalico) {
		for _, o := range []client.Object{&calicov3.GlobalNetworkPolicy{}, &calicov3.GlobalNetworkSet{}} {
			if err := mgr.GetFieldIndexer().IndexField(context.Background(), o, ownerField, ownerOf); err != nil {
				return fmt.Errorf("indexing %T by owner: %w", o, err)
			}
			b = b.Watches(o, toOwner, builder.WithPredicates(r.own.predicate()))
		}
	}
	if r.Options.Allows(BackendNetworkPolicy) {
		b = b.Watches(&networkingv1.NetworkPolicy{}, r.networkPolicyEvents()).
			Watches(&discoveryv1.EndpointSlice{}, r.endpointSliceOwner())
	}
	return b.Complete(r)
}

// waitRequeue is how soon a Service that is not ready yet (no NodePort, no
// load balancer to ask about) is looked at again.
const waitRequeue = 15 * time.Second

func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	logger := log.FromContext(ctx)
	svc := &corev1.Service{}
	if err := r.Client.Get(ctx, req.NamespacedName, svc); err != nil {
		if apierrors.IsNotFound(err) {
			// Gone (the finalizer was removed by force, or it never had one):
			// delete what is left.
			r.forget(req.NamespacedName, "")
			if err := r.deleteOwned(ctx, req.Namespace, req.Name); err != nil {
				return reconcile.Result{}, fmt.Errorf("deleting the policies of a deleted Service: %w", err)
			}
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("getting the Service: %w", err)
	}
	qualifies := Qualifies(svc, r.ManageAll)
	refused := ""
	if qualifies && !r.namespaceAllowed(svc.Namespace) {
		// Who may opt in is the admins' choice: a Service elsewhere is not
		// managed, and its acknowledgement says why, so an apply waiting for
		// it fails with the reason instead of at its timeout.
		refused = fmt.Sprintf("not managed: namespace %q is not among the nlb-policy controller's --namespaces (%s); "+
			"ask the cluster's admins to add it", svc.Namespace, strings.Join(r.Namespaces, ","))
	}
	if !qualifies || refused != "" {
		if err := r.deleteOwned(ctx, svc.Namespace, svc.Name); err != nil {
			return reconcile.Result{}, fmt.Errorf("deleting the policies of a Service no longer managed: %w", err)
		}
		r.forget(req.NamespacedName, svc.UID)
		have, acked := svc.Annotations[annotations.Enforced]
		want := ""
		if refused != "" {
			want = ack.Ack{V: ack.Version, Problem: refused, Refused: ack.Digest(svc)}.Encode()
			// Opted in and refused: unenforced until it is allowed or
			// opts out.
			r.Metrics.acknowledged(req.NamespacedName, false)
		}
		if controllerutil.ContainsFinalizer(svc, Finalizer) || (acked && have != want) || (!acked && want != "") {
			patch := client.MergeFrom(svc.DeepCopy())
			controllerutil.RemoveFinalizer(svc, Finalizer)
			delete(svc.Annotations, annotations.Enforced)
			if want != "" {
				if svc.Annotations == nil {
					svc.Annotations = map[string]string{}
				}
				svc.Annotations[annotations.Enforced] = want
				r.Recorder.Eventf(svc, nil, corev1.EventTypeWarning, reasons.NamespaceNotAllowed, "Reconcile", "%s", refused)
			}
			if err := r.Client.Patch(ctx, svc, patch); err != nil && !apierrors.IsNotFound(err) {
				return reconcile.Result{}, fmt.Errorf("removing the finalizer and acknowledgement: %w", err)
			}
			r.Metrics.write("Service", "patch")
			logger.Info("policies removed", "reason", cmp.Or(refused, notQualifyingReason(svc)))
		}
		return reconcile.Result{}, nil
	}
	if !controllerutil.ContainsFinalizer(svc, Finalizer) {
		patch := client.MergeFrom(svc.DeepCopy())
		controllerutil.AddFinalizer(svc, Finalizer)
		from := svc.ResourceVersion
		if err := r.Client.Patch(ctx, svc, patch); err != nil {
			return reconcile.Result{}, fmt.Errorf("adding the finalizer: %w", err)
		}
		r.own.record(from, svc)
		r.Metrics.write("Service", "patch")
	}

	backend, problem := BackendOf(svc, r.Options)
	if problem == "" && backend == BackendCalico && !lbc.IsNLB(svc) {
		problem = "the calico backend filters an AWS NLB's traffic at the nodes' NodePorts and the pods' addresses; a load " +
			"balancer other than the NLB (MetalLB, kube-vip, GKE) delivers to its own address, which it does not filter: use the " +
			"networkpolicy backend (annotation " + annotations.PolicyBackend + ": " + string(BackendNetworkPolicy) + ")"
	}
	if problem != "" {
		// What either backend wrote stays: the Service stays as closed as it was.
		r.report(svc, reasons.BackendRefused, []string{problem})
		return reconcile.Result{}, r.acknowledge(ctx, svc, ack.Ack{Problem: problem, Refused: ack.Digest(svc)})
	}
	if backend == BackendNetworkPolicy {
		return r.reconcileNetworkPolicy(ctx, req, svc)
	}
	if problem := r.tierProblem(ctx); problem != "" {
		// Policies in a tier that does not exist enforce nothing: no
		// acknowledgement, and the existing policies stay as they are.
		r.report(svc, reasons.BackendRefused, []string{problem})
		if err := r.acknowledge(ctx, svc, ack.Ack{Problem: problem}); err != nil {
			return reconcile.Result{}, fmt.Errorf("withdrawing the acknowledgement (tier): %w", err)
		}
		return reconcile.Result{RequeueAfter: waitRequeue}, nil
	}

	existingPolicies, existingSets, err := r.owned(ctx, svc.Namespace, svc.Name)
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("listing the Service's policies: %w", err)
	}
	in, resolveErr := r.resolve(ctx, svc)
	if resolveErr != nil {
		return r.unresolved(ctx, svc, resolveErr, len(existingPolicies) > 0)
	}
	out := Desired(in, r.Options)
	problems := out.Problems
	r.report(svc, reasons.InvalidInput, problems)
	if out.Waiting != "" {
		logger.V(1).Info("waiting", "reason", out.Waiting)
		if err := r.acknowledge(ctx, svc, ack.Ack{Problem: "waiting: " + out.Waiting}); err != nil {
			return reconcile.Result{}, fmt.Errorf("withdrawing the acknowledgement (waiting): %w", err)
		}
		return reconcile.Result{RequeueAfter: waitRequeue}, nil
	}

	writes, err := r.apply(ctx, out, existingPolicies, existingSets)
	if err != nil {
		r.Recorder.Eventf(svc, nil, corev1.EventTypeWarning, reasons.PoliciesNotApplied, "Reconcile", "%s", truncate(err.Error(), 1000))
		// The acknowledgement is withdrawn, so the provider does not take the
		// Service for protected; the patch may be refused too (the error says why).
		ackErr := r.acknowledge(ctx, svc, ack.Ack{Problem: "policies not applied: " + truncate(err.Error(), 500)})
		return reconcile.Result{}, errors.Join(fmt.Errorf("applying policies: %w", err), ackErr)
	}
	if writes > 0 {
		r.Recorder.Eventf(svc, nil, corev1.EventTypeNormal, reasons.PoliciesApplied, "Reconcile",
			"%d Calico object(s) written: %d policies, %d network sets, %d allowed source nets",
			writes, len(out.Policies), len(out.NetworkSets), out.Sources.Len())
		logger.Info("policies applied", "writes", writes, "policies", len(out.Policies), "sources", out.Sources.Len())
	}
	enforced := ack.Ack{Digest: ack.Digest(svc), Problem: truncate(strings.Join(problems, "; "), 500)}
	for _, p := range out.Policies {
		enforced.Policies = append(enforced.Policies, p.Name)
	}
	slices.Sort(enforced.Policies)
	r.Metrics.observe(svc, len(out.Policies)+len(out.NetworkSets), out.Sources.Len(), len(in.HealthCheckCIDRs))
	return r.enforced(ctx, req, svc, enforced, BackendCalico, writes > 0, out.Sources.Len())
}

// enforced acknowledges what a backend enforces for a Service, once the
// programming grace (longer for more sources) after its last write (now, if
// wrote) and after the
// writes of others it names (siblings) has passed, and then retires what
// the Service's other backend wrote for it: a Service switched between
// backends is never without one or the other.
func (r *Reconciler) enforced(ctx context.Context, req reconcile.Request, svc *corev1.Service, enforced ack.Ack, backend Backend,
	wrote bool, sources int, others ...types.NamespacedName) (reconcile.Result, error) {
	if have, ok := ack.Of(svc); !ok || !ack.Same(have, enforced) {
		wait := r.settled(req.NamespacedName, backend, wrote, sources)
		for _, o := range others {
			wait = max(wait, r.settling(o))
		}
		if wait > 0 {
			log.FromContext(ctx).V(1).Info("acknowledgement held while the dataplane programs the policies", "for", wait)
			return reconcile.Result{RequeueAfter: wait}, nil
		}
	}
	if err := r.retire(ctx, svc, backend); err != nil {
		return reconcile.Result{}, err
	}
	if err := r.acknowledge(ctx, svc, enforced); err != nil {
		return reconcile.Result{}, fmt.Errorf("writing the acknowledgement: %w", err)
	}
	r.mu.Lock()
	delete(r.written, req.NamespacedName)
	r.mu.Unlock()
	return reconcile.Result{}, nil
}

// report emits a Warning Event with the reason given when a Service's
// problems change, and never twice for the same problems, so steady state
// makes no write.
func (r *Reconciler) report(svc *corev1.Service, reason string, problems []string) {
	sum := fmt.Sprintf("%x", sha256.Sum256([]byte(strings.Join(problems, "\n"))))
	r.mu.Lock()
	last, seen := r.reported[svc.UID]
	r.reported[svc.UID] = sum
	r.mu.Unlock()
	if (seen && last == sum) || len(problems) == 0 {
		return
	}
	r.Metrics.invalid.Add(float64(len(problems)))
	for _, p := range problems {
		log.Log.WithName("nlb-policy").Info("invalid input", "service", svc.Namespace+"/"+svc.Name, "problem", p)
	}
	r.Recorder.Eventf(svc, nil, corev1.EventTypeWarning, reason, "Reconcile", "%s", truncate(strings.Join(problems, "; "), 1000))
}

func (r *Reconciler) forget(key types.NamespacedName, uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if uid != "" {
		delete(r.reported, uid)
	}
	delete(r.written, key)
	delete(r.lastWrite, key)
	r.Metrics.forget(key)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// resolve reads what the models need from outside the Service: the
// health checks' sources and their bound, and the default sources.
func (r *Reconciler) resolve(ctx context.Context, svc *corev1.Service) (Input, error) {
	if !lbc.IsNLB(svc) {
		// Another load balancer (MetalLB, kube-vip, GKE's passthrough NLB):
		// its health checks, if any, go to the nodes (kube-proxy's health
		// check port), never to the pods, and it has no default sources:
		// the Service lists them or admits no one. AWS is not asked.
		return Input{Service: svc}, nil
	}
	in := Input{Service: svc, HealthCheckPending: r.Sources.HealthCheckPending(svc)}
	var err error
	if in.HealthCheckCIDRs, err = r.Sources.HealthCheckCIDRs(ctx, svc); err != nil {
		return in, err
	}
	if in.HealthCheckBound, err = r.Sources.HealthCheckBound(ctx, svc); err != nil {
		return in, err
	}
	in.DefaultSources, err = r.Sources.DefaultSources(ctx, svc)
	return in, err
}

// unresolved handles a Service whose sources could not be resolved.
// Policies already in place stay until AWS answers again. None is written
// without the NLB's health-check sources (it would refuse the health checks
// and take every target out): the Service waits, unacknowledged, so the
// provider adds no rule, and the reconcile is retried with the controller's
// backoff, which slows it under throttling instead of adding to it.
func (r *Reconciler) unresolved(ctx context.Context, svc *corev1.Service, resolveErr error, haveObjects bool) (reconcile.Result, error) {
	err := fmt.Errorf("resolving health-check CIDRs and default sources: %w", resolveErr)
	if haveObjects {
		return reconcile.Result{}, err
	}
	ackErr := r.acknowledge(ctx, svc, ack.Ack{Problem: "waiting: cannot ask AWS about the load balancer: " + truncate(resolveErr.Error(), 400)})
	return reconcile.Result{}, errors.Join(err, ackErr)
}
