package nlbpolicy

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	ctrl "sigs.k8s.io/controller-runtime"
)

// Config is everything the controller needs besides the manager.
type Config struct {
	Options   Options
	ManageAll bool
	Sources   Sources
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

// Setup adds the reconciler and the orphan sweep to the manager.
func Setup(mgr ctrl.Manager, cfg Config) (*Reconciler, error) {
	metrics := NewMetrics(cfg.Registry)
	if s, ok := cfg.Sources.(*AWSSources); ok {
		s.instrument(metrics)
	}
	r := &Reconciler{
		Client:    mgr.GetClient(),
		Reader:    mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder("nlb-policy-controller"),
		Sources:   cfg.Sources,
		Options:   cfg.Options,
		ManageAll: cfg.ManageAll,
		Metrics:   metrics,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return nil, err
	}
	sweeper := &Sweeper{Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Interval: cfg.SweepInterval, Metrics: metrics}
	if err := mgr.Add(sweeper); err != nil {
		return nil, err
	}
	return r, nil
}
