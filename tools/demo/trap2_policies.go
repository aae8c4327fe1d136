package main

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/calicopolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/netpolicy"
)

// Trap 2: the Calico policies the nlb-policy controller generates, checked packet by packet, and their clean-up.

func (d *demo) showPolicies() error {
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
	npChecks, err := d.switchToNetworkPolicy()
	if err != nil {
		return err
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
		if err != nil {
			return false, err
		}
		var nps networkingv1.NetworkPolicyList
		err = d.kube.List(d.ctx, &nps, client.InNamespace("telemetry"), owner)
		return len(left) == 0 && len(nps.Items) == 0, err
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
	d.note("terraform destroy of the ingress: Service and its policy gone, and in moto no load balancer and no group %s, in %v", frontend, time.Since(t0).Round(100*time.Millisecond))
	d.result("Calico policies", fmt.Sprintf("%d policies + %d network set, %d/%d packet checks as expected, cleaned up on delete",
		2, len(ss), passed, len(checks)))
	d.result("NetworkPolicy backend", fmt.Sprintf("switched by policy_backend, 1 NetworkPolicy, %s, Calico's policies gone", npChecks))
	return nil
}

// hostEndpoint is the first node's host endpoint as the policies see it (its
// labels and address), and that address, where NodePort traffic goes.
func (d *demo) hostEndpoint() (calicopolicy.Endpoint, netip.Addr) {
	inst := d.plane.AWS.Instances[0]
	node := netip.MustParseAddr(inst.PrivateIP)
	return calicopolicy.Endpoint{Host: true, Labels: map[string]string{"kubernetes.io/hostname": inst.NodeName}, Addrs: []netip.Addr{node}}, node
}

// switchToNetworkPolicy applies the same configuration with policy_backend =
// "networkpolicy": the controller writes one Kubernetes NetworkPolicy for the
// Service (what a cluster without Calico enforces), acknowledges it, then
// removes its Calico policies; the policy is checked packet by packet with
// internal/netpolicy, and the plan is empty. It returns the checks' summary.
func (d *demo) switchToNetworkPolicy() (string, error) {
	vars := append(slices.Clone(d.vars), "-var", "policy_backend=networkpolicy")
	res, err := d.tf.Run(d.ctx, d.dir, append([]string{"apply", "-auto-approve", "-no-color", "-input=false"}, vars...)...)
	if err != nil {
		return "", fmt.Errorf("terraform apply with policy_backend = networkpolicy: %w\n%s", err, res.Output)
	}
	owner := client.MatchingLabels{annotations.OwnerNamespace: "telemetry", annotations.OwnerName: "flows"}
	var nps networkingv1.NetworkPolicyList
	if err := d.kube.List(d.ctx, &nps, client.InNamespace("telemetry"), owner); err != nil {
		return "", err
	}
	left, _, err := calicopolicy.Load(d.ctx, d.kube, owner)
	if err != nil {
		return "", err
	}
	if len(nps.Items) != 1 || len(left) != 0 {
		return "", fmt.Errorf("after the switch: %d NetworkPolicies and %d Calico policies, want 1 and 0", len(nps.Items), len(left))
	}
	np := nps.Items[0]
	svc := &corev1.Service{}
	if err := d.kube.Get(d.ctx, client.ObjectKey{Namespace: "telemetry", Name: "flows"}, svc); err != nil {
		return "", err
	}
	d.note("terraform apply with policy_backend = \"networkpolicy\" (%v): NetworkPolicy %s, %d rules, Calico's policies removed once it was acknowledged",
		res.Duration.Round(100*time.Millisecond), np.Name, len(np.Spec.Ingress))
	listed := netip.MustParseAddr(strings.Split(svc.Spec.LoadBalancerSourceRanges[0], "/")[0]).Next()
	target := uint16(svc.Spec.Ports[0].TargetPort.IntValue())
	pod := netpolicy.Pod{Namespace: "telemetry", Labels: svc.Spec.Selector}
	checks := []struct {
		what  string
		p     netpolicy.Packet
		allow bool
	}{
		{"listed exporter -> collector pod, sFlow", netpolicy.Packet{Src: listed, Protocol: corev1.ProtocolUDP, Port: target}, true},
		{"unlisted source -> collector pod, sFlow", netpolicy.Packet{Src: netip.MustParseAddr("203.0.113.99"), Protocol: corev1.ProtocolUDP, Port: target}, false},
		{"anyone -> collector pod, metrics (9100)", netpolicy.Packet{Src: netip.MustParseAddr("203.0.113.99"), Protocol: corev1.ProtocolTCP, Port: 9100}, true},
	}
	passed := 0
	for _, c := range checks {
		v := netpolicy.Evaluate(nps.Items, pod, c.p)
		mark := "ok"
		if v.Allowed != c.allow {
			mark = "UNEXPECTED"
		} else {
			passed++
		}
		d.note("%-42s %-15s %s %d: %s %s", c.what, c.p.Src, c.p.Protocol, c.p.Port, v, mark)
	}
	if passed != len(checks) {
		return "", fmt.Errorf("%d of %d packet checks of the NetworkPolicy disagree with what it should do", len(checks)-passed, len(checks))
	}
	plan, err := d.tf.Run(d.ctx, d.dir, append([]string{"plan", "-detailed-exitcode", "-no-color", "-input=false"}, vars...)...)
	if err != nil {
		return "", err
	}
	if plan.ExitCode != 0 {
		return "", fmt.Errorf("the plan after the switch is not empty:\n%s", plan.Output)
	}
	d.vars = vars
	return fmt.Sprintf("%d/%d packet checks as expected, plan empty", passed, len(checks)), nil
}
