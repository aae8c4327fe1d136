package conntrackagent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/reasons"
)

// Agent watches Services and EndpointSlices and deletes stale UDP conntrack
// entries of its node.
type Agent struct {
	Client    kubernetes.Interface
	Conntrack Conntrack
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
	// DeletedServiceGrace is how long after a UDP Service's deletion its
	// entries are left alone: a Service deleted and re-created within it
	// (kubectl replace --force, a chart re-installed) keeps its flows to the
	// pods that still serve it, as with kube-proxy alone. Zero deletes them at
	// once, as kube-proxy does since v1.38: past the deletion a flow NATed to a
	// former endpoint reaches whatever pod gets that address next.
	DeletedServiceGrace time.Duration
	// Recheck is the delay of a follow-up pass after a pass that deleted
	// entries: when the agent acts before kube-proxy has written the new
	// DNAT rule, the next packet re-creates a never-NATed entry, which the
	// follow-up removes instead of waiting for the next period. Follow-ups go
	// on every Recheck while they keep deleting, then (after recheckSteady)
	// each delay doubled up to RecheckMax: a kube-proxy late by a sync costs
	// the flow at most Recheck more, a later one at most RecheckMax. Zero
	// disables them.
	Recheck, RecheckMax time.Duration
	// LocalAddrs lists the node's addresses (where NodePorts are reached).
	LocalAddrs func() ([]netip.Addr, error)
	// Revoke, when set, closes on this node the connections of sources
	// removed from an nlb-policy Service's allowed set, once the controller
	// has acknowledged the new set: a pass after each of these delays (the
	// first covers Felix's programming of the new policy, the later ones a
	// packet that slipped through before it). Empty: connections of removed
	// sources keep passing until they end.
	Revoke []time.Duration
	// APICheck, when set, is how often the agent asks the API server whether
	// it is there (/readyz): while it is not, the agent says so in its log
	// and is not ready (it acts on what it saw last and sees no change).
	APICheck time.Duration
	// Dataplane, when set, finds the node's service proxy at start and every
	// Period; the agent reports it (metric, Event on the Node) and runs no
	// pass where it cannot help (IPVS).
	Dataplane func(context.Context) Dataplane
	// IndexMax, when the Conntrack is also a Watcher, is the most entries
	// of the index kept from conntrack events (index.go): a triggered pass
	// then reads its Service's entries from memory, not a kernel dump.
	// Past it passes read the kernel. Memory: about 130 bytes an entry,
	// up to twice that while the index grows (bench/README.md). Zero: no
	// index.
	IndexMax int
	// StateFile, when set, is where the agent keeps what it must not forget
	// across restarts (state.go): tombstones, the addresses of live UDP
	// Services (those gone at start become tombstones) and the source sets
	// it saw enforced (sources removed while it was down are revoked). On a
	// node: a hostPath. Empty: a restart forgets them.
	StateFile string
	Recorder  events.EventRecorder
	Metrics   *Metrics
	Log       logr.Logger

	services      corelisters.ServiceLister
	slices        discoverylisters.EndpointSliceLister
	stopInformers context.CancelFunc
	trigger       chan string
	mu            sync.Mutex
	tombs         map[types.NamespacedName]Tombstone
	lastEvent     map[types.NamespacedName]time.Time
	synced        bool
	lastPass      time.Time
	dataplane     *Dataplane
	apiDown       error // why the API server did not answer the last check
	// pending are the Services the next triggered pass looks at;
	// pendingAll: every entry.
	pending    map[types.NamespacedName]bool
	pendingAll bool
	changedAt  map[types.NamespacedName]time.Time   // first trigger since the Service's last triggered pass
	enforced   map[types.NamespacedName]cidrset.Set // the source set last acknowledged, per Service
	revokes    chan revokeRequest
	// From the state file, until the first list replaces them.
	savedServices map[types.NamespacedName]serviceAddrs
	savedEnforced map[types.NamespacedName]cidrset.Set
	saveC         chan struct{}
	saverDone     chan struct{}
	index         *Index // nil: none
}

// revokeRequest asks for a revocation pass for a Service.
type revokeRequest struct {
	svc     types.NamespacedName
	removed cidrset.Set
}

// DefaultIndexMax is the agent's default IndexMax: about 33 MiB of index
// (65 MiB while it grows), within the chart's 128 MiB limit; kube-proxy
// sizes a node's whole conntrack table at 32,768 entries per core.
const DefaultIndexMax = 250_000

// recheckSteady is how long rechecks keep their first delay before backing
// off: a kube-proxy syncs at most once a second by default
// (--iptables-min-sync-period, --nftables-min-sync-period), so its rule is
// usually there within this.
const recheckSteady = 3 * time.Second

// recheckPatience is how long rechecks go on looking for deleted entries
// that have not come back (one GET each): a flow that stopped costs that
// much, a flow whose next packet was late is not left pinned.
const recheckPatience = 30 * time.Second

// eventInterval rate-limits Events per Service.
const eventInterval = time.Minute

// Run starts the informers and runs passes until ctx ends: one at start
// (only stale entries go; no flush), one after each relevant change
// (coalesced), rechecks after a pass that deleted, and one every Period.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.start(ctx); err != nil {
		return err
	}
	if a.StateFile != "" {
		defer func() { <-a.saverDone }() // the last write is over when Run returns
	}
	if w, ok := a.Conntrack.(Watcher); ok && a.IndexMax > 0 {
		a.index = NewIndex(a.IndexMax)
		a.watch(ctx, w) // before the start pass, which builds the index
	}
	if a.APICheck > 0 {
		go a.watchAPI(ctx)
	}
	return a.loop(ctx, time.NewTicker(a.Period).C)
}

// start starts the informers and waits for their caches.
func (a *Agent) start(ctx context.Context) error {
	a.init()
	a.loadState()
	if a.APICheck > 0 {
		// Started while the API server does not answer: said at once, and
		// the informers start within APICheck of its return, instead of on
		// client-go's backoff with nothing logged.
		if err := a.waitForAPI(ctx); err != nil {
			return err
		}
	}
	if err := a.startInformers(ctx); err != nil {
		return err
	}
	services, _ := a.listers()
	svcs, err := services.List(labels.Everything())
	if err != nil {
		return err
	}
	live := map[types.NamespacedName]bool{}
	for _, svc := range svcs {
		live[types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}] = true
	}
	a.goneWhileDown(live)
	if a.StateFile != "" {
		go func() {
			defer close(a.saverDone)
			a.saver(ctx.Done())
		}()
		a.stateChanged() // the first list's Services
	}
	a.mu.Lock()
	a.synced = true
	a.mu.Unlock()
	return nil
}

// startInformers starts a fresh set of informers, waits for their caches
// and then puts their listers in place of the previous set's, which it
// stops. After an API server outage this is what makes the agent see the
// cluster again at once: the old informers would come back only when their
// backoff (up to 30 s) ends.
func (a *Agent) startInformers(ctx context.Context) error {
	ictx, cancel := context.WithCancel(ctx)
	factory := informers.NewSharedInformerFactory(a.Client, 0)
	svcInformer := factory.Core().V1().Services()
	sliceInformer := factory.Discovery().V1().EndpointSlices()
	// Adds of the initial list trigger nothing: the start pass (or the pass
	// after a restart) covers them.
	if _, err := svcInformer.Informer().AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(o any, initial bool) {
			a.sourcesAcknowledged(o)
			if hasUDP(o) && !initial {
				a.stateChanged()
				a.kick("service added", serviceKey(o))
			}
		},
		UpdateFunc: func(old, cur any) {
			a.sourcesAcknowledged(cur)
			if serviceAddressesChanged(old, cur) {
				a.stateChanged()
				a.kick("service addresses changed", serviceKey(cur))
			}
		},
		DeleteFunc: func(o any) { a.forgetSources(o); a.serviceDeleted(o) },
	}); err != nil {
		cancel()
		return err
	}
	if _, err := sliceInformer.Informer().AddEventHandler(cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(o any, initial bool) {
			if sliceAddedNeedsPass(o) && !initial {
				a.kick("endpoints added", sliceServiceKey(o))
			}
		},
		UpdateFunc: func(old, cur any) {
			if endpointsNeedPass(old, cur) {
				a.kick("endpoints changed", sliceServiceKey(cur))
			}
		},
		DeleteFunc: func(o any) {
			if sliceDeletedNeedsPass(o) {
				a.kick("endpoints removed", sliceServiceKey(o))
			}
		},
	}); err != nil {
		cancel()
		return err
	}
	factory.Start(ictx.Done())
	for typ, ok := range factory.WaitForCacheSync(ictx.Done()) {
		if !ok {
			cancel()
			return fmt.Errorf("informer for %v did not sync", typ)
		}
	}
	a.mu.Lock()
	stopOld := a.stopInformers
	a.services, a.slices, a.stopInformers = svcInformer.Lister(), sliceInformer.Lister(), cancel
	a.mu.Unlock()
	if stopOld != nil {
		stopOld()
	}
	return nil
}

// listers are the current informers' listers.
func (a *Agent) listers() (corelisters.ServiceLister, discoverylisters.EndpointSliceLister) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.services, a.slices
}

func (a *Agent) init() {
	a.trigger = make(chan string, 1)
	a.revokes = make(chan revokeRequest, 64)
	a.pending = map[types.NamespacedName]bool{}
	a.changedAt = map[types.NamespacedName]time.Time{}
	a.enforced = map[types.NamespacedName]cidrset.Set{}
	a.tombs = map[types.NamespacedName]Tombstone{}
	a.saveC = make(chan struct{}, 1)
	a.saverDone = make(chan struct{})
	a.lastEvent = map[types.NamespacedName]time.Time{}
}

// loop runs the passes: at once, then on each trigger, recheck and tick.
func (a *Agent) loop(ctx context.Context, tick <-chan time.Time) error {
	reason := "start"
	a.detectDataplane(ctx)
	var (
		recheck  *time.Timer
		recheckC <-chan time.Time
		pending  rechecks
		scope    []types.NamespacedName // nil: every entry
	)
	defer func() {
		if recheck != nil {
			recheck.Stop()
		}
	}()
	for {
		var res PassResult
		var err error
		isRecheck := reason == "recheck"
		if isRecheck {
			res, err = a.RecheckPass(ctx, pending.list())
		} else {
			res, err = a.PassScoped(ctx, reason, scope)
		}
		if err != nil && ctx.Err() == nil {
			a.Log.Error(err, "pass failed", "trigger", reason)
		}
		// Rechecks follow a pass whose deletions the kernel confirmed, over
		// the entries every pass deleted; they go on, backing off, while they
		// keep finding them stale again, and for recheckPatience while an
		// entry is not back yet (its flow's next packet may still be on its
		// way: on a loaded node a look can come before it).
		delay, ok := pending.after(res, isRecheck, time.Now(), a.Recheck, a.RecheckMax)
		switch {
		case !ok:
			if recheck != nil {
				recheck.Stop()
			}
			recheckC = nil
		case isRecheck || len(res.DeletedFlows) > 0:
			if recheck != nil {
				recheck.Stop()
			}
			recheck = time.NewTimer(delay)
			recheckC = recheck.C
		}
		if stop, err := a.wait(ctx, tick, recheckC, &reason); stop {
			return err
		}
		switch reason {
		case "period":
			scope = nil
		case "recheck":
		default:
			scope = a.takePending()
		}
	}
}

// takePending returns the Services the triggers named, or nil when one
// asked for every entry.
func (a *Agent) takePending() []types.NamespacedName {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []types.NamespacedName
	if !a.pendingAll {
		for s := range a.pending {
			out = append(out, s)
		}
	}
	clear(a.pending)
	a.pendingAll = false
	return out
}

// wait runs revocation passes until the next stale pass is due, and says
// why in reason; stop is true when ctx ended.
func (a *Agent) wait(ctx context.Context, tick, recheckC <-chan time.Time, reason *string) (stop bool, err error) {
	for {
		select {
		case <-ctx.Done():
			return true, nil
		case <-tick:
			*reason = "period"
			a.detectDataplane(ctx)
			return false, nil
		case <-recheckC:
			*reason = "recheck"
			return false, nil
		case req := <-a.revokes:
			if err := a.RevokePass(ctx, req.svc, req.removed); err != nil && ctx.Err() == nil {
				a.Log.Error(err, "revocation pass failed", "service", req.svc)
			}
		case *reason = <-a.trigger:
			// Coalesce what arrives during the debounce.
			timer := time.NewTimer(a.Debounce)
			select {
			case <-ctx.Done():
				timer.Stop()
				return true, nil
			case <-timer.C:
			}
			select {
			case <-a.trigger:
			default:
			}
			return false, nil
		}
	}
}

// kick asks for a pass over the entries of these Services (none: all).
func (a *Agent) kick(reason string, services ...types.NamespacedName) {
	a.mu.Lock()
	if len(services) == 0 {
		a.pendingAll = true
	}
	now := time.Now()
	for _, s := range services {
		a.pending[s] = true
		if _, ok := a.changedAt[s]; !ok {
			a.changedAt[s] = now
		}
	}
	a.mu.Unlock()
	select {
	case a.trigger <- reason:
	default: // a pass is already due
	}
}

// PassResult is what one pass did: Stale entries found, and what the kernel
// did with those the agent asked it to delete.
type PassResult struct {
	Scanned, Stale int
	DeleteStats
	Duration   time.Duration
	PerService map[types.NamespacedName]ServiceResult
	// DeletedFlows are the entries the kernel deleted, for the rechecks;
	// in a recheck, Missing are those not back yet, Settled those back and
	// not stale.
	DeletedFlows, Missing, Settled []Flow
}

// ServiceResult is one Service's share of a pass.
type ServiceResult struct {
	Found int
	DeleteStats
}

// Pass scans the whole table once and deletes the stale entries.
func (a *Agent) Pass(ctx context.Context, trigger string) (PassResult, error) {
	return a.PassScoped(ctx, trigger, nil)
}

// PassScoped is Pass over the entries of some Services only (nil: all): the
// kernel sends only the entries to their addresses and NodePorts, so a pass
// for one Service does not read the whole table.
func (a *Agent) PassScoped(ctx context.Context, trigger string, services []types.NamespacedName) (PassResult, error) {
	res, err := a.passScoped(ctx, trigger, services)
	// The time from each change to the kernel's first deletion it caused (a
	// pass over every entry answers every change pending).
	a.mu.Lock()
	keys := services
	if services == nil {
		for svc := range a.changedAt {
			keys = append(keys, svc)
		}
	}
	for _, svc := range keys {
		if at, ok := a.changedAt[svc]; ok && res.PerService[svc].Deleted > 0 {
			a.Metrics.changeToDelete.Observe(time.Since(at).Seconds())
		}
		delete(a.changedAt, svc)
	}
	a.mu.Unlock()
	return res, err
}

func (a *Agent) passScoped(ctx context.Context, trigger string, services []types.NamespacedName) (PassResult, error) {
	return a.pass(ctx, trigger, func(table *Table, fn func(Flow)) (ScanStats, error) {
		if services == nil { // every UDP entry: the index is rebuilt from them
			filters := []Filter{{Proto: protoUDP}}
			if a.index == nil {
				return a.Conntrack.ScanFiltered(ctx, filters, fn)
			}
			a.index.BeginFull()
			stats, err := a.Conntrack.ScanFiltered(ctx, filters, func(f Flow) {
				a.index.Put(f)
				fn(f)
			})
			a.index.EndFull(err == nil)
			return stats, err
		}
		filters := table.Filters(services)
		if len(filters) == 0 {
			return ScanStats{}, nil
		}
		if a.index != nil {
			if n, ok := a.index.Select(filters, fn); ok {
				return ScanStats{Scanned: n, Filter: true, Source: "index"}, nil
			}
		}
		return a.Conntrack.ScanFiltered(ctx, filters, fn)
	})
}

// RecheckPass looks up the entries a pass deleted, by their original
// tuples (the next packet of a constant flow re-creates the same one), and
// deletes those that are stale again: kube-proxy had not written its rule
// yet. It reads k entries, not the table, so it can run often.
func (a *Agent) RecheckPass(ctx context.Context, deleted []Flow) (PassResult, error) {
	var missing, settled []Flow
	res, err := a.pass(ctx, "recheck", func(table *Table, fn func(Flow)) (ScanStats, error) {
		cur, err := a.Conntrack.Lookup(ctx, deleted)
		back := map[tupleKey]bool{}
		for _, f := range cur {
			back[keyOf(f)] = true
			if stale, _ := table.Stale(f); !stale {
				settled = append(settled, f)
			}
			fn(f)
		}
		for _, f := range deleted {
			if !back[keyOf(f)] {
				missing = append(missing, f)
			}
		}
		return ScanStats{Scanned: len(cur), Filter: true, Source: "lookup"}, err
	})
	res.Missing, res.Settled = missing, settled
	return res, err
}

// pass runs one pass: read (the whole table, some Services' entries, or
// some entries) through the staleness decision, then delete.
func (a *Agent) pass(ctx context.Context, trigger string, read func(*Table, func(Flow)) (ScanStats, error)) (PassResult, error) {
	start := time.Now()
	res := PassResult{PerService: map[types.NamespacedName]ServiceResult{}}
	a.mu.Lock()
	dp := a.dataplane
	a.mu.Unlock()
	if dp != nil && !dp.Acts() {
		a.mu.Lock()
		a.lastPass = time.Now() // healthy: idle on purpose
		a.mu.Unlock()
		a.Log.V(1).Info("pass skipped", "trigger", trigger, "dataplane", dp.Mode)
		return res, nil
	}
	table, err := a.table()
	if err != nil {
		return res, err
	}
	var (
		stale []Flow
		owner []types.NamespacedName
	)
	stats, err := read(table, func(f Flow) {
		if ok, svc := table.Stale(f); ok {
			stale = append(stale, f)
			owner = append(owner, svc)
		}
	})
	res.Scanned, res.Stale = stats.Scanned, len(stale)
	if err != nil {
		a.Metrics.errors.Inc()
		return res, fmt.Errorf("scanning conntrack: %w", err)
	}
	for _, svc := range owner {
		r := res.PerService[svc]
		r.Found++
		res.PerService[svc] = r
	}
	if a.DryRun {
		for _, f := range stale {
			a.Log.Info("would delete stale entry (dry run)", "src", f.OrigSrc, "dst", f.OrigDst, "replySrc", f.ReplySrc)
		}
	} else if len(stale) > 0 {
		outcomes, err := a.Conntrack.Delete(ctx, stale)
		for i, o := range outcomes {
			r := res.PerService[owner[i]]
			r.DeleteStats.add(o)
			res.PerService[owner[i]] = r
			res.DeleteStats.add(o)
			if o == Deleted {
				res.DeletedFlows = append(res.DeletedFlows, stale[i])
			}
			if a.index != nil && (o == Deleted || o == Vanished) {
				a.index.Remove(stale[i]) // its destroy event says it too, unless it vanished unseen
			}
		}
		if missing := len(stale) - len(outcomes); missing > 0 { // a Conntrack that returned fewer
			res.Failed += missing
		}
		if err != nil {
			a.Metrics.errors.Inc()
			a.Log.Error(err, "deleting entries", "failed", res.Failed)
		}
	}
	res.Duration = time.Since(start)
	a.Metrics.pass(trigger, res, a.DryRun)
	source := stats.Source
	if source == "" {
		source = "kernel"
	}
	a.Metrics.passSource.WithLabelValues(source).Inc()
	if a.index != nil {
		n, complete := a.index.Len()
		a.Metrics.indexEntries.Set(float64(n))
		a.Metrics.indexComplete.Set(map[bool]float64{true: 1}[complete])
	}
	a.mu.Lock()
	a.lastPass = time.Now()
	a.mu.Unlock()
	if res.Stale > 0 {
		a.Log.Info("pass", "trigger", trigger, "read", source, "scanned", res.Scanned, "stale", res.Stale, "deleted", res.Deleted,
			"vanished", res.Vanished, "failed", res.Failed, "dryRun", a.DryRun, "duration", res.Duration)
		a.report(res)
	} else {
		a.Log.V(1).Info("pass", "trigger", trigger, "read", source, "scanned", res.Scanned, "duration", res.Duration)
	}
	return res, nil
}

func (a *Agent) table() (*Table, error) {
	services, slices := a.listers()
	svcs, err := services.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	eps, err := slices.List(labels.Everything())
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
	t := a.tombstone(types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}, udpAddrs(svc), time.Now())
	a.mu.Lock()
	a.tombs[t.Service] = t
	a.mu.Unlock()
	a.stateChanged()
	a.passAtGraceEnd(t, time.Now())
}

// Detected is the dataplane found last (zero before the first detection or
// without Dataplane).
func (a *Agent) Detected() Dataplane {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.dataplane == nil {
		return Dataplane{}
	}
	return *a.dataplane
}

// detectDataplane asks for the node's service proxy and reports a change.
func (a *Agent) detectDataplane(ctx context.Context) {
	if a.Dataplane == nil {
		return
	}
	d := a.Dataplane(ctx)
	a.mu.Lock()
	prev := a.dataplane
	a.dataplane = &d
	a.mu.Unlock()
	if prev != nil && prev.Mode == d.Mode {
		return
	}
	a.Metrics.setDataplane(d)
	a.Log.Info("dataplane", "mode", d.Mode, "acts", d.Acts(), "detail", d.Summary())
	if a.Recorder != nil && a.NodeName != "" {
		typ := corev1.EventTypeNormal
		if !d.Acts() || d.Mode == "unknown" {
			typ = corev1.EventTypeWarning
		}
		// The kubelet's own reference to its Node: UID is the node's name.
		node := &corev1.ObjectReference{Kind: "Node", Name: a.NodeName, UID: types.UID(a.NodeName)}
		a.Recorder.Eventf(node, nil, typ, reasons.ConntrackAgentDataplane, "Detect", "%s", d.Summary())
	}
}

// report emits one Event per Service per eventInterval, with what the
// kernel did: deleted, already gone, refused.
func (a *Agent) report(res PassResult) {
	if a.Recorder == nil {
		return
	}
	for key, r := range res.PerService {
		a.mu.Lock()
		last := a.lastEvent[key]
		due := time.Since(last) >= eventInterval || r.Failed > 0 && time.Since(last) >= eventInterval/6
		if due {
			a.lastEvent[key] = time.Now()
		}
		a.mu.Unlock()
		if !due {
			continue
		}
		services, _ := a.listers()
		svc, err := services.Services(key.Namespace).Get(key.Name)
		if err != nil {
			continue // deleted Service: nothing to attach the Event to
		}
		switch {
		case a.DryRun:
			a.Recorder.Eventf(svc, nil, corev1.EventTypeNormal, reasons.StaleConntrackEntries, "Delete",
				"Found %d stale UDP conntrack entries on node %s (dry run: none deleted)", r.Found, a.NodeName)
		case r.Failed > 0:
			a.Recorder.Eventf(svc, nil, corev1.EventTypeWarning, reasons.StaleConntrackDeleteFailed, "Delete",
				"Deleted %d of %d stale UDP conntrack entries on node %s; the kernel refused %d (the agent's log says why), %d were gone already",
				r.Deleted, r.Found, a.NodeName, r.Failed, r.Vanished)
		default:
			a.Recorder.Eventf(svc, nil, corev1.EventTypeNormal, reasons.StaleConntrackEntries, "Delete",
				"Deleted %d stale UDP conntrack entries on node %s (never NATed, or NATed to an endpoint that is gone); %d more were gone already",
				r.Deleted, a.NodeName, r.Vanished)
		}
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

// Ready reports whether the informers have synced, a first pass ran and
// the API server answered the last check.
func (a *Agent) Ready() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.synced || a.lastPass.IsZero() {
		return errors.New("not synced yet")
	}
	if a.apiDown != nil {
		return fmt.Errorf("API server unreachable: %w", a.apiDown)
	}
	return nil
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

// watch keeps the index current from conntrack events until ctx ends. A
// watch that fails leaves the index incomplete (passes read the kernel) and
// is tried again every 5 s; the next full pass after it is back rebuilds
// the index. Lost events do the same without a new watch.
func (a *Agent) watch(ctx context.Context, w Watcher) {
	start := func() (<-chan error, error) {
		return w.Watch(ctx, func(f Flow, destroyed bool) {
			if destroyed {
				a.index.Remove(f)
			} else {
				a.index.Put(f)
			}
		}, func() {
			a.index.Lost()
			a.Metrics.eventsLost.Inc()
			a.Log.Info("conntrack events lost (socket buffer full): triggered passes read the kernel until the next full pass rebuilds the index")
		})
	}
	errc, err := start()
	if err != nil {
		a.Log.Error(err, "watching conntrack events: triggered passes read the kernel")
	} else {
		a.index.Watching(true)
	}
	go func() {
		for {
			if errc != nil {
				err := <-errc
				a.index.Watching(false)
				if ctx.Err() != nil {
					return
				}
				a.Log.Error(err, "conntrack event watch ended: triggered passes read the kernel")
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(5 * time.Second):
			}
			if errc, err = start(); err != nil {
				errc = nil
				a.Log.Error(err, "watching conntrack events again")
				continue
			}
			a.index.Watching(true)
		}
	}()
}
