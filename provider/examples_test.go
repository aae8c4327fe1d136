package provider

import (
	"context"
	"encoding/json"

	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/standin"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/tfdev"
)

func buildTF(t *testing.T) *tfdev.Env {
	t.Helper()
	env, err := tfdev.Build(context.Background(), localplane.RepoRoot(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// The documentation examples stay valid: every resource and data-source
// example, together, passes `terraform validate` with this provider.
func TestAccExamplesValidate(t *testing.T) {
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
// control plane, plans no change afterwards, and destroys cleanly.
func TestAccExampleComplete(t *testing.T) {
	requireAcc(t)
	p, c := testPlaneClient(t)
	ctx := context.Background()
	ensureNamespaces(t, c, "kafka", "telemetry")
	startNLBPolicy(t, p)
	topics := standin.StartTopicOperator(c, "telemetry")
	defer topics.Stop()
	lbs := standin.StartLoadBalancerController(c, p.AWS.Config(), p.AWS.VPCID)
	defer lbs.Stop()

	env := buildTF(t)
	work := t.TempDir()
	if err := tfdev.CopyDir(filepath.Join(localplane.RepoRoot(), "examples"), work); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(work, "complete")
	vars := []string{"-var", "kubeconfig=" + p.Kubeconfig, "-var", "aws_endpoint=" + p.AWS.Endpoint,
		"-var", "node_security_group_id=" + p.AWS.NodeSecurityGroupID}
	t.Setenv("AWS_ACCESS_KEY_ID", localplane.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", localplane.SecretAccessKey)
	run := func(args ...string) tfdev.Result {
		t.Helper()
		res, err := env.Run(ctx, dir, args...)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	run("get", "-no-color")
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
	run(append([]string{"destroy", "-auto-approve", "-no-color", "-input=false"}, vars...)...)
	if err := c.List(ctx, list, client.InNamespace("kafka")); err != nil || len(list.Items) != 0 {
		t.Fatalf("KafkaTopics left after destroy: %d (%v)", len(list.Items), err)
	}
	for _, err := range lbs.Errors() {
		t.Errorf("load balancer controller stand-in: %v", err)
	}
}
