package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/nlbpolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/standin"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/tfdev"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
)

// benchSites is how many sites BenchmarkProviderApply applies: 100, or
// BENCH_SITES (1000 for the large run).
var benchSites = func() int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_SITES")); err == nil && n > 0 && n <= 1280 {
		return n
	}
	return 100
}()

// siteCIDR is site i's flow source: non-adjacent /26s (one per /24 of
// 198.18.0.0/16) for the first 256 sites, then adjacent ones in 198.19.0.0/16.
func siteCIDR(i int) string {
	if i < 256 {
		return fmt.Sprintf("198.18.%d.0/26", i)
	}
	j := i - 256
	return fmt.Sprintf("198.19.%d.%d/26", j/4, j%4*64)
}

// BenchmarkProviderApply measures `terraform apply` of 100 sites and one NLB
// ingress from scratch, and a no-change `terraform plan` after it, against
// `kubectl apply --server-side` of the same Kubernetes objects (the floor:
// kubectl does no AWS work and no planning). Run with -benchtime=1x.
func BenchmarkProviderApply(b *testing.B) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		b.Fatal("kubectl not found: the baseline needs it")
	}
	p := localplane.New(b, localplane.Options{})
	ctx := context.Background()
	c, err := p.Client()
	if err != nil {
		b.Fatal(err)
	}
	for _, ns := range []string{"kafka", "telemetry", "floor"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			b.Fatal(err)
		}
	}
	// The ingress's apply waits for the nlb-policy controller's
	// acknowledgement, and the NLB the AWS Load Balancer Controller makes.
	lbs := standin.StartLoadBalancerController(c, p.AWS.Config(), p.AWS.VPCID)
	b.Cleanup(lbs.Stop)
	stopController := startBenchNLBPolicy(b, p)
	b.Cleanup(stopController)
	env, err := tfdev.Build(ctx, localplane.RepoRoot(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(benchConfig(p)), 0o644); err != nil {
		b.Fatal(err)
	}
	manifest := filepath.Join(b.TempDir(), "floor.yaml")
	if err := os.WriteFile(manifest, []byte(floorManifest()), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Setenv("AWS_ACCESS_KEY_ID", localplane.AccessKeyID)
	b.Setenv("AWS_SECRET_ACCESS_KEY", localplane.SecretAccessKey)

	for i := 0; i < b.N; i++ {
		// Warm both tools once (terraform loads the provider, kubectl its discovery cache).
		timed(b, kubectl, "--kubeconfig", p.Kubeconfig, "get", "ns")
		if _, err := env.Run(ctx, dir, "validate"); err != nil {
			b.Fatal(err)
		}

		floorApply := timed(b, kubectl, "--kubeconfig", p.Kubeconfig, "apply", "--server-side", "--field-manager", "bench", "-f", manifest)
		floorNoop := timed(b, kubectl, "--kubeconfig", p.Kubeconfig, "apply", "--server-side", "--field-manager", "bench", "-f", manifest)

		applyPeak, applyAll := watchPeakRSS("terraform-provi"), childrenCPU()
		apply, err := env.Run(ctx, dir, "apply", "-auto-approve", "-input=false", "-no-color")
		applyRSS, applyCPU := applyPeak()
		applyAll = childrenCPU() - applyAll
		if err != nil {
			b.Fatal(err)
		}
		planPeak, planAll := watchPeakRSS("terraform-provi"), childrenCPU()
		plan, err := env.Run(ctx, dir, "plan", "-detailed-exitcode", "-input=false", "-no-color")
		planRSS, planCPU := planPeak()
		planAll = childrenCPU() - planAll
		if err != nil || plan.ExitCode != 0 {
			b.Fatalf("no-change plan: exit %d %v\n%s", plan.ExitCode, err, plan.Output)
		}
		b.ReportMetric(float64(applyRSS)/(1<<20), "provider-apply-peak-rss-MiB")
		b.ReportMetric(float64(planRSS)/(1<<20), "provider-plan-peak-rss-MiB")
		fmt.Fprintf(os.Stderr, "%d sites: provider peak RSS %.0f MiB in the apply, %.0f MiB in the plan; CPU of the apply: provider %v, "+
			"terraform %v; of the plan: provider %v, terraform %v\n",
			benchSites, float64(applyRSS)/(1<<20), float64(planRSS)/(1<<20), applyCPU, applyAll-applyCPU, planCPU, planAll-planCPU)
		b.ReportMetric(floorApply.Seconds(), "kubectl-apply-s")
		b.ReportMetric(apply.Duration.Seconds(), "tf-apply-s")
		b.ReportMetric(apply.Duration.Seconds()/floorApply.Seconds(), "apply-ratio")
		b.ReportMetric(floorNoop.Seconds(), "kubectl-noop-s")
		b.ReportMetric(plan.Duration.Seconds(), "tf-plan-noop-s")
		b.ReportMetric(plan.Duration.Seconds()/floorNoop.Seconds(), "plan-ratio")
		fmt.Fprintf(os.Stderr, "apply: terraform %v, kubectl %v (x%.1f); no-change: terraform plan %v, kubectl apply %v (x%.1f)\n",
			apply.Duration.Round(time.Millisecond), floorApply.Round(time.Millisecond), apply.Duration.Seconds()/floorApply.Seconds(),
			plan.Duration.Round(time.Millisecond), floorNoop.Round(time.Millisecond), plan.Duration.Seconds()/floorNoop.Seconds())
		if _, err := env.Run(ctx, dir, "destroy", "-auto-approve", "-input=false", "-no-color"); err != nil {
			b.Fatal(err)
		}
	}
}

func timed(b *testing.B, name string, args ...string) time.Duration {
	b.Helper()
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		b.Fatalf("%s %v: %v\n%s", name, args, err, out.Bytes())
	}
	return time.Since(start)
}

func siteName(i int) string { return fmt.Sprintf("pop%03d", i) }

func benchConfig(p *localplane.Plane) string {
	var sites strings.Builder
	for i := 0; i < benchSites; i++ {
		fmt.Fprintf(&sites, "    %s = [%q]\n", siteName(i), siteCIDR(i))
	}
	return fmt.Sprintf(`
terraform {
  required_providers {
    telemetry = { source = "telemetry-platform/telemetry" }
  }
}
provider "telemetry" {
  kubernetes { config_path = %q }
  aws {
    region = %q
    endpoints {
      ec2   = %q
      elbv2 = %q
      sts   = %q
    }
  }
}
locals {
  sites = {
%s  }
}
resource "telemetry_site" "pop" {
  for_each     = local.sites
  name         = each.key
  kafka        = { cluster = "telemetry", namespace = "kafka" }
  flow_sources = each.value
}
resource "telemetry_nlb_ingress" "flows" {
  name                   = "flows"
  namespace              = "telemetry"
  selector               = { app = "sfacctd" }
  ports                  = [{ name = "sflow", protocol = "UDP", port = 6343 }]
  allowed_sources        = flatten(values(local.sites))
  node_security_group_id = %q
}
`, p.Kubeconfig, p.AWS.Region, p.AWS.Endpoint, p.AWS.Endpoint, p.AWS.Endpoint, sites.String(), p.AWS.NodeSecurityGroupID)
}

// floorManifest is the same Kubernetes objects as benchConfig (in another
// namespace), for kubectl.
func floorManifest() string {
	var b strings.Builder
	var ranges []string
	for i := 0; i < benchSites; i++ {
		fmt.Fprintf(&b, `apiVersion: kafka.strimzi.io/v1
kind: KafkaTopic
metadata:
  name: sfacctd-flows-%[1]s
  namespace: floor
  labels: {strimzi.io/cluster: telemetry, telemetry-platform.io/site: %[1]s}
  annotations: {telemetry-platform.io/flow-sources: "%[2]s", telemetry-platform.io/expected-flows-per-second: "1000"}
spec:
  topicName: sfacctd-flows-%[1]s
  partitions: 1
  replicas: 3
  config: {retention.ms: 86400000, min.insync.replicas: 2}
---
`, siteName(i), siteCIDR(i))
		ranges = append(ranges, siteCIDR(i))
	}
	fmt.Fprintf(&b, `apiVersion: v1
kind: Service
metadata:
  name: flows
  namespace: floor
  annotations:
    service.beta.kubernetes.io/aws-load-balancer-nlb-target-type: instance
    service.beta.kubernetes.io/aws-load-balancer-manage-backend-security-group-rules: "false"
spec:
  type: LoadBalancer
  loadBalancerClass: service.k8s.aws/nlb
  selector: {app: sfacctd}
  externalTrafficPolicy: Local
  ports: [{name: sflow, protocol: UDP, port: 6343, targetPort: 6343}]
  loadBalancerSourceRanges: [%s]
`, strings.Join(ranges, ", "))
	return b.String()
}

// watchPeakRSS polls, every 50 ms until the returned function is called, the
// peak resident set (VmHWM) of the processes whose command name is comm
// (the kernel keeps 15 characters: "terraform-provi" for the provider, which
// terraform starts for each operation); the function returns the largest,
// and the CPU time those processes had used when last seen, summed.
func watchPeakRSS(comm string) func() (uint64, time.Duration) {
	var peak atomic.Uint64
	var mu sync.Mutex
	cpu := map[string]time.Duration{} // by /proc path, the last reading
	stop := make(chan struct{})
	done := make(chan struct{})
	read := func() {
		paths, _ := filepath.Glob("/proc/[0-9]*/comm")
		for _, p := range paths {
			name, err := os.ReadFile(p)
			if err != nil || strings.TrimSpace(string(name)) != comm {
				continue
			}
			status, err := os.ReadFile(strings.TrimSuffix(p, "comm") + "status")
			if err != nil {
				continue
			}
			if stat, err := os.ReadFile(strings.TrimSuffix(p, "comm") + "stat"); err == nil {
				if i := strings.LastIndexByte(string(stat), ')'); i > 0 {
					f := strings.Fields(string(stat)[i+1:])
					if len(f) > 12 {
						u, _ := strconv.ParseInt(f[11], 10, 64)
						s, _ := strconv.ParseInt(f[12], 10, 64)
						mu.Lock()
						cpu[p] = time.Duration(u+s) * time.Second / userHZ
						mu.Unlock()
					}
				}
			}
			for _, line := range strings.Split(string(status), "\n") {
				if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
					kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
					if kb*1024 > peak.Load() {
						peak.Store(kb * 1024)
					}
				}
			}
		}
	}
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				read()
			}
		}
	}()
	return func() (uint64, time.Duration) {
		close(stop)
		<-done
		var total time.Duration
		for _, d := range cpu {
			total += d
		}
		return peak.Load(), total
	}
}

// benchGrace is the nlb-policy controller's --programming-grace in
// BenchmarkProviderApply: the default, or BENCH_PROGRAMMING_GRACE (0s
// measures the provider without the controller's wait for Felix).
var benchGrace = func() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("BENCH_PROGRAMMING_GRACE")); err == nil && d >= 0 {
		return d
	}
	return nlbpolicy.DefaultProgrammingGrace
}()

// startBenchNLBPolicy runs the nlb-policy controller against the plane
// with benchGrace, asking moto; the function stops it.
func startBenchNLBPolicy(b *testing.B, p *localplane.Plane) func() {
	b.Helper()
	opts := nlbpolicy.DefaultOptions()
	opts.ProgrammingGrace = benchGrace
	cfg := p.AWS.Config()
	return startBenchController(b, p, opts, &nlbpolicy.AWSSources{AWS: &cfg, TTL: time.Hour})
}

// startBenchController runs the nlb-policy controller against the plane
// with the options and sources given; the function stops it.
func startBenchController(b *testing.B, p *localplane.Plane, opts nlbpolicy.Options, sources nlbpolicy.Sources) func() {
	b.Helper()
	if err := p.CreateProductTier(context.Background()); err != nil {
		b.Fatal(err)
	}
	mgr, err := ctrl.NewManager(p.Config, nlbpolicy.WithCache(ctrl.Options{
		Scheme: kubeapi.Scheme(), Metrics: metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	}))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := nlbpolicy.Setup(mgr, nlbpolicy.Config{Options: opts, Sources: sources,
		SweepInterval: time.Hour, Registry: prometheus.NewRegistry()}); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}
}

// childrenCPU is the CPU time of this process's children that have ended
// (terraform, with the provider processes it waited for).
func childrenCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
