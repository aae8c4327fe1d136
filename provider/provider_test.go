package provider

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
)

// protoV6 serves the provider in-process to the real terraform CLI
// (TF_ACC_TERRAFORM_PATH, set by the GNUmakefile: nothing is downloaded).
var protoV6 = map[string]func() (tfprotov6.ProviderServer, error){
	"telemetry": providerserver.NewProtocol6WithError(New("test")()),
}

// planes are the package's local control planes: each test that needs one
// holds one for itself, so the tests that call t.Parallel run side by side
// (three at most by default; TEST_PLANES overrides), and TestMain stops them.
var planes = localplane.NewPool(localplane.Options{}, 3)

// testPlane is a plane of the test's own until it ends (see planes).
func testPlane(t *testing.T) *localplane.Plane {
	t.Helper()
	return planes.Take(t)
}

// testPlaneClient is testPlane with a client for it.
func testPlaneClient(t *testing.T) (*localplane.Plane, client.Client) {
	t.Helper()
	p := testPlane(t)
	c, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	return p, c
}

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard()) // envtest logs through controller-runtime
	code := m.Run()
	if err := planes.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the local control planes:", err)
	}
	os.Exit(code)
}

// startNLBPolicy runs the real nlb-policy controller against the plane until
// the test ends: telemetry_nlb_ingress waits for its acknowledgement.
func startNLBPolicy(t *testing.T, p *localplane.Plane) func() {
	t.Helper()
	stop, err := p.StartNLBPolicyController(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stopOnce := func() {
		once.Do(func() {
			if err := stop(); err != nil {
				t.Errorf("nlb-policy controller: %v", err)
			}
		})
	}
	t.Cleanup(stopOnce)
	return stopOnce
}

// requireAcc fails, rather than skips, when the acceptance environment is
// missing: `make test` sets both, and a silent skip would hide a broken CI.
func requireAcc(t *testing.T) {
	t.Helper()
	if os.Getenv("TF_ACC") == "" {
		t.Fatal("TF_ACC is not set: run the tests with `make test`, which sets TF_ACC=1 and TF_ACC_TERRAFORM_PATH")
	}
	if os.Getenv("TF_ACC_TERRAFORM_PATH") == "" {
		t.Fatal("TF_ACC_TERRAFORM_PATH is not set: point it at a terraform binary (`make test` does); " +
			"terraform-plugin-testing would otherwise try to download one")
	}
}

// providerConfig is a provider block reaching the test plane.
func providerConfig(p *localplane.Plane) string { return p.ProviderBlock() }

func objectMeta(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name} }

// ensureNamespaces creates namespaces the test needs, if missing.
func ensureNamespaces(t *testing.T, c client.Client, names ...string) {
	t.Helper()
	for _, ns := range names {
		if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: objectMeta(ns)}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}

// TestAccExplicitCredentialsReplaceTheKubeconfigs: a token given beside a
// kubeconfig that authenticates with a client certificate is the credential
// used, not silently ignored (the API server takes the certificate first):
// a wrong token fails with the API server's refusal.
func TestAccExplicitCredentialsReplaceTheKubeconfigs(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	p := testPlane(t)
	withToken := strings.Replace(providerConfig(p), "    config_path = ", "    token       = \"wrong-token\"\n    config_path = ", 1)
	if !strings.Contains(withToken, "wrong-token") {
		t.Fatal("the provider block no longer has config_path where this test expects it")
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		Steps: []resource.TestStep{{
			Config: withToken + fmt.Sprintf(`
data "telemetry_environment" "this" {
  vpc_id = %q
}`, p.AWS.VPCID),
			ExpectError: regexp.MustCompile(`(?s)Cannot reach the Kubernetes API server.*asked\s+for\s+the\s+client\s+to\s+provide\s+credentials`),
		}},
	})
}
