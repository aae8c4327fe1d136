package provider

import (
	"regexp"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
)

func TestAccKafkaSizingDataSource(t *testing.T) {
	t.Parallel()
	requireAcc(t)
	addr := "data.telemetry_kafka_sizing.this"
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: protoV6,
		Steps: []resource.TestStep{
			{
				Config: `
data "telemetry_kafka_sizing" "this" {
  sites = [
    { name = "ams01", expected_flows_per_second = 12000 },
    { name = "fra02", expected_flows_per_second = 1000, retention = "7d" },
  ]
}`,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("brokers"), knownvalue.Int64Exact(3)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("total_partitions"), knownvalue.Int64Exact(4)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("produce_bytes_per_second"), knownvalue.Int64Exact(6_500_000)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("storage_bytes_total"),
						knownvalue.Int64Exact(6_000_000*86400*3+500_000*7*86400*3)),
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("topics").AtSliceIndex(0).AtMapKey("partitions"), knownvalue.Int64Exact(3)),
				},
			},
			{
				Config: `
data "telemetry_kafka_sizing" "this" {
  replication_factor  = 2
  min_insync_replicas = 3
  sites = [{ name = "ams01", expected_flows_per_second = 1 }]
}`,
				ExpectError: regexp.MustCompile(`(?s)with data.telemetry_kafka_sizing.this,.*min_insync_replicas.*min_insync_replicas\s+\(3\)\s+must\s+not\s+exceed\s+replication_factor\s+\(2\)`),
			},
			{ // a year of 100 million 64 KiB flows per second cannot be represented: an error, not a negative number
				Config: `
data "telemetry_kafka_sizing" "this" {
  bytes_per_flow = 65536
  sites          = [{ name = "ams01", expected_flows_per_second = 100000000, retention = "3650d" }]
}`,
				ExpectError: regexp.MustCompile(`(?s)storage_bytes_total.*more\s+than`),
			},
			{
				Config: `
data "telemetry_kafka_sizing" "this" {
  sites = [{ name = "ams01", expected_flows_per_second = 1000000000 }]
}`,
				ExpectError: regexp.MustCompile(`(?s)expected_flows_per_second.*between\s+0\s+and\s+100000000`),
			},
			{ // kept forever: no storage bound to size
				Config: `
data "telemetry_kafka_sizing" "this" {
  broker_write_megabytes_per_second = 100
  sites                             = [{ name = "ams01", expected_flows_per_second = 1000, retention = "forever" }]
}`,
				ExpectError: regexp.MustCompile(`(?s)Invalid retention.*keeps\s+its\s+flows\s+forever`),
			},
			{
				Config: `
data "telemetry_kafka_sizing" "this" {
  broker_write_megabytes_per_second = 100
  sites                             = [{ name = "ams01", expected_flows_per_second = 1000 }]
}`,
				ConfigStateChecks: []statecheck.StateCheck{
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("brokers"), knownvalue.Int64Exact(3)),
				},
			},
		},
	})
}
