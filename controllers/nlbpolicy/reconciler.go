package nlbpolicy

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
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
	// DefaultSources apply when the Service lists no source range.
	DefaultSources(ctx context.Context, svc *corev1.Service) ([]string, error)
	// HealthCheckPending reports that the NLB does not exist yet.
	HealthCheckPending(svc *corev1.Service) bool
}

// Reconciler applies Desired for each NLB Service.
type Reconciler struct {
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
	// own is what the reconciler last wrote, so its own watch events are skipped.
	own ownWrites
}

// SetupWithManager watches Services (those that are NLBs or carry the
// finalizer) and the generated objects, mapped back to their Service by
// label, so a hand edit or deletion is restored.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.reported = map[types.UID]string{}
	relevant := predicate.NewPredicateFuncs(func(o client.Object) bool {
		svc, ok := o.(*corev1.Service)
		return ok && (lbc.IsNLB(svc) || controllerutil.ContainsFinalizer(svc, Finalizer))
	})
	toOwner := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		l := o.GetLabels()
		if l[annotations.ManagedBy] != annotations.NLBPolicyManager || l[annotations.OwnerName] == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: l[annotations.OwnerNamespace], Name: l[annotations.OwnerName]}}}
	})
	for _, o := range []client.Object{&calicov3.GlobalNetworkPolicy{}, &calicov3.GlobalNetworkSet{}} {
		if err := mgr.GetFieldIndexer().IndexField(context.Background(), o, ownerField, ownerOf); err != nil {
			return fmt.Errorf("indexing %T by owner: %w", o, err)
		}
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		For(&corev1.Service{}, builder.WithPredicates(relevant, r.own.predicate())).
		Watches(&calicov3.GlobalNetworkPolicy{}, toOwner, builder.WithPredicates(r.own.predicate())).
		Watches(&calicov3.GlobalNetworkSet{}, toOwner, builder.WithPredicates(r.own.predicate())).
		Complete(r)
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
			want = ack.Ack{Problem: refused}.Encode()
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

	if problem := r.tierProblem(ctx); problem != "" {
		// Policies in a tier that does not exist enforce nothing: no
		// acknowledgement, and the existing policies stay as they are.
		r.report(svc, []string{problem})
		if err := r.acknowledge(ctx, svc, ack.Ack{Problem: problem}); err != nil {
			return reconcile.Result{}, fmt.Errorf("withdrawing the acknowledgement (tier): %w", err)
		}
		return reconcile.Result{RequeueAfter: waitRequeue}, nil
	}

	existingPolicies, existingSets, err := r.owned(ctx, svc.Namespace, svc.Name)
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("listing the Service's policies: %w", err)
	}
	in := Input{Service: svc, HealthCheckPending: r.Sources.HealthCheckPending(svc)}
	var resolveErr error
	if in.HealthCheckCIDRs, resolveErr = r.Sources.HealthCheckCIDRs(ctx, svc); resolveErr == nil {
		in.DefaultSources, resolveErr = r.Sources.DefaultSources(ctx, svc)
	}
	if resolveErr != nil {
		// Policies already in place stay until AWS answers again. None is
		// written without the NLB's health-check sources (it would refuse the
		// health checks and take every target out): the Service waits,
		// unacknowledged, so the provider adds no rule, and the reconcile is
		// retried with the controller's backoff, which slows it under
		// throttling instead of adding to it.
		err := fmt.Errorf("resolving health-check CIDRs and default sources: %w", resolveErr)
		if len(existingPolicies) > 0 {
			return reconcile.Result{}, err
		}
		ackErr := r.acknowledge(ctx, svc, ack.Ack{Problem: "waiting: cannot ask AWS about the load balancer: " + truncate(resolveErr.Error(), 400)})
		return reconcile.Result{}, errors.Join(err, ackErr)
	}
	out := Desired(in, r.Options)
	problems := out.Problems
	r.report(svc, problems)
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
	r.Metrics.observe(svc, out, len(in.HealthCheckCIDRs))
	if have, ok := ack.Of(svc); !ok || !ack.Same(have, enforced) {
		if wait := r.settled(req.NamespacedName, writes > 0); wait > 0 {
			logger.V(1).Info("acknowledgement held while Felix programs the policies", "for", wait)
			return reconcile.Result{RequeueAfter: wait}, nil
		}
	}
	if err := r.acknowledge(ctx, svc, enforced); err != nil {
		return reconcile.Result{}, fmt.Errorf("writing the acknowledgement: %w", err)
	}
	r.mu.Lock()
	delete(r.written, req.NamespacedName)
	r.mu.Unlock()
	return reconcile.Result{}, nil
}

// settled says how long a change must still wait before it is acknowledged:
// Options.ProgrammingGrace after the Service's objects were last written (now,
// if wrote), or after the first reconcile of this controller (a leader that
// takes over does not know what its predecessor wrote a moment ago).
//
// The API server holding the policies does not mean Felix enforces them:
// each node's Felix reads them and programs its dataplane some time later
// (50-280 ms measured here), and OSS Calico does not report when. The
// provider widens AWS as soon as a Service is acknowledged (the cover, the
// hand-over of a migrated NLB), so an acknowledgement that came first would
// let sources inside the cover through AWS while Felix still passed them.
func (r *Reconciler) settled(key types.NamespacedName, wrote bool) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.started.IsZero() {
		r.started = now
	}
	if r.written == nil {
		r.written = map[types.NamespacedName]time.Time{}
	}
	if wrote {
		r.written[key] = now
	}
	since := r.started
	if w, ok := r.written[key]; ok && w.After(since) {
		since = w
	}
	return r.Options.ProgrammingGrace - now.Sub(since)
}

// tierCheckTTL is how long the tier's presence is trusted between checks.
const tierCheckTTL = 10 * time.Second

// tierProblem says why the policies' tier cannot be used, or "". It reads the
// tier from the API server (a get on that one tier is all the RBAC it needs)
// at most every tierCheckTTL.
func (r *Reconciler) tierProblem(ctx context.Context) string {
	tier := tierOf(r.Options)
	r.mu.Lock()
	if time.Since(r.tierCheckedAt) < tierCheckTTL {
		defer r.mu.Unlock()
		return r.tierProblemSeen
	}
	r.mu.Unlock()
	problem := ""
	err := r.Reader.Get(ctx, client.ObjectKey{Name: tier}, &calicov3.Tier{})
	switch {
	case apierrors.IsNotFound(err):
		problem = fmt.Sprintf("Calico tier %q does not exist, so policies in it would enforce nothing: create it (the Helm chart "+
			"and deploy/nlb-policy-controller.yaml do) or point --tier at an existing one", tier)
	case apierrors.IsForbidden(err):
		problem = fmt.Sprintf("cannot read Calico tier %q (%v): grant get on tiers.projectcalico.org named %q", tier, err, tier)
	case err != nil:
		problem = fmt.Sprintf("cannot read Calico tier %q: %v", tier, err)
	}
	r.mu.Lock()
	r.tierCheckedAt, r.tierProblemSeen = time.Now(), problem
	r.mu.Unlock()
	return problem
}

// acknowledge records on the Service what is enforced for it (see
// internal/ack); it writes only when that changed, so steady state makes no
// write.
func (r *Reconciler) acknowledge(ctx context.Context, svc *corev1.Service, want ack.Ack) error {
	if have, ok := ack.Of(svc); ok && ack.Same(have, want) {
		return nil
	}
	want.Time = time.Now().UTC().Truncate(time.Second)
	patch := client.MergeFrom(svc.DeepCopy())
	if svc.Annotations == nil {
		svc.Annotations = map[string]string{}
	}
	svc.Annotations[annotations.Enforced] = want.Encode()
	from := svc.ResourceVersion
	if err := r.Client.Patch(ctx, svc, patch); err != nil {
		return fmt.Errorf("writing the acknowledgement on Service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	r.own.record(from, svc)
	r.Metrics.write("Service", "patch")
	return nil
}

// apply creates, updates and deletes so the cluster holds exactly the
// desired objects, in an order where no intermediate state admits what
// neither the state before nor the one after admits: network sets before the
// policies that select them; policies written and removed from the lowest
// order up (the Allow before the Deny behind it). Written the other way, a
// Deny ahead of its Allow refuses for a moment the listed sources of a
// Service whose flows already run (one adopted from the AWS Load Balancer
// Controller's rules), where an Allow alone refuses nothing new: the tier
// passes what it does not match. Unchanged objects are not written.
func (r *Reconciler) apply(ctx context.Context, out Output, policies []calicov3.GlobalNetworkPolicy, sets []calicov3.GlobalNetworkSet) (int, error) {
	writes := 0
	for _, want := range out.NetworkSets {
		var have client.Object
		if i := slices.IndexFunc(sets, func(s calicov3.GlobalNetworkSet) bool { return s.Name == want.Name }); i >= 0 {
			have = &sets[i]
		}
		wrote, err := r.ensure(ctx, want, have)
		if err != nil {
			return writes, err
		}
		writes += wrote
	}
	wanted := slices.Clone(out.Policies)
	slices.SortStableFunc(wanted, func(a, b *calicov3.GlobalNetworkPolicy) int { return cmp.Compare(order(a), order(b)) })
	for _, want := range wanted {
		var have client.Object
		if i := slices.IndexFunc(policies, func(p calicov3.GlobalNetworkPolicy) bool { return p.Name == want.Name }); i >= 0 {
			have = &policies[i]
		}
		wrote, err := r.ensure(ctx, want, have)
		if err != nil {
			return writes, err
		}
		writes += wrote
	}
	stalePolicies := slices.DeleteFunc(slices.Clone(policies), func(p calicov3.GlobalNetworkPolicy) bool {
		return slices.ContainsFunc(out.Policies, func(w *calicov3.GlobalNetworkPolicy) bool { return w.Name == p.Name })
	})
	staleSets := slices.DeleteFunc(slices.Clone(sets), func(s calicov3.GlobalNetworkSet) bool {
		return slices.ContainsFunc(out.NetworkSets, func(w *calicov3.GlobalNetworkSet) bool { return w.Name == s.Name })
	})
	deleted, err := r.delete(ctx, stalePolicies, staleSets)
	return writes + deleted, err
}

// delete removes generated objects in the closed order: policies from the
// lowest order up (an Allow before the Deny behind it), then network sets.
func (r *Reconciler) delete(ctx context.Context, policies []calicov3.GlobalNetworkPolicy, sets []calicov3.GlobalNetworkSet) (int, error) {
	policies = slices.Clone(policies)
	slices.SortStableFunc(policies, func(a, b calicov3.GlobalNetworkPolicy) int { return cmp.Compare(order(&a), order(&b)) })
	deleted := 0
	for i := range policies {
		if err := r.Client.Delete(ctx, &policies[i]); client.IgnoreNotFound(err) != nil {
			return deleted, fmt.Errorf("deleting GlobalNetworkPolicy %s: %w", policies[i].Name, err)
		}
		r.Metrics.write("GlobalNetworkPolicy", "delete")
		deleted++
	}
	for i := range sets {
		if err := r.Client.Delete(ctx, &sets[i]); client.IgnoreNotFound(err) != nil {
			return deleted, fmt.Errorf("deleting GlobalNetworkSet %s: %w", sets[i].Name, err)
		}
		r.Metrics.write("GlobalNetworkSet", "delete")
		deleted++
	}
	return deleted, nil
}

// order is a policy's order; none sorts last, as in Calico.
func order(p *calicov3.GlobalNetworkPolicy) float64 {
	if p.Spec.Order == nil {
		return math.Inf(1)
	}
	return *p.Spec.Order
}

// ensure makes the cluster hold want: have is the object as the cache sees
// it, nil when the cache has none. A create that finds the object already
// there means the cache is behind (the Service's own update arrived first):
// the live object is read and compared instead of failing the reconcile.
func (r *Reconciler) ensure(ctx context.Context, want, have client.Object) (int, error) {
	kind := kindOf(want)
	if have == nil && r.own.created(want) {
		// Created by this controller, not in the cache yet: read it.
		have = want.DeepCopyObject().(client.Object)
		if err := r.Reader.Get(ctx, client.ObjectKeyFromObject(want), have); client.IgnoreNotFound(err) != nil {
			return 0, err
		} else if err != nil {
			have = nil // deleted since
		}
	}
	if have == nil {
		err := r.Client.Create(ctx, want)
		if err == nil {
			r.own.record("", want)
			r.Metrics.write(kind, "create")
			return 1, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return 0, err
		}
		have = want.DeepCopyObject().(client.Object)
		if err := r.Reader.Get(ctx, client.ObjectKeyFromObject(want), have); err != nil {
			return 0, err
		}
	}
	if sameContent(have, want) {
		return 0, nil
	}
	want.SetResourceVersion(have.GetResourceVersion())
	if err := r.Client.Update(ctx, want); err != nil {
		return 0, err
	}
	r.own.record(have.GetResourceVersion(), want)
	r.Metrics.write(kind, "update")
	return 1, nil
}

// sameContent compares what the controller owns of a generated object: the
// whole spec (Desired sets what Calico's admission policies would default,
// so a hand edit of any field shows) and its own labels (others, such as
// ones a user adds, are left alone).
func sameContent(a, b client.Object) bool {
	for k, v := range b.GetLabels() {
		if got, ok := a.GetLabels()[k]; !ok || got != v {
			return false
		}
	}
	switch a := a.(type) {
	case *calicov3.GlobalNetworkPolicy:
		b, ok := b.(*calicov3.GlobalNetworkPolicy)
		return ok && equality.Semantic.DeepEqual(a.Spec, b.Spec)
	case *calicov3.GlobalNetworkSet:
		b, ok := b.(*calicov3.GlobalNetworkSet)
		return ok && equality.Semantic.DeepEqual(a.Spec, b.Spec)
	}
	return false
}

func kindOf(o client.Object) string {
	switch o.(type) {
	case *calicov3.GlobalNetworkPolicy:
		return "GlobalNetworkPolicy"
	case *calicov3.GlobalNetworkSet:
		return "GlobalNetworkSet"
	}
	return "unknown"
}

// ownerField indexes the generated objects in the cache by their Service
// ("namespace/name", from their labels), so that finding a Service's
// objects does not scan every policy of the cluster in each reconcile (a
// quarter of the controller's CPU at 1,000 Services).
const ownerField = "nlbpolicy.owner"

func ownerOf(o client.Object) []string {
	l := o.GetLabels()
	if l[annotations.ManagedBy] != annotations.NLBPolicyManager || l[annotations.OwnerName] == "" {
		return nil
	}
	return []string{l[annotations.OwnerNamespace] + "/" + l[annotations.OwnerName]}
}

// owned lists the objects generated for a Service: by label, and by the
// names the controller gives them, so that an object whose labels were
// stripped by hand is never left behind (ahead of a later Service's Deny on
// a reused NodePort).
func (r *Reconciler) owned(ctx context.Context, namespace, name string) ([]calicov3.GlobalNetworkPolicy, []calicov3.GlobalNetworkSet, error) {
	sel := client.MatchingFields{ownerField: namespace + "/" + name}
	var policies calicov3.GlobalNetworkPolicyList
	if err := r.Client.List(ctx, &policies, sel); err != nil {
		return nil, nil, fmt.Errorf("listing the policies of %s/%s: %w", namespace, name, err)
	}
	var sets calicov3.GlobalNetworkSetList
	if err := r.Client.List(ctx, &sets, sel); err != nil {
		return nil, nil, fmt.Errorf("listing the network sets of %s/%s: %w", namespace, name, err)
	}
	base := BaseName(namespace, name)
	for _, suffix := range ObjectSuffixes {
		key := client.ObjectKey{Name: base + suffix}
		if suffix == suffixSources {
			set := calicov3.GlobalNetworkSet{}
			if err := r.Client.Get(ctx, key, &set); err == nil && !slices.ContainsFunc(sets.Items, func(o calicov3.GlobalNetworkSet) bool { return o.Name == key.Name }) {
				sets.Items = append(sets.Items, set)
			} else if client.IgnoreNotFound(err) != nil {
				return nil, nil, fmt.Errorf("reading network set %s: %w", key.Name, err)
			}
			continue
		}
		policy := calicov3.GlobalNetworkPolicy{}
		if err := r.Client.Get(ctx, key, &policy); err == nil && !slices.ContainsFunc(policies.Items, func(o calicov3.GlobalNetworkPolicy) bool { return o.Name == key.Name }) {
			policies.Items = append(policies.Items, policy)
		} else if client.IgnoreNotFound(err) != nil {
			return nil, nil, fmt.Errorf("reading policy %s: %w", key.Name, err)
		}
	}
	return policies.Items, sets.Items, nil
}

// deleteOwned deletes a Service's objects, in the closed order.
func (r *Reconciler) deleteOwned(ctx context.Context, namespace, name string) error {
	policies, sets, err := r.owned(ctx, namespace, name)
	if err != nil {
		return err
	}
	_, err = r.delete(ctx, policies, sets)
	return err
}

// report emits a Warning Event when a Service's problems change, and never
// twice for the same problems, so steady state makes no write.
func (r *Reconciler) report(svc *corev1.Service, problems []string) {
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
	r.Recorder.Eventf(svc, nil, corev1.EventTypeWarning, reasons.InvalidInput, "Reconcile", "%s", truncate(strings.Join(problems, "; "), 1000))
}

func (r *Reconciler) forget(key types.NamespacedName, uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if uid != "" {
		delete(r.reported, uid)
	}
	delete(r.written, key)
	r.Metrics.forget(key)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
