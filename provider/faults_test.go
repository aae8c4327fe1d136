package provider

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// awsFaults is a proxy in front of moto that answers some AWS calls with
// errors: every call of the actions in fail with UnauthorizedOperation (a
// permission withdrawn mid-apply; not retried), and a share of all other
// calls with Throttling (which the SDK retries).
type awsFaults struct {
	srv      *httptest.Server
	mu       sync.Mutex
	fail     map[string]bool
	throttle float64
	rng      *rand.Rand
	injected map[string]int
}

func startAWSFaults(t *testing.T, moto string) *awsFaults {
	t.Helper()
	target, err := url.Parse(moto)
	if err != nil {
		t.Fatal(err)
	}
	f := &awsFaults{fail: map[string]bool{}, rng: rand.New(rand.NewPCG(7, 8)), injected: map[string]int{}}
	proxy := httputil.NewSingleHostReverseProxy(target)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		form, _ := url.ParseQuery(string(body))
		action := form.Get("Action")
		f.mu.Lock()
		code := ""
		switch {
		case f.fail[action]:
			code = "UnauthorizedOperation" // not retried: a permission withdrawn mid-apply
		case action != "" && f.rng.Float64() < f.throttle:
			code = "Throttling"
		}
		if code != "" {
			f.injected[action+" "+code]++
		}
		f.mu.Unlock()
		if code == "" {
			proxy.ServeHTTP(w, r)
			return
		}
		status := http.StatusForbidden
		if code == "Throttling" {
			status = http.StatusBadRequest
		}
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(status)
		// EC2's error shape; ELBv2 (and STS) read the same Code from theirs.
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>%s</Code><Message>injected by the test</Message></Error></Errors><RequestID>fault</RequestID></Response>`, code)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// set replaces the faults.
func (f *awsFaults) set(throttle float64, fail ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.throttle, f.fail = throttle, map[string]bool{}
	for _, a := range fail {
		f.fail[a] = true
	}
}

func (f *awsFaults) report() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fmt.Sprint(f.injected)
}

// TestAccNLBIngressAWSFaults, with the real AWS Load Balancer Controller:
// AWS failing mid-apply never wedges the state
// nor leaks: a create whose rules cannot be written fails, saving what it
// made; an update whose revocation fails keeps the rules the state says;
// 30% of all calls throttled still converges (the SDK retries); with AWS
// healthy again the next apply converges, the plan is empty, and destroy
// leaves nothing in AWS.
func TestAccNLBIngressAWSFaults(t *testing.T) {
	p, c := ingressEnvRealLBC(t, "faults")
	ctx := context.Background()
	faults := startAWSFaults(t, p.AWS.Endpoint)
	ec := ec2.NewFromConfig(p.AWS.Config())
	viaFaults := func(sources string) string {
		cfg := ingressConfig(p, "faults", sources, "")
		for _, svc := range []string{"ec2  ", "elbv2", "sts  "} {
			cfg = strings.Replace(cfg, fmt.Sprintf("%s = %q", svc, p.AWS.Endpoint), fmt.Sprintf("%s = %q", svc, faults.srv.URL), 1)
		}
		return cfg
	}
	if cfg := viaFaults(`["192.0.2.0/24"]`); strings.Contains(cfg, p.AWS.Endpoint) {
		t.Fatalf("the provider block still reaches moto directly:\n%s", cfg)
	}
	addr := "telemetry_nlb_ingress.flows"
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		CheckDestroy: func(*terraform.State) error {
			t.Logf("faults injected: %s", faults.report())
			svc := &corev1.Service{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: "faults", Name: "flows"}, svc); !apierrors.IsNotFound(err) {
				return fmt.Errorf("Service left behind (%v)", err)
			}
			return leftInAWS(ctx, ec, p.AWS.NodeSecurityGroupID, "faults", "flows")
		},
		Steps: []resource.TestStep{
			{ // rules cannot be added: the create fails after the Service and the group exist
				PreConfig:   func() { faults.set(0, "AuthorizeSecurityGroupIngress") },
				Config:      viaFaults(`["192.0.2.0/24"]`),
				ExpectError: regexp.MustCompile(`(?s)Cannot write the security-group rules.*UnauthorizedOperation`),
			},
			{ // AWS healthy: the tainted ingress is replaced and converges
				PreConfig: func() { faults.set(0) },
				Config:    viaFaults(`["192.0.2.0/24"]`),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("policy_enforced"), knownvalue.Bool(true)),
				},
			},
			{ // narrowing fails at the revocation: nothing is widened, the apply fails
				PreConfig:   func() { faults.set(0, "RevokeSecurityGroupIngress") },
				Config:      viaFaults(`["192.0.2.0/25"]`),
				ExpectError: regexp.MustCompile(`(?s)Cannot revoke security-group rules.*UnauthorizedOperation`),
			},
			{ // throttled at 30%: retried, converges
				PreConfig: func() { faults.set(0.3) },
				Config:    viaFaults(`["192.0.2.0/25"]`),
			},
			{ // healthy again: an empty plan
				PreConfig: func() { faults.set(0) },
				Config:    viaFaults(`["192.0.2.0/25"]`),
				PlanOnly:  true,
			},
		},
	})
}
