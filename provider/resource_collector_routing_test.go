package provider

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
)

const routingNS = "routing"

func routingConfig(p *localplane.Plane, sites, extra string) string {
	return providerConfig(p) + fmt.Sprintf(`
resource "telemetry_collector_routing" "flows" {
  name                    = "flow-routing"
  namespace               = %q
  kafka_bootstrap_servers = ["telemetry-kafka-bootstrap.kafka:9092"]
  sites                   = %s
%s
}
`, routingNS, sites, extra)
}

const twoSites = `{
    ams01 = { topic = "sfacctd-flows-ams01", flow_sources = ["192.0.2.0/28", "2001:db8:a::/48"] }
    fra01 = { topic = "sfacctd-flows-fra01", flow_sources = ["198.51.100.0/28"] }
  }`

// TestAccCollectorRouting: the ConfigMap is what render writes and the
// checksum its digest; a hand edit (a rogue exporter given a site's tag) is
// planned as a change and rewritten; import reads every attribute back; a
// site removed leaves its plugin out; an ambiguous routing fails at plan
// time; an existing ConfigMap is not overwritten; destroy removes it.
func TestAccCollectorRouting(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	p, c := testPlaneClient(t)
	ctx := context.Background()
	ensureNamespaces(t, c, routingNS)
	key := client.ObjectKey{Namespace: routingNS, Name: "flow-routing"}
	addr := "telemetry_collector_routing.flows"
	read := func() (*corev1.ConfigMap, error) {
		var cm corev1.ConfigMap
		return &cm, c.Get(ctx, key, &cm)
	}
	// matches checks the ConfigMap against the state: the checksum is its
	// data's, and each site's plugin and sources are in it.
	matches := func(sites map[string][]string, absent ...string) resource.TestCheckFunc {
		return func(s *terraform.State) error {
			cm, err := read()
			if err != nil {
				return err
			}
			if got := s.RootModule().Resources[addr].Primary.Attributes["checksum"]; got != routingChecksum(cm.Data) {
				return fmt.Errorf("checksum %s in state, the ConfigMap's data is %s", got, routingChecksum(cm.Data))
			}
			for site, sources := range sites {
				for _, src := range sources {
					if want := fmt.Sprintf("set_tag=%d ip=%s\n", siteTag(site), src); !strings.Contains(cm.Data[routingPreTagMap], want) {
						return fmt.Errorf("pretag.map lacks %q:\n%s", want, cm.Data[routingPreTagMap])
					}
				}
				for _, conf := range []string{routingSFlowConf, routingIPFIXConf} {
					if !strings.Contains(cm.Data[conf], fmt.Sprintf("kafka_topic[%s]: sfacctd-flows-%s\n", site, site)) {
						return fmt.Errorf("%s lacks site %s's plugin:\n%s", conf, site, cm.Data[conf])
					}
				}
			}
			for _, site := range absent {
				if strings.Contains(cm.Data[routingSFlowConf], "kafka["+site+"]") {
					return fmt.Errorf("the removed site %s still has a plugin:\n%s", site, cm.Data[routingSFlowConf])
				}
			}
			return nil
		}
	}
	both := map[string][]string{"ams01": {"192.0.2.0/28", "2001:db8:a::/48"}, "fra01": {"198.51.100.0/28"}}
	rogue := fmt.Sprintf("set_tag=%d ip=203.0.113.66/32\n", siteTag("ams01"))

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		CheckDestroy: func(*terraform.State) error {
			if _, err := read(); !apierrors.IsNotFound(err) {
				return fmt.Errorf("the ConfigMap after destroy: %v", err)
			}
			return nil
		},
		Steps: []resource.TestStep{
			// Plan-time refusals, before anything is written.
			{Config: routingConfig(p, `{
    a = { topic = "t-a", flow_sources = ["192.0.2.0/24"] }
    b = { topic = "t-b", flow_sources = ["192.0.2.128/25"] }
  }`, ""), PlanOnly: true, ExpectError: regexp.MustCompile(`(?s)192\.0\.2\.0/24 of site "a" overlaps\s+192\.0\.2\.128/25 of site "b"`)},
			{Config: routingConfig(p, twoSites, `  ipfix_port = 6343`), PlanOnly: true,
				ExpectError: regexp.MustCompile(`sflow_port and ipfix_port are both 6343`)},
			{Config: strings.Replace(routingConfig(p, twoSites, ""), `"telemetry-kafka-bootstrap.kafka:9092"`, `"kafka:0"`, 1), PlanOnly: true,
				ExpectError: regexp.MustCompile(`(?s)Invalid bootstrap server.*must be host:port`)},
			{Config: routingConfig(p, twoSites, `  flush_interval = "1500ms"`), PlanOnly: true,
				ExpectError: regexp.MustCompile(`must be a whole number of seconds`)},
			// Created: the ConfigMap as rendered.
			{Config: routingConfig(p, twoSites, `  flush_interval = "10s"`), Check: matches(both)},
			// A hand edit: the plan shows it, the apply rewrites it.
			{Config: routingConfig(p, twoSites, `  flush_interval = "10s"`), PreConfig: func() {
				cm, err := read()
				if err == nil {
					cm.Data[routingPreTagMap] += rogue
					err = c.Update(ctx, cm)
				}
				if err != nil {
					t.Fatal(err)
				}
			}, ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
				plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate)}},
				Check: func(s *terraform.State) error {
					cm, err := read()
					if err != nil {
						return err
					}
					if strings.Contains(cm.Data[routingPreTagMap], rogue) {
						return fmt.Errorf("the hand-added line is still there:\n%s", cm.Data[routingPreTagMap])
					}
					return matches(both)(s)
				}},
			// Import reads every attribute back.
			{Config: routingConfig(p, twoSites, `  flush_interval = "10s"`), ResourceName: addr, ImportState: true,
				ImportStateId: routingNS + "/flow-routing", ImportStateVerify: true},
			// A site removed: its plugin and sources go.
			{Config: routingConfig(p, `{
    ams01 = { topic = "sfacctd-flows-ams01", flow_sources = ["192.0.2.0/28", "2001:db8:a::/48"] }
  }`, `  flush_interval = "10s"`), Check: matches(map[string][]string{"ams01": both["ams01"]}, "fra01")},
		},
	})

	// A ConfigMap that exists already is someone else's: refused, untouched.
	theirs := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: routingNS, Name: "flow-routing"}, Data: map[string]string{"x": "y"}}
	if err := c.Create(ctx, theirs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Delete(ctx, theirs) })
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		Steps: []resource.TestStep{
			{Config: routingConfig(p, twoSites, ""), ExpectError: regexp.MustCompile(`(?s)already exists.*terraform import`)},
			{Config: routingConfig(p, twoSites, ""), ResourceName: addr, ImportState: true, ImportStateId: routingNS + "/flow-routing",
				ExpectError: regexp.MustCompile(`(?s)not in\s+telemetry_collector_routing's\s+format`)},
		},
	})
	if cm, err := read(); err != nil || cm.Data["x"] != "y" || len(cm.Data) != 1 {
		t.Errorf("the existing ConfigMap was changed: %v %v", cm.Data, err)
	}
}
