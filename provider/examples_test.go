package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/awsnlb"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/standin"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/tfdev"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
	"github.com/telemetry-platform/terraform-provider-telemetry/tools/releasecheck/declared"
)

func buildTF(t *testing.T) *tfdev.Env {
	t.Helper()
	env, err := tfdev.Build(context.Background(), localplane.RepoRoot(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// example copies examples/ (the modules with it), builds the provider and
// returns a runner of terraform in examples/<name>, modules fetched, with
// moto's credentials; a failed command fails the test.
func example(t *testing.T, name string) func(args ...string) tfdev.Result {
	t.Helper()
	run := exampleWith(t, buildTF(t), name)
	run("get", "-no-color")
	return run
}

// exampleWith copies examples/ and returns a runner of env's CLI in
// examples/<name>, with moto's credentials; a failed command fails the test.
func exampleWith(t *testing.T, env *tfdev.Env, name string) func(args ...string) tfdev.Result {
	t.Helper()
	return exampleAs(t, env, name, localplane.Credentials{AccessKeyID: localplane.AccessKeyID, SecretAccessKey: localplane.SecretAccessKey})
}

// exampleAs is exampleWith signing AWS calls with key.
func exampleAs(t *testing.T, env *tfdev.Env, name string, key localplane.Credentials) func(args ...string) tfdev.Result {
	t.Helper()
	work := t.TempDir()
	if err := tfdev.CopyDir(filepath.Join(localplane.RepoRoot(), "examples"), work); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(work, name)
	withCreds := *env
	withCreds.Environ = append(slices.Clone(env.Environ),
		"AWS_ACCESS_KEY_ID="+key.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+key.SecretAccessKey)
	run := func(args ...string) tfdev.Result {
		t.Helper()
		res, err := withCreds.Run(context.Background(), dir, args...)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	return run
}

// The documentation examples stay valid: every resource and data-source
// example, together, passes `terraform validate` with this provider.
func TestAccExamplesValidate(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	env := buildTF(t)
	dir := t.TempDir()
	root := filepath.Join(localplane.RepoRoot(), "examples")
	files, _ := filepath.Glob(filepath.Join(root, "resources", "*", "resource.tf"))
	more, _ := filepath.Glob(filepath.Join(root, "data-sources", "*", "data-source.tf"))
	files = append(files, more...)
	if len(files) < 4 {
		t.Fatalf("found only %d examples", len(files))
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.ReplaceAll(strings.TrimPrefix(f, root+"/"), "/", "_")
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	versions := `terraform {
  required_providers {
    telemetry = { source = "telemetry-platform/telemetry" }
  }
}
`
	if err := os.WriteFile(filepath.Join(dir, "versions.tf"), []byte(versions), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Run(context.Background(), dir, "validate", "-no-color"); err != nil {
		t.Fatal(err)
	}
}

// examples/complete, through the platform module, applies against the local
// control plane, plans no change afterwards, moves a state from before the
// module's platform variable in place, and destroys cleanly: with
// terraform and with OpenTofu, each installing the provider as a user's
// does, from the release archive in a filesystem mirror (`init`, no
// dev_overrides; the example's version constraint must take the release's
// version, and the lock file records the package), and each with the IAM
// policies of deploy/iam enforced (the CLI signing as a user with the
// provider's, the controller as one with its own; see
// TestAccIAMPoliciesSufficientAndMinimal for what moto evaluates).
func TestAccExampleComplete(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	tf, err := tfdev.Terraform()
	if err != nil {
		t.Fatal(err)
	}
	tofu, err := tfdev.OpenTofu(localplane.RepoRoot())
	if err != nil {
		t.Fatal(err)
	}
	version, err := declared.Read(localplane.RepoRoot())
	if err != nil {
		t.Fatal(err)
	}
	for _, cli := range []tfdev.CLI{tf, tofu} {
		t.Run(cli.Name, func(t *testing.T) {
			env, err := tfdev.Release(context.Background(), localplane.RepoRoot(), t.TempDir(), cli)
			if err != nil {
				t.Fatal(err)
			}
			// A plane of its own: IAM is enforced on the whole of its moto.
			p := localplane.New(t, localplane.Options{})
			asProvider, asController := enforceDeployIAM(t, p)
			run := exampleAs(t, env, "complete", asProvider.Key)
			init := run("init", "-no-color", "-input=false")
			if want := "Installed telemetry-platform/telemetry v" + version; !strings.Contains(string(init.Output), want) {
				t.Fatalf("%s init: no %q in its output:\n%s", cli.Name, want, init.Output)
			}
			completeApplies(t, run, p, asController)
		})
	}
}

// completeApplies applies examples/complete with run and checks the result.
// The controller signs its AWS calls as controller.
func completeApplies(t *testing.T, run func(args ...string) tfdev.Result, p *localplane.Plane, controller localplane.AWS) {
	c, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ensureNamespaces(t, c, "kafka", "telemetry")
	ctlAWS := controller.Config()
	stop, err := p.StartNLBPolicyControllerWith(ctx, localplane.ControllerOptions{AWS: &ctlAWS})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("nlb-policy controller: %v", err)
		}
	}()
	topics := standin.StartTopicOperator(c, "telemetry")
	defer topics.Stop()
	lbs := standin.StartLoadBalancerController(c, p.AWS.Config(), p.AWS.VPCID)
	defer lbs.Stop()

	vars := []string{"-var", "kubeconfig=" + p.Kubeconfig, "-var", "aws_endpoint=" + p.AWS.Endpoint,
		"-var", "node_security_group_id=" + p.AWS.NodeSecurityGroupID}
	run(append([]string{"apply", "-auto-approve", "-no-color", "-input=false"}, vars...)...)

	var out map[string]struct{ Value json.RawMessage }
	if err := json.Unmarshal(run("output", "-json").Output, &out); err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Created        int `json:"created"`
		PerSourceModel int `json:"per_source_model"`
	}
	if err := json.Unmarshal(out["security_group_rules"].Value, &rules); err != nil {
		t.Fatal(err)
	}
	// 12 sites x 8 non-adjacent /27s = 96 sources: 3 listener protocols
	// (sflow UDP, ipfix TCP and UDP) x a cover of 10 prefixes, and 2 node
	// rules; the per-source model needs 96 x 3 and 3 subnets x 2 ports of
	// health checks.
	if rules.Created != 3*10+2 || rules.PerSourceModel != 96*3+3*2 {
		t.Errorf("security-group rules: %+v", rules)
	}
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(kubeapi.KafkaTopic("v1").GroupVersion().WithKind("KafkaTopicList"))
	if err := c.List(ctx, list, client.InNamespace("kafka")); err != nil || len(list.Items) != 12 {
		t.Fatalf("want 12 KafkaTopics in kafka, got %d (%v)", len(list.Items), err)
	}
	if dns := strings.Trim(string(out["nlb_dns_name"].Value), `"`); !strings.Contains(dns, "elb.amazonaws.com") {
		t.Errorf("nlb_dns_name = %s", dns)
	}

	plan := run(append([]string{"plan", "-detailed-exitcode", "-no-color", "-input=false"}, vars...)...)
	if plan.ExitCode != 0 {
		t.Fatalf("plan after apply is not empty:\n%s", plan.Output)
	}
	// A state from before the module's platform variable (its NLB ingress
	// not yet counted) moves in place: the same NLB, nothing replaced.
	const ingress = "module.telemetry.telemetry_nlb_ingress.flows"
	run("state", "mv", ingress+"[0]", ingress)
	moved := string(run(append([]string{"plan", "-no-color", "-input=false"}, vars...)...).Output)
	if !strings.Contains(moved, ingress+" has moved to "+ingress+"[0]") || !strings.Contains(moved, "0 to add, 0 to change, 0 to destroy") {
		t.Fatalf("a state from before the platform variable does not move in place:\n%s", moved)
	}
	run(append([]string{"apply", "-auto-approve", "-no-color", "-input=false"}, vars...)...)
	if plan := run(append([]string{"plan", "-detailed-exitcode", "-no-color", "-input=false"}, vars...)...); plan.ExitCode != 0 {
		t.Fatalf("plan after the move is not empty:\n%s", plan.Output)
	}
	run(append([]string{"destroy", "-auto-approve", "-no-color", "-input=false"}, vars...)...)
	if err := c.List(ctx, list, client.InNamespace("kafka")); err != nil || len(list.Items) != 0 {
		t.Fatalf("KafkaTopics left after destroy: %d (%v)", len(list.Items), err)
	}
	for _, err := range lbs.Errors() {
		t.Errorf("load balancer controller stand-in: %v", err)
	}
}

// examples/multi-cluster applies the platform module to two clusters at
// once through provider aliases (two local planes, each with its own API
// server and controllers): eu on AWS (moto, the LBC stand-in: its own NLB),
// us on bare metal (real MetalLB allocating from a pool: its address, no NLB
// in its account), the same module folder for both. Each cluster gets its
// region's sites and nothing of the other's, both are acknowledged; the
// plan after apply is empty, and destroy leaves nothing in either.
func TestAccExampleMultiCluster(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	ctx := context.Background()
	type cluster struct {
		name  string
		p     *localplane.Plane
		c     client.Client
		sites []string
		metal bool
	}
	eu, euc := testPlaneClient(t)
	us := localplane.New(t, localplane.Options{})
	usc, err := us.Client()
	if err != nil {
		t.Fatal(err)
	}
	clusters := []cluster{{"eu", eu, euc, []string{"ams01", "fra02", "lhr03"}, false},
		{"us", us, usc, []string{"gru12", "iad09", "ord10", "sjc11"}, true}}
	var vars []string
	for _, cl := range clusters {
		ensureNamespaces(t, cl.c, "kafka", "telemetry")
		startNLBPolicy(t, cl.p)
		topics := standin.StartTopicOperator(cl.c, "telemetry")
		defer topics.Stop()
		if cl.metal {
			startMetalLB(t, cl.p, cl.c, "mc", netip.MustParsePrefix("198.19.255.100/32"))
			vars = append(vars, "-var", fmt.Sprintf(`%s={kubeconfig=%q, platform="metal", address_pool="exporters"}`, cl.name, cl.p.Kubeconfig))
			continue
		}
		lbs := standin.StartLoadBalancerController(cl.c, cl.p.AWS.Config(), cl.p.AWS.VPCID)
		defer lbs.Stop()
		// moto serves the plane's VPC in its region (the example's defaults
		// are eu-west-1 and us-east-1).
		vars = append(vars, "-var", fmt.Sprintf(`%s={kubeconfig=%q, region=%q, aws_endpoint=%q, node_security_group_id=%q}`,
			cl.name, cl.p.Kubeconfig, cl.p.AWS.Region, cl.p.AWS.Endpoint, cl.p.AWS.NodeSecurityGroupID))
	}
	run := example(t, "multi-cluster")
	run(append([]string{"apply", "-auto-approve", "-no-color", "-input=false"}, vars...)...)

	var out struct {
		Clusters struct {
			Value map[string]struct {
				Topics     map[string]string `json:"topics"`
				DNSName    string            `json:"nlb_dns_name"`
				Addresses  []string          `json:"addresses"`
				Enforced   bool              `json:"policy_enforced"`
				RulesModel struct {
					Created int `json:"created"`
				} `json:"security_group_rules"`
				Sizing struct {
					Brokers int `json:"brokers"`
				} `json:"kafka_sizing"`
			}
		} `json:"clusters"`
	}
	if err := json.Unmarshal(run("output", "-json").Output, &out); err != nil {
		t.Fatal(err)
	}
	for _, cl := range clusters {
		o := out.Clusters.Value[cl.name]
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(kubeapi.KafkaTopic("v1").GroupVersion().WithKind("KafkaTopicList"))
		if err := cl.c.List(ctx, list, client.InNamespace("kafka")); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, item := range list.Items {
			got = append(got, item.GetName())
		}
		sort.Strings(got)
		var want []string
		for _, s := range cl.sites {
			want = append(want, o.Topics[s])
		}
		sort.Strings(want)
		if strings.Join(got, ",") != strings.Join(want, ",") || len(o.Topics) != len(cl.sites) {
			t.Errorf("%s: KafkaTopics %v, outputs %v; want those of %v only", cl.name, got, o.Topics, cl.sites)
		}
		if !o.Enforced || o.Sizing.Brokers == 0 {
			t.Errorf("%s: outputs %+v", cl.name, o)
		}
		// On AWS its NLB is in its own account (moto), under the name the
		// output gives; on bare metal its address is MetalLB's, and its
		// account has no load balancer and the ingress no rule.
		lbs, err := elbv2.NewFromConfig(cl.p.AWS.Config()).DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{})
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case cl.metal && (len(lbs.LoadBalancers) != 0 || o.DNSName != "" || o.RulesModel.Created != 0 ||
			strings.Join(o.Addresses, ",") != "198.19.255.100"):
			t.Errorf("%s (bare metal): addresses %v, nlb_dns_name %q, %d rules, %d load balancers in its account; want MetalLB's "+
				"198.19.255.100 alone", cl.name, o.Addresses, o.DNSName, o.RulesModel.Created, len(lbs.LoadBalancers))
		case !cl.metal && (len(lbs.LoadBalancers) != 1 || aws.ToString(lbs.LoadBalancers[0].DNSName) != o.DNSName || o.RulesModel.Created == 0):
			t.Errorf("%s: nlb_dns_name %q, %d rules; the cluster's account has %d load balancers", cl.name, o.DNSName,
				o.RulesModel.Created, len(lbs.LoadBalancers))
		}
	}
	plan := run(append([]string{"plan", "-detailed-exitcode", "-no-color", "-input=false"}, vars...)...)
	if plan.ExitCode != 0 {
		t.Fatalf("plan after apply is not empty:\n%s", plan.Output)
	}
	run(append([]string{"destroy", "-auto-approve", "-no-color", "-input=false"}, vars...)...)
	for _, cl := range clusters {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(kubeapi.KafkaTopic("v1").GroupVersion().WithKind("KafkaTopicList"))
		if err := cl.c.List(ctx, list, client.InNamespace("kafka")); err != nil || len(list.Items) != 0 {
			t.Errorf("%s: KafkaTopics left after destroy: %d (%v)", cl.name, len(list.Items), err)
		}
		svcs := &corev1.ServiceList{}
		if err := cl.c.List(ctx, svcs, client.InNamespace("telemetry")); err != nil || len(svcs.Items) != 0 {
			t.Errorf("%s: Services left after destroy: %d (%v)", cl.name, len(svcs.Items), err)
		}
		// The NLB is gone from that cluster's account (moto) once the load
		// balancer controller has seen the Service go.
		elb := elbv2.NewFromConfig(cl.p.AWS.Config())
		deadline := time.Now().Add(30 * time.Second)
		for {
			lbs, err := elb.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{})
			if err == nil && len(lbs.LoadBalancers) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: load balancers left in moto after destroy (%v)", cl.name, err)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// examples/migration-two-nlb, the two-NLB path: with an NLB that the real
// AWS Load Balancer Controller made without security groups (the Service
// asks so) and a rule per source in the node group, the example brings a
// new NLB up beside it (with a frontend group of its own, which the old one
// can never get), leaves the old Service and its rules as they are, and
// reports the old one's rules and what adopting it would take; the plan
// after apply is empty (the report converges) and destroy removes the new
// NLB only.
func TestAccExampleMigrationTwoNLB(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	p, c := testPlaneClient(t)
	ctx := context.Background()
	const namespace = "migrate-two"
	ensureNamespaces(t, c, "kafka", namespace)
	startNLBPolicy(t, p)
	topics := standin.StartTopicOperator(c, "telemetry")
	defer topics.Stop()
	lbcProc, err := p.StartLoadBalancerController(ctx, localplane.LBCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer lbcProc.Stop()
	old := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "flows", Annotations: map[string]string{
			lbc.Scheme: lbc.SchemeInternetFacing, lbc.NLBTargetType: lbc.TargetInstance, lbc.DisableNLBSecurityGroup: "true"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To(lbc.LoadBalancerClass),
			Selector: map[string]string{"app.kubernetes.io/name": "sfacctd"}, LoadBalancerSourceRanges: []string{"198.18.0.0/27", "198.18.0.64/27"},
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			Ports:                 []corev1.ServicePort{{Name: "sflow", Protocol: corev1.ProtocolUDP, Port: 6343}}},
	}
	if err := c.Create(ctx, old); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = c.Delete(ctx, old)
		_ = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			return apierrors.IsNotFound(c.Get(ctx, client.ObjectKeyFromObject(old), &corev1.Service{})), nil
		})
	}()
	var oldDNS string
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		err := c.Get(ctx, client.ObjectKeyFromObject(old), old)
		oldDNS = awsnlb.Hostname(old)
		return err == nil && oldDNS != "", err
	})
	if err != nil {
		t.Fatalf("the LBC made no NLB for the old Service: %v\n%s", err, lbcProc.LogTail(20))
	}
	if err := bindingsReconciled(ctx, c, namespace); err != nil {
		t.Fatal(err)
	}

	sites := `{ ams01 = { expected_flows_per_second = 2000, flow_sources = ["198.18.0.0/27"] }, ` +
		`fra02 = { expected_flows_per_second = 3000, flow_sources = ["198.18.0.64/27"] } }`
	vars := []string{"-var", "kubeconfig=" + p.Kubeconfig, "-var", "old_service=" + namespace + "/flows", "-var", "sites=" + sites,
		"-var", fmt.Sprintf(`aws={ region = %q, endpoint = %q, node_security_group_id = %q }`, p.AWS.Region, p.AWS.Endpoint, p.AWS.NodeSecurityGroupID)}
	run := example(t, "migration-two-nlb")
	run(append([]string{"apply", "-auto-approve", "-no-color", "-input=false"}, vars...)...)
	var out map[string]struct{ Value json.RawMessage }
	if err := json.Unmarshal(run("output", "-json").Output, &out); err != nil {
		t.Fatal(err)
	}
	var oldOut struct {
		DNSName        string `json:"dns_name"`
		PerSourceRules int    `json:"per_source_rules"`
		Reason         string `json:"reason"`
	}
	if err := json.Unmarshal(out["old"].Value, &oldOut); err != nil {
		t.Fatal(err)
	}
	next := strings.Trim(string(out["move_exporters_to"].Value), `"`)
	t.Logf("old NLB %s (%d per-source rules: %s); new NLB %s", oldOut.DNSName, oldOut.PerSourceRules, oldOut.Reason, next)
	if oldOut.DNSName != oldDNS || oldOut.PerSourceRules != 2 || next == "" || next == oldDNS {
		t.Errorf("outputs: old %+v, new %q; the old NLB is %s", oldOut, next, oldDNS)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(old), old); err != nil || old.Annotations["telemetry-platform.io/nlb-policy"] != "" {
		t.Errorf("the old Service was changed (%v): %v", err, old.Annotations)
	}
	plan := run(append([]string{"plan", "-detailed-exitcode", "-no-color", "-input=false"}, vars...)...)
	if plan.ExitCode != 0 {
		t.Fatalf("plan after apply is not empty:\n%s", plan.Output)
	}
	run(append([]string{"destroy", "-auto-approve", "-no-color", "-input=false"}, vars...)...)
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "flows-next"}, &corev1.Service{}); !apierrors.IsNotFound(err) {
		t.Errorf("the new Service is left after destroy (%v)", err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(old), old); err != nil {
		t.Errorf("destroy removed the old Service: %v", err)
	}
}

// startMetalLB runs real MetalLB for a plane, its speaker in a lab of its
// own (prefix), with an IPAddressPool "exporters" of these addresses; all
// stop when the test ends.
func startMetalLB(t *testing.T, p *localplane.Plane, c client.Client, prefix string, pool ...netip.Prefix) {
	t.Helper()
	lab := netlab.ForTest(t, prefix)
	ctx := context.Background()
	node := prefix + "-node"
	if err := c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	mlb, err := p.StartMetalLB(ctx, lab.NSPath("node"), localplane.MetalLBOptions{Node: node})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mlb.Stop)
	if err := mlb.Pool(ctx, c, "exporters", pool...); err != nil {
		t.Fatal(err)
	}
}
