package provider

import (
	"fmt"
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
)

func TestAccEnvironmentDataSource(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	p := testPlane(t)
	addr := "data.telemetry_environment.this"
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		Steps: []resource.TestStep{{
			Config: providerConfig(p) + fmt.Sprintf(`
data "telemetry_environment" "this" {
  vpc_id = %q
}
output "zones" {
  value = distinct(data.telemetry_environment.this.subnets[*].availability_zone)
}
`, p.AWS.VPCID),
			ConfigStateChecks: []statecheck.StateCheck{
				statecheck.ExpectKnownValue(addr, tfjsonpath.New("kubernetes_version"), knownvalue.StringExact("v1.37.2")),
				statecheck.ExpectKnownValue(addr, tfjsonpath.New("kafka_topic_api_version"), knownvalue.StringExact("kafka.strimzi.io/v1")),
				statecheck.ExpectKnownValue(addr, tfjsonpath.New("calico_api_served"), knownvalue.Bool(true)),
				statecheck.ExpectKnownValue(addr, tfjsonpath.New("vpc_cidr_blocks"), knownvalue.ListExact([]knownvalue.Check{
					knownvalue.StringExact(p.AWS.VPCCIDR)})),
				statecheck.ExpectKnownValue(addr, tfjsonpath.New("subnets"), knownvalue.ListSizeExact(len(p.AWS.Subnets))),
				statecheck.ExpectKnownOutputValue("zones", knownvalue.ListSizeExact(3)),
			},
		}},
	})
}

// Bad configuration gives a diagnostic that names the problem, never a panic
// or a hang.
func TestAccBadProviderConfiguration(t *testing.T) {
	requireAcc(t)
	p := testPlane(t)
	cases := []struct {
		name, provider string
		want           *regexp.Regexp
	}{
		{"unreachable API server", `kubernetes { host = "https://127.0.0.1:1" }`,
			regexp.MustCompile(`No answer from the API server at https://127.0.0.1:1`)},
		{"missing kubeconfig", `kubernetes { config_path = "/nonexistent/kubeconfig" }`,
			regexp.MustCompile(`cannot read the kubeconfig "/nonexistent/kubeconfig"`)},
		{"no API server at all", ``,
			regexp.MustCompile(`no Kubernetes API server configured`)},
		{"AWS endpoint that does not answer", fmt.Sprintf(`
kubernetes { config_path = %q }
aws {
  region      = "us-east-1"
  access_key  = "testing"
  secret_key  = "testing"
  max_retries = 1
  endpoints {
    ec2 = "http://127.0.0.1:1"
    sts = "http://127.0.0.1:1"
  }
}`, p.Kubeconfig), regexp.MustCompile(`no answer from AWS \(STS GetCallerIdentity, endpoint http://127.0.0.1:1\)`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KUBE_CONFIG_PATH", "")
			t.Setenv("KUBE_HOST", "")
			resource.Test(t, resource.TestCase{
				ProtoV6ProviderFactories: protoV6,
				Steps: []resource.TestStep{{
					Config: fmt.Sprintf(`
provider "telemetry" {
  %s
}
data "telemetry_environment" "this" {
  vpc_id = "vpc-12345678"
}`, tc.provider),
					ExpectError: tc.want,
				}},
			})
		})
	}
}
