// Package localplane runs a real, local control plane for the tests, the
// benchmarks and the demo: kube-apiserver and etcd (built from Go modules by
// `make controlplane`, driven by controller-runtime's envtest) with the Calico
// and Strimzi CRDs installed, and moto_server as the AWS API, seeded like a
// small account (a VPC, subnets in three zones, a node security group,
// instances) with the matching Node objects.
//
// Everything a Plane starts lives in its own temporary folder and on free
// loopback ports, so test packages running in parallel never collide, and
// Stop (registered as a test cleanup by New) ends all of it.
package localplane

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
)

// Options tune what Start brings up.
type Options struct {
	// Nodes is how many EC2 instances and matching Node objects to seed.
	// Zero means 2.
	Nodes int
	// NoAWS skips moto_server, for tests that only need Kubernetes.
	NoAWS bool
}

// APIServerLogEnv names a folder where each plane's kube-apiserver writes
// its log (at -v=3: every request and its latency), for finding why a test
// waited; unset, the log is discarded.
const APIServerLogEnv = "LOCALPLANE_APISERVER_LOGS"

// Plane is a running local control plane.
type Plane struct {
	// Config reaches the API server as cluster admin.
	Config *rest.Config
	// Kubeconfig is a kubeconfig file for the same admin user, for kubectl
	// and terraform.
	Kubeconfig string
	// AWS describes the emulated account; zero when Options.NoAWS.
	AWS AWS
	// Dir is the plane's temporary folder (kubeconfig, moto log).
	Dir string

	env *envtest.Environment
	// bridges into network namespaces, shared by the processes there
	bridgesMu sync.Mutex
	bridges   map[string]*sharedBridge
	moto      *motoServer
	webhook   *calicoWebhook
}

// Start brings up the control plane. On error everything already started
// has been stopped again.
func Start(ctx context.Context, opts Options) (p *Plane, err error) {
	if opts.Nodes == 0 {
		opts.Nodes = 2
	}
	assets, err := binaryAssets()
	if err != nil {
		return nil, err
	}
	crds, err := CRDs()
	if err != nil {
		return nil, err
	}
	calico, err := loadCalico()
	if err != nil {
		return nil, err
	}
	crds = append(crds, calico.crds...)
	dir, err := os.MkdirTemp("", "localplane-")
	if err != nil {
		return nil, err
	}
	p = &Plane{Dir: dir}
	// The returns below set p to nil: stop what was started through a copy.
	started := p
	defer func() {
		if err != nil {
			_ = started.Stop()
		}
	}()

	// moto and its account do not need the API server: they start beside
	// it and are joined before the Nodes that mirror the account. Every
	// return joins them first, so the deferred Stop sees (and stops)
	// everything started. Measured with AWS: a plane started in 8.4 s one
	// step after another, about 5.3 s so with its caches warmed
	// (warmCaches) and its first creates unheld (awaitCRDsSettled).
	var aws errgroup.Group
	defer func() {
		if awsErr := aws.Wait(); err == nil && awsErr != nil {
			p, err = nil, awsErr
		}
	}()
	if !opts.NoAWS {
		aws.Go(func() error { return p.startAWS(ctx, opts.Nodes) })
	}

	p.env = &envtest.Environment{
		BinaryAssetsDirectory:   assets,
		CRDInstallOptions:       envtest.CRDInstallOptions{CRDs: crds},
		ControlPlaneStopTimeout: 30 * time.Second,
	}
	// envtest's default Service range is a /24; benchmarks create thousands.
	// Dual-stack, as the IPv6 tests of the conntrack agent need IPv6 Services
	// (single-stack IPv4 stays the default family).
	p.env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.96.0.0/16,fd00:10:96::/108")
	if dir := os.Getenv(APIServerLogEnv); dir != "" {
		f, err := os.CreateTemp(dir, "kube-apiserver-*.log")
		if err != nil {
			return nil, err
		}
		defer f.Close() // the process holds its own descriptor
		p.env.ControlPlane.GetAPIServer().Out = f
		p.env.ControlPlane.GetAPIServer().Err = f
		p.env.ControlPlane.GetAPIServer().Configure().Set("v", "3")
	}
	if p.Config, err = p.env.Start(); err != nil {
		p.env = nil
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", assets, err)
	}
	if err = p.writeKubeconfig(); err != nil {
		return nil, err
	}
	c, err := p.Client()
	if err != nil {
		return nil, err
	}
	// The custom resources' caches warm before Calico's objects: its
	// webhook lists them, and would wait the cold cache's second.
	if err = warmCaches(ctx, p.Config, crds); err != nil {
		return nil, err
	}
	if err = createCalicoAdmission(ctx, c, calico); err != nil {
		return nil, err
	}
	if p.webhook, err = p.startCalicoWebhook(ctx, c, calico); err != nil {
		return nil, err
	}
	if err = aws.Wait(); err != nil {
		return nil, err
	}
	if !opts.NoAWS {
		if err = p.registerNodes(ctx); err != nil {
			return nil, fmt.Errorf("creating Node objects: %w", err)
		}
	}
	// The tiers last: the first custom resources created, once the API
	// server no longer holds such creates (awaitCRDsSettled), which by now
	// is at most a fraction of a second away.
	if err = awaitCRDsSettled(ctx, p.Config, crds); err != nil {
		return nil, err
	}
	if err = createCalicoTiers(ctx, c); err != nil {
		return nil, err
	}
	return p, nil
}

// startAWS starts moto_server and seeds the account in it.
func (p *Plane) startAWS(ctx context.Context, nodes int) (err error) {
	if p.moto, err = startMoto(ctx, p.Dir); err != nil {
		return err
	}
	if p.AWS, err = seedAccount(ctx, p.moto.endpoint, nodes); err != nil {
		return fmt.Errorf("seeding the AWS account in moto: %w", err)
	}
	return nil
}

// New starts a plane for a test or benchmark and stops it when the test ends,
// failed or not, holding one of the machine's plane slots meanwhile (see
// HoldSlot). A missing dependency fails the test with a message saying how
// to get it; it never skips.
func New(tb testing.TB, opts Options) *Plane {
	tb.Helper()
	HoldSlot(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := Start(ctx, opts)
	if err != nil {
		tb.Fatalf("local control plane: %v", err)
	}
	tb.Cleanup(func() {
		if err := p.Stop(); err != nil {
			tb.Errorf("stopping local control plane: %v", err)
		}
	})
	return p
}

// Stop ends every process the plane started and removes its folder. The
// processes stop side by side: each waits for its own graceful exit, and
// the test's plane slot is held until all have.
func (p *Plane) Stop() error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	stop := func(f func() error) {
		wg.Go(func() {
			if err := f(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	if m := p.moto; m != nil {
		stop(m.stop)
		p.moto = nil
	}
	if w := p.webhook; w != nil {
		stop(w.stop)
		p.webhook = nil
	}
	if env := p.env; env != nil {
		stop(env.Stop)
		p.env = nil
	}
	wg.Wait()
	if p.Dir != "" {
		errs = append(errs, os.RemoveAll(p.Dir))
	}
	return errors.Join(errs...)
}

// Client returns a controller-runtime client for the plane, with the
// Kubernetes and Calico types registered.
func (p *Plane) Client() (client.Client, error) {
	return client.New(p.Config, client.Options{Scheme: kubeapi.Scheme()})
}

func (p *Plane) writeKubeconfig() error {
	user, err := p.env.AddUser(envtest.User{Name: "localplane-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("creating the admin user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("rendering the kubeconfig: %w", err)
	}
	p.Kubeconfig = filepath.Join(p.Dir, "kubeconfig")
	return os.WriteFile(p.Kubeconfig, kc, 0o600)
}

// RepoRoot is the checkout this package was built from; binaries and
// examples are found relative to it.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// binaryAssets finds the folder holding kube-apiserver and etcd:
// KUBEBUILDER_ASSETS if set, else bin/controlplane in the checkout.
func binaryAssets() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		dir = filepath.Join(RepoRoot(), "bin", "controlplane")
	}
	for _, name := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("%s not found in %s: build it with `make controlplane` "+
				"(builds kube-apiserver and etcd from tools/controlplane; about 12 minutes cold), "+
				"or set KUBEBUILDER_ASSETS to a folder holding both", name, dir)
		}
	}
	return dir, nil
}

// ProviderBlock is a terraform provider block of telemetry reaching this
// plane: its kubeconfig and, unless the plane runs without AWS, moto.
func (p *Plane) ProviderBlock() string { return p.AWS.ProviderBlock(p.Kubeconfig) }

// ProviderBlock is a provider block reaching the plane's API server through
// kubeconfig and this account (none if it has no endpoint), signing with
// its key.
func (a AWS) ProviderBlock(kubeconfig string) string {
	if a.Endpoint == "" {
		return fmt.Sprintf(`
provider "telemetry" {
  kubernetes {
    config_path = %q
  }
}
`, kubeconfig)
	}
	return fmt.Sprintf(`
provider "telemetry" {
  kubernetes {
    config_path = %q
  }
  aws {
    region     = %q
    access_key = %q
    secret_key = %q
    endpoints {
      ec2   = %q
      elbv2 = %q
      sts   = %q
    }
  }
}
`, kubeconfig, a.Region, a.key().AccessKeyID, a.key().SecretAccessKey, a.Endpoint, a.Endpoint, a.Endpoint)
}
