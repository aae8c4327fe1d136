// Package deploy holds the manifests and the Helm chart for real clusters;
// its tests apply them to a real API server.
package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
)

func helmBinary(t *testing.T) string {
	t.Helper()
	bin, err := localplane.HelmBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func helm(t *testing.T, args ...string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(helmBinary(t), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("helm %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.Bytes()
}

func render(t *testing.T, set ...string) []*unstructured.Unstructured {
	t.Helper()
	args := []string{"template", "telemetry", filepath.Join(localplane.RepoRoot(), "deploy", "helm", "telemetry-controllers"),
		"--namespace", "telemetry-system"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out := filepath.Join(t.TempDir(), "rendered.yaml")
	if err := os.WriteFile(out, helm(t, args...), 0o644); err != nil {
		t.Fatal(err)
	}
	objs, err := localplane.ReadManifests(out)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func kinds(objs []*unstructured.Unstructured) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	slices.Sort(out)
	return out
}

// The chart lints, and its rendered output, with default and with other
// values, applies cleanly to a real API server (server-side dry run).
func TestChartAppliesToARealAPIServer(t *testing.T) {
	ctrllog.SetLogger(logr.Discard())
	helm(t, "lint", filepath.Join(localplane.RepoRoot(), "deploy", "helm", "telemetry-controllers"))
	p := localplane.New(t, localplane.Options{NoAWS: true})
	c, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "telemetry-system"}}); err != nil {
		t.Fatal(err)
	}
	for name, set := range map[string][]string{
		"defaults": nil,
		"without AWS, no leader election, one component": {"nlbPolicyController.aws.enabled=false",
			"nlbPolicyController.healthCheckCIDRs={10.0.0.0/20,10.0.16.0/20}", "nlbPolicyController.leaderElection=false",
			"nlbPolicyController.replicas=1", "conntrackAgent.enabled=false",
			"nlbPolicyController.serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::123456789012:role/x"},
		"dry-run agent only": {"nlbPolicyController.enabled=false", "conntrackAgent.enabled=true", "conntrackAgent.dryRun=true",
			"conntrackAgent.image.tag=v1.2.3"},
		"both components, a metrics reader bound": {"conntrackAgent.enabled=true", "metrics.readers[0].name=prometheus",
			"metrics.readers[0].namespace=monitoring"},
		"metrics certificate from a Secret": {"metrics.certificate.secretName=telemetry-metrics-tls",
			"nlbPolicyController.namespaces={telemetry,flows}"},
		"the networkpolicy backend alone": {"nlbPolicyController.policyBackend=networkpolicy"},
		"both backends, networkpolicy by default": {"nlbPolicyController.policyBackend=networkpolicy",
			"nlbPolicyController.allowedPolicyBackends={networkpolicy,calico}"},
	} {
		t.Run(name, func(t *testing.T) {
			objs := render(t, set...)
			if len(objs) == 0 {
				t.Fatal("nothing rendered")
			}
			if err := p.ApplyManifests(context.Background(), objs, true); err != nil {
				t.Fatalf("%v\nrendered: %v", err, kinds(objs))
			}
		})
	}
	// The networkpolicy backend alone needs nothing of Calico: no Tier, no
	// RBAC on its kinds (a cluster without Calico has none to grant).
	for _, o := range render(t, "nlbPolicyController.policyBackend=networkpolicy") {
		if strings.Contains(o.GetAPIVersion(), "projectcalico.org") {
			t.Errorf("the networkpolicy backend alone renders %s %s", o.GetKind(), o.GetName())
		}
		if o.GetKind() == "ClusterRole" && strings.Contains(o.GetName(), "nlb-policy") {
			rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
			if b := fmt.Sprint(rules); strings.Contains(b, "projectcalico.org") || !strings.Contains(b, "networkpolicies") {
				t.Errorf("ClusterRole %s with the networkpolicy backend alone: %s", o.GetName(), b)
			}
		}
	}
	// The ServiceMonitors render when asked (their CRD is the Prometheus Operator's, not served here).
	objs := render(t, "metrics.serviceMonitor.enabled=true", "conntrackAgent.enabled=true")
	var monitors []string
	for _, o := range objs {
		if o.GetKind() == "ServiceMonitor" {
			monitors = append(monitors, o.GetName())
		}
	}
	if !slices.Equal(monitors, []string{"conntrack-agent", "nlb-policy-controller"}) {
		t.Fatalf("ServiceMonitors: %v", monitors)
	}
}

// Two replicas without leader election would both write every policy and
// acknowledgement: the chart refuses to render that, saying why.
func TestChartRefusesReplicasWithoutLeaderElection(t *testing.T) {
	out, err := exec.Command(helmBinary(t), "template", "telemetry",
		filepath.Join(localplane.RepoRoot(), "deploy", "helm", "telemetry-controllers"),
		"--set", "nlbPolicyController.leaderElection=false").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "leaderElection") {
		t.Fatalf("helm rendered 2 replicas without leader election (%v):\n%.500s", err, out)
	}
	if _, err := exec.Command(helmBinary(t), "template", "telemetry",
		filepath.Join(localplane.RepoRoot(), "deploy", "helm", "telemetry-controllers"),
		"--set", "nlbPolicyController.leaderElection=false", "--set", "nlbPolicyController.replicas=1").CombinedOutput(); err != nil {
		t.Fatalf("one replica without leader election must render: %v", err)
	}
}

// The chart grants exactly the permissions of the plain manifests, which a
// test runs each component with: the two cannot drift apart.
func TestChartRBACMatchesTheManifests(t *testing.T) {
	rules := func(objs []*unstructured.Unstructured) map[string][]rbacv1.PolicyRule {
		out := map[string][]rbacv1.PolicyRule{}
		for _, o := range objs {
			if o.GetKind() != "ClusterRole" && o.GetKind() != "Role" {
				continue
			}
			var role rbacv1.ClusterRole
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &role); err != nil {
				t.Fatal(err)
			}
			key := o.GetKind() + ":" + map[bool]string{true: "nlb-policy", false: "conntrack"}[bytes.Contains([]byte(o.GetName()), []byte("nlb-policy"))]
			if strings.HasSuffix(o.GetName(), "metrics-reader") {
				key = "metrics-reader"
			}
			out[key] = append(out[key], role.Rules...)
		}
		return out
	}
	chart := rules(render(t, "conntrackAgent.enabled=true"))
	var plain []*unstructured.Unstructured
	for _, f := range []string{"nlb-policy-controller.yaml", "conntrack-agent.yaml"} {
		objs, err := localplane.ReadManifests(filepath.Join(localplane.RepoRoot(), "deploy", f))
		if err != nil {
			t.Fatal(err)
		}
		plain = append(plain, objs...)
	}
	want := rules(plain)
	if len(chart) != 4 || len(want) != 4 {
		t.Fatalf("roles: chart %v, manifests %v", chart, want)
	}
	for k, r := range want {
		if !slices.EqualFunc(r, chart[k], func(a, b rbacv1.PolicyRule) bool {
			return slices.Equal(a.APIGroups, b.APIGroups) && slices.Equal(a.Resources, b.Resources) && slices.Equal(a.Verbs, b.Verbs) &&
				slices.Equal(a.ResourceNames, b.ResourceNames) && slices.Equal(a.NonResourceURLs, b.NonResourceURLs)
		}) {
			t.Errorf("%s: chart %v, manifests %v", k, chart[k], r)
		}
	}
}

// TestChartAdmissionMatchesTheManifests: the chart's admission policies (the
// fence around the controller's writes and the acknowledgement) are the raw
// manifests' own, rendered with the release named telemetry in
// telemetry-system, so neither install path is missing a fence the other has.
func TestChartAdmissionMatchesTheManifests(t *testing.T) {
	admission := func(objs []*unstructured.Unstructured) map[string]any {
		out := map[string]any{}
		for _, o := range objs {
			if strings.HasPrefix(o.GetKind(), "ValidatingAdmissionPolicy") {
				out[o.GetKind()+"/"+o.GetName()] = o.Object["spec"]
			}
		}
		return out
	}
	objs, err := localplane.ReadManifests(filepath.Join(localplane.RepoRoot(), "deploy", "nlb-policy-controller.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want, chart := admission(objs), admission(render(t))
	if len(want) != 8 {
		t.Fatalf("%d admission objects in deploy/nlb-policy-controller.yaml, want 8", len(want))
	}
	for name, spec := range want {
		got, ok := chart[name]
		if !ok {
			t.Errorf("the chart has no %s", name)
			continue
		}
		if !reflect.DeepEqual(got, spec) {
			t.Errorf("%s differs:\nchart:     %v\nmanifests: %v", name, got, spec)
		}
	}
	if len(chart) != len(want) {
		t.Errorf("the chart has %d admission objects, the manifests %d", len(chart), len(want))
	}
}

// TestChartMetricsCertificate: with metrics.certificate.secretName both
// controllers serve the Secret's certificate (mounted, --metrics-cert-dir)
// and the ServiceMonitors verify it against its ca.crt for the metrics
// Service's name, instead of skipping verification; cert-manager's
// Certificate, when asked, names both Services.
func TestChartMetricsCertificate(t *testing.T) {
	objs := render(t, "conntrackAgent.enabled=true", "metrics.serviceMonitor.enabled=true", "metrics.certificate.secretName=telemetry-metrics-tls",
		"metrics.certificate.certManager.enabled=true", "metrics.certificate.certManager.issuerRef.name=ca",
		"metrics.certificate.certManager.issuerRef.kind=ClusterIssuer")
	workloads, monitors, certificates := 0, 0, 0
	for _, o := range objs {
		switch o.GetKind() {
		case "Deployment", "DaemonSet":
			workloads++
			containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			args := fmt.Sprint(containers[0].(map[string]any)["args"])
			volumes, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "volumes")
			if !strings.Contains(args, "--metrics-cert-dir=/var/run/metrics-certs") || !strings.Contains(fmt.Sprint(volumes), "telemetry-metrics-tls") {
				t.Errorf("%s %s does not serve the Secret's certificate: args %s, volumes %v", o.GetKind(), o.GetName(), args, volumes)
			}
		case "ServiceMonitor":
			monitors++
			eps, _, _ := unstructured.NestedSlice(o.Object, "spec", "endpoints")
			tlsCfg := eps[0].(map[string]any)["tlsConfig"].(map[string]any)
			if tlsCfg["insecureSkipVerify"] != nil || tlsCfg["serverName"] != o.GetName()+"-metrics.telemetry-system.svc" ||
				!strings.Contains(fmt.Sprint(tlsCfg["ca"]), "telemetry-metrics-tls") {
				t.Errorf("ServiceMonitor %s does not verify the endpoint: %v", o.GetName(), tlsCfg)
			}
		case "Certificate":
			certificates++
			names, _, _ := unstructured.NestedStringSlice(o.Object, "spec", "dnsNames")
			if !slices.Equal(names, []string{"nlb-policy-controller-metrics.telemetry-system.svc", "conntrack-agent-metrics.telemetry-system.svc"}) {
				t.Errorf("Certificate names %v", names)
			}
		}
	}
	if workloads != 2 || monitors != 2 || certificates != 1 {
		t.Errorf("rendered %d workloads, %d ServiceMonitors, %d Certificates", workloads, monitors, certificates)
	}
}

// TestHostNetworkProbesOnLoopback: a container on the host network (the
// conntrack agent) serves its plain-HTTP probes on loopback only, and the
// kubelet's probes ask there, in the chart and in the raw manifests; on
// every interface of the node they would be reachable from anywhere the
// node is.
func TestHostNetworkProbesOnLoopback(t *testing.T) {
	plain, err := localplane.ReadManifests(filepath.Join(localplane.RepoRoot(), "deploy", "conntrack-agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for path, objs := range map[string][]*unstructured.Unstructured{"chart": render(t, "conntrackAgent.enabled=true"), "deploy/conntrack-agent.yaml": plain} {
		checked := 0
		for _, o := range objs {
			if o.GetKind() != "DaemonSet" && o.GetKind() != "Deployment" {
				continue
			}
			var spec corev1.PodTemplateSpec
			raw, _, _ := unstructured.NestedMap(o.Object, "spec", "template")
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &spec); err != nil {
				t.Fatal(err)
			}
			if !spec.Spec.HostNetwork {
				continue
			}
			for _, c := range spec.Spec.Containers {
				checked++
				for _, a := range c.Args {
					if v, ok := strings.CutPrefix(a, "--health-probe-bind-address="); ok && !strings.HasPrefix(v, "127.0.0.1:") {
						t.Errorf("%s: %s/%s serves probes on %q, not loopback", path, o.GetName(), c.Name, v)
					}
				}
				for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
					if p == nil || p.HTTPGet == nil || p.HTTPGet.Host != "127.0.0.1" {
						t.Errorf("%s: %s/%s's %s probe does not ask 127.0.0.1: %+v", path, o.GetName(), c.Name, name, p)
					}
				}
			}
		}
		if checked == 0 {
			t.Errorf("%s: no host-network container found to check", path)
		}
	}
}

// TestChartAgentOffByDefault: the privileged agent is not installed unless
// asked for (it adds nothing on the AWS NLB path with current kube-proxy).
func TestChartAgentOffByDefault(t *testing.T) {
	for _, o := range render(t) {
		if o.GetKind() == "DaemonSet" || strings.Contains(o.GetName(), "conntrack") {
			t.Errorf("the default values render %s %s of the conntrack agent", o.GetKind(), o.GetName())
		}
	}
}

// TestChartRegion: no region by default (the controller takes AWS_REGION as
// IRSA injects it, else the node's, and refuses to start with neither); a
// region set in the values reaches the controller as AWS_REGION.
func TestChartRegion(t *testing.T) {
	regionOf := func(objs []*unstructured.Unstructured) (string, bool) {
		for _, o := range objs {
			if o.GetKind() != "Deployment" || !strings.Contains(o.GetName(), "nlb-policy") {
				continue
			}
			containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			for _, c := range containers {
				env, _, _ := unstructured.NestedSlice(c.(map[string]any), "env")
				for _, e := range env {
					if m := e.(map[string]any); m["name"] == "AWS_REGION" {
						return fmt.Sprint(m["value"]), true
					}
				}
			}
		}
		return "", false
	}
	if r, ok := regionOf(render(t)); ok {
		t.Errorf("the default values set AWS_REGION=%s: a default region is wrong everywhere else", r)
	}
	if r, ok := regionOf(render(t, "nlbPolicyController.aws.region=eu-west-3")); !ok || r != "eu-west-3" {
		t.Errorf("aws.region=eu-west-3 gives AWS_REGION %q (set: %v)", r, ok)
	}
	plain, err := localplane.ReadManifests(filepath.Join(localplane.RepoRoot(), "deploy", "nlb-policy-controller.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := regionOf(plain); ok {
		t.Errorf("deploy/nlb-policy-controller.yaml sets AWS_REGION=%s", r)
	}
}

// TestChartMetricsReaders: the scrapers listed in metrics.readers are bound
// to the metrics-reader ClusterRole, and nobody is by default.
func TestChartMetricsReaders(t *testing.T) {
	binding := func(objs []*unstructured.Unstructured) *rbacv1.ClusterRoleBinding {
		for _, o := range objs {
			if o.GetKind() == "ClusterRoleBinding" && strings.HasSuffix(o.GetName(), "-metrics-reader") {
				var b rbacv1.ClusterRoleBinding
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &b); err != nil {
					t.Fatal(err)
				}
				return &b
			}
		}
		return nil
	}
	if b := binding(render(t)); b != nil {
		t.Errorf("a metrics-reader binding by default: %v", b.Subjects)
	}
	b := binding(render(t, "metrics.readers[0].name=prometheus", "metrics.readers[0].namespace=monitoring"))
	if b == nil || len(b.Subjects) != 1 || b.Subjects[0].Name != "prometheus" || b.Subjects[0].Namespace != "monitoring" ||
		b.Subjects[0].Kind != "ServiceAccount" || !strings.HasSuffix(b.RoleRef.Name, "-metrics-reader") {
		t.Fatalf("metrics.readers gives %+v", b)
	}
}
