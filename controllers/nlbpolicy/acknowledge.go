package nlbpolicy

import (
	"context"
	"fmt"
	"time"

	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
)

// The acknowledgement protocol: what the controller tells the provider on the
// Service (internal/ack), and when. A Service is acknowledged only once its
// policies are written, their tier exists, and Felix has had time to program
// them (settled); the provider widens AWS on nothing less.

// settled says how long a change must still wait before it is acknowledged:
// the backend's grace (Options.grace) after the Service's objects were last written (now,
// if wrote), or after the first reconcile of this controller (a leader that
// takes over does not know what its predecessor wrote a moment ago).
//
// The API server holding the policies does not mean Felix enforces them:
// each node's Felix reads them and programs its dataplane some time later
// (50-280 ms measured here), and OSS Calico does not report when. The
// provider widens AWS as soon as a Service is acknowledged (the cover, the
// hand-over of a migrated NLB), so an acknowledgement that came first would
// let sources inside the cover through AWS while Felix still passed them.
//
// The grace grows with the sources written (Options.grace): Felix takes
// seconds to program tens of thousands of them.
func (r *Reconciler) settled(key types.NamespacedName, backend Backend, wrote bool, sources int) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if r.started.IsZero() {
		r.started = now
	}
	if wrote {
		r.written[key] = now
	}
	since := r.started
	if w, ok := r.written[key]; ok && w.After(since) {
		since = w
	}
	return r.Options.grace(backend, sources) - now.Sub(since)
}

// perSourceGrace is how much longer the programming grace is per source
// net written. Measured with real Felix (BenchmarkSourcesProgrammed): a
// NetworkPolicy of 50,000 sources enforced 9.6 s after its Service was
// created, where the fixed 2 s grace had it acknowledged at 8.3 s; 10,000
// enforced at 1.3 s. 0.1 ms a source (5 s more for 50,000) covered both
// on an idle machine, but not on a loaded one (2 cores running a compile
// and two test packages beside it): the 50,000-source policy was enforced
// 0.85 s after its acknowledgement, Felix taking about 8 s after the write
// for 3.3 s idle. 0.3 ms a source (15 s more for 50,000) keeps twice that.
const perSourceGrace = 300 * time.Microsecond

// grace is the programming grace for a change of a backend that wrote this
// many source nets; none when the backend's grace is 0 (the admins chose not
// to wait).
func (o Options) grace(backend Backend, sources int) time.Duration {
	base := o.ProgrammingGrace
	if backend == BackendNetworkPolicy {
		base = o.NetworkPolicyGrace
	}
	if base <= 0 {
		return 0
	}
	return base + time.Duration(sources)*perSourceGrace
}

// wrote records that a Service's NetworkPolicy was just written, whether or
// not its own acknowledgement changes (a narrowing for a sibling does not
// change it), for its siblings' settling.
func (r *Reconciler) wrote(key types.NamespacedName, sources int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastWrite[key] = time.Now().Add(r.Options.grace(BackendNetworkPolicy, sources))
}

// settling is how long the programming grace of another Service's last
// NetworkPolicy write still runs (0 once it passed).
func (r *Reconciler) settling(key types.NamespacedName) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	until, ok := r.lastWrite[key]
	if !ok {
		return 0
	}
	left := time.Until(until)
	if left <= 0 {
		delete(r.lastWrite, key)
	}
	return left
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
	want.V = ack.Version
	r.Metrics.acknowledged(client.ObjectKeyFromObject(svc), want.Digest != "" && want.Digest == ack.Digest(svc))
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
