package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"go4.org/netipx"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/awsnlb"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/calicopolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// Trap 1: the security-group rules of the NLB, bounded by ports, and what they admit.

func (d *demo) showSecurityGroups() error {
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
