package provider

import (
	"math"
	"regexp"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
)

func TestSize(t *testing.T) {
	base := sizingInput{BytesPerFlow: 500, ReplicationFactor: 3, MinInsync: 2, ConsumerGroups: 1,
		BrokerWriteBudget: 50e6, DiskFillTarget: 0.5}
	t.Run("small: brokers bounded below by RF", func(t *testing.T) {
		in := base
		in.Sites = []sizingSite{{Name: "a", FlowsPerSecond: 1000, Retention: 24 * time.Hour}, {Name: "b", FlowsPerSecond: 12000, Retention: time.Hour, Partitions: 8}}
		out, err := size(in)
		if err != nil {
			t.Fatal(err)
		}
		// a: 0.5 MB/s, 1 partition; b: 6 MB/s, 8 partitions (given).
		if out.Brokers != 3 || out.TotalPartitions != 9 || out.TotalFlowsPerSecond != 13000 {
			t.Fatalf("%+v", out)
		}
		if out.ProduceBytesPerSecond != 6.5e6 || out.NetworkInBytesPerSecond != 19.5e6 || out.NetworkOutBytesPerSecond != 6.5e6*3 {
			t.Fatalf("network: %+v", out)
		}
		wantStorage := 0.5e6*86400*3 + 6e6*3600*3
		if math.Abs(out.StorageBytesTotal-wantStorage) > 1 || math.Abs(out.StoragePerBrokerBytes-wantStorage/3/0.5) > 1 {
			t.Fatalf("storage: %+v", out)
		}
	})
	t.Run("large: brokers by throughput", func(t *testing.T) {
		in := base
		for i := 0; i < 100; i++ {
			in.Sites = append(in.Sites, sizingSite{Name: "s", FlowsPerSecond: 10000, Retention: 24 * time.Hour})
		}
		out, _ := size(in)
		// 100 x 5 MB/s = 500 MB/s produced, 1.5 GB/s written: 30 brokers at 50 MB/s.
		if out.Brokers != 30 || out.TotalPartitions != 200 {
			t.Fatalf("brokers %d partitions %d", out.Brokers, out.TotalPartitions)
		}
	})
	t.Run("min insync above RF is an error", func(t *testing.T) {
		in := base
		in.MinInsync = 4
		if _, err := size(in); err == nil {
			t.Fatal("want an error")
		}
	})
	t.Run("the largest inputs never overflow", func(t *testing.T) {
		in := base
		in.BytesPerFlow = 65536
		in.Sites = []sizingSite{{Name: "a", FlowsPerSecond: maxFlowsPerSecond, Retention: 3650 * 24 * time.Hour}}
		_, err := size(in)
		if err == nil || !regexp.MustCompile(`storage_bytes_total.*more than`).MatchString(err.Error()) {
			t.Fatalf("want an error naming the storage that cannot be represented, got %v", err)
		}
		// Within bounds, every output is positive and the partitions within what a site accepts.
		in.BytesPerFlow = 500
		in.Sites = []sizingSite{{Name: "a", FlowsPerSecond: maxFlowsPerSecond, Retention: 7 * 24 * time.Hour}}
		out, err := size(in)
		if err != nil {
			t.Fatal(err)
		}
		if out.StorageBytesTotal <= 0 || out.ProduceBytesPerSecond <= 0 || out.TotalFlowsPerSecond != maxFlowsPerSecond {
			t.Fatalf("%+v", out)
		}
		if out.TotalPartitions > maxPartitions {
			t.Fatalf("%d flows/s derive %d partitions, more than the %d telemetry_site accepts", maxFlowsPerSecond, out.TotalPartitions, maxPartitions)
		}
	})
}

// TestDerivedPartitionsWithinBounds: the partitions derived from any flow
// rate telemetry_site accepts are a count it would accept if written.
func TestDerivedPartitionsWithinBounds(t *testing.T) {
	if n := derivePartitions(maxFlowsPerSecond); n > maxPartitions || n < 1 {
		t.Fatalf("derivePartitions(%d) = %d, outside [1, %d]", maxFlowsPerSecond, n, maxPartitions)
	}
}

func TestAccKafkaSizingDataSource(t *testing.T) {
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
