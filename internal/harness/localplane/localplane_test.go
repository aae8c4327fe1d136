package localplane_test

import (
	"context"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	"github.com/projectcalico/api/pkg/lib/numorstring"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/netlab"
)

func TestPlane(t *testing.T) {
	p := localplane.New(t, localplane.Options{Nodes: 3})
	ctx := context.Background()
	c, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}

	// First, before anything else lists or creates: a plane is handed over
	// warm. Each custom resource lists from its watch cache at once (a cold
	// cache answers 429, which client-go would retry after a second: asked
	// here with no retry), and no CRD is still within the API server's hold
	// on creates (its Established time, in whole seconds, plus 2 s).
	t.Run("handed over warm", func(t *testing.T) {
		cs := apiextensionsclient.NewForConfigOrDie(p.Config)
		rc := cs.Discovery().RESTClient() // a bare client: paths as given
		crds, err := cs.ApiextensionsV1().CustomResourceDefinitions().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(crds.Items) < 20 {
			t.Fatalf("%d CRDs installed, want Calico's and Strimzi's", len(crds.Items))
		}
		for _, crd := range crds.Items {
			v := crd.Spec.Versions[0].Name
			path := "/apis/" + crd.Spec.Group + "/" + v + "/" + crd.Spec.Names.Plural
			if err := rc.Get().AbsPath(path).Param("resourceVersion", "0").MaxRetries(0).Do(ctx).Error(); err != nil {
				t.Errorf("listing %s from its watch cache: %v", crd.Name, err)
			}
			for _, cond := range crd.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && time.Until(cond.LastTransitionTime.Add(2*time.Second)) > 0 {
					t.Errorf("%s was established at %s: its creates are still held", crd.Name, cond.LastTransitionTime)
				}
			}
		}
	})

	t.Run("GlobalNetworkPolicy is cluster-scoped and round-trips", func(t *testing.T) {
		order := 100.0
		gnp := &calicov3.GlobalNetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "nlb-default-flows-allow"},
			Spec: calicov3.GlobalNetworkPolicySpec{
				Order: &order, Selector: "has(kubernetes-host)", PreDNAT: true, ApplyOnForward: true,
				Types: []calicov3.PolicyType{calicov3.PolicyTypeIngress},
				Ingress: []calicov3.Rule{{
					Action: calicov3.Allow, Protocol: protocol("UDP"),
					Source:      calicov3.EntityRule{Nets: []string{"192.0.2.0/24"}},
					Destination: calicov3.EntityRule{Ports: []numorstring.Port{numorstring.SinglePort(30000)}},
				}},
			},
		}
		if err := c.Create(ctx, gnp); err != nil {
			t.Fatalf("create GlobalNetworkPolicy: %v", err)
		}
		got := &calicov3.GlobalNetworkPolicy{}
		if err := c.Get(ctx, client.ObjectKey{Name: gnp.Name}, got); err != nil {
			t.Fatal(err)
		}
		if got.Namespace != "" || !got.Spec.PreDNAT || got.Spec.Ingress[0].Source.Nets[0] != "192.0.2.0/24" {
			t.Fatalf("policy did not round-trip: %+v", got.Spec)
		}
		set := &calicov3.GlobalNetworkSet{ObjectMeta: metav1.ObjectMeta{Name: "exporters"},
			Spec: calicov3.GlobalNetworkSetSpec{Nets: []string{"198.51.100.0/24"}}}
		if err := c.Create(ctx, set); err != nil {
			t.Fatalf("create GlobalNetworkSet: %v", err)
		}
	})

	t.Run("KafkaTopic is served as v1 and v1beta2 and validated", func(t *testing.T) {
		for _, version := range []string{"v1", "v1beta2"} {
			topic := &unstructured.Unstructured{}
			topic.SetGroupVersionKind(schema.GroupVersionKind{Group: "kafka.strimzi.io", Version: version, Kind: "KafkaTopic"})
			topic.SetNamespace("default")
			topic.SetName("sfacctd-flows-" + version)
			topic.SetLabels(map[string]string{"strimzi.io/cluster": "telemetry"})
			topic.Object["spec"] = map[string]any{"partitions": int64(6), "replicas": int64(3),
				"config": map[string]any{"retention.ms": "86400000"}}
			if err := c.Create(ctx, topic); err != nil {
				t.Fatalf("create KafkaTopic %s: %v", version, err)
			}
		}
		bad := &unstructured.Unstructured{}
		bad.SetGroupVersionKind(schema.GroupVersionKind{Group: "kafka.strimzi.io", Version: "v1", Kind: "KafkaTopic"})
		bad.SetNamespace("default")
		bad.SetName("zero-partitions")
		bad.Object["spec"] = map[string]any{"partitions": int64(0), "replicas": int64(3)}
		if err := c.Create(ctx, bad); !apierrors.IsInvalid(err) {
			t.Fatalf("partitions 0 must be rejected by the schema, got %v", err)
		}
	})

	t.Run("AWS account is seeded in moto and matches the Nodes", func(t *testing.T) {
		ec := ec2.NewFromConfig(p.AWS.Config())
		subnets, err := ec.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{
			{Name: aws.String("vpc-id"), Values: []string{p.AWS.VPCID}},
			{Name: aws.String("tag:kubernetes.io/role/elb"), Values: []string{"1"}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		zones := map[string]bool{}
		for _, s := range subnets.Subnets {
			zones[aws.ToString(s.AvailabilityZone)] = true
		}
		if len(subnets.Subnets) != 3 || len(zones) < 2 {
			t.Fatalf("want 3 tagged subnets over >= 2 zones, got %d over %v", len(subnets.Subnets), zones)
		}
		sgs, err := ec.DescribeSecurityGroups(ctx, &ec2.DescribeSecurityGroupsInput{GroupIds: []string{p.AWS.NodeSecurityGroupID}})
		if err != nil || len(sgs.SecurityGroups) != 1 || aws.ToString(sgs.SecurityGroups[0].VpcId) != p.AWS.VPCID {
			t.Fatalf("node security group not found in the VPC: %v %+v", err, sgs)
		}
		var nodes corev1.NodeList
		if err := c.List(ctx, &nodes); err != nil {
			t.Fatal(err)
		}
		if len(nodes.Items) != 3 {
			t.Fatalf("want 3 Nodes, got %d", len(nodes.Items))
		}
		for i, inst := range p.AWS.Instances {
			out, err := ec.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{inst.ID}})
			if err != nil {
				t.Fatal(err)
			}
			got := out.Reservations[0].Instances[0]
			if aws.ToString(got.PrivateIpAddress) != inst.PrivateIP || aws.ToString(got.SecurityGroups[0].GroupId) != p.AWS.NodeSecurityGroupID {
				t.Errorf("instance %d does not match the seed: %+v", i, got)
			}
			node := &corev1.Node{}
			if err := c.Get(ctx, client.ObjectKey{Name: inst.NodeName}, node); err != nil {
				t.Fatal(err)
			}
			if node.Spec.ProviderID != inst.ProviderID || node.Status.Addresses[0].Address != inst.PrivateIP {
				t.Errorf("Node %s does not match instance %s: %+v", node.Name, inst.ID, node)
			}
		}
	})

	t.Run("kubeconfig file reaches the API server", func(t *testing.T) {
		cfg, err := clientcmd.BuildConfigFromFlags("", p.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		kc, err := client.New(cfg, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := kc.Get(ctx, client.ObjectKey{Name: "default"}, &corev1.Namespace{}); err != nil {
			t.Fatalf("kubeconfig client: %v", err)
		}
	})
}

// TestMetalLBStartsFromItsOwnConfiguration: a test that starts MetalLB on
// a plane an earlier test ran MetalLB on (the pools share planes) gets the
// pool it asks for, not the earlier test's pool of the same name: real
// MetalLB gives a dual-stack Service an address of each family of the new
// pool. (It failed a provider test in CI: the earlier pool, IPv4 alone, was
// kept, and MetalLB gave the dual-stack Service nothing.)
func TestMetalLBStartsFromItsOwnConfiguration(t *testing.T) {
	t.Parallel()
	p := localplane.New(t, localplane.Options{NoAWS: true})
	ctx := context.Background()
	c, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	lab := netlab.ForTest(t, "lpmlb")
	node := "lpmlb-node"
	if err := c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}); err != nil {
		t.Fatal(err)
	}
	v4, v6 := netip.MustParsePrefix("192.0.2.100/32"), netip.MustParsePrefix("2001:db8:2::100/128")
	// The earlier test: a pool of the same name, of other addresses, and a
	// pool of another name overlapping the next one's (MetalLB refuses a
	// configuration whose pools overlap).
	earlier, err := p.StartMetalLB(ctx, lab.NSPath("node"), localplane.MetalLBOptions{Node: node})
	if err != nil {
		t.Fatal(err)
	}
	if err := earlier.Pool(ctx, c, "exporters", netip.MustParsePrefix("198.19.255.100/32")); err != nil {
		t.Fatal(err)
	}
	if err := earlier.Pool(ctx, c, "other", v6); err != nil {
		t.Fatal(err)
	}
	earlier.Stop()

	mlb, err := p.StartMetalLB(ctx, lab.NSPath("node"), localplane.MetalLBOptions{Node: node})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mlb.Stop)
	if err := mlb.Pool(ctx, c, "exporters", v4, v6); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lpmlb"}}); err != nil {
		t.Fatal(err)
	}
	dual := corev1.IPFamilyPolicyRequireDualStack
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "lpmlb", Name: "flows",
			Annotations: map[string]string{localplane.PoolAnnotation: "exporters"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, IPFamilyPolicy: &dual,
			AllocateLoadBalancerNodePorts: aws.Bool(false), Selector: map[string]string{"app": "sfacctd"},
			Ports: []corev1.ServicePort{{Name: "sflow", Protocol: corev1.ProtocolUDP, Port: 6343}}},
	}
	if err := c.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	want := []string{v4.Addr().String(), v6.Addr().String()}
	var got []string
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(svc), svc); err != nil {
			return false, err
		}
		got = nil
		for _, in := range svc.Status.LoadBalancer.Ingress {
			got = append(got, in.IP)
		}
		slices.Sort(got)
		return slices.Equal(got, want), nil
	}); err != nil {
		t.Fatalf("MetalLB gave the Service %v, want %v from the pool it was given (%v)\n%s", got, want, err, mlb.LogTail(6))
	}
}

func TestStopRemovesEverything(t *testing.T) {
	p, err := localplane.Start(context.Background(), localplane.Options{Nodes: 1})
	if err != nil {
		t.Fatal(err)
	}
	dir, endpoint := p.Dir, p.AWS.Endpoint
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("plane folder %s still exists", dir)
	}
	ec := ec2.NewFromConfig(p.AWS.Config(), func(o *ec2.Options) { o.RetryMaxAttempts = 1 })
	if _, err := ec.DescribeVpcs(context.Background(), &ec2.DescribeVpcsInput{}); err == nil {
		t.Errorf("moto at %s still answers after Stop", endpoint)
	}
}

func TestMissingBinariesSayHowToBuild(t *testing.T) {
	t.Setenv("KUBEBUILDER_ASSETS", t.TempDir())
	_, err := localplane.Start(context.Background(), localplane.Options{NoAWS: true})
	if err == nil || !strings.Contains(err.Error(), "make controlplane") {
		t.Fatalf("want an error naming `make controlplane`, got %v", err)
	}
}

func protocol(name string) *numorstring.Protocol {
	p := numorstring.ProtocolFromString(name)
	return &p
}
