package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/nlbpolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/standin"
)

// iamPolicy is a policy document of deploy/iam.
type iamPolicy struct {
	Version   string
	Statement []map[string]any
}

func readIAMPolicy(t *testing.T, name string) iamPolicy {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(localplane.RepoRoot(), "deploy", "iam", name))
	if err != nil {
		t.Fatal(err)
	}
	var p iamPolicy
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatalf("deploy/iam/%s: %v", name, err)
	}
	return p
}

// actions are the policy's allowed actions, in order.
func (p iamPolicy) actions() []string {
	var out []string
	for _, s := range p.Statement {
		switch a := s["Action"].(type) {
		case string:
			out = append(out, a)
		case []any:
			for _, v := range a {
				out = append(out, v.(string))
			}
		}
	}
	return out
}

// forMoto is the policy as moto can evaluate it, without the action
// removed (""): moto matches actions only, with "*" as every EC2 and ELBv2
// call's resource, so each statement's Resource becomes "*" and its
// Condition goes (moto would deny on it). What the resources and
// conditions narrow is therefore not proven here (see docs/guides/iam.md).
func (p iamPolicy) forMoto(removed string) string {
	var statements []map[string]any
	for _, s := range p.Statement {
		var actions []string
		for _, a := range (iamPolicy{Statement: []map[string]any{s}}).actions() {
			if a != removed {
				actions = append(actions, a)
			}
		}
		if len(actions) == 0 {
			continue
		}
		statements = append(statements, map[string]any{"Effect": s["Effect"], "Action": actions, "Resource": "*"})
	}
	if len(statements) == 0 { // a policy must have a statement: one that allows nothing of ours
		statements = append(statements, map[string]any{"Effect": "Allow", "Action": []string{"sts:GetCallerIdentity"}, "Resource": "*"})
	}
	b, _ := json.Marshal(iamPolicy{Version: "2012-10-17", Statement: statements})
	return string(b)
}

// deniedError matches AWS's (and moto's) refusal naming the action, as the
// provider's diagnostic carries it (terraform wraps long lines).
func deniedError(action string) *regexp.Regexp {
	return regexp.MustCompile(`not\s+authorized\s+to\s+perform:\s+` + regexp.QuoteMeta(action))
}

// iamScenario is where in an ingress's life the provider first makes an
// action's call: its create, an edit narrowing its sources, its destroy, an
// edit claiming a frontend group an earlier version made (tagged for the
// ingress, not yet for the cluster), or adding a second ingress to a
// node-group rule another already holds (nlb_security_group = false).
type iamScenario string

const (
	atCreate iamScenario = "create"
	atEdit   iamScenario = "edit"
	atDelete iamScenario = "destroy"
	atAdopt  iamScenario = "adopt"
	atShare  iamScenario = "shared rule"
)

// providerActions says, for each action of deploy/iam/terraform-provider.json,
// where the provider needs it.
var providerActions = map[string]iamScenario{
	"ec2:DescribeSecurityGroups":                 atCreate,
	"ec2:DescribeSubnets":                        atCreate,
	"ec2:DescribeVpcs":                           atCreate,
	"elasticloadbalancing:DescribeLoadBalancers": atCreate,
	"elasticloadbalancing:DescribeTargetGroups":  atCreate,
	"ec2:CreateSecurityGroup":                    atCreate,
	// AWS also asks for ec2:CreateTags when CreateSecurityGroup tags the new
	// group; moto checks only the request's own action, so here it is
	// proven where the provider calls CreateTags itself.
	"ec2:CreateTags":                                 atAdopt,
	"ec2:AuthorizeSecurityGroupIngress":              atCreate,
	"ec2:RevokeSecurityGroupIngress":                 atEdit,
	"ec2:DeleteSecurityGroup":                        atDelete,
	"ec2:UpdateSecurityGroupRuleDescriptionsIngress": atShare,
}

// enforceDeployIAM turns IAM authorization on in the plane's moto and
// returns the account as a user with deploy/iam's provider policy and as one
// with the controller's (each as moto can evaluate it: forMoto).
func enforceDeployIAM(t *testing.T, p *localplane.Plane) (provider, controller localplane.AWS) {
	t.Helper()
	if err := p.EnforceIAM(context.Background()); err != nil {
		t.Fatal(err)
	}
	return iamUser(t, p, "terraform-provider", readIAMPolicy(t, "terraform-provider.json").forMoto("")),
		iamUser(t, p, "nlb-policy-controller", readIAMPolicy(t, "nlb-policy-controller.json").forMoto(""))
}

// iamUser is the plane's account as a new IAM user with only policy.
func iamUser(t *testing.T, p *localplane.Plane, name, policy string) localplane.AWS {
	t.Helper()
	key, err := p.IAMUser(context.Background(), name, policy)
	if err != nil {
		t.Fatal(err)
	}
	return p.AWS.As(key)
}

// TestAccIAMPoliciesSufficientAndMinimal runs the provider and the
// nlb-policy controller against moto with IAM authorization on, each
// signing as a user whose only policy is its document in deploy/iam (the
// LBC stand-in as an administrator). Sufficient: an ingress's create, edit
// and destroy, and a node-group rule shared by two ingresses, all succeed,
// the controller acknowledging each. Minimal: without any one of the
// provider's actions, the step that needs it fails with AWS's refusal
// naming that action, and with the policy whole again the next apply
// converges (the refusal wedged nothing); without any one of the
// controller's, its AWS lookups for an ingress's Service fail naming it.
func TestAccIAMPoliciesSufficientAndMinimal(t *testing.T) {
	t.Parallel() // on a plane of its own
	requireAcc(t)
	ctx := context.Background()
	provider := readIAMPolicy(t, "terraform-provider.json")
	controller := readIAMPolicy(t, "nlb-policy-controller.json")
	if got, want := slices.Sorted(slices.Values(provider.actions())), slices.Sorted(func(yield func(string) bool) {
		for a := range providerActions {
			if !yield(a) {
				return
			}
		}
	}); !slices.Equal(got, want) {
		t.Fatalf("deploy/iam/terraform-provider.json allows %v; this test knows where the provider needs %v: name the scenario of each action", got, want)
	}

	// A plane of its own: moto's authorization is one switch per server.
	p := localplane.New(t, localplane.Options{})
	c, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	asProvider, asController := enforceDeployIAM(t, p)
	user := func(name, policy string) localplane.AWS { t.Helper(); return iamUser(t, p, name, policy) }
	// The fixed key of the plane is refused now: the switch is on.
	fixed := p.AWS.As(localplane.Credentials{AccessKeyID: localplane.AccessKeyID, SecretAccessKey: localplane.SecretAccessKey})
	if _, err := ec2.NewFromConfig(fixed.Config()).DescribeVpcs(ctx, &ec2.DescribeVpcsInput{}); err == nil {
		t.Fatal("moto answered a key it does not know: IAM authorization is not on")
	}

	ctlAWS := asController.Config()
	stop, err := p.StartNLBPolicyControllerWith(ctx, localplane.ControllerOptions{AWS: &ctlAWS})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("nlb-policy controller: %v", err)
		}
	})

	ingress := func(ns, sources string) string {
		return fmt.Sprintf(`
resource "telemetry_nlb_ingress" "flows" {
  name                   = "flows"
  namespace              = %q
  selector               = { app = "sfacctd" }
  ports                  = [{ name = "sflow", protocol = "UDP", port = 6343 }]
  allowed_sources        = %s
  scheme                 = "internal"
  node_security_group_id = %q
  wait_for_load_balancer = true
}
`, ns, sources, p.AWS.NodeSecurityGroupID)
	}
	steps := func(ns string, scenario iamScenario, as localplane.AWS, expect *regexp.Regexp) []resource.TestStep {
		full, restricted := asProvider.ProviderBlock(p.Kubeconfig), as.ProviderBlock(p.Kubeconfig)
		wide, narrow := `["192.0.2.0/24", "198.51.100.0/24"]`, `["192.0.2.0/24"]`
		switch scenario {
		case atEdit:
			return []resource.TestStep{
				{Config: full + ingress(ns, wide)},
				{Config: restricted + ingress(ns, narrow), ExpectError: expect},
				{Config: full + ingress(ns, narrow)},
			}
		case atDelete:
			return []resource.TestStep{
				{Config: full + ingress(ns, wide)},
				{Config: restricted + ingress(ns, wide), Destroy: true, ExpectError: expect},
				{Config: full + ingress(ns, wide)},
			}
		case atAdopt:
			var frontend string
			return []resource.TestStep{
				{Config: full + ingress(ns, wide), Check: func(s *terraform.State) error {
					frontend = s.RootModule().Resources["telemetry_nlb_ingress.flows"].Primary.Attributes["frontend_security_group_id"]
					return nil
				}},
				{PreConfig: func() { // as an earlier version left it: without the cluster's tag
					if _, err := ec2.NewFromConfig(p.AWS.Config()).DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{frontend},
						Tags: []ec2types.Tag{{Key: aws.String(annotations.ClusterTag)}}}); err != nil {
						t.Error(err)
					}
				}, Config: restricted + ingress(ns, narrow), ExpectError: expect},
				{Config: full + ingress(ns, narrow)},
			}
		default: // atCreate
			steps := []resource.TestStep{{Config: restricted + ingress(ns, wide), ExpectError: expect},
				{Config: full + ingress(ns, wide)}}
			if expect == nil { // the whole policy: nothing to refuse
				steps = append(steps[1:], resource.TestStep{Config: full + ingress(ns, narrow)})
			}
			return steps
		}
	}

	// Each action of the provider's, removed in turn, then the whole
	// policy, each in a namespace of its own, one after another: side by
	// side (t.Parallel) they queued for the package's -parallel places
	// behind tests waiting for a plane, while this test held its plane
	// slot idle (5 min 21 s of a 7 min test in one make test, measured;
	// each takes 5-10 s).
	lbcStandIn := standin.StartLoadBalancerController(c, p.AWS.Config(), p.AWS.VPCID)
	t.Run("nlb", func(t *testing.T) {
		for i, action := range append(provider.actions(), "") {
			scenario := providerActions[action]
			if scenario == atShare {
				continue
			}
			name := "without " + action
			if action == "" {
				name, scenario = "the whole policy", atCreate
			}
			ns := fmt.Sprintf("iam-%d", i)
			ensureNamespaces(t, c, ns)
			as := user("provider-"+ns, provider.forMoto(action))
			var expect *regexp.Regexp
			if action != "" {
				expect = deniedError(action)
			}
			t.Run(name, func(t *testing.T) {
				resource.Test(t, resource.TestCase{ProtoV6ProviderFactories: protoV6, Steps: steps(ns, scenario, as, expect)})
			})
		}
	})
	// The controller's lookups for a Service whose NLB exists, with its
	// policy and without each action (in process: the lookups are what the
	// controller's reconciles call).
	t.Run("controller", func(t *testing.T) {
		ensureNamespaces(t, c, "iam-controller")
		resource.Test(t, resource.TestCase{ProtoV6ProviderFactories: protoV6, Steps: []resource.TestStep{{
			Config: asProvider.ProviderBlock(p.Kubeconfig) + ingress("iam-controller", `["192.0.2.0/24"]`),
			Check: func(*terraform.State) error {
				var svc corev1.Service
				if err := c.Get(ctx, client.ObjectKey{Namespace: "iam-controller", Name: "flows"}, &svc); err != nil {
					return err
				}
				bounded := svc.DeepCopy()
				bounded.Annotations[annotations.HealthCheckCIDRs] = "10.0.0.0/24"
				lookups := func(a localplane.AWS) error {
					s := &nlbpolicy.AWSSources{AWS: ptrTo(a.Config())}
					var errs []string
					if _, err := s.HealthCheckCIDRs(ctx, &svc); err != nil {
						errs = append(errs, err.Error())
					}
					if _, err := s.HealthCheckBound(ctx, bounded); err != nil {
						errs = append(errs, err.Error())
					}
					if _, err := s.DefaultSources(ctx, &svc); err != nil {
						errs = append(errs, err.Error())
					}
					if len(errs) > 0 {
						return fmt.Errorf("%s", strings.Join(errs, "; "))
					}
					return nil
				}
				if err := lookups(asController); err != nil {
					return fmt.Errorf("with deploy/iam/nlb-policy-controller.json: %v", err)
				}
				for _, action := range controller.actions() {
					err := lookups(user("controller-without-"+strings.ReplaceAll(action, ":", "-"), controller.forMoto(action)))
					if err == nil || !deniedError(action).MatchString(err.Error()) {
						return fmt.Errorf("the controller without %s: %v, want AWS's refusal naming it", action, err)
					}
				}
				return nil
			},
		}}})
	})
	// The shared node-group rule: the LBC without NLB security groups.
	lbcStandIn.Stop()
	t.Run("shared rule", func(t *testing.T) {
		standIn := standin.StartLoadBalancerControllerWithoutNLBSecurityGroups(c, p.AWS.Config(), p.AWS.VPCID)
		defer standIn.Stop()
		ensureNamespaces(t, c, "iam-shared")
		shared := func(name string) string {
			return fmt.Sprintf(`
resource "telemetry_nlb_ingress" %[1]q {
  name                   = %[1]q
  namespace              = "iam-shared"
  selector               = { app = %[1]q }
  ports                  = [{ name = "sflow", protocol = "UDP", port = 6343 }]
  allowed_sources        = ["192.0.2.0/24"]
  target_type            = "ip"
  nlb_security_group     = false
  node_security_group_id = %[2]q
}`, name, p.AWS.NodeSecurityGroupID)
		}
		for action, scenario := range providerActions {
			if scenario != atShare {
				continue
			}
			full := asProvider.ProviderBlock(p.Kubeconfig)
			restricted := user("provider-shared-"+strings.ReplaceAll(action, ":", "-"), provider.forMoto(action)).ProviderBlock(p.Kubeconfig)
			resource.Test(t, resource.TestCase{ProtoV6ProviderFactories: protoV6, Steps: []resource.TestStep{
				{Config: full + shared("a")},
				{Config: restricted + shared("a") + shared("b"), ExpectError: deniedError(action)},
				{Config: full + shared("a") + shared("b")},
			}})
		}
	})
}
