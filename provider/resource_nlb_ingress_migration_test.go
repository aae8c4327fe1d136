package provider

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	elbv2 "github.com/aws/aws-sdk-go-v2/service/elasticloadbalancingv2"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/awsnlb"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/awsfence"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

// migrationMode is one of the LBC's two modes a running NLB Service can be
// in when a team adopts the product.
type migrationMode struct {
	name, namespace, labPrefix string
	lbc                        localplane.LBCOptions
	// byAnnotation: the Service names the LBC by the aws-load-balancer-type
	// annotation, as Services made before loadBalancerClass do (the class
	// cannot be added to a running LoadBalancer Service).
	byAnnotation bool
	nlbSG        string // nlb_security_group in the configuration
}

// TestAccNLBIngressMigrateFromLBCRules: a running NLB Service whose 25
// sources on 2 UDP ports the real AWS Load Balancer Controller admits with
// one security-group rule each (50 per-source rules, near the 60 of a
// group), in its default mode and in its mode without NLB security groups,
// is imported into telemetry_nlb_ingress and migrated in place by one apply.
// Throughout, flows from two listed sources and two unlisted ones (one
// inside the coarse cover the migration opens, one outside it) run through
// the lab to real Felix in the node namespace, and every 100 ms the test
// reads the security groups on the NLB's path from moto: no listed packet
// may be lost and no sample may see a listed source refused by AWS; no
// unlisted packet may reach the collector while AWS admitted it. At the end
// the NLB is the same (ARN, DNS name), no per-source rule is left in the
// VPC, and the plan is empty.
func TestAccNLBIngressMigrateFromLBCRules(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	if err := netlab.Check(); err != nil {
		t.Fatal(err)
	}
	p, c := testPlaneClient(t)
	startNLBPolicy(t, p)
	for _, m := range []migrationMode{
		{name: "NLB security groups", namespace: "migrate-sg", labPrefix: "mgs", nlbSG: "true"},
		{name: "no NLB security groups", namespace: "migrate-nosg", labPrefix: "mgn", nlbSG: "false",
			lbc: localplane.LBCOptions{WithoutNLBSecurityGroups: true}, byAnnotation: true},
	} {
		t.Run(m.name, func(t *testing.T) { testMigration(t, p, c, m) })
	}
}

// migrationSources are 25 non-adjacent /32s, 192.0.2.2 to 192.0.2.50.
func migrationSources() []netip.Addr {
	var out []netip.Addr
	for i := 0; i < 25; i++ {
		out = append(out, netip.AddrFrom4([4]byte{192, 0, 2, byte(2 + 2*i)}))
	}
	return out
}

// ranges are the addresses as /32s.
func ranges(addrs []netip.Addr) []string {
	var out []string
	for _, a := range addrs {
		out = append(out, netip.PrefixFrom(a, a.BitLen()).String())
	}
	return out
}

// fenceSample is one reading of the AWS half of the path and of what the
// collector received so far, per source and port.
type fenceSample struct {
	at       time.Time
	groups   []string
	admits   map[netip.AddrPort]bool
	why      map[netip.AddrPort]string
	received map[netip.AddrPort]int64
	sent     map[netip.AddrPort]int64 // read after received: every datagram counted there is counted here
	perSrc   int
}

func testMigration(t *testing.T, p *localplane.Plane, c client.Client, m migrationMode) {
	ctx := context.Background()
	ensureNamespaces(t, c, m.namespace)
	lab, err := netlab.New(m.labPrefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lab.Close() })
	sources := migrationSources()
	listed := []netip.Addr{sources[0], sources[len(sources)-1]}
	// An unlisted source inside the coarse cover the migration opens (the
	// provider's own function, at its default size): Calico alone refuses it.
	set, _ := cidrset.Parse(ranges(sources))
	cover, _ := set.Cover(defaultCoverSize)
	var unlistedInCover netip.Addr
	for a := sources[0]; a.Less(sources[len(sources)-1]); a = a.Next() {
		if cover.Contains(a) && !set.Contains(a) {
			unlistedInCover = a
			break
		}
	}
	if !unlistedInCover.IsValid() {
		t.Fatalf("the coarse cover %v of the sources is exact: no unlisted source inside it to send from", cover.Strings())
	}
	unlistedOutside := netip.MustParseAddr("100.64.0.9")
	for _, a := range []netip.Addr{listed[1], unlistedInCover, unlistedOutside} {
		if err := lab.AddClientAddress(netip.PrefixFrom(a, 24)); err != nil {
			t.Fatal(err)
		}
	}
	lbcProc, err := p.StartLoadBalancerController(ctx, m.lbc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lbcProc.Stop)
	var nodes corev1.NodeList
	if err := c.List(ctx, &nodes); err != nil || len(nodes.Items) == 0 {
		t.Fatalf("no Node in the plane (%v)", err)
	}
	felix, err := p.StartFelix(ctx, lab.NSPath("node"), localplane.FelixNode{Name: nodes.Items[0].Name, IP: netlab.NodeIP})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(felix.Stop)

	// The Service as a team runs it today: the LBC writes a rule per source.
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: m.namespace, Name: "flows", Annotations: map[string]string{
			lbc.Scheme: lbc.SchemeInternetFacing, lbc.NLBTargetType: lbc.TargetInstance}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Selector: map[string]string{"app": "sfacctd"},
			LoadBalancerSourceRanges: ranges(sources), ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			Ports: []corev1.ServicePort{{Name: "sflow", Protocol: corev1.ProtocolUDP, Port: 6343},
				{Name: "ipfix", Protocol: corev1.ProtocolUDP, Port: 4739}}},
	}
	if m.byAnnotation {
		svc.Annotations[lbc.Type] = lbc.TypeExternal
	} else {
		svc.Spec.LoadBalancerClass = ptr.To(lbc.LoadBalancerClass)
	}
	if err := c.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	// A run that fails before Terraform owns the Service still removes it
	// (and, through the LBC's finalizer, its NLB) while the LBC runs.
	t.Cleanup(func() {
		if err := c.Delete(ctx, svc); err == nil {
			_ = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
				return apierrors.IsNotFound(c.Get(ctx, client.ObjectKeyFromObject(svc), &corev1.Service{})), nil
			})
		}
	})
	ec, elb := ec2.NewFromConfig(p.AWS.Config()), elbv2.NewFromConfig(p.AWS.Config())
	var lbARN, dnsName string
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(svc), svc); err != nil {
			return false, err
		}
		dnsName = awsnlb.Hostname(svc)
		return dnsName != "", nil
	})
	if err != nil {
		t.Fatalf("the LBC made no NLB for the Service: %v\n%s", err, lbcProc.LogTail(20))
	}
	if err := bindingsReconciled(ctx, c, m.namespace); err != nil {
		t.Fatalf("%v\n%s", err, lbcProc.LogTail(20))
	}
	lbs, err := elb.DescribeLoadBalancers(ctx, &elbv2.DescribeLoadBalancersInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, lb := range lbs.LoadBalancers {
		if aws.ToString(lb.DNSName) == dnsName {
			lbARN = aws.ToString(lb.LoadBalancerArn)
		}
	}
	// The LBC's rules: the sources' /32s, not described as the ingress's
	// own (its coarse cover keeps some /32s).
	isPerSource := func(pf netip.Prefix) bool { return pf.IsSingleIP() && slices.Contains(sources, pf.Addr()) }
	own := ruleOwner(m.namespace, "flows").description()
	before, groups, err := awsfence.PerSourceRules(ctx, ec, p.AWS.VPCID, own, isPerSource)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("before: the LBC admits the 25 sources with %d per-source rules in %v", before, groups)
	if before != 2*len(sources) {
		t.Fatalf("the LBC wrote %d per-source rules, want %d (25 sources x 2 ports)\n%s\n%s", before, 2*len(sources),
			awsfence.Describe(ctx, ec, p.AWS.NodeSecurityGroupID), lbcProc.LogTail(20))
	}

	if f, err := awsfence.Read(ctx, ec, elb, lbARN, p.AWS.NodeSecurityGroupID); err != nil {
		t.Fatal(err)
	} else if ok, why := f.Admits(listed[0], "udp", 6343, svc.Spec.Ports[0].NodePort); !ok {
		var groups []string
		for _, g := range append(f.LoadBalancerGroups, p.AWS.NodeSecurityGroupID) {
			groups = append(groups, awsfence.Describe(ctx, ec, g))
		}
		t.Fatalf("before the migration AWS refuses the listed %s: %s\n%s", listed[0], why, strings.Join(groups, ""))
	}

	// The flows: from each of the four sources to both ports, one datagram
	// every 20 ms, through the NodePorts to the collector.
	nodePorts := map[int32]int32{}
	for _, sp := range svc.Spec.Ports {
		nodePorts[sp.Port] = sp.NodePort
	}
	receivers := map[int32]*netlab.Receiver{}
	for port, nodePort := range nodePorts {
		collector := netip.AddrPortFrom(netlab.PodIP, uint16(port))
		if err := lab.DNATProto("udp", netip.AddrPortFrom(netlab.NodeIP, uint16(nodePort)), collector); err != nil {
			t.Fatal(err)
		}
		r, err := lab.Listen("pod", collector)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
		receivers[port] = r
	}
	all := append(slices.Clone(listed), unlistedInCover, unlistedOutside)
	var senders []*netlab.Sender
	sentBy := map[netip.AddrPort]*netlab.Sender{} // by source and listener port
	for i, src := range all {
		for port, nodePort := range nodePorts {
			s, err := lab.SendFrom(netip.AddrPortFrom(src, uint16(41000+i*10+int(port%10))),
				netip.AddrPortFrom(netlab.NodeIP, uint16(nodePort)), 20*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			senders = append(senders, s)
			sentBy[netip.AddrPortFrom(src, uint16(port))] = s
		}
	}
	stopSenders := sync.OnceFunc(func() {
		for _, s := range senders {
			s.Stop()
		}
	})
	t.Cleanup(stopSenders)

	// The sampler: the AWS half of the path and the collector's counts.
	var (
		mu       sync.Mutex
		samples  []fenceSample
		sampErr  error
		stopSamp = make(chan struct{})
		sampDone = make(chan struct{})
	)
	go func() {
		defer close(sampDone)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			s := fenceSample{admits: map[netip.AddrPort]bool{}, why: map[netip.AddrPort]string{}, received: map[netip.AddrPort]int64{}}
			// The counts first: a packet counted here passed AWS's half at
			// or before this reading of the groups.
			for key := range sentBy {
				s.received[key], _ = receivers[int32(key.Port())].From(key.Addr())
			}
			s.sent = map[netip.AddrPort]int64{}
			for key, snd := range sentBy {
				s.sent[key] = snd.Sent()
			}
			f, err := awsfence.Read(ctx, ec, elb, lbARN, p.AWS.NodeSecurityGroupID)
			if err == nil {
				s.perSrc, _, err = awsfence.PerSourceRules(ctx, ec, p.AWS.VPCID, own, isPerSource)
			}
			if err != nil {
				mu.Lock()
				sampErr = err
				mu.Unlock()
				return
			}
			s.at, s.groups = time.Now(), f.LoadBalancerGroups
			for key := range sentBy {
				port := int32(key.Port())
				s.admits[key], s.why[key] = f.Admits(key.Addr(), "udp", port, nodePorts[port])
			}
			mu.Lock()
			samples = append(samples, s)
			mu.Unlock()
			select {
			case <-stopSamp:
				return
			case <-tick.C:
			}
		}
	}()
	stopSampler := sync.OnceFunc(func() { close(stopSamp); <-sampDone })
	t.Cleanup(stopSampler)
	time.Sleep(2 * time.Second) // the flows before anything changes

	addr := "telemetry_nlb_ingress.flows"
	quoted := make([]string, len(sources))
	for i, r := range ranges(sources) {
		quoted[i] = fmt.Sprintf("%q", r)
	}
	cfg := providerConfig(p) + fmt.Sprintf(`
resource "telemetry_nlb_ingress" "flows" {
  name      = "flows"
  namespace = %q
  selector  = { app = "sfacctd" }
  ports = [
    { name = "sflow", protocol = "UDP", port = 6343 },
    { name = "ipfix", protocol = "UDP", port = 4739 },
  ]
  allowed_sources        = [%s]
  scheme                 = "internet-facing"
  nlb_security_group     = %s
  node_security_group_id = %q
  enforcement_timeout    = "1m"
}
`, m.namespace, strings.Join(quoted, ", "), m.nlbSG, p.AWS.NodeSecurityGroupID)
	check := "data.telemetry_lbc_services.check"
	checkCfg := providerConfig(p) + fmt.Sprintf(`
data "telemetry_lbc_services" "check" {
  namespace              = %q
  node_security_group_id = %q
}
`, m.namespace, p.AWS.NodeSecurityGroupID)
	var migrated time.Duration
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		CheckDestroy: func(*terraform.State) error {
			got := &corev1.Service{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(svc), got); !apierrors.IsNotFound(err) {
				return fmt.Errorf("Service left behind (%v)", err)
			}
			return leftInAWS(ctx, ec, p.AWS.NodeSecurityGroupID, m.namespace, "flows")
		},
		Steps: []resource.TestStep{
			// The read-only check first: the Service, its 50 per-source rules,
			// and how it migrates.
			{Config: checkCfg, Check: resource.ComposeTestCheckFunc(
				resource.TestCheckResourceAttr(check, "services.#", "1"),
				resource.TestCheckResourceAttr(check, "services.0.id", m.namespace+"/flows"),
				resource.TestCheckResourceAttr(check, "services.0.dns_name", dnsName),
				resource.TestCheckResourceAttr(check, "services.0.per_source_rules", "50"),
				resource.TestCheckResourceAttr(check, "services.0.migrated", "false"),
				resource.TestCheckResourceAttr(check, "services.0.migratable_in_place", "true"),
				resource.TestCheckResourceAttr(check, "services.0.nlb_security_group", m.nlbSG),
			)},
			{Config: cfg, ResourceName: addr, ImportState: true, ImportStateId: m.namespace + "/flows", ImportStatePersist: true},
			{
				Config: cfg,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				PreConfig: func() { migrated = -time.Duration(time.Now().UnixNano()) },
				Check: func(s *terraform.State) error {
					migrated += time.Duration(time.Now().UnixNano())
					attrs := s.RootModule().Resources[addr].Primary.Attributes
					time.Sleep(time.Second) // the flows after the apply
					stopSenders()
					time.Sleep(300 * time.Millisecond) // the last datagrams in flight
					stopSampler()
					final := map[netip.AddrPort]int64{}
					for key := range sentBy {
						final[key], _ = receivers[int32(key.Port())].From(key.Addr())
					}
					mu.Lock()
					defer mu.Unlock()
					if sampErr != nil {
						return fmt.Errorf("reading AWS during the migration: %w", sampErr)
					}
					if attrs["load_balancer_arn"] != lbARN || attrs["dns_name"] != dnsName {
						return fmt.Errorf("the NLB changed: %s (%s), was %s (%s)", attrs["load_balancer_arn"], attrs["dns_name"], lbARN, dnsName)
					}
					return judgeMigration(t, samples, sentBy, final, listed, unlistedInCover, migrated, attrs["frontend_security_group_id"])
				},
			},
			// And after it: migrated, no per-source rule left.
			{Config: cfg + checkCfg[len(providerConfig(p)):], Check: resource.ComposeTestCheckFunc(
				resource.TestCheckResourceAttr(check, "services.0.migrated", "true"),
				resource.TestCheckResourceAttr(check, "services.0.per_source_rules", "0"),
			)},
		},
	})
}

// judgeMigration checks the samples of a migration: listed sources admitted
// by AWS at every reading and every datagram of theirs delivered (final
// counts, read once the senders stopped); no
// datagram of an unlisted source delivered between two readings unless AWS
// refused it at both; at the end the NLB on the frontend group (or none), no
// per-source rule left, and the unlisted source inside the coarse cover
// admitted by AWS (so Calico is what refuses it).
func judgeMigration(t *testing.T, samples []fenceSample, sentBy map[netip.AddrPort]*netlab.Sender, final map[netip.AddrPort]int64, listed []netip.Addr,
	inCover netip.Addr, migrated time.Duration, frontend string) error {
	if len(samples) < 10 {
		return fmt.Errorf("only %d readings of AWS", len(samples))
	}
	var problems []string
	first, last := samples[0], samples[len(samples)-1]
	for key, s := range sentBy {
		isListed := slices.Contains(listed, key.Addr())
		if isListed {
			// Counted from the first reading: the lab's first datagrams of a
			// flow wait for neighbour resolution.
			delivered, sent := final[key]-first.received[key], s.Sent()-first.sent[key]
			if delivered < sent {
				problems = append(problems, fmt.Sprintf("listed %s: %d of %d datagrams delivered during the migration", key, delivered, sent))
			}
		}
		for i, smp := range samples {
			if isListed && !smp.admits[key] {
				problems = append(problems, fmt.Sprintf("listed %s refused by AWS at +%v: %s", key, smp.at.Sub(first.at).Round(time.Millisecond), smp.why[key]))
				break
			}
			if isListed || i == 0 {
				continue
			}
			prev := samples[i-1]
			if smp.received[key] > prev.received[key] && (prev.admits[key] || smp.admits[key]) {
				problems = append(problems, fmt.Sprintf("unlisted %s: %d datagrams delivered between +%v and +%v while AWS admitted it",
					key, smp.received[key]-prev.received[key], prev.at.Sub(first.at).Round(time.Millisecond), smp.at.Sub(first.at).Round(time.Millisecond)))
				break
			}
		}
	}
	// The timeline, from the readings.
	changed := first.at
	for _, smp := range samples {
		if !slices.Equal(smp.groups, first.groups) {
			changed = smp.at
			break
		}
	}
	gone := time.Time{}
	for _, smp := range samples {
		if smp.perSrc == 0 {
			gone = smp.at
			break
		}
	}
	t.Logf("NLB groups %v -> %v (switched at +%v); per-source rules %d -> %d (none from +%v); %d readings over %v; apply took %v",
		first.groups, last.groups, changed.Sub(first.at).Round(time.Millisecond), first.perSrc, last.perSrc,
		gone.Sub(first.at).Round(time.Millisecond), len(samples), last.at.Sub(first.at).Round(time.Millisecond), migrated.Round(time.Millisecond))
	for key, s := range sentBy {
		t.Logf("%s: sent %d, delivered %d (before the first reading: sent %d, delivered %d), admitted by AWS at the end: %v",
			key, s.Sent(), final[key], first.sent[key], first.received[key], last.admits[key])
	}
	if last.perSrc != 0 {
		problems = append(problems, fmt.Sprintf("%d per-source rules left in the VPC", last.perSrc))
	}
	if want := []string{frontend}; frontend == "" && len(last.groups) != 0 || frontend != "" && !slices.Equal(last.groups, want) {
		problems = append(problems, fmt.Sprintf("the NLB's groups are %v, want the frontend group %q", last.groups, frontend))
	}
	for key := range sentBy {
		if key.Addr() == inCover && !last.admits[key] {
			problems = append(problems, fmt.Sprintf("%s is outside the coarse cover at the end (%s): pick an unlisted source inside it, "+
				"so that the test shows Calico refusing it", key, last.why[key]))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("the migration did not hold:\n%s", strings.Join(problems, "\n"))
	}
	return nil
}

// TestAccNLBIngressMigrationKeepsTheNLB: an imported NLB that the LBC made
// without security groups cannot gain them, so a configuration asking for
// them (the default) is refused at plan time with the way to keep the NLB,
// before anything changes; and an ingress imported but never applied is
// destroyed cleanly (it made nothing in AWS: its destroy once failed on the
// empty node group of its state).
func TestAccNLBIngressMigrationKeepsTheNLB(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	p, c := testPlaneClient(t)
	ctx := context.Background()
	const namespace = "migrate-keep"
	ensureNamespaces(t, c, namespace)
	lbcProc, err := p.StartLoadBalancerController(ctx, localplane.LBCOptions{WithoutNLBSecurityGroups: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lbcProc.Stop)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "flows", Annotations: map[string]string{
			lbc.Scheme: lbc.SchemeInternetFacing, lbc.NLBTargetType: lbc.TargetInstance}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To(lbc.LoadBalancerClass),
			Selector: map[string]string{"app": "sfacctd"}, LoadBalancerSourceRanges: []string{"192.0.2.10/32"},
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			Ports:                 []corev1.ServicePort{{Name: "sflow", Protocol: corev1.ProtocolUDP, Port: 6343}}},
	}
	if err := c.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		err := c.Get(ctx, client.ObjectKeyFromObject(svc), svc)
		return err == nil && awsnlb.Hostname(svc) != "", err
	})
	if err != nil {
		t.Fatalf("the LBC made no NLB: %v\n%s", err, lbcProc.LogTail(20))
	}
	ec := ec2.NewFromConfig(p.AWS.Config())
	addr := "telemetry_nlb_ingress.flows"
	cfg := providerConfig(p) + fmt.Sprintf(`
resource "telemetry_nlb_ingress" "flows" {
  name                   = "flows"
  namespace              = %q
  selector               = { app = "sfacctd" }
  ports                  = [{ name = "sflow", protocol = "UDP", port = 6343 }]
  allowed_sources        = ["192.0.2.10/32"]
  scheme                 = "internet-facing"
  node_security_group_id = %q
}`, namespace, p.AWS.NodeSecurityGroupID)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		CheckDestroy: func(*terraform.State) error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(svc), &corev1.Service{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("Service left behind (%v)", err)
			}
			return leftInAWS(ctx, ec, p.AWS.NodeSecurityGroupID, namespace, "flows")
		},
		Steps: []resource.TestStep{
			{Config: providerConfig(p) + fmt.Sprintf(`
data "telemetry_lbc_services" "check" {
  namespace = %q
}`, namespace), Check: resource.ComposeTestCheckFunc(
				resource.TestCheckResourceAttr("data.telemetry_lbc_services.check", "services.0.migratable_in_place", "true"),
				resource.TestCheckResourceAttr("data.telemetry_lbc_services.check", "services.0.nlb_security_group", "false"),
				resource.TestCheckResourceAttr("data.telemetry_lbc_services.check", "services.0.per_source_rules", "1"),
			)},
			{Config: cfg, ResourceName: addr, ImportState: true, ImportStateId: namespace + "/flows", ImportStatePersist: true},
			{Config: cfg, PlanOnly: true, ExpectError: regexp.MustCompile(`(?s)cannot be migrated in place.*created without security.*set\s+nlb_security_group = false`)},
			{
				// Nothing changed: the Service still leaves its sources to the LBC.
				PreConfig: func() {
					got := &corev1.Service{}
					if err := c.Get(ctx, client.ObjectKeyFromObject(svc), got); err != nil || got.Annotations["telemetry-platform.io/nlb-policy"] != "" {
						t.Errorf("the refused plan changed the Service (%v): %v", err, got.Annotations)
					}
				},
				Config: cfg, PlanOnly: true, ExpectError: regexp.MustCompile(`cannot be migrated in place`),
			},
		},
	})
}
