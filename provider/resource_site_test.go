package provider

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/standin"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
)

func siteConfig(p *localplane.Plane, name, extra string) string {
	return providerConfig(p) + fmt.Sprintf(`
resource "telemetry_site" "pop" {
  name = %q
  kafka = {
    cluster   = "telemetry"
    namespace = "default"
  }
  expected_flows_per_second = 12000
  flow_sources              = ["192.0.2.0/24", "198.51.100.0/25"]
  wait_for_ready            = true
%s
}
`, name, extra)
}

func getTopic(ctx context.Context, c client.Client, name string) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(kubeapi.KafkaTopic("v1"))
	return u, c.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, u)
}

// updateTopic changes a KafkaTopic as a client would, again on a conflict
// (the Topic Operator stand-in writes it too).
func updateTopic(t *testing.T, c client.Client, name string, mutate func(*unstructured.Unstructured)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		u, err := getTopic(context.Background(), c, name)
		if err != nil {
			return err
		}
		mutate(u)
		return c.Update(context.Background(), u)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// updatedSite is the site after the update step, which later steps keep.
const updatedSite = `
  partitions = 6
  retention  = "7d"
  labels     = { team = "netops", tier = "edge" }`

// topicsGone is a CheckDestroy: the KafkaTopics are gone.
func topicsGone(ctx context.Context, c client.Client, names ...string) func(*terraform.State) error {
	return func(*terraform.State) error {
		for _, name := range names {
			if _, err := getTopic(ctx, c, name); !apierrors.IsNotFound(err) {
				return fmt.Errorf("KafkaTopic %s still exists after destroy (%v)", name, err)
			}
		}
		return nil
	}
}

func TestAccSite(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	p, c := testPlaneClient(t)
	ctx := context.Background()
	op := standin.StartTopicOperator(c, "telemetry")
	defer op.Stop()
	addr := "telemetry_site.pop"

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		CheckDestroy:             topicsGone(ctx, c, "sfacctd-flows-ams01", "sfacctd-flows-fra02"),
		Steps: []resource.TestStep{
			{ // create: derived partitions, defaults, waits for Ready
				Config: siteConfig(p, "ams01", `labels = { team = "netops" }`),
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("id"), knownvalue.StringExact("default/sfacctd-flows-ams01")),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("partitions"), knownvalue.Int64Exact(3)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("replicas"), knownvalue.Int64Exact(3)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("retention"), knownvalue.StringExact("24h")),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("api_version"), knownvalue.StringExact("kafka.strimzi.io/v1")),
				},
				Check: func(*terraform.State) error {
					u, err := getTopic(ctx, c, "sfacctd-flows-ams01")
					if err != nil {
						return err
					}
					if ok, why := topicReady(u); !ok {
						return fmt.Errorf("apply returned before the topic was Ready: %s", why)
					}
					if u.GetLabels()["strimzi.io/cluster"] != "telemetry" || nestedInt(u.Object, "spec", "partitions") != 3 ||
						nestedInt(u.Object, "spec", "config", "retention.ms") != 86400000 {
						return fmt.Errorf("KafkaTopic content: %v", u.Object)
					}
					return nil
				},
			},
			{ // update in place
				Config: siteConfig(p, "ams01", updatedSite),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: func(*terraform.State) error {
					u, err := getTopic(ctx, c, "sfacctd-flows-ams01")
					if err != nil {
						return err
					}
					if nestedInt(u.Object, "spec", "partitions") != 6 || nestedInt(u.Object, "spec", "config", "retention.ms") != 7*86400000 ||
						u.GetLabels()["tier"] != "edge" {
						return fmt.Errorf("update not applied: %v", u.Object)
					}
					return nil
				},
			},
			{ // import by namespace/name
				ResourceName:            addr,
				ImportState:             true,
				ImportStateId:           "default/sfacctd-flows-ams01",
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"wait_for_ready", "timeouts"},
			},
			{ // server-added fields never cause a diff
				PreConfig: func() {
					updateTopic(t, c, "sfacctd-flows-ams01", func(u *unstructured.Unstructured) {
						labels := u.GetLabels()
						labels["added-by-someone"] = "yes"
						u.SetLabels(labels)
						u.Object["spec"].(map[string]any)["config"].(map[string]any)["cleanup.policy"] = "delete"
					})
				},
				Config:   siteConfig(p, "ams01", updatedSite),
				PlanOnly: true,
			},
			{ // changed outside Terraform: the plan shows the update and applies it
				PreConfig: func() {
					updateTopic(t, c, "sfacctd-flows-ams01", func(u *unstructured.Unstructured) {
						u.Object["spec"].(map[string]any)["config"].(map[string]any)["retention.ms"] = int64(3600000)
					})
				},
				Config: siteConfig(p, "ams01", updatedSite),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: func(*terraform.State) error {
					u, _ := getTopic(ctx, c, "sfacctd-flows-ams01")
					if got := nestedInt(u.Object, "spec", "config", "retention.ms"); got != 7*86400000 {
						return fmt.Errorf("retention not restored: %d", got)
					}
					if u.GetLabels()["added-by-someone"] != "yes" {
						return fmt.Errorf("a label added by someone else was removed")
					}
					return nil
				},
			},
			{ // a partition decrease plans a replacement (TestAccSiteEdges applies one)
				Config:             siteConfig(p, "ams01", `partitions = 2`),
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
			{ // a lower derived count keeps the current one
				Config: siteConfig(p, "ams01", `labels = { team = "netops", tier = "edge" }
  retention = "7d"`),
				PlanOnly: true,
			},
			{ // deleted outside Terraform: the next plan re-creates it
				PreConfig: func() {
					u, _ := getTopic(ctx, c, "sfacctd-flows-ams01")
					if err := c.Delete(ctx, u); err != nil {
						t.Fatal(err)
					}
					deadline := time.Now().Add(10 * time.Second)
					for time.Now().Before(deadline) {
						if _, err := getTopic(ctx, c, "sfacctd-flows-ams01"); apierrors.IsNotFound(err) {
							return
						}
						time.Sleep(100 * time.Millisecond)
					}
					t.Fatal("the stand-in operator did not release the topic")
				},
				Config: siteConfig(p, "ams01", updatedSite),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionCreate),
				}},
			},
			{ // a new name replaces the topic
				Config: siteConfig(p, "fra02", `partitions = 6`),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionReplace),
				}},
				Check: func(*terraform.State) error {
					if _, err := getTopic(ctx, c, "sfacctd-flows-ams01"); !apierrors.IsNotFound(err) {
						return fmt.Errorf("old topic not deleted on replace: %v", err)
					}
					_, err := getTopic(ctx, c, "sfacctd-flows-fra02")
					return err
				},
			},
		},
	})
}

// Bad input is rejected at plan time with a message that says what is wrong.
func TestAccSitePlanTimeErrors(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	p := testPlane(t)
	cases := map[string]struct {
		name, extra string
		want        string
	}{
		"invalid name":       {"PoP_1", "", `"PoP_1" must be a lowercase DNS label`},
		"host bits set":      {"ams01", `flow_sources = ["192.0.2.1/24"]`, `host bits are set; the network is 192.0.2.0/24`},
		"bare address":       {"ams01", `flow_sources = ["192.0.2.1"]`, `for one address write\s+192.0.2.1/32`},
		"bad retention":      {"ams01", `retention = "eventually"`, `"eventually" must be`},
		"sub-ms retention":   {"ams01", `retention = "1ns"`, `"1ns" must be.*whole\s+milliseconds`},
		"insync > replicas":  {"ams01", "replicas = 2\n  min_insync_replicas = 3", `min_insync_replicas \(3\) must not exceed replicas \(2\)`},
		"reserved label":     {"ams01", `labels = { "strimzi.io/cluster" = "other" }`, `strimzi.io/cluster`},
		"partitions too low": {"ams01", `partitions = 0`, `partitions value must be between 1 and 20000`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := providerConfig(p) + fmt.Sprintf(`
resource "telemetry_site" "pop" {
  name  = %q
  kafka = { cluster = "telemetry", namespace = "default" }
  %s
}`, tc.name, tc.extra)
			resource.Test(t, resource.TestCase{
				ProtoV6ProviderFactories: protoV6,
				Steps:                    []resource.TestStep{{Config: cfg, PlanOnly: true, ExpectError: regexp.MustCompile(tc.want)}},
			})
		})
	}
}

// Planning a new site makes no API call: it plans against an API server that
// does not exist, with provider values unknown until apply.
func TestAccSitePlanNeedsNoAPI(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		Steps: []resource.TestStep{{
			Config: `
resource "terraform_data" "cluster" {
  input = "https://127.0.0.1:1"
}
provider "telemetry" {
  kubernetes {
    host = terraform_data.cluster.output
  }
}
resource "telemetry_site" "pop" {
  name  = "ams01"
  kafka = { cluster = "telemetry", namespace = "kafka" }
}`,
			PlanOnly:           true,
			ExpectNonEmptyPlan: true,
			ConfigPlanChecks: resource.ConfigPlanChecks{PostApplyPostRefresh: []plancheck.PlanCheck{
				plancheck.ExpectKnownValue("telemetry_site.pop", tfjsonpath.New("topic_name"), knownvalue.StringExact("sfacctd-flows-ams01")),
				plancheck.ExpectKnownValue("telemetry_site.pop", tfjsonpath.New("partitions"), knownvalue.Int64Exact(1)),
			}},
		}},
	})
}

// On a cluster that serves only kafka.strimzi.io/v1beta2 (Strimzi before
// 0.49), the site uses v1beta2, found at apply time.
func TestAccSiteOnV1beta2OnlyCluster(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	p := testPlane(t)
	ctx := context.Background()
	scheme := runtime.NewScheme()
	_ = apiextensionsv1.AddToScheme(scheme)
	c, err := client.New(p.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	setServed := func(v1 bool) {
		t.Helper()
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := c.Get(ctx, client.ObjectKey{Name: "kafkatopics.kafka.strimzi.io"}, crd); err != nil {
			t.Fatal(err)
		}
		for i := range crd.Spec.Versions {
			v := &crd.Spec.Versions[i]
			v.Served = v.Name == "v1beta2" || v1
			v.Storage = (v.Name == "v1") == v1
		}
		if err := c.Update(ctx, crd); err != nil {
			t.Fatal(err)
		}
		disco, err := discovery.NewDiscoveryClientForConfig(p.Config)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			got, err := servedKafkaTopicVersion(disco)
			if err == nil && (got == "v1") == v1 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("discovery still says %q (%v)", got, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	setServed(false)
	t.Cleanup(func() { setServed(true) })

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		Steps: []resource.TestStep{
			{
				Config: providerConfig(p) + `
resource "telemetry_site" "old" {
  name  = "lis13"
  kafka = { cluster = "telemetry", namespace = "default" }
}`,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue("telemetry_site.old", tfjsonpath.New("api_version"), knownvalue.StringExact("kafka.strimzi.io/v1beta2")),
				},
			},
			{ // forget it without deleting it...
				Config: providerConfig(p) + `
removed {
  from = telemetry_site.old
  lifecycle {
    destroy = false
  }
}`,
			},
			{ // ...import reads retention back as "1d"...
				Config: providerConfig(p) + `
resource "telemetry_site" "old" {
  name  = "lis13"
  kafka = { cluster = "telemetry", namespace = "default" }
}`,
				ResourceName:       "telemetry_site.old",
				ImportState:        true,
				ImportStateId:      "default/sfacctd-flows-lis13",
				ImportStatePersist: true,
			},
			{ // ...which means the default "24h": no diff
				Config: providerConfig(p) + `
resource "telemetry_site" "old" {
  name  = "lis13"
  kafka = { cluster = "telemetry", namespace = "default" }
}`,
				PlanOnly: true,
			},
		},
	})
}

// TestAccSiteEdges: retention kept forever round-trips as Kafka's -1; a
// partition decrease is planned as a replacement (never a refusal that
// blocks destroy and -replace), after a warning; two resources for one
// topic in one apply: one wins, the other fails saying so and saves nothing.
func TestAccSiteEdges(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	p, c := testPlaneClient(t)
	ctx := context.Background()
	op := standin.StartTopicOperator(c, "telemetry")
	defer op.Stop()
	addr := "telemetry_site.pop"
	var started time.Time
	cfg := func(extra string) string {
		return providerConfig(p) + fmt.Sprintf(`
resource "telemetry_site" "pop" {
  name  = "edge01"
  kafka = { cluster = "telemetry", namespace = "default" }
%s
}`, extra)
	}
	twin := func(label string) string {
		return fmt.Sprintf(`
resource "telemetry_site" %q {
  name  = "twin01"
  kafka = { cluster = "telemetry", namespace = "default" }
}`, label)
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		CheckDestroy:             topicsGone(ctx, c, "sfacctd-flows-edge01", "sfacctd-flows-twin01"),
		Steps: []resource.TestStep{
			{
				Config: cfg(`  retention = "forever"
  partitions = 3`),
				Check: func(*terraform.State) error {
					u, err := getTopic(ctx, c, "sfacctd-flows-edge01")
					if err != nil {
						return err
					}
					if ms := nestedInt(u.Object, "spec", "config", "retention.ms"); ms != -1 {
						return fmt.Errorf("retention.ms = %d, want -1 (keep forever)", ms)
					}
					return nil
				},
			},
			{ // a decrease replaces the topic, and the plan says so
				Config: cfg(`  retention = "forever"
  partitions = 2`),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionDestroyBeforeCreate),
				}},
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("partitions"), knownvalue.Int64Exact(2)),
				},
			},
			{
				Config:      cfg(`  partitions = 2`) + twin("a") + twin("b"),
				ExpectError: regexp.MustCompile(`KafkaTopic already exists`),
			},
			{ // the loser of the race saved nothing: the next plan creates it
				// again (and fails as before) and replaces (destroys) nothing,
				// the winner's topic least of all
				Config:           cfg(`  partitions = 2`) + twin("a") + twin("b"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{noDeletes{}}},
				ExpectError:      regexp.MustCompile(`KafkaTopic already exists`),
			},
			{ // a change the Topic Operator refuses fails at once with its reason, not at the timeout
				PreConfig: func() { started = time.Now() },
				Config: cfg(`  partitions = 2
  replicas = 2
  min_insync_replicas = 1
  wait_for_ready = true
  timeouts = { update = "90s" }`),
				ExpectError: regexp.MustCompile(`(?s)NotSupported.*Replication factor change not supported`),
			},
			{ // put back: Ready again
				PreConfig: func() {
					if d := time.Since(started); d > 45*time.Second {
						t.Errorf("the refused change failed after %s: it waited for the timeout instead of failing at once", d)
					}
				},
				Config: cfg(`  partitions = 2
  wait_for_ready = true`),
			},
		},
	})
}

// TestAccSiteImportHandMade: a KafkaTopic made without telemetry_site (only
// Strimzi's cluster label, as kubectl users write them) imports: the site
// name comes from the topic name, and the plan after the import shows in
// place the labels and annotations apply will add; one without the cluster
// label is refused at import with the command that fixes it.
func TestAccSiteImportHandMade(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	p, c := testPlaneClient(t)
	ctx := context.Background()
	op := standin.StartTopicOperator(c, "telemetry")
	defer op.Stop()
	for name, labels := range map[string]map[string]string{
		"sfacctd-flows-hand01": {kubeapi.StrimziClusterLabel: "telemetry"},
		"sfacctd-flows-hand02": nil,
	} {
		u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{
			"partitions": int64(3), "replicas": int64(3),
			"config": map[string]any{"retention.ms": int64(86400000), "min.insync.replicas": int64(2)},
		}}}
		u.SetGroupVersionKind(kubeapi.KafkaTopic(kubeapi.KafkaTopicVersions[0]))
		u.SetNamespace("default")
		u.SetName(name)
		u.SetLabels(labels)
		if err := c.Create(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	addr := "telemetry_site.pop"
	cfg := func(name string) string {
		return providerConfig(p) + fmt.Sprintf(`
resource "telemetry_site" "pop" {
  name                      = %q
  kafka                     = { cluster = "telemetry", namespace = "default" }
  expected_flows_per_second = 1000
  partitions                = 3
}`, name)
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		Steps: []resource.TestStep{
			{Config: cfg("hand02"), ResourceName: addr, ImportState: true, ImportStateId: "default/sfacctd-flows-hand02",
				ExpectError: regexp.MustCompile(`(?s)no\s+strimzi.io/cluster\s+label.*kubectl\s+label\s+kafkatopic`)},
			{Config: cfg("hand01"), ResourceName: addr, ImportState: true, ImportStateId: "default/sfacctd-flows-hand01", ImportStatePersist: true,
				// What -generate-config-out would write is valid as written: not 0.
				ImportStateCheck: func(states []*terraform.InstanceState) error {
					if got := states[0].Attributes["expected_flows_per_second"]; got != "1000" {
						return fmt.Errorf("imported expected_flows_per_second = %s, want the default 1000", got)
					}
					return nil
				}},
			{
				Config: cfg("hand01"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: func(*terraform.State) error {
					u, err := getTopic(ctx, c, "sfacctd-flows-hand01")
					if err != nil {
						return err
					}
					if u.GetLabels()[annotations.Site] != "hand01" {
						return fmt.Errorf("the adopted topic's labels: %v", u.GetLabels())
					}
					return nil
				},
			},
		},
	})
}

// noDeletes fails a plan that deletes or replaces anything.
type noDeletes struct{}

func (noDeletes) CheckPlan(_ context.Context, req plancheck.CheckPlanRequest, resp *plancheck.CheckPlanResponse) {
	for _, rc := range req.Plan.ResourceChanges {
		if rc.Change.Actions.Delete() || rc.Change.Actions.Replace() {
			resp.Error = fmt.Errorf("the plan deletes %s (%v): a resource that lost a create saved state it does not own", rc.Address, rc.Change.Actions)
			return
		}
	}
}
