package provider

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/standin"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/tfdev"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// TestAccIngressProperty runs random sequences of what users do to
// telemetry_nlb_ingress (create, change sources, add or drop a port,
// remove, two resources for one Service in one apply, a hand edit of the
// Service (an annotation removed, 0.0.0.0/0 added), a lost state imported
// back, destroy) through the
// real terraform CLI against the local plane with the real nlb-policy
// controller, and checks after every step that nothing the state does not
// own was changed (another team's rule in the nodes' group, a Service made
// by hand), that every ingress in the state has its Service with the
// configured sources, that the plan after a successful apply is empty, and
// at the end that destroy leaves nothing in the cluster or AWS.
// TELEMETRY_PROPERTY_SEQUENCES (default 1) and TELEMETRY_PROPERTY_STEPS
// (default 6) run it longer.
func TestAccIngressProperty(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	p, c := testPlaneClient(t)
	startNLBPolicy(t, p)
	lbs := standin.StartLoadBalancerController(c, p.AWS.Config(), p.AWS.VPCID)
	defer func() {
		lbs.Stop()
		for _, err := range lbs.Errors() {
			t.Errorf("load balancer controller stand-in: %v", err)
		}
	}()
	env := buildTF(t)
	sequences, steps := envInt("TELEMETRY_PROPERTY_SEQUENCES", 1), envInt("TELEMETRY_PROPERTY_STEPS", 6)
	total := 0
	for seq := 1; seq <= sequences; seq++ {
		t.Run(fmt.Sprintf("seed %d", seq), func(t *testing.T) {
			total += runIngressSequence(t, env, p, c, uint64(seq), steps)
		})
	}
	t.Logf("%d sequences, %d steps, every invariant held after each", sequences, total)
}

// ingressSeq is one sequence: the configuration as it stands (resource
// label -> ingress) in its own namespace.
type ingressSeq struct {
	cliSeq
	c         client.Client
	ec        *ec2.Client
	namespace string
	ingresses map[string]propIngress
	next      int
}

type propIngress struct {
	name    string
	sources []string
	ipfix   bool // a second port
}

var propSources = []string{"192.0.2.0/25", "192.0.2.128/25", "198.51.100.0/24", "203.0.113.0/26", "203.0.113.64/26"}

func runIngressSequence(t *testing.T, env *tfdev.Env, p *localplane.Plane, c client.Client, seed uint64, steps int) int {
	ctx := context.Background()
	s := &ingressSeq{cliSeq: cliSeq{t: t, env: env, dir: t.TempDir(), p: p}, c: c, ec: ec2.NewFromConfig(p.AWS.Config()),
		namespace: fmt.Sprintf("iprop%d", seed), ingresses: map[string]propIngress{}}
	ensureNamespaces(t, c, s.namespace)
	rng := rand.New(rand.NewPCG(seed, 23))
	pick := func(n int) []string {
		out := slices.Clone(propSources)
		rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
		return slices.Sorted(slices.Values(out[:n]))
	}
	// What nobody's state owns: another team's rule in the nodes' group, and
	// a Service made by hand.
	foreignRule := ec2types.IpPermission{IpProtocol: aws.String("udp"), FromPort: aws.Int32(9999), ToPort: aws.Int32(9999),
		IpRanges: []ec2types.IpRange{{CidrIp: aws.String("198.18.0.0/15"), Description: aws.String("another team")}}}
	if _, err := s.ec.AuthorizeSecurityGroupIngress(ctx, &ec2.AuthorizeSecurityGroupIngressInput{
		GroupId: aws.String(p.AWS.NodeSecurityGroupID), IpPermissions: []ec2types.IpPermission{foreignRule}}); err != nil && !isAWSCode(err, "InvalidPermission.Duplicate") {
		t.Fatal(err)
	}
	// The plane is shared with the other tests, which count the nodes' rules.
	t.Cleanup(func() {
		if _, err := s.ec.RevokeSecurityGroupIngress(ctx, &ec2.RevokeSecurityGroupIngressInput{
			GroupId: aws.String(p.AWS.NodeSecurityGroupID), IpPermissions: []ec2types.IpPermission{foreignRule}}); err != nil {
			t.Errorf("removing the other team's rule: %v", err)
		}
	})
	handMade := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: s.namespace, Name: "hand-made"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Selector: map[string]string{"app": "x"},
			Ports: []corev1.ServicePort{{Name: "x", Protocol: corev1.ProtocolUDP, Port: 9999}}}}
	if err := c.Create(ctx, handMade); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(ctx, handMade) })
	before := s.foreign(handMade)
	s.apply(true)
	ops := []string{"add", "add", "sources", "port", "remove", "duplicate", "hand edit", "lost state"}
	for i := 0; i < steps; i++ {
		op := ops[rng.IntN(len(ops))]
		if len(s.ingresses) == 0 && op != "add" && op != "duplicate" {
			op = "add" // nothing to act on yet
		}
		t.Logf("step %d: %s", i+1, op)
		keys := slices.Sorted(maps.Keys(s.ingresses))
		k := ""
		if len(keys) > 0 {
			k = keys[rng.IntN(len(keys))]
		}
		switch op {
		case "add":
			s.ingresses[s.label()] = propIngress{name: s.freshName(), sources: pick(1 + rng.IntN(3))}
			s.apply(true)
		case "sources":
			in := s.ingresses[k]
			in.sources = pick(1 + rng.IntN(4))
			s.ingresses[k] = in
			s.apply(true)
		case "port":
			in := s.ingresses[k]
			in.ipfix = !in.ipfix
			s.ingresses[k] = in
			s.apply(true)
		case "remove":
			delete(s.ingresses, k)
			s.apply(true)
		case "duplicate":
			// Two resources for one Service in one apply: one has it, the other
			// fails and owns nothing.
			name := s.freshName()
			a, b := s.label(), s.label()
			s.ingresses[a], s.ingresses[b] = propIngress{name: name, sources: pick(1)}, propIngress{name: name, sources: pick(2)}
			s.apply(false)
			held := s.stateList()
			switch {
			case slices.Contains(held, "telemetry_nlb_ingress."+a) && !slices.Contains(held, "telemetry_nlb_ingress."+b):
				delete(s.ingresses, b)
			case slices.Contains(held, "telemetry_nlb_ingress."+b) && !slices.Contains(held, "telemetry_nlb_ingress."+a):
				delete(s.ingresses, a)
			default:
				t.Fatalf("after two resources raced for one Service the state holds %v: want exactly one of %s, %s", held, a, b)
			}
			s.apply(true) // the loser gone from the configuration: converges, the winner's Service kept
		case "hand edit":
			name := s.ingresses[k].name
			editService(t, c, s.namespace, name, func(svc *corev1.Service) {
				delete(svc.Annotations, annotations.NodeSecurityGroup)
				svc.Spec.LoadBalancerSourceRanges = append(svc.Spec.LoadBalancerSourceRanges, "0.0.0.0/0")
			})
			s.apply(true) // drift put back, and the plan after is empty
		case "lost state":
			s.run("state", "rm", "-no-color", "telemetry_nlb_ingress."+k)
			s.run("import", "-no-color", "-input=false", "telemetry_nlb_ingress."+k, s.namespace+"/"+s.ingresses[k].name)
			s.apply(true)
		}
		if after := s.foreign(handMade); !reflect.DeepEqual(after, before) {
			t.Fatalf("step %d (%s) changed what no state owns:\nbefore %v\nafter  %v", i+1, op, before, after)
		}
	}
	s.run("destroy", "-auto-approve", "-no-color", "-input=false")
	var list corev1.ServiceList
	if err := c.List(ctx, &list, client.InNamespace(s.namespace)); err != nil {
		t.Fatal(err)
	}
	for _, svc := range list.Items {
		if svc.Name != handMade.Name {
			t.Errorf("destroy left Service %s", svc.Name)
		}
	}
	out, err := s.ec.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag-key"), Values: []string{annotations.IngressTag}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range out.SecurityGroups {
		for _, tag := range g.Tags {
			if aws.ToString(tag.Key) == annotations.IngressTag && strings.HasPrefix(aws.ToString(tag.Value), s.namespace+"/") {
				t.Errorf("destroy left frontend group %s of %s", aws.ToString(g.GroupId), aws.ToString(tag.Value))
			}
		}
	}
	if rules := s.nodeRules(); slices.ContainsFunc(rules, func(r string) bool { return strings.Contains(r, s.namespace+"/") }) {
		t.Errorf("destroy left rules in the nodes' group: %v", rules)
	}
	if after := s.foreign(handMade); !reflect.DeepEqual(after, before) {
		t.Fatalf("destroy changed what no state owns")
	}
	return steps
}

func (s *ingressSeq) label() string { s.next++; return fmt.Sprintf("r%d", s.next) }

func (s *ingressSeq) freshName() string { s.next++; return fmt.Sprintf("flows%d", s.next) }

// nodeRules are the nodes' group's rules, each as "<proto> <from>-<to> from
// <source> (<description>)".
func (s *ingressSeq) nodeRules() []string {
	s.t.Helper()
	out, err := s.ec.DescribeSecurityGroups(context.Background(), &ec2.DescribeSecurityGroupsInput{GroupIds: []string{s.p.AWS.NodeSecurityGroupID}})
	if err != nil {
		s.t.Fatal(err)
	}
	var rules []string
	for _, g := range out.SecurityGroups {
		for _, src := range inboundSources(g, "node") {
			rules = append(rules, fmt.Sprintf("%s (%s)", src.rule, src.desc))
		}
	}
	slices.Sort(rules)
	return rules
}

// foreign is what the test compares of what no state owns.
func (s *ingressSeq) foreign(handMade *corev1.Service) map[string]any {
	s.t.Helper()
	svc := &corev1.Service{}
	err := s.c.Get(context.Background(), client.ObjectKeyFromObject(handMade), svc)
	if apierrors.IsNotFound(err) {
		return map[string]any{"hand-made Service": "gone"}
	}
	if err != nil {
		s.t.Fatal(err)
	}
	theirs := slices.DeleteFunc(s.nodeRules(), func(r string) bool { return !strings.Contains(r, "another team") })
	return map[string]any{"spec": svc.Spec, "annotations": svc.Annotations, "labels": svc.Labels, "their rules": theirs}
}

func (s *ingressSeq) write() {
	s.t.Helper()
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(s.ingresses)) {
		in := s.ingresses[k]
		ports := `{ name = "sflow", protocol = "UDP", port = 6343 }`
		if in.ipfix {
			ports += `, { name = "ipfix", protocol = "UDP", port = 4739 }`
		}
		fmt.Fprintf(&b, `
resource "telemetry_nlb_ingress" %q {
  name                   = %q
  namespace              = %q
  selector               = { app = "sfacctd" }
  ports                  = [%s]
  allowed_sources        = [%s]
  node_security_group_id = %q
}
`, k, in.name, s.namespace, ports, `"`+strings.Join(in.sources, `", "`)+`"`, s.p.AWS.NodeSecurityGroupID)
	}
	s.writeMain(b.String())
}

// apply writes the configuration and applies it; when it must succeed, the
// plan after it must be empty and every ingress's Service hold its sources.
func (s *ingressSeq) apply(mustSucceed bool) {
	s.t.Helper()
	s.write()
	s.applyMain(mustSucceed)
	if !mustSucceed {
		return
	}
	for k, in := range s.ingresses {
		svc := &corev1.Service{}
		if err := s.c.Get(context.Background(), client.ObjectKey{Namespace: s.namespace, Name: in.name}, svc); err != nil {
			s.t.Fatalf("%s: its Service: %v", k, err)
		}
		got, _ := cidrset.Parse(lbc.SourceRangesOf(svc))
		want, _ := cidrset.Parse(in.sources)
		if !slices.Equal(got.Strings(), want.Strings()) {
			s.t.Fatalf("%s: the Service admits %v, configured %v", k, got.Strings(), want.Strings())
		}
	}
}
