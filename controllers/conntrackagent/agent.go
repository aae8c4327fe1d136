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
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
)

// Config is what an Agent is made of: its clients, its dataplane and its
// settings. DefaultConfig has the binary's defaults.
type Config struct {
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
	// RevokeInterval is the least time between two revocation passes of one
	// Service: a Service whose sources flap gets one pass per interval, over
	// all it removed meanwhile, and never delays another's. Zero: no limit.
	RevokeInterval time.Duration
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
	// Clock is the agent's time; nil: the real one. Tests step a fake
	// (k8s.io/utils/clock/testing) through debounces, rechecks and
	// tombstone expiry instead of sleeping.
	Clock Clock
}

// Clock is the time the agent reads and waits on.
type Clock interface {
	clock.WithTicker
	AfterFunc(d time.Duration, f func()) clock.Timer
}

// DefaultConfig is the agent's configuration with the binary's defaults
// (the flags of controllers/cmd/conntrack-agent) and no clients.
func DefaultConfig() Config {
	return Config{
		Period: time.Minute, Debounce: 100 * time.Millisecond, TombstoneTTL: 10 * time.Minute,
		Recheck: 100 * time.Millisecond, RecheckMax: time.Second,
		Revoke: []time.Duration{time.Second, 5 * time.Second, 30 * time.Second}, RevokeInterval: time.Second,
		APICheck: time.Second, IndexMax: DefaultIndexMax, Log: logr.Discard(),
	}
}

// Agent watches Services and EndpointSlices and deletes stale UDP conntrack
// entries of its node. Make one with New.
type Agent struct {
	Config

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
	// revocations waiting to run: per Service, what it removed since its
	// last pass; revokeLast, when that pass ran; revokeReady wakes the loop.
	revokePending map[types.NamespacedName]cidrset.Set
	revokeLast    map[types.NamespacedName]time.Time
	revokeReady   chan struct{}
	// From the state file, until the first list replaces them.
	savedServices map[types.NamespacedName]serviceAddrs
	savedEnforced map[types.NamespacedName]cidrset.Set
	saveC         chan struct{}
	saverDone     chan struct{}
	index         *Index // nil: none
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
	return a.loop(ctx, a.Clock.NewTicker(a.Period).C())
}

// start starts the informers and waits for their caches.
func (a *Agent) start(ctx context.Context) error {
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

// New returns an agent of the configuration, its state initialised.
func New(cfg Config) *Agent {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	a := &Agent{Config: cfg}
	a.init()
	return a
}

// afterFunc calls f in its own goroutine after d on the agent's clock. A
// fake clock calls AfterFunc's function while it holds its lock, so f (which
// reads the clock) must not run there.
func (a *Agent) afterFunc(d time.Duration, f func()) {
	a.Clock.AfterFunc(d, func() { go f() })
}

func (a *Agent) init() {
	a.trigger = make(chan string, 1)
	a.revokePending = map[types.NamespacedName]cidrset.Set{}
	a.revokeLast = map[types.NamespacedName]time.Time{}
	a.revokeReady = make(chan struct{}, 1)
	a.pending = map[types.NamespacedName]bool{}
	a.changedAt = map[types.NamespacedName]time.Time{}
	a.enforced = map[types.NamespacedName]cidrset.Set{}
	a.tombs = map[types.NamespacedName]Tombstone{}
	a.saveC = make(chan struct{}, 1)
	a.saverDone = make(chan struct{})
	a.lastEvent = map[types.NamespacedName]time.Time{}
}

// Healthy reports whether a pass ran recently (three periods).
func (a *Agent) Healthy() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.synced {
		return nil // still starting: readiness says so
	}
	if a.Clock.Since(a.lastPass) > 3*a.Period {
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
