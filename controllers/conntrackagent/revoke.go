package conntrackagent

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/reasons"
)

// Revocation. When sources are removed from an nlb-policy Service's allowed
// set, the connections those sources already have keep passing: Felix, like
// any stateful firewall, accepts the packets of a connection conntrack has
// seen replies for before it looks at policy. (One-way UDP flows are not
// affected: without a reply each packet is judged again.) Once the
// controller has acknowledged the new set (so the policy that refuses them
// is written), the agent deletes on its node the entries from the removed
// sources to the Service, and the next packet of each connection meets the
// policy.

// enforcedSources is the source set of the spec a Service's acknowledgement
// names, or false when the acknowledgement is not for the current spec or
// the Service does not carry the nlb-policy controller's finalizer (which the
// controller adds before it writes any policy or acknowledgement: an
// acknowledgement without it was not written by the controller).
func enforcedSources(svc *corev1.Service) (cidrset.Set, bool) {
	if !ack.Current(svc) || !slices.Contains(svc.Finalizers, annotations.NLBPolicyFinalizer) {
		return cidrset.Set{}, false
	}
	s, _ := cidrset.Parse(lbc.SourceRangesOf(svc)) // the controller enforces the valid part
	return s, true
}

// Revocation is the pure decision of one revocation pass for one Service:
// which entries, of any protocol, go.
type Revocation struct {
	// Removed are the sources no longer allowed; Allowed the current set
	// (an address in both, e.g. a /24 narrowed to a /25, is kept).
	Removed, Allowed cidrset.Set
	// Targets are where the Service's traffic arrives on a node: its
	// addresses with its ports, its endpoints with their ports.
	Targets map[netip.AddrPort]bool
	// NodePorts are reached on the node's local addresses.
	NodePorts map[uint16]bool
	Local     map[netip.Addr]bool
}

// NewRevocation builds the decision for svc, its EndpointSlices and the
// node's local addresses.
func NewRevocation(removed, allowed cidrset.Set, svc *corev1.Service, slices []*discoveryv1.EndpointSlice, local []netip.Addr) *Revocation {
	r := &Revocation{Removed: removed, Allowed: allowed, Targets: map[netip.AddrPort]bool{}, NodePorts: map[uint16]bool{}, Local: map[netip.Addr]bool{}}
	for _, a := range local {
		r.Local[a.Unmap()] = true
	}
	for _, sp := range svc.Spec.Ports {
		// Not the external IPs: any editor of the Service names them, so they
		// may be another's address, whose connections are not ours to cut.
		for _, ip := range serviceIPs(svc, false) {
			r.Targets[netip.AddrPortFrom(ip, uint16(sp.Port))] = true
		}
		if sp.NodePort != 0 {
			r.NodePorts[uint16(sp.NodePort)] = true
		}
		for ep := range servingEndpoints(controllerSlices(slices), sp) {
			r.Targets[ep] = true
		}
	}
	return r
}

// controllerSlices are the EndpointSlices the EndpointSlice controller made
// (from the Service's selector): only their addresses are the Service's
// pods. A slice anyone with the right to write one makes names what
// addresses it likes, whose connections are not the agent's to cut. (A
// Service whose endpoints another controller manages loses, on a source's
// removal, only the cut of its established connections to those endpoints;
// new ones are refused by the policy as ever.)
func controllerSlices(in []*discoveryv1.EndpointSlice) []*discoveryv1.EndpointSlice {
	var out []*discoveryv1.EndpointSlice
	for _, s := range in {
		if s.Labels[discoveryv1.LabelManagedBy] == endpointSliceController {
			out = append(out, s)
		}
	}
	return out
}

// endpointSliceController is the value of endpointslice.kubernetes.io/managed-by
// on the slices kube-controller-manager's EndpointSlice controller makes.
const endpointSliceController = "endpointslice-controller.k8s.io"

// Revoked reports whether an entry is a connection of a removed source to
// the Service.
func (r *Revocation) Revoked(f Flow) bool {
	src := f.OrigSrc.Addr().Unmap()
	if !r.Removed.Contains(src) || r.Allowed.Contains(src) {
		return false
	}
	dst := netip.AddrPortFrom(f.OrigDst.Addr().Unmap(), f.OrigDst.Port())
	return r.Targets[dst] || (r.Local[dst.Addr()] && r.NodePorts[dst.Port()])
}

// sourcesAcknowledged remembers the source set the controller has just
// acknowledged for a Service and, when sources left it, schedules the
// revocation passes. The first set seen (agent start, new Service) revokes
// nothing: the agent does not know what was allowed before.
func (a *Agent) sourcesAcknowledged(o any) {
	svc, ok := o.(*corev1.Service)
	if !ok || len(a.Revoke) == 0 {
		return
	}
	cur, ok := enforcedSources(svc)
	if !ok {
		return // not enforced yet: the old policy still holds, nothing to revoke
	}
	key := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
	a.mu.Lock()
	prev, known := a.enforced[key]
	if !known {
		// The set enforced before the agent's restart, if it saved one:
		// sources removed while it was down are revoked now.
		prev, known = a.savedEnforced[key]
		delete(a.savedEnforced, key)
	}
	a.enforced[key] = cur
	a.mu.Unlock()
	if !known || !slices.Equal(prev.Strings(), cur.Strings()) {
		a.stateChanged()
	}
	if !known {
		return
	}
	removed := cidrset.Subtract(prev, cur)
	if removed.Len() == 0 {
		return
	}
	a.Log.Info("sources removed from an acknowledged Service: revoking their connections", "service", key, "removed", removed.Strings())
	for _, d := range a.Revoke {
		a.afterFunc(d, func() { a.queueRevoke(key, removed) })
	}
}

// queueRevoke adds sources to a Service's waiting revocation and wakes the
// loop. A Service has one waiting revocation at most, whatever the number of
// acknowledgements: a flapping Service neither grows a queue nor crowds out
// another's (nothing is dropped).
func (a *Agent) queueRevoke(key types.NamespacedName, removed cidrset.Set) {
	a.mu.Lock()
	a.revokePending[key] = cidrset.Union(a.revokePending[key], removed)
	a.mu.Unlock()
	a.wakeRevokes()
}

func (a *Agent) wakeRevokes() {
	select {
	case a.revokeReady <- struct{}{}:
	default: // already awake
	}
}

// runRevokes runs the waiting revocations whose Service's last pass is at
// least RevokeInterval old; the others wait for their turn (the loop is
// woken then).
func (a *Agent) runRevokes(ctx context.Context) {
	type due struct {
		key     types.NamespacedName
		removed cidrset.Set
	}
	var run []due
	var next time.Duration
	a.mu.Lock()
	now := a.Clock.Now()
	for key, removed := range a.revokePending {
		if last, ok := a.revokeLast[key]; ok && now.Sub(last) < a.RevokeInterval {
			if wait := a.RevokeInterval - now.Sub(last); next == 0 || wait < next {
				next = wait
			}
			continue
		}
		run = append(run, due{key, removed})
		delete(a.revokePending, key)
		a.revokeLast[key] = now
	}
	a.mu.Unlock()
	if next > 0 {
		a.afterFunc(next, a.wakeRevokes)
	}
	for _, d := range run {
		if err := a.RevokePass(ctx, d.key, d.removed); err != nil && ctx.Err() == nil {
			a.Log.Error(err, "revocation pass failed", "service", d.key)
		}
	}
}

// revokesIdle says no revocation is waiting to run.
func (a *Agent) revokesIdle() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.revokePending) == 0
}

func (a *Agent) forgetSources(o any) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	if svc, ok := o.(*corev1.Service); ok {
		key := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}
		a.mu.Lock()
		delete(a.enforced, key)
		delete(a.savedEnforced, key)
		delete(a.revokeLast, key) // a waiting revocation runs, and finds the Service gone
		a.mu.Unlock()
		a.stateChanged()
	}
}

// RevokePass deletes, on this node, the entries (TCP and UDP) from the
// removed sources to the Service, unless its current set allows them again.
func (a *Agent) RevokePass(ctx context.Context, key types.NamespacedName, removed cidrset.Set) error {
	services, sliceLister := a.listers()
	svc, err := services.Services(key.Namespace).Get(key.Name)
	if err != nil {
		return nil // deleted meanwhile: its policies go, and its entries with the stale passes
	}
	allowed, _ := cidrset.Parse(lbc.SourceRangesOf(svc))
	slices, err := sliceLister.EndpointSlices(key.Namespace).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: key.Name}))
	if err != nil {
		return err
	}
	local, err := a.LocalAddrs()
	if err != nil {
		return fmt.Errorf("listing local addresses: %w", err)
	}
	r := NewRevocation(removed, allowed, svc, slices, local)
	var revoked []Flow
	if _, err := a.Conntrack.ScanFiltered(ctx, []Filter{{Proto: protoTCP}, {Proto: protoUDP}}, func(f Flow) {
		if r.Revoked(f) {
			revoked = append(revoked, f)
		}
	}); err != nil {
		a.Metrics.errors.Inc()
		return fmt.Errorf("scanning conntrack: %w", err)
	}
	if len(revoked) == 0 {
		return nil
	}
	if a.DryRun {
		a.Log.Info("would close connections of removed sources (dry run)", "service", key, "connections", len(revoked))
		return nil
	}
	outcomes, err := a.Conntrack.Delete(ctx, revoked)
	st := Tally(outcomes)
	a.Metrics.revoked.WithLabelValues(key.Namespace, key.Name).Add(float64(st.Deleted))
	a.Log.Info("closed connections of removed sources", "service", key, "deleted", st.Deleted, "vanished", st.Vanished, "failed", st.Failed)
	if a.Recorder != nil && st.Deleted > 0 {
		a.Recorder.Eventf(svc, nil, corev1.EventTypeNormal, reasons.RevokedConnections, "Revoke",
			"Closed %d connections on node %s from sources removed from the allowed set (%s): their next packets meet the new policy",
			st.Deleted, a.NodeName, strings.Join(removed.Strings(), ", "))
	}
	if err != nil {
		a.Metrics.errors.Inc()
		return fmt.Errorf("deleting the connections of removed sources: %w", err)
	}
	return nil
}
