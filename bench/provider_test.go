package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/tfdev"
)

const benchSites = 100

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

		apply, err := env.Run(ctx, dir, "apply", "-auto-approve", "-input=false", "-no-color")
		if err != nil {
			b.Fatal(err)
		}
		plan, err := env.Run(ctx, dir, "plan", "-detailed-exitcode", "-input=false", "-no-color")
		if err != nil || plan.ExitCode != 0 {
			b.Fatalf("no-change plan: exit %d %v\n%s", plan.ExitCode, err, plan.Output)
		}
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
		fmt.Fprintf(&sites, "    %s = [\"198.18.%d.0/26\"]\n", siteName(i), i)
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
  annotations: {telemetry-platform.io/flow-sources: "198.18.%[2]d.0/26", telemetry-platform.io/expected-flows-per-second: "1000"}
spec:
  topicName: sfacctd-flows-%[1]s
  partitions: 1
  replicas: 3
  config: {retention.ms: 86400000, min.insync.replicas: 2}
---
`, siteName(i), i)
		ranges = append(ranges, fmt.Sprintf("198.18.%d.0/26", i))
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
