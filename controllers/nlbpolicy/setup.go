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

// Setup adds the reconciler and the orphan sweep to the manager.
func Setup(mgr ctrl.Manager, cfg Config) (*Reconciler, error) {
	metrics := NewMetrics(cfg.Registry)
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
