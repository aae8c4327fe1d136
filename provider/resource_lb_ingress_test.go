package provider

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sync"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/nlbpolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
)

// addressedBeforeAcknowledged watches a Service (every incarnation of it)
// until the test ends, and returns what it saw of an address in its status
// before its first acknowledgement matching it (ack.Digest).
func addressedBeforeAcknowledged(t *testing.T, p *localplane.Plane, namespace, name string) func() []string {
	t.Helper()
	kube, err := kubernetes.NewForConfig(p.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := kube.CoreV1().Services(namespace).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var early []string
	acknowledged := map[types.UID]bool{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			svc, ok := ev.Object.(*corev1.Service)
			if !ok {
				continue
			}
			if a, ok := ack.Of(svc); ok && a.Digest == ack.Digest(svc) {
				acknowledged[svc.UID] = true
			}
			if len(svc.Status.LoadBalancer.Ingress) > 0 && !acknowledged[svc.UID] {
				mu.Lock()
				early = append(early, fmt.Sprintf("%s (uid %s) at resourceVersion %s", svc.Status.LoadBalancer.Ingress[0].IP, svc.UID, svc.ResourceVersion))
				mu.Unlock()
			}
		}
	}()
	stop := sync.OnceFunc(func() { w.Stop(); cancel(); <-done })
	t.Cleanup(stop)
	return func() []string {
		stop()
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(early)
	}
}

func lbIngressConfig(p *localplane.Plane, sources, extra string) string {
	return providerConfig(p) + fmt.Sprintf(`
resource "telemetry_lb_ingress" "flows" {
  name      = "flows"
  namespace = "baremetal"
  kind      = "metallb"
  selector  = { app = "sfacctd" }
  ports = [
    { name = "sflow", protocol = "UDP", port = 6343 },
    { name = "ipfix", protocol = "TCP_UDP", port = 4739, target_port = 4740 },
  ]
  allowed_sources = %s
  address_pool    = "exporters"
%s
}
`, sources, extra)
}

// TestAccLBIngressMetalLB: telemetry_lb_ingress through the real CLI, the
// real nlb-policy controller and real MetalLB (its controller allocating
// from a pool, its speaker in a lab namespace): the apply returns once the
// controller acknowledges the Service and MetalLB gave it an address of each
// family of its sources, with no NodePorts and the NetworkPolicy in place;
// imported, it reads back the same (the kind from MetalLB's annotation);
// sources edited in place stay acknowledged, and dropping the IPv6 ones
// replaces the Service (the API server keeps a Service's first family, so
// only a Service of IPv4 alone leaves no family open); a setting of another
// kind is refused at plan time; destroyed, the Service and its policy are
// gone. Through all of it, MetalLB gives a Service no address (so its
// speaker announces none) before the controller has acknowledged it: there
// is no cloud firewall in front of it.
func TestAccLBIngressMetalLB(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	p, c := testPlaneClient(t)
	ctx := context.Background()
	ensureNamespaces(t, c, "baremetal")
	startNLBPolicy(t, p)
	startMetalLB(t, p, c, "plb", netip.MustParsePrefix("192.0.2.100/32"), netip.MustParsePrefix("2001:db8:2::100/128"))
	early := addressedBeforeAcknowledged(t, p, "baremetal", "flows")
	defer func() {
		if e := early(); len(e) > 0 {
			t.Errorf("MetalLB gave the Service an address before the controller acknowledged it: %v", e)
		}
	}()
	addr := "telemetry_lb_ingress.flows"
	svcKey := client.ObjectKey{Namespace: "baremetal", Name: "flows"}
	npKey := client.ObjectKey{Namespace: "baremetal", Name: nlbpolicy.NetworkPolicyName("baremetal", "flows")}
	cluster := func(families ...corev1.IPFamily) resource.TestCheckFunc {
		return func(*terraform.State) error {
			svc := &corev1.Service{}
			if err := c.Get(ctx, svcKey, svc); err != nil {
				return err
			}
			if a := svc.Spec.AllocateLoadBalancerNodePorts; a == nil || *a || slices.ContainsFunc(svc.Spec.Ports,
				func(p corev1.ServicePort) bool { return p.NodePort != 0 }) {
				return fmt.Errorf("the Service has NodePorts: %v", svc.Spec.Ports)
			}
			if !slices.Equal(svc.Spec.IPFamilies, families) {
				return fmt.Errorf("families %v, want %v", svc.Spec.IPFamilies, families)
			}
			return c.Get(ctx, npKey, &networkingv1.NetworkPolicy{})
		}
	}
	enforced := statecheck.ExpectKnownValue(addr, tfjsonpath.New("policy_enforced"), knownvalue.Bool(true))
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		CheckDestroy: func(*terraform.State) error {
			if err := c.Get(ctx, svcKey, &corev1.Service{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("the Service after destroy: %v", err)
			}
			if err := c.Get(ctx, npKey, &networkingv1.NetworkPolicy{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("the NetworkPolicy after destroy: %v", err)
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				Config: lbIngressConfig(p, `["192.0.2.0/24", "2001:db8:2::/64"]`, ""),
				ConfigStateChecks: []statecheck.StateCheck{enforced,
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("load_balancer_addresses"), knownvalue.ListExact([]knownvalue.Check{
						knownvalue.StringExact("192.0.2.100"), knownvalue.StringExact("2001:db8:2::100")})),
				},
				Check: cluster(corev1.IPv4Protocol, corev1.IPv6Protocol),
			},
			{ResourceName: addr, ImportState: true, ImportStateId: "baremetal/flows", ImportStateVerify: true},
			{
				Config:            lbIngressConfig(p, `["192.0.2.0/24", "198.51.100.0/24", "2001:db8:2::/64"]`, ""),
				ConfigStateChecks: []statecheck.StateCheck{enforced},
				Check:             cluster(corev1.IPv4Protocol, corev1.IPv6Protocol),
			},
			{
				Config:      lbIngressConfig(p, `["192.0.2.0/24"]`, "  internal = true"),
				ExpectError: regexp.MustCompile(`internal is for kind "gke"`),
			},
			{
				Config: lbIngressConfig(p, `["2001:db8:2::/64"]`, ""),
				ConfigStateChecks: []statecheck.StateCheck{enforced,
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("load_balancer_addresses"), knownvalue.ListExact([]knownvalue.Check{
						knownvalue.StringExact("2001:db8:2::100")})),
				},
				Check: cluster(corev1.IPv6Protocol),
			},
		},
	})
}

// TestAccLBIngressHeldUntilAcknowledged: with no nlb-policy controller to
// acknowledge it, a MetalLB ingress's apply fails at its enforcement
// timeout, saying why, and the Service it wrote stays held: in a pool no
// pool can be, without an address (MetalLB has announced nothing); once the
// controller runs, the next apply releases it and MetalLB gives it its
// address.
func TestAccLBIngressHeldUntilAcknowledged(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	p, c := testPlaneClient(t)
	ctx := context.Background()
	ensureNamespaces(t, c, "baremetal")
	startMetalLB(t, p, c, "phld", netip.MustParsePrefix("192.0.2.100/32"))
	svcKey := client.ObjectKey{Namespace: "baremetal", Name: "flows"}
	config := lbIngressConfig(p, `["192.0.2.0/24"]`, `  enforcement_timeout = "5s"`)
	// With the controller: its grace (5 s for the networkpolicy backend) and its start.
	patient := lbIngressConfig(p, `["192.0.2.0/24"]`, `  enforcement_timeout = "1m"`)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		Steps: []resource.TestStep{
			{
				Config:      config,
				ExpectError: regexp.MustCompile(`(?s)stays without an address.*next apply releases it`),
			},
			{
				PreConfig: func() {
					svc := &corev1.Service{}
					if err := c.Get(ctx, svcKey, svc); err != nil {
						t.Fatal(err)
					}
					if !stillHeld(svc) || len(svc.Status.LoadBalancer.Ingress) != 0 {
						t.Fatalf("unacknowledged, the Service is in pool %q with addresses %v: want it held, without an address",
							svc.Annotations[metalLBPool], svc.Status.LoadBalancer.Ingress)
					}
					startNLBPolicy(t, p)
				},
				Config: patient,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("telemetry_lb_ingress.flows", tfjsonpath.New("policy_enforced"), knownvalue.Bool(true)),
					statecheck.ExpectKnownValue("telemetry_lb_ingress.flows", tfjsonpath.New("load_balancer_addresses"),
						knownvalue.ListExact([]knownvalue.Check{knownvalue.StringExact("192.0.2.100")})),
				},
			},
		},
	})
}
