// Command nlb-policy-controller generates Calico GlobalNetworkPolicies from
// the allowed sources of NLB Services and guarantees their clean-up. See
// docs/controllers/nlb-policy-controller.md for flags, metrics and RBAC.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/nlbpolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/calicopolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/securemetrics"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/version"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "nlb-policy-controller:", err)
		os.Exit(1)
	}
}

func run() error {
	defaults := nlbpolicy.DefaultOptions()
	var (
		metricsAddr    = flag.String("metrics-bind-address", ":8443", "Address of the Prometheus metrics endpoint (0 disables).")
		metricsCerts   = flag.String("metrics-cert-dir", "", "Folder with tls.crt and tls.key for the metrics endpoint (a Secret mounted; reloaded when it changes), so scrapers can verify it. Empty: a certificate self-signed at each start.")
		metricsSecure  = flag.Bool("metrics-secure", true, "Serve metrics over HTTPS to clients that present a token allowed to get /metrics (TokenReview, SubjectAccessReview); false serves plain HTTP, only for an address bound to localhost.")
		probeAddr      = flag.String("health-probe-bind-address", ":8081", "Address of /healthz and /readyz.")
		leaderElect    = flag.Bool("leader-elect", true, "Elect a leader so that only one replica writes.")
		leaderNS       = flag.String("leader-election-namespace", "", "Namespace of the leader-election Lease (default: the pod's).")
		manageAll      = flag.Bool("manage-all", false, "Manage every NLB Service whose backend security-group rules are switched off ("+lbc.ManageBackendSecurityGroupRule+`: "false"), not only those annotated telemetry-platform.io/nlb-policy: enabled.`)
		hostSelector   = flag.String("host-endpoint-selector", defaults.HostEndpointSelector, "Calico selector of the nodes' host endpoints (instance targets).")
		order          = flag.Float64("policy-order", defaults.Order, "Order of the policies that pass the listed sources on; the Deny policies get order+1.")
		netsetSize     = flag.Int("network-set-threshold", defaults.NetworkSetThreshold, "Past this many source nets, put them in a GlobalNetworkSet.")
		grace          = flag.Duration("programming-grace", defaults.ProgrammingGrace, "How long a change's policies stay in the API server before the Service is acknowledged (Felix programs them in the meantime; the provider widens AWS only after).")
		npGrace        = flag.Duration("networkpolicy-programming-grace", defaults.NetworkPolicyGrace, "--programming-grace for the networkpolicy backend: how long a Service's NetworkPolicy stays in the API server before it is acknowledged (the cluster's NetworkPolicy enforcer programs it in the meantime).")
		tier           = flag.String("tier", defaults.Tier, "Calico tier of the generated policies (created by the Helm chart and deploy/ manifests, ending in Pass).")
		healthCIDRs    = flag.String("health-check-cidrs", "", "Comma-separated CIDRs of NLB health checks, when AWS is not asked (e.g. the NLB subnets).")
		vpcCIDRs       = flag.String("vpc-cidrs", "", "Comma-separated VPC CIDRs, when AWS is not asked (or has not found the NLB yet): the default sources of internal NLBs, and the bound of a Service's health-check-cidrs annotation (without it, the annotation admits nothing then).")
		useAWS         = flag.Bool("aws", true, "Ask AWS (ELBv2, EC2) for the NLB's subnets and VPC. Credentials and region from the standard AWS environment (AWS_REGION), else the region from the node's instance metadata; no region is an error.")
		awsEndpoint    = flag.String("aws-endpoint", "", "Custom AWS endpoint for ELBv2 and EC2 (an emulator, a VPC endpoint).")
		cacheTTL       = flag.Duration("aws-cache-ttl", 10*time.Minute, "How long an NLB's subnets are cached.")
		sweepInterval  = flag.Duration("orphan-sweep-interval", 5*time.Minute, "How often to delete policies whose Service is gone.")
		maxConcurrency = flag.Int("max-concurrent-reconciles", 4, "Services reconciled in parallel.")
		namespaces     = flag.String("namespaces", "", "Comma-separated namespaces whose Services may opt in (the admins' allow-list); a Service opted in elsewhere is not managed, and its acknowledgement and a Warning Event say why. Empty: every namespace.")
		backend        = flag.String("policy-backend", string(nlbpolicy.BackendCalico), "What enforces a Service's sources when it does not choose: calico (GlobalNetworkPolicies in --tier) or networkpolicy (a Kubernetes NetworkPolicy in the Service's namespace, for any dataplane that enforces them). See docs/controllers/policy-backends.md.")
		backends       = flag.String("allowed-policy-backends", "", "Comma-separated backends a Service may choose with the telemetry-platform.io/policy-backend annotation (the admins' allow-list; the controller watches and needs RBAC for each). Empty: --policy-backend alone.")
		checkFence     = flag.Bool("check-write-fence", true, "Refuse to start unless what fences this account is in place, proved by dry-run writes it must be refused: for the calico backend a policy outside the controller's tier and an Allow rule in it (Calico's tiered RBAC, the admission policy), for the networkpolicy backend a NetworkPolicy selecting every pod (the admission policy).")
	)
	showVersion := flag.Bool("version", false, "Print the version and exit.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	if *showVersion {
		fmt.Println(version.String("nlb-policy-controller"))
		return nil
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	if err := calicopolicy.ValidateSelector(*hostSelector); err != nil {
		return fmt.Errorf("--host-endpoint-selector: %w", err)
	}
	if strings.TrimSpace(*hostSelector) == "" || strings.Contains(*hostSelector, "all()") || strings.Contains(*hostSelector, "global()") {
		return fmt.Errorf("--host-endpoint-selector %q selects every endpoint: name the nodes' host endpoints (default %q)", *hostSelector, defaults.HostEndpointSelector)
	}
	for name, v := range map[string]string{"--health-check-cidrs": *healthCIDRs, "--vpc-cidrs": *vpcCIDRs} {
		if _, errs := cidrset.Parse(lbc.SplitList(v)); len(errs) > 0 {
			return fmt.Errorf("%s: %v", name, errs)
		}
	}

	opts := nlbpolicy.Options{HostEndpointSelector: *hostSelector, Order: *order, NetworkSetThreshold: *netsetSize, Tier: *tier,
		ProgrammingGrace: *grace, NetworkPolicyGrace: *npGrace}
	var err error
	if opts.Backend, err = nlbpolicy.ParseBackend(*backend); err != nil {
		return fmt.Errorf("--policy-backend: %w", err)
	}
	for _, name := range lbc.SplitList(*backends) {
		b, err := nlbpolicy.ParseBackend(name)
		if err != nil {
			return fmt.Errorf("--allowed-policy-backends: %w", err)
		}
		opts.Backends = append(opts.Backends, b)
	}
	if len(opts.Backends) > 0 && !slices.Contains(opts.Backends, opts.Backend) {
		return fmt.Errorf("--allowed-policy-backends %q does not include --policy-backend %q", *backends, *backend)
	}

	metricsCfg := securemetrics.Config{Addr: *metricsAddr, Secure: *metricsSecure, CertDir: *metricsCerts}
	if err := metricsCfg.Validate(); err != nil {
		return err
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	mgrOpts := ctrl.Options{
		Scheme:                 kubeapi.Scheme(),
		Metrics:                metricsCfg.Options(),
		HealthProbeBindAddress: *probeAddr,
		Controller:             config.Controller{MaxConcurrentReconciles: *maxConcurrency},
	}
	if *leaderElect {
		mgrOpts = nlbpolicy.WithLeaderElection(mgrOpts, *leaderNS)
	}
	mgr, err := ctrl.NewManager(cfg, nlbpolicy.WithCache(mgrOpts))
	if err != nil {
		return err
	}

	sources := &nlbpolicy.AWSSources{
		FallbackHealthCheckCIDRs: lbc.SplitList(*healthCIDRs),
		FallbackVPCCIDRs:         lbc.SplitList(*vpcCIDRs),
		TTL:                      *cacheTTL,
	}
	if *useAWS {
		awsCfg, err := nlbpolicy.LoadAWSConfig(context.Background(), *awsEndpoint)
		if err != nil {
			return err
		}
		ctrl.Log.Info("AWS", "region", awsCfg.Region)
		sources.AWS = &awsCfg
	}
	if *checkFence {
		c, err := client.New(cfg, client.Options{Scheme: kubeapi.Scheme()})
		if err != nil {
			return err
		}
		if opts.Allows(nlbpolicy.BackendCalico) {
			if err := nlbpolicy.CheckWriteFence(context.Background(), c, *tier); err != nil {
				return fmt.Errorf("%w (--check-write-fence=false skips this check)", err)
			}
		}
		if opts.Allows(nlbpolicy.BackendNetworkPolicy) {
			if err := nlbpolicy.CheckNetworkPolicyFence(context.Background(), c, podNamespace()); err != nil {
				return fmt.Errorf("%w (--check-write-fence=false skips this check)", err)
			}
		}
	}
	_, err = nlbpolicy.Setup(mgr, nlbpolicy.Config{
		Options:       opts,
		ManageAll:     *manageAll,
		Namespaces:    lbc.SplitList(*namespaces),
		Sources:       sources,
		SweepInterval: *sweepInterval,
		Registry:      metrics.Registry,
	})
	if err != nil {
		return err
	}
	if err := version.Register(metrics.Registry); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return err
	}
	ctrl.Log.Info("starting", "version", version.Version, "revision", version.Revision(), "manageAll", *manageAll, "aws", *useAWS, "hostEndpointSelector", *hostSelector,
		"healthCheckCIDRs", strings.Join(sources.FallbackHealthCheckCIDRs, ","))
	return mgr.Start(ctrl.SetupSignalHandler())
}

// podNamespace is the controller's own namespace (where the NetworkPolicy
// fence is probed, dry run): from the in-cluster service account, else
// "default".
func podNamespace() string {
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil && len(b) > 0 {
		return strings.TrimSpace(string(b))
	}
	return "default"
}
