package nlbpolicy

import (
	"context"
	"time"

	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
)

// Sweeper deletes generated objects whose Service no longer exists (the
// controller was down during a delete and the finalizer was removed by
// force, or the Service was re-created with another UID): at start and then
// periodically. It runs on the leader only.
type Sweeper struct {
	Client client.Client
	// Reader reads Services from the API server, not a cache, so a Service
	// is never taken for gone because a cache is behind.
	Reader   client.Reader
	Interval time.Duration
	Metrics  *Metrics
	// Backends are the backends whose objects are swept (those the
	// controller runs; empty: Calico's).
	Backends []Backend
}

// NeedLeaderElection: one sweeper per cluster.
func (s *Sweeper) NeedLeaderElection() bool { return true }

// Start sweeps until ctx ends.
func (s *Sweeper) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("orphan-sweep")
	for {
		n, err := s.Sweep(ctx)
		if err != nil {
			logger.Error(err, "sweep failed")
		} else if n > 0 {
			logger.Info("orphans deleted", "count", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.Interval):
		}
	}
}

// Sweep deletes orphans once and returns how many it deleted. An object is
// the controller's by its labels, or, when they were stripped by hand, by
// its generated name (OwnerOfName); it is an orphan when its Service is gone
// (or, known by labels, is another Service of the same name).
func (s *Sweeper) Sweep(ctx context.Context) (int, error) {
	objects, err := s.generated(ctx)
	if err != nil {
		return 0, err
	}
	type owner struct{ namespace, name, uid string }
	alive := map[owner]bool{}
	deleted := 0
	for _, o := range objects {
		var own owner
		if l := o.GetLabels(); l[annotations.ManagedBy] == annotations.NLBPolicyManager {
			own = owner{l[annotations.OwnerNamespace], l[annotations.OwnerName], l[annotations.OwnerUID]}
		} else if ns, name, ok := OwnerOfName(o.GetName()); ok && (o.GetNamespace() == "" || o.GetNamespace() == ns) {
			own = owner{ns, name, ""} // labels stripped: any Service of that name keeps it
		} else {
			continue // not the controller's
		}
		live, known := alive[own]
		if !known {
			svc := &corev1.Service{}
			err := s.Reader.Get(ctx, client.ObjectKey{Namespace: own.namespace, Name: own.name}, svc)
			switch {
			case apierrors.IsNotFound(err):
				live = false
			case err != nil:
				return deleted, err
			default:
				live = own.uid == "" || string(svc.UID) == own.uid
			}
			alive[own] = live
		}
		if live {
			continue
		}
		if err := s.Client.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
			return deleted, err
		}
		deleted++
		s.Metrics.orphans.Inc()
		s.Metrics.write(kindOf(o), "delete")
	}
	return deleted, nil
}

// generated lists the objects of the kinds the backends write.
func (s *Sweeper) generated(ctx context.Context) ([]client.Object, error) {
	backends := s.Backends
	if len(backends) == 0 {
		backends = []Backend{BackendCalico}
	}
	var objects []client.Object
	for _, b := range backends {
		switch b {
		case BackendCalico:
			var policies calicov3.GlobalNetworkPolicyList
			if err := s.Client.List(ctx, &policies); err != nil {
				return nil, err
			}
			var sets calicov3.GlobalNetworkSetList
			if err := s.Client.List(ctx, &sets); err != nil {
				return nil, err
			}
			for i := range policies.Items {
				objects = append(objects, &policies.Items[i])
			}
			for i := range sets.Items {
				objects = append(objects, &sets.Items[i])
			}
		case BackendNetworkPolicy:
			// Garbage collection removes them with their Service; this
			// catches one whose owner reference was stripped.
			var nps networkingv1.NetworkPolicyList
			if err := s.Client.List(ctx, &nps); err != nil {
				return nil, err
			}
			for i := range nps.Items {
				objects = append(objects, &nps.Items[i])
			}
		}
	}
	return objects, nil
}
