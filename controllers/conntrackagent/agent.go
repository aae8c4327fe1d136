package conntrackagent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
)

// Agent watches Services and EndpointSlices and deletes stale UDP conntrack
// entries of its node.
type Agent struct {
	Client    kubernetes.Interface
	Conntrack *Netlink
	// NodeName is reported in Events.
	NodeName string
	// DryRun logs and counts what would be deleted, and deletes nothing.
	DryRun bool
	// Period of the full pass that runs whatever happened (safety net).
	Period time.Duration
	// Debounce coalesces the triggers that arrive together.
	Debounce time.Duration
	// TombstoneTTL is how long a deleted Service's addresses are remembered.
	TombstoneTTL time.Duration
	// Recheck is the delay of a follow-up pass after a pass that deleted
	// entries: when the agent acts before kube-proxy has written the new
	// DNAT rule, the next packet re-creates a never-NATed entry, which the
	// follow-up removes instead of waiting for the next period. Zero
	// disables it.
	Recheck time.Duration
	// LocalAddrs lists the node's addresses (where NodePorts are reached).
	LocalAddrs func() ([]netip.Addr, error)
	Recorder   events.EventRecorder
	Metrics    *Metrics
	Log        logr.Logger

	services  corelisters.ServiceLister
	slices    discoverylisters.EndpointSliceLister
	trigger   chan string
	mu        sync.Mutex
	tombs     map[types.NamespacedName]Tombstone
	lastEvent map[types.NamespacedName]time.Time
	synced    bool
	lastPass  time.Time
}

// eventInterval rate-limits Events per Service.
const eventInterval = time.Minute

// Run starts the informers and runs passes until ctx ends: one at start
// (only stale entries go; no flush), one after each relevant change
// (coalesced), and one every Period.
func (a *Agent) Run(ctx context.Context) error {
	a.trigger = make(chan string, 1)
	a.tombs = map[types.NamespacedName]Tombstone{}
	a.lastEvent = map[types.NamespacedName]time.Time{}
	factory := informers.NewSharedInformerFactory(a.Client, 0)
	svcInformer := factory.Core().V1().Services()
	sliceInformer := factory.Discovery().V1().EndpointSlices()
	a.services, a.slices = svcInformer.Lister(), sliceInformer.Lister()
	if _, err := svcInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) {
			if hasUDP(o) {
				a.kick("service added")
			}
		},
		UpdateFunc: func(old, cur any) {
			if serviceAddressesChanged(old, cur) {
				a.kick("service addresses changed")
			}
		},
		DeleteFunc: func(o any) { a.serviceDeleted(o) },
	}); err != nil {
		return err
	}
	if _, err := sliceInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) {
			if servingCount(o) > 0 {
				a.kick("endpoints added")
			}
		},
		UpdateFunc: func(old, cur any) {
			if endpointsNeedPass(old, cur) {
				a.kick("endpoints changed")
			}
		},
		DeleteFunc: func(any) { a.kick("endpoints removed") },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("informer for %v did not sync", typ)
		}
	}
	a.mu.Lock()
	a.synced = true
	a.mu.Unlock()

	reason := "start"
	ticker := time.NewTicker(a.Period)
	defer ticker.Stop()
	for {
		res, err := a.Pass(ctx, reason)
		if err != nil && ctx.Err() == nil {
			a.Log.Error(err, "pass failed", "trigger", reason)
		}
		if a.Recheck > 0 && res.Deleted > 0 && reason != "recheck" {
			time.AfterFunc(a.Recheck, func() { a.kick("recheck") })
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			reason = "period"
		case reason = <-a.trigger:
			// Coalesce what arrives during the debounce.
			timer := time.NewTimer(a.Debounce)
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil
			case <-timer.C:
			}
			select {
			case <-a.trigger:
			default:
			}
		}
	}
}

func (a *Agent) kick(reason string) {
	select {
	case a.trigger <- reason:
	default: // a pass is already due
	}
}

// PassResult is what one pass did.
type PassResult struct {
	Scanned, Stale, Deleted, Vanished int
	Duration                          time.Duration
	PerService                        map[types.NamespacedName]int
}

// Pass scans the table once and deletes the stale entries.
func (a *Agent) Pass(ctx context.Context, trigger string) (PassResult, error) {
	start := time.Now()
	res := PassResult{PerService: map[types.NamespacedName]int{}}
	table, err := a.table()
	if err != nil {
		return res, err
	}
	var stale []Flow
	stats, err := a.Conntrack.Scan(ctx, func(f Flow) {
		if ok, svc := table.Stale(f); ok {
			stale = append(stale, f)
			res.PerService[svc]++
		}
	})
	res.Scanned, res.Stale = stats.Scanned, len(stale)
	if err != nil {
		a.Metrics.errors.Inc()
		return res, fmt.Errorf("scanning conntrack: %w", err)
	}
	if a.DryRun {
		for _, f := range stale {
			a.Log.Info("would delete stale entry (dry run)", "src", f.OrigSrc, "dst", f.OrigDst, "replySrc", f.ReplySrc)
		}
	} else if len(stale) > 0 {
		ds, err := a.Conntrack.Delete(ctx, stale)
		res.Deleted, res.Vanished = ds.Deleted, ds.Vanished
		if err != nil {
			a.Metrics.errors.Inc()
			a.Log.Error(err, "deleting entries", "failed", len(stale)-ds.Deleted-ds.Vanished)
		}
	}
	res.Duration = time.Since(start)
	a.Metrics.pass(trigger, res, a.DryRun)
	a.mu.Lock()
	a.lastPass = time.Now()
	a.mu.Unlock()
	if res.Stale > 0 {
		a.Log.Info("pass", "trigger", trigger, "scanned", res.Scanned, "stale", res.Stale, "deleted", res.Deleted,
			"vanished", res.Vanished, "dryRun", a.DryRun, "duration", res.Duration)
		a.report(res)
	} else {
		a.Log.V(1).Info("pass", "trigger", trigger, "scanned", res.Scanned, "duration", res.Duration)
	}
	return res, nil
}

func (a *Agent) table() (*Table, error) {
	svcs, err := a.services.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	eps, err := a.slices.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	local, err := a.LocalAddrs()
	if err != nil {
		return nil, fmt.Errorf("listing local addresses: %w", err)
	}
	a.mu.Lock()
	var tombs []Tombstone
	for k, t := range a.tombs {
		if time.Now().After(t.Expires) {
			delete(a.tombs, k)
			continue
		}
		tombs = append(tombs, t)
	}
	a.mu.Unlock()
	// A Service re-created under the same name is live again: its tombstone is
	// dropped by NewTable's order (live Services are added last and win).
	return NewTable(svcs, eps, tombs, local), nil
}

// serviceDeleted remembers a deleted UDP Service's addresses: entries still
// pinned to it are removed (kube-proxy leaves them).
func (a *Agent) serviceDeleted(o any) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	svc, ok := o.(*corev1.Service)
	if !ok || !hasUDP(svc) {
		return
	}
	t := Tombstone{Service: types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}, Expires: time.Now().Add(a.TombstoneTTL)}
	for _, sp := range svc.Spec.Ports {
		if sp.Protocol != corev1.ProtocolUDP {
			continue
		}
		for _, ip := range ServiceIPs(svc) {
			t.Addrs = append(t.Addrs, netip.AddrPortFrom(ip, uint16(sp.Port)))
		}
		if sp.NodePort != 0 {
			t.Nodes = append(t.Nodes, uint16(sp.NodePort))
		}
	}
	a.mu.Lock()
	a.tombs[t.Service] = t
	a.mu.Unlock()
	a.kick("service deleted")
}

// report emits one Event per Service per eventInterval.
func (a *Agent) report(res PassResult) {
	if a.Recorder == nil {
		return
	}
	for key, n := range res.PerService {
		a.mu.Lock()
		last := a.lastEvent[key]
		due := time.Since(last) >= eventInterval
		if due {
			a.lastEvent[key] = time.Now()
		}
		a.mu.Unlock()
		if !due {
			continue
		}
		svc, err := a.services.Services(key.Namespace).Get(key.Name)
		if err != nil {
			continue // deleted Service: nothing to attach the Event to
		}
		verb := "Deleted"
		if a.DryRun {
			verb = "Found (dry run)"
		}
		a.Recorder.Eventf(svc, nil, corev1.EventTypeNormal, "StaleConntrackEntries", "Delete",
			"%s %d stale UDP conntrack entries on node %s (never NATed, or NATed to an endpoint that is gone)", verb, n, a.NodeName)
	}
}

// Healthy reports whether a pass ran recently (three periods).
func (a *Agent) Healthy() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.synced {
		return nil // still starting: readiness says so
	}
	if time.Since(a.lastPass) > 3*a.Period {
		return fmt.Errorf("no pass since %v", a.lastPass)
	}
	return nil
}

// Ready reports whether the informers have synced and a first pass ran.
func (a *Agent) Ready() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.synced || a.lastPass.IsZero() {
		return errors.New("not synced yet")
	}
	return nil
}

func hasUDP(o any) bool {
	svc, ok := o.(*corev1.Service)
	return ok && slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Protocol == corev1.ProtocolUDP })
}

// serviceAddressesChanged: new addresses (an LB IP assigned later, external
// IPs) or ports can make existing entries stale without any endpoint change.
func serviceAddressesChanged(old, cur any) bool {
	o, ok1 := old.(*corev1.Service)
	c, ok2 := cur.(*corev1.Service)
	if !ok1 || !ok2 || !hasUDP(c) {
		return false
	}
	return !slices.Equal(ServiceIPs(o), ServiceIPs(c)) || !slices.EqualFunc(o.Spec.Ports, c.Spec.Ports,
		func(a, b corev1.ServicePort) bool {
			return a.Port == b.Port && a.NodePort == b.NodePort && a.Protocol == b.Protocol
		})
}

func servingCount(o any) int {
	s, ok := o.(*discoveryv1.EndpointSlice)
	if !ok {
		return 0
	}
	n := 0
	for _, ep := range s.Endpoints {
		c := ep.Conditions
		if (c.Ready == nil || *c.Ready) || (c.Serving != nil && *c.Serving) {
			n += len(ep.Addresses)
		}
	}
	return n
}

// endpointsNeedPass: entries go stale when endpoints come back from zero
// (never-NATed entries) or an endpoint goes away (entries NATed to it).
// Adding an endpoint to a non-empty set makes nothing stale.
func endpointsNeedPass(old, cur any) bool {
	before, after := servingCount(old), servingCount(cur)
	if before == 0 && after > 0 {
		return true
	}
	o, ok1 := old.(*discoveryv1.EndpointSlice)
	c, ok2 := cur.(*discoveryv1.EndpointSlice)
	if !ok1 || !ok2 {
		return true
	}
	now := map[string]bool{}
	for _, ep := range c.Endpoints {
		cond := ep.Conditions
		if (cond.Ready == nil || *cond.Ready) || (cond.Serving != nil && *cond.Serving) {
			for _, addr := range ep.Addresses {
				now[addr] = true
			}
		}
	}
	for _, ep := range o.Endpoints {
		for _, addr := range ep.Addresses {
			if !now[addr] {
				return true
			}
		}
	}
	return !slices.EqualFunc(o.Ports, c.Ports, func(a, b discoveryv1.EndpointPort) bool {
		return ptrEq(a.Port, b.Port) && ptrEq(a.Name, b.Name)
	})
}

func ptrEq[T comparable](a, b *T) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

// InterfaceAddrs lists the addresses of the agent's network namespace.
func InterfaceAddrs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			out = append(out, p.Addr().Unmap())
		}
	}
	return out, nil
}
