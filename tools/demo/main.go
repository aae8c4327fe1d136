// Command demo shows the whole product working on this machine (`make
// demo`): the local control plane, `terraform apply` of examples/complete
// with the provider built from the checkout, the nlb-policy controller and
// the conntrack agent against it, and the three traps the product removes.
// Everything it starts stops at the end or on Ctrl-C.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/go-logr/logr"
	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go4.org/netipx"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/conntrackagent"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/awsnlb"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/calicopolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/metricread"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/standin"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/tfdev"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

const steps = 7

type demo struct {
	ctx     context.Context
	plane   *localplane.Plane
	kube    client.Client
	tf      *tfdev.Env
	dir     string
	vars    []string
	step    int
	summary [][2]string
	// stopController stops the nlb-policy controller; startController
	// starts it again (the fail-closed step).
	stopController func()
	// noAgent leaves the conntrack agent out of trap 3: the demo must then
	// fail, since the flow it claims to restore stays blackholed (its test).
	noAgent bool
}

func main() {
	ctrllog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	d := &demo{ctx: ctx}
	err := d.run()
	if ctx.Err() != nil {
		fmt.Println("\ninterrupted: stopping everything")
		os.Exit(130)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "\ndemo failed:", err)
		os.Exit(1)
	}
	d.printSummary(time.Since(start))
}

func (d *demo) header(title string) {
	d.step++
	fmt.Printf("\n==> [%d/%d] %s\n", d.step, steps, title)
}

func (d *demo) note(format string, args ...any) { fmt.Printf("    "+format+"\n", args...) }

func (d *demo) result(k, v string) { d.summary = append(d.summary, [2]string{k, v}) }

func (d *demo) run() (err error) {
	d.header("Local control plane: kube-apiserver + etcd (Calico and Strimzi CRDs), moto as AWS")
	t0 := time.Now()
	if d.plane, err = localplane.Start(d.ctx, localplane.Options{Nodes: 3}); err != nil {
		return err
	}
	defer d.plane.Stop()
	if d.kube, err = d.plane.Client(); err != nil {
		return err
	}
	for _, ns := range []string{"kafka", "telemetry"} {
		if err := d.kube.Create(d.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
	}
	d.note("API server %s, AWS %s (VPC %s, node group %s), started in %v", d.plane.Config.Host, d.plane.AWS.Endpoint,
		d.plane.AWS.VPCID, d.plane.AWS.NodeSecurityGroupID, time.Since(t0).Round(100*time.Millisecond))
	topics := standin.StartTopicOperator(d.kube, "telemetry")
	defer topics.Stop()
	lbc, err := d.plane.StartLoadBalancerController(d.ctx, localplane.LBCOptions{})
	if err != nil {
		return err
	}
	defer lbc.Stop()
	d.note("the AWS Load Balancer Controller v3.5.0 (built from its pinned source) running against the API server and moto")
	d.note("a stand-in for Strimzi's Topic Operator, which cannot run here (Java): topic status and refusals only")
	if d.stopController, err = d.startNLBPolicyController(); err != nil {
		return err
	}
	defer func() { d.stopController() }()
	d.note("nlb-policy controller running against the API server and moto")

	work, err := os.MkdirTemp("", "telemetry-demo-")
	if err != nil {
		return err
	}
	// The plane and everything in it are discarded at the end: only the
	// terraform working folder needs removing.
	defer os.RemoveAll(work)
	if err := d.terraformApply(work); err != nil {
		return err
	}
	if err := d.showTopics(); err != nil {
		return err
	}
	if err := d.showSecurityGroups(); err != nil {
		return err
	}
	if err := d.controllerStopped(); err != nil {
		return err
	}
	if err := d.showPolicies(); err != nil {
		return err
	}
	return d.conntrack()
}

func (d *demo) startNLBPolicyController() (func(), error) {
	stop, err := d.plane.StartNLBPolicyController(d.ctx, nil)
	if err != nil {
		return nil, err
	}
	return func() { _ = stop() }, nil
}

func (d *demo) terraformApply(work string) (err error) {
	d.header("terraform apply of examples/complete (12 PoPs through the telemetry-pop module), provider built from this checkout")
	if d.tf, err = tfdev.Build(d.ctx, localplane.RepoRoot(), work); err != nil {
		return err
	}
	if err := tfdev.CopyDir(filepath.Join(localplane.RepoRoot(), "examples"), filepath.Join(work, "examples")); err != nil {
		return err
	}
	d.dir = filepath.Join(work, "examples", "complete")
	d.vars = []string{"-var", "kubeconfig=" + d.plane.Kubeconfig, "-var", "aws_endpoint=" + d.plane.AWS.Endpoint,
		"-var", "node_security_group_id=" + d.plane.AWS.NodeSecurityGroupID}
	os.Setenv("AWS_ACCESS_KEY_ID", localplane.AccessKeyID)
	os.Setenv("AWS_SECRET_ACCESS_KEY", localplane.SecretAccessKey)
	if _, err := d.tf.Run(d.ctx, d.dir, "get", "-no-color"); err != nil {
		return err
	}
	res, err := d.tf.Run(d.ctx, d.dir, append([]string{"apply", "-auto-approve", "-no-color", "-input=false"}, d.vars...)...)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(res.Output), "\n") {
		if strings.HasPrefix(line, "Apply complete!") {
			d.note("%s (%v)", line, res.Duration.Round(100*time.Millisecond))
			d.result("terraform apply", fmt.Sprintf("%s in %v", strings.TrimPrefix(line, "Apply complete! "), res.Duration.Round(100*time.Millisecond)))
		}
	}
	plan, err := d.tf.Run(d.ctx, d.dir, append([]string{"plan", "-detailed-exitcode", "-no-color", "-input=false"}, d.vars...)...)
	if err != nil {
		return err
	}
	if plan.ExitCode != 0 {
		return fmt.Errorf("the plan right after apply is not empty, so the apply did not converge:\n%s", plan.Output)
	}
	d.note("plan right after apply: no changes")
	return nil
}

// controllerStopped shows the fail-closed contract: with the nlb-policy
// controller stopped, an apply that adds an exporter fails (nobody
// acknowledges the new sources), and the new exporter stays refused by
// Calico and by the NLB's security group; with the controller back, the
// same apply succeeds and the exporter is admitted.
func (d *demo) controllerStopped() error {
	d.header("Fail closed: the nlb-policy controller stopped while an exporter is added")
	const added = "203.0.113.64/27"
	exporter := netip.MustParseAddr("203.0.113.65")
	d.stopController()
	d.stopController = func() {}
	d.note("nlb-policy controller stopped; terraform apply adds %s to the first PoP (enforcement_timeout 15s)", added)
	vars := append(slices.Clone(d.vars), "-var", `extra_sources=["`+added+`"]`)
	res, err := d.tf.Run(d.ctx, d.dir, append([]string{"apply", "-auto-approve", "-no-color", "-input=false", "-var", "enforcement_timeout=15s"}, vars...)...)
	if err == nil {
		return fmt.Errorf("terraform apply succeeded with the nlb-policy controller stopped: the product's fail-closed claim is false")
	}
	if !strings.Contains(string(res.Output), "has not acknowledged Calico policies") {
		return fmt.Errorf("terraform apply failed, but not for want of the acknowledgement: %w", err)
	}
	d.note("terraform apply failed after %v: \"the nlb-policy controller has not acknowledged Calico policies ...", res.Duration.Round(100*time.Millisecond))
	d.note("  No security-group rule was added, so the NLB admits no new source.\"")
	refusedBy, err := d.admitted(exporter)
	if err != nil {
		return err
	}
	if refusedBy == "" {
		return fmt.Errorf("%s is admitted although the controller never acknowledged it", exporter)
	}
	d.note("the new exporter %s meanwhile: refused (%s)", exporter, refusedBy)

	if d.stopController, err = d.startNLBPolicyController(); err != nil {
		return err
	}
	if _, err := d.tf.Run(d.ctx, d.dir, append([]string{"apply", "-auto-approve", "-no-color", "-input=false"}, vars...)...); err != nil {
		return fmt.Errorf("terraform apply with the controller back: %w", err)
	}
	if refusedBy, err = d.admitted(exporter); err != nil {
		return err
	}
	if refusedBy != "" {
		return fmt.Errorf("%s is still refused (%s) after the controller acknowledged it", exporter, refusedBy)
	}
	plan, err := d.tf.Run(d.ctx, d.dir, append([]string{"plan", "-detailed-exitcode", "-no-color", "-input=false"}, vars...)...)
	if err != nil {
		return err
	}
	if plan.ExitCode != 0 {
		return fmt.Errorf("the plan after the controller came back is not empty:\n%s", plan.Output)
	}
	d.note("controller started again: the same apply succeeds, %s is admitted by Calico and the NLB's group, plan empty", exporter)
	d.vars = vars
	d.result("Controller stopped", "apply refused, new exporter refused by Calico and the NLB group; admitted once the controller is back")
	return nil
}

// admitted says what refuses exporter's sFlow packets to the NLB ("" when
// nothing does): the NLB's security group (read from moto) or Calico (the
// controller's policies).
func (d *demo) admitted(exporter netip.Addr) (refusedBy string, err error) {
	svc := &corev1.Service{}
	if err := d.kube.Get(d.ctx, client.ObjectKey{Namespace: "telemetry", Name: "flows"}, svc); err != nil {
		return "", err
	}
	var reasons []string
	ec := ec2.NewFromConfig(d.plane.AWS.Config())
	out, err := ec.DescribeSecurityGroups(d.ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{svc.Annotations[lbc.SecurityGroups]}})
	if err != nil {
		return "", err
	}
	inGroup := false
	for _, p := range out.SecurityGroups[0].IpPermissions {
		if aws.ToString(p.IpProtocol) != "udp" || aws.ToInt32(p.FromPort) > svc.Spec.Ports[0].Port || aws.ToInt32(p.ToPort) < svc.Spec.Ports[0].Port {
			continue
		}
		for _, r := range p.IpRanges {
			if netip.MustParsePrefix(aws.ToString(r.CidrIp)).Contains(exporter) {
				inGroup = true
			}
		}
	}
	if !inGroup {
		reasons = append(reasons, "the NLB's security group has no rule for it")
	}
	ps, ss, err := calicopolicy.Load(d.ctx, d.kube, client.MatchingLabels{annotations.OwnerNamespace: "telemetry", annotations.OwnerName: "flows"})
	if err != nil {
		return "", err
	}
	host, node := d.hostEndpoint()
	v, err := calicopolicy.Evaluate(ps, ss, host, calicopolicy.Packet{Src: exporter, Protocol: "UDP", DstPort: uint16(svc.Spec.Ports[0].NodePort), Dst: node}, true)
	if err != nil {
		return "", err
	}
	if !v.Admitted() {
		reasons = append(reasons, "Calico: "+v.By)
	}
	return strings.Join(reasons, "; "), nil
}

func (d *demo) outputs() (map[string]json.RawMessage, error) {
	res, err := d.tf.Run(d.ctx, d.dir, "output", "-json")
	if err != nil {
		return nil, err
	}
	var raw map[string]struct{ Value json.RawMessage }
	if err := json.Unmarshal(res.Output, &raw); err != nil {
		return nil, err
	}
	out := map[string]json.RawMessage{}
	for k, v := range raw {
		out[k] = v.Value
	}
	return out, nil
}

func (d *demo) showTopics() error {
	d.header("The sites' KafkaTopics (Strimzi) and the Kafka sizing they imply")
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(kubeapi.KafkaTopic("v1").GroupVersion().WithKind("KafkaTopicList"))
	if err := d.kube.List(d.ctx, list, client.InNamespace("kafka")); err != nil {
		return err
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].GetName() < list.Items[j].GetName() })
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "    TOPIC\tPARTITIONS\tREPLICAS\tRETENTION\tREADY")
	ready := 0
	for _, t := range list.Items {
		p, _, _ := unstructured.NestedInt64(t.Object, "spec", "partitions")
		r, _, _ := unstructured.NestedInt64(t.Object, "spec", "replicas")
		ms, _, _ := unstructured.NestedInt64(t.Object, "spec", "config", "retention.ms")
		status := "False"
		conds, _, _ := unstructured.NestedSlice(t.Object, "status", "conditions")
		for _, c := range conds {
			if m, ok := c.(map[string]any); ok && m["type"] == "Ready" {
				status = fmt.Sprint(m["status"])
			}
		}
		if status == "True" {
			ready++
		}
		fmt.Fprintf(w, "    %s\t%d\t%d\t%dh\t%s\n", t.GetName(), p, r, ms/3_600_000, status)
	}
	w.Flush()
	out, err := d.outputs()
	if err != nil {
		return err
	}
	var sizing struct {
		Brokers          int64 `json:"brokers"`
		TotalPartitions  int64 `json:"total_partitions"`
		StoragePerBroker int64 `json:"storage_per_broker_bytes"`
		NetworkIn        int64 `json:"network_in_bytes_per_sec"`
	}
	if err := json.Unmarshal(out["kafka_sizing"], &sizing); err != nil {
		return err
	}
	d.note("sizing: %d brokers, %d partitions, %.0f GB of disk per broker, %.1f MB/s into the cluster",
		sizing.Brokers, sizing.TotalPartitions, float64(sizing.StoragePerBroker)/1e9, float64(sizing.NetworkIn)/1e6)
	d.result("KafkaTopics", fmt.Sprintf("%d created, %d Ready", len(list.Items), ready))
	d.result("Kafka sizing", fmt.Sprintf("%d brokers, %d partitions, %.0f GB/broker", sizing.Brokers, sizing.TotalPartitions, float64(sizing.StoragePerBroker)/1e9))
	return nil
}

func (d *demo) showSecurityGroups() error {
	d.header("Trap 1: security-group rules. The NLB Service and its AWS footprint, bounded by ports")
	svc := &corev1.Service{}
	if err := d.waitFor(30*time.Second, func() (bool, error) {
		err := d.kube.Get(d.ctx, client.ObjectKey{Namespace: "telemetry", Name: "flows"}, svc)
		return err == nil && len(svc.Status.LoadBalancer.Ingress) > 0, client.IgnoreNotFound(err)
	}); err != nil {
		return err
	}
	d.note("Service telemetry/flows: class %s, %d source ranges, NLB %s", *svc.Spec.LoadBalancerClass,
		len(svc.Spec.LoadBalancerSourceRanges), svc.Status.LoadBalancer.Ingress[0].Hostname)
	d.note("annotations: %s=%s, %s=%s", lbc.ManageBackendSecurityGroupRule, svc.Annotations[lbc.ManageBackendSecurityGroupRule],
		lbc.SecurityGroups, svc.Annotations[lbc.SecurityGroups])
	out, err := d.outputs()
	if err != nil {
		return err
	}
	var rules struct {
		Created        int `json:"created"`
		PerSourceModel int `json:"per_source_model"`
	}
	if err := json.Unmarshal(out["security_group_rules"], &rules); err != nil {
		return err
	}
	d.note("rules created by telemetry_nlb_ingress: %d; the AWS Load Balancer Controller's per-source model: %d", rules.Created, rules.PerSourceModel)
	if err := d.showFence(svc); err != nil {
		return err
	}

	// Show the limit for real: write the per-source model's rules into a
	// fresh group of the emulated account, as the controller would.
	ec := ec2.NewFromConfig(d.plane.AWS.Config())
	sg, err := ec.CreateSecurityGroup(d.ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("demo-per-source-model"),
		Description: aws.String("what the AWS Load Balancer Controller would write"), VpcId: aws.String(d.plane.AWS.VPCID)})
	if err != nil {
		return err
	}
	written, refusal := 0, ""
	for _, cidr := range svc.Spec.LoadBalancerSourceRanges {
		for _, proto := range []string{"udp", "tcp", "udp"} { // sflow UDP, ipfix TCP and UDP
			_, err := ec.AuthorizeSecurityGroupIngress(d.ctx, &ec2.AuthorizeSecurityGroupIngressInput{GroupId: sg.GroupId,
				IpPermissions: []ec2types.IpPermission{{IpProtocol: aws.String(proto), FromPort: aws.Int32(int32(30000 + written)),
					ToPort: aws.Int32(int32(30000 + written)), IpRanges: []ec2types.IpRange{{CidrIp: aws.String(cidr)}}}}})
			if err != nil {
				refusal = err.Error()
				break
			}
			written++
		}
		if refusal != "" {
			break
		}
	}
	if refusal != "" {
		if i := strings.Index(refusal, "api error "); i >= 0 {
			refusal = refusal[i+len("api error "):]
		}
		d.note("per-source model written into a fresh group: AWS accepted %d rules, then refused rule %d: %s", written, written+1, refusal)
	}
	d.result("Security-group rules", fmt.Sprintf("%d created (per-source model: %d; AWS refuses past %d per group)",
		rules.Created, rules.PerSourceModel, written))
	return nil
}

// showFence reads, from moto and the API server, what the NLB's frontend
// group admits (the coarse cover) and the nlb-policy controller's
// acknowledgement, and fails when either is not what it should be.
func (d *demo) showFence(svc *corev1.Service) error {
	a, ok := ack.Of(svc)
	if !ok || !ack.Current(svc) {
		return fmt.Errorf("Service telemetry/flows carries no current acknowledgement of the nlb-policy controller (%q)", svc.Annotations[annotations.Enforced])
	}
	d.note("acknowledged by the nlb-policy controller at %s: %s enforces %s", a.Time.Format(time.TimeOnly), strings.Join(a.Policies, " and "), a.Digest)
	ec := ec2.NewFromConfig(d.plane.AWS.Config())
	out, err := ec.DescribeSecurityGroups(d.ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{svc.Annotations[lbc.SecurityGroups]}})
	if err != nil {
		return err
	}
	var b netipx.IPSetBuilder
	prefixes := map[string]bool{}
	for _, p := range out.SecurityGroups[0].IpPermissions {
		for _, r := range p.IpRanges {
			if aws.ToString(r.CidrIp) == "0.0.0.0/0" {
				return fmt.Errorf("the frontend group admits 0.0.0.0/0 on %s %d", aws.ToString(p.IpProtocol), aws.ToInt32(p.FromPort))
			}
			prefixes[aws.ToString(r.CidrIp)] = true
			b.AddPrefix(netip.MustParsePrefix(aws.ToString(r.CidrIp)))
		}
	}
	sources, errs := cidrset.Parse(svc.Spec.LoadBalancerSourceRanges)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	var admitted []netip.Prefix
	for p := range prefixes {
		admitted = append(admitted, netip.MustParsePrefix(p))
	}
	set, _ := b.IPSet()
	for _, p := range sources.Prefixes() {
		if !set.ContainsPrefix(p) {
			return fmt.Errorf("the frontend group does not admit the listed source %s", p)
		}
	}
	d.note("frontend group %s (read from moto): %d rules over a coarse cover of %d prefixes, admitting %s addresses beyond the %d sources; Calico refuses those at the nodes",
		aws.ToString(out.SecurityGroups[0].GroupId), awsnlb.InboundRules(out.SecurityGroups[0].IpPermissions), len(admitted), sources.Extra(admitted), sources.Len())
	d.result("Coarse cover (NLB group)", fmt.Sprintf("%d prefixes, %s addresses beyond the sources, never 0.0.0.0/0", len(admitted), sources.Extra(admitted)))
	return nil
}

func (d *demo) showPolicies() error {
	d.header("Trap 2: clean-up. Calico policies generated by the nlb-policy controller, checked packet by packet, then removed")
	svc := &corev1.Service{}
	var ps []*calicov3.GlobalNetworkPolicy
	var ss []*calicov3.GlobalNetworkSet
	owner := client.MatchingLabels{annotations.OwnerNamespace: "telemetry", annotations.OwnerName: "flows"}
	if err := d.waitFor(30*time.Second, func() (bool, error) {
		if err := d.kube.Get(d.ctx, client.ObjectKey{Namespace: "telemetry", Name: "flows"}, svc); err != nil {
			return false, err
		}
		var err error
		ps, ss, err = calicopolicy.Load(d.ctx, d.kube, owner)
		return len(ps) == 2 && svc.Spec.HealthCheckNodePort != 0, err
	}); err != nil {
		return err
	}
	for _, p := range ps {
		d.note("GlobalNetworkPolicy %s: order %v, preDNAT %v, %d rules", p.Name, *p.Spec.Order, p.Spec.PreDNAT, len(p.Spec.Ingress))
	}
	for _, s := range ss {
		d.note("GlobalNetworkSet %s: %d nets", s.Name, len(s.Spec.Nets))
	}
	listed := netip.MustParseAddr(strings.Split(svc.Spec.LoadBalancerSourceRanges[0], "/")[0]).Next()
	host, node := d.hostEndpoint()
	checks := []struct {
		what  string
		src   netip.Addr
		proto string
		port  int32
		want  calicopolicy.Verdict
	}{
		{"listed exporter -> sFlow NodePort", listed, "UDP", svc.Spec.Ports[0].NodePort, calicopolicy.Allowed},
		{"unlisted source -> sFlow NodePort", netip.MustParseAddr("203.0.113.99"), "UDP", svc.Spec.Ports[0].NodePort, calicopolicy.Denied},
		{"NLB health check -> health-check NodePort", netip.MustParseAddr("10.0.1.10"), "TCP", svc.Spec.HealthCheckNodePort, calicopolicy.Allowed},
		{"unlisted source -> health-check NodePort", netip.MustParseAddr("203.0.113.99"), "TCP", svc.Spec.HealthCheckNodePort, calicopolicy.Denied},
	}
	passed := 0
	for _, c := range checks {
		res, err := calicopolicy.Evaluate(ps, ss, host, calicopolicy.Packet{Src: c.src, Protocol: c.proto, DstPort: uint16(c.port), Dst: node}, true)
		if err != nil {
			return err
		}
		got, shown := res.Verdict, res.Verdict.String()
		if res.Admitted() {
			// Passed on to the cluster's own tiers, none of which objects here.
			got, shown = calicopolicy.Allowed, "passed on"
		}
		mark := "ok"
		if got != c.want {
			mark = "UNEXPECTED"
		} else {
			passed++
		}
		d.note("%-42s %-15s %s %d: %-9s (%s) %s", c.what, c.src, c.proto, c.port, shown, res.By, mark)
	}
	if passed != len(checks) {
		return fmt.Errorf("%d of %d packet checks disagree with what the policies should do", len(checks)-passed, len(checks))
	}
	frontend := svc.Annotations[lbc.SecurityGroups]
	// Clean-up: the Service goes (terraform destroy of the ingress).
	t0 := time.Now()
	if _, err := d.tf.Run(d.ctx, d.dir, append([]string{"destroy", "-auto-approve", "-no-color", "-input=false",
		"-target", "module.telemetry.telemetry_nlb_ingress.flows"}, d.vars...)...); err != nil {
		return err
	}
	if err := d.waitFor(30*time.Second, func() (bool, error) {
		left, _, err := calicopolicy.Load(d.ctx, d.kube, owner)
		return len(left) == 0, err
	}); err != nil {
		return err
	}
	// Nothing left behind in AWS: read from moto, not assumed.
	elb := elbv2.NewFromConfig(d.plane.AWS.Config())
	ec := ec2.NewFromConfig(d.plane.AWS.Config())
	var lbsLeft int
	var groupLeft bool
	if err := d.waitFor(60*time.Second, func() (bool, error) {
		lbs, err := elb.DescribeLoadBalancers(d.ctx, &elbv2.DescribeLoadBalancersInput{})
		if err != nil {
			return false, err
		}
		groups, err := ec.DescribeSecurityGroups(d.ctx, &ec2.DescribeSecurityGroupsInput{
			Filters: []ec2types.Filter{{Name: aws.String("group-id"), Values: []string{frontend}}}})
		if err != nil {
			return false, err
		}
		lbsLeft, groupLeft = len(lbs.LoadBalancers), len(groups.SecurityGroups) > 0
		return lbsLeft == 0 && !groupLeft, nil
	}); err != nil {
		return fmt.Errorf("left behind in AWS after destroy: %d load balancers, frontend group %s still there: %v", lbsLeft, frontend, groupLeft)
	}
	d.note("terraform destroy of the ingress: Service and both policies gone, and in moto no load balancer and no group %s, in %v", frontend, time.Since(t0).Round(100*time.Millisecond))
	d.result("Calico policies", fmt.Sprintf("%d policies + %d network set, %d/%d packet checks as expected, cleaned up on delete",
		2, len(ss), passed, len(checks)))
	return nil
}

func (d *demo) conntrack() error {
	d.header("Trap 3: stale UDP conntrack with the real kube-proxy, in network namespaces: an LB IP assigned late blackholes the flow, the agent restores it")
	// Never a skipped trap: the demo stops with the command that sets up
	// what is missing (`make demo` runs `make deps` first).
	if err := netlab.Check(); err != nil {
		return fmt.Errorf("trap 3 cannot run here: %w. As root, `make deps` installs the packages and `make demo` runs it", err)
	}
	lab, err := netlab.New("demo")
	if err != nil {
		return err
	}
	defer lab.Close()
	kp, err := d.plane.StartKubeProxy(d.ctx, lab.NSPath("node"), localplane.KubeProxyOptions{
		Mode: "iptables", Node: "demo-node", NodeIPs: []netip.Addr{netlab.NodeIP}})
	if err != nil {
		return err
	}
	defer kp.Stop()
	d.note("kube-proxy %s (%s mode) runs in the node's namespace against the API server", kp.Version, kp.Mode)
	kube, err := kubernetes.NewForConfig(d.plane.Config)
	if err != nil {
		return err
	}
	svc, err := kube.CoreV1().Services("telemetry").Create(d.ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "sflow"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Name: "flows", Protocol: corev1.ProtocolUDP, Port: 6343}}}},
		metav1.CreateOptions{})
	if err != nil {
		return err
	}
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "sflow-1", Labels: map[string]string{discoveryv1.LabelServiceName: "sflow"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("flows"), Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To(int32(16343))}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{netlab.PodIP.String()}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}}}
	if _, err := kube.DiscoveryV1().EndpointSlices("telemetry").Create(d.ctx, slice, metav1.CreateOptions{}); err != nil {
		return err
	}
	lb, pod := netip.AddrPortFrom(netlab.LBIP, 6343), netip.AddrPortFrom(netlab.PodIP, 16343)
	// kube-proxy has the endpoint before the flow starts: on a loaded machine
	// its first sync could otherwise see the endpoint and the LB IP together,
	// and the cleanup of a Service's first endpoint would take the flow's
	// entry with it (the case kube-proxy does handle).
	if err := d.waitFor(10*time.Second, func() (bool, error) {
		rules, err := kp.Rules()
		return strings.Contains(rules, pod.String()), err
	}); err != nil {
		return fmt.Errorf("kube-proxy wrote no rule for the collector pod: %w", err)
	}
	r, err := lab.Listen("pod", pod)
	if err != nil {
		return err
	}
	defer r.Close()
	sender, err := lab.Send(40000, lb, 10*time.Millisecond)
	if err != nil {
		return err
	}
	defer sender.Stop()
	d.note("a UDP Service with a ready collector pod; a switch already exports sFlow from 192.0.2.2:40000 to %s, 100 packets/s,", lb)
	d.note("  the address its load balancer (MetalLB, kube-vip) will announce, but has not written into the Service yet")
	time.Sleep(700 * time.Millisecond)
	out, _ := lab.Output("node", "conntrack", "-L", "-p", "udp", "--orig-dst", netlab.LBIP.String())
	d.note("node's entry, never NATed (the address is no Service's yet): %s", firstLine(out))
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: netlab.LBIP.String()}}
	if _, err := kube.CoreV1().Services("telemetry").UpdateStatus(d.ctx, svc, metav1.UpdateOptions{}); err != nil {
		return err
	}
	if err := d.waitFor(10*time.Second, func() (bool, error) {
		rules, err := kp.Rules()
		return strings.Contains(rules, netlab.LBIP.String()+"/32"), err
	}); err != nil {
		return fmt.Errorf("kube-proxy wrote no rule for the LB IP: %w", err)
	}
	d.note("the load balancer writes %s into the Service's status; kube-proxy writes its DNAT rule for it", netlab.LBIP)
	const window = 3 * time.Second
	time.Sleep(window)
	if n := r.Packets(); n != 0 {
		return fmt.Errorf("the pod received %d packets with kube-proxy alone: the flow was not blackholed, so this demo's claim is false", n)
	}
	d.note("%v later the pod has received 0 of %d packets: kube-proxy cleans conntrack only when endpoints change, so the", window, sender.Sent())
	d.note("  never-NATed entry keeps pinning the flow, for as long as the switch sends")

	ct := &conntrackagent.Netlink{NetNS: lab.NodeNS(), Workers: 2}
	reg := prometheus.NewRegistry()
	agent := conntrackagent.New(conntrackagent.Config{Client: kube, Conntrack: ct, NodeName: "demo-node", Period: time.Minute, Debounce: 100 * time.Millisecond,
		TombstoneTTL: time.Minute, Recheck: 200 * time.Millisecond, RecheckMax: time.Second, LocalAddrs: ct.LocalAddrs,
		IndexMax: conntrackagent.DefaultIndexMax, Metrics: conntrackagent.NewMetrics(reg), Log: logr.Discard()})
	t0 := time.Now()
	if !d.noAgent {
		actx, stop := context.WithCancel(d.ctx)
		done := make(chan error, 1)
		go func() { done <- agent.Run(actx) }()
		defer func() { stop(); <-done }()
	}
	wctx, cancel := context.WithTimeout(d.ctx, 10*time.Second)
	defer cancel()
	at, err := r.WaitPacket(wctx, t0)
	if err != nil {
		return fmt.Errorf("the flow was not restored by the agent: %w", err)
	}
	latency := at.Sub(t0).Round(time.Millisecond)
	deleted, err := metricread.Sum(reg, "telemetry_conntrack_entries_deleted_total")
	if err != nil {
		return err
	}
	if deleted < 1 {
		return fmt.Errorf("the flow came back, but the agent's metric says it deleted %v entries", deleted)
	}
	d.note("the conntrack agent starts: it deleted %v stale entry (its metric, from the kernel's answers); first packet at the pod %v later", deleted, latency)
	time.Sleep(300 * time.Millisecond)
	out, _ = lab.Output("node", "conntrack", "-L", "-p", "udp", "--orig-dst", netlab.LBIP.String())
	d.note("node's entry now, NATed to the pod: %s", firstLine(out))
	d.result("Stale conntrack", fmt.Sprintf("blackholed flow restored %v after the agent started (kube-proxy %s alone: 0 packets in %v)", latency, kp.Version, window))
	return nil
}

func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "udp") {
			return strings.Join(strings.Fields(l), " ")
		}
	}
	return "(none)"
}

func (d *demo) waitFor(timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		select {
		case <-d.ctx.Done():
			return d.ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (d *demo) printSummary(total time.Duration) {
	fmt.Printf("\n==> Summary (%v)\n", total.Round(time.Second))
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	for _, row := range d.summary {
		fmt.Fprintf(w, "    %s\t%s\n", row[0], row[1])
	}
	w.Flush()
	fmt.Println("\n    Everything started has been stopped and removed.")
}

// hostEndpoint is the first node's host endpoint as the policies see it (its
// labels and address), and that address, where NodePort traffic goes.
func (d *demo) hostEndpoint() (calicopolicy.Endpoint, netip.Addr) {
	inst := d.plane.AWS.Instances[0]
	node := netip.MustParseAddr(inst.PrivateIP)
	return calicopolicy.Endpoint{Host: true, Labels: map[string]string{"kubernetes.io/hostname": inst.NodeName}, Addrs: []netip.Addr{node}}, node
}
