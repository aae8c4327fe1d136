package nlbpolicy

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/awsnlb"
)

// Config is everything the controller needs besides the manager.
type Config struct {
	Options   Options
	ManageAll bool
	// Namespaces is the admins' allow-list of namespaces whose Services may
	// opt in (Reconciler.Namespaces); empty: every namespace.
	Namespaces []string
	Sources    Sources
	// SweepInterval is how often the orphan sweep runs (it also runs at start).
	SweepInterval time.Duration
	Registry      prometheus.Registerer
}

// LeaderElectionID names the Lease the replicas elect their leader with.
const LeaderElectionID = "nlb-policy-controller.telemetry-platform.io"

// WithLeaderElection sets leader election as the controller runs it, in the
// namespace given. A leader that stops (SIGTERM on a rollout or a drain)
// releases its Lease, so a standby takes over within its retry period
// rather than after the whole lease duration, while new Services wait.
func WithLeaderElection(opts ctrl.Options, namespace string) ctrl.Options {
	opts.LeaderElection = true
	opts.LeaderElectionID = LeaderElectionID
	opts.LeaderElectionNamespace = namespace
	opts.LeaderElectionReleaseOnCancel = true
	return opts
}

// WithCache sets the manager's cache as the controller runs it: objects are
// cached without their managedFields, which the controller never reads (it
// writes by merge patch, create and update), so the cache of every Service,
// policy and network set of a large cluster holds what is used (10,000
// Services with 100 sources each: see bench/README.md).
//
// EndpointSlices (read for the numbers of named target ports) are cached
// with their ports and at most one endpoint, its addresses alone: whether a
// slice has endpoints is all the controller reads of them, and a cluster's
// slices list every pod.
func WithCache(opts ctrl.Options) ctrl.Options {
	opts.Cache.DefaultTransform = cache.TransformStripManagedFields()
	if opts.Cache.ByObject == nil {
		opts.Cache.ByObject = map[client.Object]cache.ByObject{}
	}
	opts.Cache.ByObject[&discoveryv1.EndpointSlice{}] = cache.ByObject{Transform: stripEndpoints}
	return opts
}

// stripEndpoints is the EndpointSlices' cache transform (see WithCache).
func stripEndpoints(o any) (any, error) {
	es, ok := o.(*discoveryv1.EndpointSlice)
	if !ok {
		return o, nil
	}
	es.ManagedFields = nil
	if len(es.Endpoints) > 0 {
		es.Endpoints = []discoveryv1.Endpoint{{Addresses: es.Endpoints[0].Addresses}}
	}
	return es, nil
}

// Setup adds the reconciler and the orphan sweep to the manager.
func Setup(mgr ctrl.Manager, cfg Config) (*Reconciler, error) {
	metrics := NewMetrics(cfg.Registry)
	if s, ok := cfg.Sources.(*AWSSources); ok {
		s.instrument(metrics)
		if s.Peers == nil {
			s.Peers = peerHosts(mgr.GetCache(), cfg.ManageAll)
		}
	}
	r := NewReconciler(ReconcilerConfig{
		Client:     mgr.GetClient(),
		Reader:     mgr.GetAPIReader(),
		Recorder:   mgr.GetEventRecorder("nlb-policy-controller"),
		Sources:    cfg.Sources,
		Options:    cfg.Options,
		ManageAll:  cfg.ManageAll,
		Namespaces: cfg.Namespaces,
		Metrics:    metrics,
	})
	if err := r.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	sweeper := &Sweeper{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Interval: cfg.SweepInterval, Metrics: metrics,
		Backends: cfg.Options.allowed()}
	if err := mgr.Add(sweeper); err != nil {
		return nil, err
	}
	return r, nil
}

// peerHosts lists, from the cache, the load balancer DNS names of the
// Services the controller manages and resolves through AWS, for
// AWSSources.Peers.
func peerHosts(c client.Reader, manageAll bool) func(ctx context.Context) []string {
	return func(ctx context.Context) []string {
		var list corev1.ServiceList
		if err := c.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
			return nil
		}
		var hosts []string
		for i := range list.Items {
			svc := &list.Items[i]
			if h := awsnlb.Hostname(svc); h != "" && svc.Annotations[annotations.HealthCheckCIDRs] == "" && Qualifies(svc, manageAll) {
				hosts = append(hosts, h)
			}
		}
		return hosts
	}
}
