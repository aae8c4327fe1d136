package nlbpolicy_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/telemetry-platform/terraform-provider-telemetry/controllers/nlbpolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/ack"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/calicopolicy"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/metricread"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/standin"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/lbc"
)

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard())
	os.Exit(m.Run())
}

// controller is a running nlb-policy controller against the plane.
type controller struct {
	registry *prometheus.Registry
	stop     func()
}

func startController(t *testing.T, p *localplane.Plane, manageAll bool) *controller {
	t.Helper()
	return startControllerAs(t, p, p.Config, manageAll, ctrl.Options{})
}

// startControllerAs runs the controller with the given credentials and
// manager options (leader election, for instance).
func startControllerAs(t *testing.T, p *localplane.Plane, cfg *rest.Config, manageAll bool, opts ctrl.Options) *controller {
	t.Helper()
	awsCfg := p.AWS.Config()
	return startControllerWith(t, p, cfg, manageAll, opts, &nlbpolicy.AWSSources{AWS: &awsCfg, TTL: time.Minute})
}

// startControllerWith runs the controller with the given AWS sources.
func startControllerWith(t *testing.T, p *localplane.Plane, cfg *rest.Config, manageAll bool, opts ctrl.Options, sources *nlbpolicy.AWSSources) *controller {
	t.Helper()
	return startControllerFull(t, p, cfg, manageAll, opts, sources, nlbpolicy.DefaultOptions())
}

// startControllerBackends runs the controller with its defaults but the
// policy backends given: the default first, then the others a Service may
// choose.
func startControllerBackends(t *testing.T, p *localplane.Plane, backends ...nlbpolicy.Backend) *controller {
	t.Helper()
	options := nlbpolicy.DefaultOptions()
	options.Backend, options.Backends = backends[0], backends
	awsCfg := p.AWS.Config()
	return startControllerFull(t, p, p.Config, false, ctrl.Options{}, &nlbpolicy.AWSSources{AWS: &awsCfg, TTL: time.Minute}, options)
}

func startControllerFull(t *testing.T, p *localplane.Plane, cfg *rest.Config, manageAll bool, opts ctrl.Options, sources *nlbpolicy.AWSSources,
	options nlbpolicy.Options) *controller {
	t.Helper()
	if err := p.CreateProductTier(context.Background()); err != nil {
		t.Fatal(err)
	}
	opts.Scheme = kubeapi.Scheme()
	opts.Metrics = metricsserver.Options{BindAddress: "0"}
	opts.Controller = config.Controller{SkipNameValidation: ptr.To(true)}
	mgr, err := ctrl.NewManager(cfg, nlbpolicy.WithCache(opts))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	_, err = nlbpolicy.Setup(mgr, nlbpolicy.Config{
		Options:       options,
		ManageAll:     manageAll,
		Sources:       sources,
		SweepInterval: time.Hour,
		Registry:      reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	c := &controller{registry: reg}
	c.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	}
	t.Cleanup(func() {
		if ctx.Err() == nil {
			c.stop()
		}
	})
	return c
}

func (c *controller) writes(t *testing.T) float64 {
	t.Helper()
	total := 0.0
	for _, v := range c.counts(t, "telemetry_nlbpolicy_api_writes_total") {
		total += v
	}
	return total
}

// counts reads a counter of the controller by its labels' values.
func (c *controller) counts(t *testing.T, name string) map[string]float64 {
	t.Helper()
	out, err := metricread.ByValues(c.registry, name, ",")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		ok, why := cond()
		if ok {
			return
		}
		last = why
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s: %s", what, last)
}

func service(ns, name string, mutate ...func(*corev1.Service)) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{
			annotations.NLBPolicy: annotations.Enabled, lbc.Scheme: lbc.SchemeInternetFacing,
			lbc.ManageBackendSecurityGroupRule: "false",
		}},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer, LoadBalancerClass: ptr.To(lbc.LoadBalancerClass),
			Selector:                 map[string]string{"app": "sfacctd"},
			ExternalTrafficPolicy:    corev1.ServiceExternalTrafficPolicyLocal,
			LoadBalancerSourceRanges: []string{"192.0.2.0/24"},
			Ports:                    []corev1.ServicePort{{Name: "sflow", Protocol: corev1.ProtocolUDP, Port: 6343}},
		},
	}
	for _, m := range mutate {
		m(svc)
	}
	return svc
}

func owned(t *testing.T, c client.Client, svc *corev1.Service) ([]*calicov3.GlobalNetworkPolicy, []*calicov3.GlobalNetworkSet) {
	t.Helper()
	ps, ss, err := calicopolicy.Load(context.Background(), c,
		client.MatchingLabels{annotations.OwnerNamespace: svc.Namespace, annotations.OwnerName: svc.Name})
	if err != nil {
		t.Fatal(err)
	}
	return ps, ss
}

// verdict evaluates what the cluster holds now for a packet to the node.
func verdict(t *testing.T, c client.Client, src string, protocol string, port int32) calicopolicy.Verdict {
	t.Helper()
	ps, ss, err := calicopolicy.Load(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	node := netip.MustParseAddr("10.0.0.4")
	host := calicopolicy.Endpoint{Host: true, Labels: map[string]string{"kubernetes.io/hostname": "ip-10-0-0-4.ec2.internal"}, Addrs: []netip.Addr{node}}
	res, err := calicopolicy.Evaluate(ps, ss, host, calicopolicy.Packet{Src: netip.MustParseAddr(src), Protocol: protocol, DstPort: uint16(port), Dst: node}, true)
	if err != nil {
		t.Fatal(err)
	}
	if res.PassedOn() {
		// The product passed it on; with no policy of the cluster's own,
		// normal processing admits it.
		return calicopolicy.Allowed
	}
	return res.Verdict
}

func get(t *testing.T, c client.Client, svc *corev1.Service) (*corev1.Service, bool) {
	t.Helper()
	got := &corev1.Service{}
	err := c.Get(context.Background(), client.ObjectKeyFromObject(svc), got)
	if apierrors.IsNotFound(err) {
		return nil, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return got, true
}

// planeWithNamespace is a plane with AWS in moto and the namespace
// telemetry.
func planeWithNamespace(t *testing.T) (*localplane.Plane, client.Client) {
	t.Helper()
	p := localplane.New(t, localplane.Options{})
	c, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "telemetry"}}); err != nil {
		t.Fatal(err)
	}
	return p, c
}

// planeWithNLBs is what most controller tests run against: a plane with
// AWS in moto, the namespace telemetry, and the LBC stand-in giving its
// Services their NLBs, until the test ends.
func planeWithNLBs(t *testing.T) (*localplane.Plane, client.Client) {
	t.Helper()
	p, c := planeWithNamespace(t)
	lbs := standin.StartLoadBalancerController(c, p.AWS.Config(), p.AWS.VPCID)
	t.Cleanup(lbs.Stop)
	return p, c
}

func TestController(t *testing.T) {
	t.Parallel() // on a plane of its own
	parent := t  // controllers started in subtests outlive them
	p := localplane.New(t, localplane.Options{})
	c, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "telemetry"}}); err != nil {
		t.Fatal(err)
	}
	lbs := standin.StartLoadBalancerController(c, p.AWS.Config(), p.AWS.VPCID)
	defer lbs.Stop()
	ctl := startController(t, p, false)

	svc := service("telemetry", "flows")
	if err := c.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}

	t.Run("create: policies from sources and the NLB's subnets, found through AWS", func(t *testing.T) {
		eventually(t, "health checks from the NLB's subnets allowed", func() (bool, string) {
			got, _ := get(t, c, svc)
			if got.Spec.HealthCheckNodePort == 0 {
				return false, "no health-check NodePort"
			}
			// 10.0.33.1 is in the NLB's subnet of us-east-1c (10.0.32.0/20).
			return verdict(t, c, "10.0.33.1", "TCP", got.Spec.HealthCheckNodePort) == calicopolicy.Allowed, "not yet"
		})
		// The Allow is written before the Deny behind it; the acknowledgement
		// comes once both are.
		eventually(t, "the acknowledgement", func() (bool, string) { got, ok := get(t, c, svc); return ok && ack.Current(got), "not yet" })
		got, _ := get(t, c, svc)
		if !slices.Contains(got.Finalizers, nlbpolicy.Finalizer) {
			t.Fatalf("finalizer missing: %v", got.Finalizers)
		}
		node, health := got.Spec.Ports[0].NodePort, got.Spec.HealthCheckNodePort
		for _, tc := range []struct {
			src, proto string
			port       int32
			want       calicopolicy.Verdict
		}{
			{"192.0.2.10", "UDP", node, calicopolicy.Allowed},
			{"203.0.113.10", "UDP", node, calicopolicy.Denied},
			{"10.0.33.1", "TCP", health, calicopolicy.Allowed}, // from the NLB subnet in us-east-1c
			{"203.0.113.10", "TCP", health, calicopolicy.Denied},
		} {
			if v := verdict(t, c, tc.src, tc.proto, tc.port); v != tc.want {
				t.Errorf("%s %s:%d = %v, want %v", tc.src, tc.proto, tc.port, v, tc.want)
			}
		}
	})

	t.Run("steady state makes no writes", func(t *testing.T) {
		// The acknowledgement is the last write of a change, --programming-grace after the policies.
		eventually(t, "the acknowledgement", func() (bool, string) { got, ok := get(t, c, svc); return ok && ack.Current(got), "not yet" })
		before := ctl.writes(t)
		update(t, c, svc, func(s *corev1.Service) { s.Annotations["unrelated"] = "touch" }) // reconciled again
		time.Sleep(2 * time.Second)
		if after := ctl.writes(t); after != before {
			t.Fatalf("%v writes after an unrelated change", after-before)
		}
	})

	t.Run("update: new sources are enforced", func(t *testing.T) {
		got := update(t, c, svc, func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = []string{"203.0.113.0/24"} })
		node := got.Spec.Ports[0].NodePort
		eventually(t, "new sources", func() (bool, string) {
			return verdict(t, c, "203.0.113.10", "UDP", node) == calicopolicy.Allowed &&
				verdict(t, c, "192.0.2.10", "UDP", node) == calicopolicy.Denied, "not yet"
		})
	})

	t.Run("a hand edit or deletion is restored", func(t *testing.T) {
		ps, _ := owned(t, c, svc)
		allow := ps[0]
		if !strings.HasSuffix(allow.Name, "-allow") {
			allow = ps[1]
		}
		allow.Spec.Ingress[0].Source.Nets = []string{"0.0.0.0/0"}
		if err := c.Update(ctx, allow); err != nil {
			t.Fatal(err)
		}
		node := func() int32 { got, _ := get(t, c, svc); return got.Spec.Ports[0].NodePort }()
		eventually(t, "edit reverted", func() (bool, string) {
			return verdict(t, c, "198.51.100.1", "UDP", node) == calicopolicy.Denied, "still open"
		})
		deny := ps[0]
		if deny.Name == allow.Name {
			deny = ps[1]
		}
		if err := c.Delete(ctx, deny); err != nil {
			t.Fatal(err)
		}
		eventually(t, "deletion restored", func() (bool, string) {
			ps, _ := owned(t, c, svc)
			return len(ps) == 2, fmt.Sprintf("%d policies", len(ps))
		})
	})

	t.Run("bad input: Event, valid part enforced, never widened", func(t *testing.T) {
		// The API server validates source ranges (spec and annotation); our own
		// annotations it does not.
		got := update(t, c, svc, func(s *corev1.Service) {
			s.Annotations[annotations.HealthCheckCIDRs] = "10.0.0.0/20,10.0.64.7/20,nonsense"
			s.Annotations[annotations.HostEndpointSelector] = "has(kubernetes.io/hostname"
		})
		eventually(t, "an InvalidInput Event", func() (bool, string) {
			var evs eventsv1.EventList
			if err := c.List(ctx, &evs, client.InNamespace("telemetry")); err != nil {
				return false, err.Error()
			}
			for _, e := range evs.Items {
				if e.Regarding.Name == "flows" && e.Reason == "InvalidInput" && strings.Contains(e.Note, "10.0.64.7/20") &&
					strings.Contains(e.Note, "host-endpoint-selector") {
					return true, ""
				}
			}
			return false, fmt.Sprintf("%d events", len(evs.Items))
		})
		health := got.Spec.HealthCheckNodePort
		eventually(t, "the valid health-check CIDR alone", func() (bool, string) {
			return verdict(t, c, "10.0.1.1", "TCP", health) == calicopolicy.Allowed &&
				verdict(t, c, "10.0.33.1", "TCP", health) == calicopolicy.Denied, "not yet"
		})
		if v := verdict(t, c, "10.0.64.7", "TCP", health); v != calicopolicy.Denied {
			t.Errorf("an invalid health-check CIDR must not be allowed: %v", v)
		}
		update(t, c, svc, func(s *corev1.Service) {
			delete(s.Annotations, annotations.HealthCheckCIDRs)
			delete(s.Annotations, annotations.HostEndpointSelector)
		})
	})

	t.Run("opt-out: policies and finalizer go", func(t *testing.T) {
		update(t, c, svc, func(s *corev1.Service) { s.Annotations[annotations.NLBPolicy] = annotations.Disabled })
		eventually(t, "clean-up", func() (bool, string) {
			ps, ss := owned(t, c, svc)
			got, _ := get(t, c, svc)
			return len(ps)+len(ss) == 0 && !slices.Contains(got.Finalizers, nlbpolicy.Finalizer), fmt.Sprintf("%d objects, finalizers %v", len(ps)+len(ss), got.Finalizers)
		})
		update(t, c, svc, func(s *corev1.Service) { s.Annotations[annotations.NLBPolicy] = annotations.Enabled })
		eventually(t, "opted in again", func() (bool, string) { ps, _ := owned(t, c, svc); return len(ps) == 2, "" })
	})

	t.Run("a Service that stops being an NLB loses its policies", func(t *testing.T) {
		other := service("telemetry", "retype")
		if err := c.Create(ctx, other); err != nil {
			t.Fatal(err)
		}
		eventually(t, "policies", func() (bool, string) { ps, _ := owned(t, c, other); return len(ps) == 2, "" })
		update(t, c, other, func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeClusterIP
			s.Spec.LoadBalancerClass = nil
			s.Spec.ExternalTrafficPolicy = ""
			s.Spec.LoadBalancerSourceRanges = nil
			s.Spec.Ports[0].NodePort = 0
			s.Spec.HealthCheckNodePort = 0
		})
		eventually(t, "clean-up", func() (bool, string) {
			ps, _ := owned(t, c, other)
			got, _ := get(t, c, other)
			return len(ps) == 0 && !slices.Contains(got.Finalizers, nlbpolicy.Finalizer), ""
		})
	})

	t.Run("delete: policies first, then the Service", func(t *testing.T) {
		if err := c.Delete(ctx, svc); err != nil {
			t.Fatal(err)
		}
		eventually(t, "Service and policies gone", func() (bool, string) {
			ps, ss := owned(t, c, svc)
			_, exists := get(t, c, svc)
			return !exists && len(ps)+len(ss) == 0, fmt.Sprintf("exists %v, %d objects", exists, len(ps)+len(ss))
		})
	})

	t.Run("delete while the controller is stopped", func(t *testing.T) {
		held := service("telemetry", "held")
		forced := service("telemetry", "forced")
		for _, s := range []*corev1.Service{held, forced} {
			if err := c.Create(ctx, s); err != nil {
				t.Fatal(err)
			}
			eventually(t, "policies", func() (bool, string) { ps, _ := owned(t, c, s); return len(ps) == 2, "" })
		}
		ctl.stop()
		for _, s := range []*corev1.Service{held, forced} {
			if err := c.Delete(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		// "forced": someone removes our finalizer by hand while we are down.
		eventually(t, "forced finalizer removal", func() (bool, string) {
			got, ok := get(t, c, forced)
			if !ok {
				return true, ""
			}
			got.Finalizers = slices.DeleteFunc(got.Finalizers, func(f string) bool { return f == nlbpolicy.Finalizer })
			if err := c.Update(ctx, got); err != nil {
				return false, err.Error()
			}
			_, ok = get(t, c, forced)
			return !ok, "still there"
		})
		if got, ok := get(t, c, held); !ok || got.DeletionTimestamp == nil {
			t.Fatal("the finalizer must hold the Service while the controller is down")
		}
		if ps, _ := owned(t, c, forced); len(ps) != 2 {
			t.Fatal("the orphan's policies should still exist before the controller is back")
		}
		ctl = startController(parent, p, false)
		eventually(t, "held Service cleaned and released, orphans swept", func() (bool, string) {
			ph, _ := owned(t, c, held)
			pf, _ := owned(t, c, forced)
			_, exists := get(t, c, held)
			return !exists && len(ph)+len(pf) == 0, fmt.Sprintf("held exists %v, %d+%d policies", exists, len(ph), len(pf))
		})
		if n := testutil.ToFloat64(orphanCounter(t, ctl)); n < 2 {
			t.Errorf("orphans deleted = %v, want the 2 policies of the forced Service", n)
		}
	})

	t.Run("labels stripped by hand: the objects are still found, by name, and deleted with the Service", func(t *testing.T) {
		many := func(s *corev1.Service) {
			s.Spec.LoadBalancerSourceRanges = nil
			for i := 0; i < 100; i++ { // past the network-set threshold: a GlobalNetworkSet too
				s.Spec.LoadBalancerSourceRanges = append(s.Spec.LoadBalancerSourceRanges, fmt.Sprintf("198.51.100.%d/32", 2*i))
			}
		}
		stripped := service("telemetry", "stripped", many)
		if err := c.Create(ctx, stripped); err != nil {
			t.Fatal(err)
		}
		var names []string
		eventually(t, "policies", func() (bool, string) {
			ps, ss := owned(t, c, stripped)
			names = nil
			for _, p := range ps {
				names = append(names, p.Name)
			}
			for _, s := range ss {
				names = append(names, s.Name)
			}
			return len(ps) == 2 && len(ss) == 1, fmt.Sprint(names)
		})
		strip := func() {
			for _, name := range names {
				var o client.Object = &calicov3.GlobalNetworkPolicy{}
				if strings.HasSuffix(name, "-sources") {
					o = &calicov3.GlobalNetworkSet{}
				}
				if err := c.Get(ctx, client.ObjectKey{Name: name}, o); err != nil {
					t.Fatal(err)
				}
				o.SetLabels(nil)
				if err := c.Update(ctx, o); err != nil {
					t.Fatal(err)
				}
			}
		}
		gone := func() (bool, string) {
			var left []string
			for _, name := range names {
				var o client.Object = &calicov3.GlobalNetworkPolicy{}
				if strings.HasSuffix(name, "-sources") {
					o = &calicov3.GlobalNetworkSet{}
				}
				if err := c.Get(ctx, client.ObjectKey{Name: name}, o); !apierrors.IsNotFound(err) {
					left = append(left, name)
				}
			}
			return len(left) == 0, fmt.Sprintf("left: %v", left)
		}
		// Deleted with the controller running: the finalizer's clean-up finds them by name.
		ctl.stop()
		strip()
		ctl = startController(parent, p, false)
		if err := c.Delete(ctx, stripped); err != nil {
			t.Fatal(err)
		}
		eventually(t, "stripped objects deleted with their Service", gone)
		eventually(t, "the Service released", func() (bool, string) { _, ok := get(t, c, stripped); return !ok, "" })

		// Deleted while the controller is down and its finalizer forced off: the sweep finds them by name.
		stripped = service("telemetry", "stripped", many)
		if err := c.Create(ctx, stripped); err != nil {
			t.Fatal(err)
		}
		eventually(t, "policies again", func() (bool, string) { ps, ss := owned(t, c, stripped); return len(ps)+len(ss) == 3, "" })
		ctl.stop()
		strip()
		if err := c.Delete(ctx, stripped); err != nil {
			t.Fatal(err)
		}
		eventually(t, "forced finalizer removal", func() (bool, string) {
			got, ok := get(t, c, stripped)
			if !ok {
				return true, ""
			}
			got.Finalizers = nil
			if err := c.Update(ctx, got); err != nil {
				return false, err.Error()
			}
			return false, "removed, checking"
		})
		ctl = startController(parent, p, false)
		eventually(t, "stripped orphans swept", gone)
	})

	t.Run("63-character namespace and name with 1,000 sources: policies written", func(t *testing.T) {
		ns, name := strings.Repeat("n", 63), strings.Repeat("s", 63)
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
		var ranges []string
		for i := 0; i < 1000; i++ {
			ranges = append(ranges, fmt.Sprintf("198.%d.%d.0/24", 18+i/128, 2*(i%128)))
		}
		long := service(ns, name, func(s *corev1.Service) { s.Spec.LoadBalancerSourceRanges = ranges })
		if err := c.Create(ctx, long); err != nil {
			t.Fatal(err)
		}
		eventually(t, "policies and network set of the long-named Service", func() (bool, string) {
			ps, ss := owned(t, c, long)
			return len(ps) == 2 && len(ss) == 1, fmt.Sprintf("%d policies, %d sets", len(ps), len(ss))
		})
		got, _ := get(t, c, long)
		node := got.Spec.Ports[0].NodePort
		if v := verdict(t, c, "198.18.4.1", "UDP", node); v != calicopolicy.Allowed {
			t.Errorf("listed source: %v", v)
		}
		if v := verdict(t, c, "198.18.5.1", "UDP", node); v != calicopolicy.Denied {
			t.Errorf("unlisted source: %v", v)
		}
	})

	t.Run("without a NodePort yet, the controller waits", func(t *testing.T) {
		waiting := service("telemetry", "no-nodeports", func(s *corev1.Service) {
			s.Spec.AllocateLoadBalancerNodePorts = ptr.To(false)
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
		})
		if err := c.Create(ctx, waiting); err != nil {
			t.Fatal(err)
		}
		eventually(t, "finalizer", func() (bool, string) {
			got, _ := get(t, c, waiting)
			return slices.Contains(got.Finalizers, nlbpolicy.Finalizer), ""
		})
		time.Sleep(time.Second)
		if ps, _ := owned(t, c, waiting); len(ps) != 0 {
			t.Fatalf("%d policies without NodePorts", len(ps))
		}
	})

	for _, err := range lbs.Errors() {
		t.Errorf("load balancer controller stand-in: %v", err)
	}
}

func orphanCounter(t *testing.T, ctl *controller) prometheus.Collector {
	t.Helper()
	v, err := metricread.Sum(ctl.registry, "telemetry_nlbpolicy_orphans_deleted_total")
	if err != nil {
		t.Fatal(err)
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	c.Add(v)
	return c
}

func TestManageAll(t *testing.T) {
	t.Parallel() // on a plane of its own
	p := localplane.New(t, localplane.Options{Nodes: 1})
	c, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	startController(t, p, true)
	// No opt-in annotation, backend rules off: managed with --manage-all.
	managed := service("default", "managed", func(s *corev1.Service) { delete(s.Annotations, annotations.NLBPolicy) })
	// Backend rules left to the AWS Load Balancer Controller: not ours.
	untouched := service("default", "untouched", func(s *corev1.Service) {
		delete(s.Annotations, annotations.NLBPolicy)
		delete(s.Annotations, lbc.ManageBackendSecurityGroupRule)
	})
	optedOut := service("default", "opted-out", func(s *corev1.Service) { s.Annotations[annotations.NLBPolicy] = annotations.Disabled })
	for _, s := range []*corev1.Service{managed, untouched, optedOut} {
		if err := c.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "policies of the managed Service", func() (bool, string) { ps, _ := owned(t, c, managed); return len(ps) == 2, "" })
	time.Sleep(time.Second)
	for _, s := range []*corev1.Service{untouched, optedOut} {
		if ps, _ := owned(t, c, s); len(ps) != 0 {
			t.Errorf("%s got %d policies", s.Name, len(ps))
		}
	}
}

func objectMeta(namespace, name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: namespace, Name: name}
}

// update changes a Service as a client would: read, change, write, and
// again on a conflict (the controller and the stand-ins write it too).
func update(t *testing.T, c client.Client, svc *corev1.Service, mutate func(*corev1.Service)) *corev1.Service {
	t.Helper()
	got := &corev1.Service{}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(svc), got); err != nil {
			return err
		}
		mutate(got)
		return c.Update(context.Background(), got)
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestLeaderFailover: two replicas with the controller's leader election;
// the leader stops gracefully (SIGTERM's path: its context is cancelled) and
// the other takes over at once, because the Lease is released, instead of
// after the whole lease duration. The failover time is logged: from the stop
// to a Service created right after it carrying the acknowledgement.
func TestLeaderFailover(t *testing.T) {
	t.Parallel() // on a plane of its own
	p := localplane.New(t, localplane.Options{})
	c, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, ns := range []string{"telemetry", "telemetry-system"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	lbs := standin.StartLoadBalancerController(c, p.AWS.Config(), p.AWS.VPCID)
	defer lbs.Stop()
	leaseDuration := 15 * time.Second
	opts := nlbpolicy.WithLeaderElection(ctrl.Options{LeaseDuration: &leaseDuration}, "telemetry-system")
	first := startControllerAs(t, p, p.Config, false, opts)
	acked := func(svc *corev1.Service) func() (bool, string) {
		return func() (bool, string) {
			got, ok := get(t, c, svc)
			return ok && ack.Current(got), "no acknowledgement yet"
		}
	}
	before := service("telemetry", "before")
	if err := c.Create(ctx, before); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the first replica, leader, acknowledges", acked(before))
	startControllerAs(t, p, p.Config, false, opts) // the standby

	first.stop()
	stopped := time.Now()
	after := service("telemetry", "after")
	if err := c.Create(ctx, after); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the standby takes over and acknowledges", acked(after))
	failover := time.Since(stopped)
	t.Logf("failover: a Service created at the leader's stop was acknowledged %.2f s later (lease duration %s)",
		failover.Seconds(), leaseDuration)
	if failover >= leaseDuration {
		t.Fatalf("failover took %s, at least the lease duration: the stopping leader did not release its Lease", failover)
	}
}
