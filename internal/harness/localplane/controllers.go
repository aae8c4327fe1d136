package localplane

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/nlbpolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
)

// StartNLBPolicyController runs the real nlb-policy controller in this
// process against the plane (the calico backend by default, the
// networkpolicy backend allowed), asking moto about load balancers, with its
// metrics in reg (nil: a private registry). stop ends it and returns the
// manager's error.
func (p *Plane) StartNLBPolicyController(ctx context.Context, reg prometheus.Registerer) (stop func() error, err error) {
	return p.StartNLBPolicyControllerWith(ctx, ControllerOptions{Registry: reg})
}

// ControllerOptions change how StartNLBPolicyControllerWith runs the
// controller.
type ControllerOptions struct {
	// Registry receives its metrics (nil: a private registry).
	Registry prometheus.Registerer
	// Backends the controller has, its default first, as its
	// --policy-backend and --allowed-policy-backends flags give them (empty:
	// calico, networkpolicy). Without calico it creates no Calico tier and
	// watches no Calico kind, as on a cluster without Calico.
	Backends []nlbpolicy.Backend
	// AWS is how the controller reaches AWS (nil: the plane's account, as
	// AWS.Config gives it).
	AWS *aws.Config
}

// StartNLBPolicyControllerWith is StartNLBPolicyController with options.
func (p *Plane) StartNLBPolicyControllerWith(ctx context.Context, o ControllerOptions) (stop func() error, err error) {
	backends := o.Backends
	if len(backends) == 0 {
		backends = []nlbpolicy.Backend{nlbpolicy.BackendCalico, nlbpolicy.BackendNetworkPolicy}
	}
	if slices.Contains(backends, nlbpolicy.BackendCalico) {
		if err := p.CreateProductTier(ctx); err != nil {
			return nil, err
		}
	}
	mgr, err := ctrl.NewManager(p.Config, nlbpolicy.WithCache(ctrl.Options{
		Scheme:     kubeapi.Scheme(),
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	}))
	if err != nil {
		return nil, err
	}
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	cfg := p.AWS.Config()
	if o.AWS != nil {
		cfg = *o.AWS
	}
	opts := nlbpolicy.DefaultOptions()
	opts.Backend, opts.Backends = backends[0], backends
	if _, err := nlbpolicy.Setup(mgr, nlbpolicy.Config{Options: opts,
		Sources:       &nlbpolicy.AWSSources{AWS: &cfg, TTL: time.Minute},
		SweepInterval: time.Minute, Registry: reg}); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return func() error { cancel(); return <-done }, nil
}

// CreateProductTier creates the product's Calico tier, as the Helm chart and
// deploy/nlb-policy-controller.yaml do; it is not an error if it exists.
func (p *Plane) CreateProductTier(ctx context.Context) error {
	c, err := p.Client()
	if err != nil {
		return err
	}
	err = c.Create(ctx, nlbpolicy.TierObject(nlbpolicy.DefaultTier, nlbpolicy.DefaultTierOrder))
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the product's Calico tier: %w", err)
	}
	return nil
}
