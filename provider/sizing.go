package provider

import (
	"fmt"
	"math"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/path"
)

// sizingInput is what telemetry_kafka_sizing derives a Kafka cluster from.
type sizingInput struct {
	Sites             []sizingSite
	BytesPerFlow      int64
	ReplicationFactor int64
	MinInsync         int64
	ConsumerGroups    int64
	// BrokerWriteBudget is the bytes per second one broker is planned to
	// write (produce plus replication), well below what its disks and NICs
	// take, so that losing a broker does not saturate the others.
	BrokerWriteBudget float64
	// DiskFillTarget is the fraction of a broker's disk the retained data may
	// fill, leaving room for segment roll-over, rebalancing and growth.
	DiskFillTarget float64
}

type sizingSite struct {
	Name           string
	FlowsPerSecond int64
	Retention      time.Duration
	Partitions     int64 // 0: derived as telemetry_site does
}

type sizingResult struct {
	Brokers                  int64
	TotalFlowsPerSecond      int64
	TotalPartitions          int64
	ProduceBytesPerSecond    float64
	NetworkInBytesPerSecond  float64
	NetworkOutBytesPerSecond float64
	StorageBytesTotal        float64
	StoragePerBrokerBytes    float64
	Sites                    []sizingSiteResult
}

type sizingSiteResult struct {
	Name                  string
	Partitions            int64
	ProduceBytesPerSecond float64
	StorageBytes          float64
}

// sizingError is an input the sizing cannot work with, and the attribute
// that holds it.
type sizingError struct {
	Attr path.Path
	Msg  string
}

func (e *sizingError) Error() string { return e.Msg }

// maxReportable is the largest figure an output can hold (an Int64
// attribute), as a float: above it a result would wrap to a negative number.
const maxReportable = float64(math.MaxInt64)

// size applies the rules of thumb documented on telemetry_kafka_sizing. It
// computes in float64 and refuses any figure an output cannot hold.
func size(in sizingInput) (sizingResult, error) {
	var out sizingResult
	if in.MinInsync > in.ReplicationFactor {
		return out, &sizingError{path.Root("min_insync_replicas"), fmt.Sprintf(
			"min_insync_replicas (%d) must not exceed replication_factor (%d): producers with acks=all could never write.",
			in.MinInsync, in.ReplicationFactor)}
	}
	rf := float64(in.ReplicationFactor)
	for i, s := range in.Sites {
		if s.FlowsPerSecond < 0 || s.FlowsPerSecond > maxFlowsPerSecond {
			return out, &sizingError{path.Root("sites").AtListIndex(i).AtName("expected_flows_per_second"),
				fmt.Sprintf("site %q: expected_flows_per_second must be between 0 and %d.", s.Name, maxFlowsPerSecond)}
		}
		bps := float64(s.FlowsPerSecond) * float64(in.BytesPerFlow)
		partitions := s.Partitions
		if partitions == 0 {
			partitions = derivePartitions(s.FlowsPerSecond)
		}
		storage := bps * s.Retention.Seconds() * rf
		switch {
		case storage > maxReportable:
			return out, &sizingError{path.Root("sites").AtListIndex(i).AtName("retention"), fmt.Sprintf(
				"site %q: its storage alone would put storage_bytes_total at more than %.3g bytes (%d flows/s x %d bytes x %s x RF %d), more than "+
					"a sizing can report. Shorten its retention or lower its rate.",
				s.Name, maxReportable, s.FlowsPerSecond, in.BytesPerFlow, s.Retention, in.ReplicationFactor)}
		case out.StorageBytesTotal+storage > maxReportable:
			// No one site is at fault: the sum of all of them is.
			return out, &sizingError{path.Root("sites"), fmt.Sprintf(
				"storage_bytes_total of the %d sites would be more than %.3g bytes, more than a sizing can report (each site's "+
					"own figure is within it). Shorten the retention or lower the rates of the largest sites, or size them apart.",
				len(in.Sites), maxReportable)}
		}
		out.Sites = append(out.Sites, sizingSiteResult{Name: s.Name, Partitions: partitions, ProduceBytesPerSecond: bps, StorageBytes: storage})
		out.TotalFlowsPerSecond += s.FlowsPerSecond
		out.TotalPartitions += partitions
		out.ProduceBytesPerSecond += bps
		out.StorageBytesTotal += storage
	}
	// Every byte produced is written RF times across the cluster: once by the
	// leader (network in from producers), RF-1 times by followers (network in
	// from the leader's replication).
	out.NetworkInBytesPerSecond = out.ProduceBytesPerSecond * rf
	// Leaders send every byte to RF-1 followers and to each consumer group.
	out.NetworkOutBytesPerSecond = out.ProduceBytesPerSecond * (rf - 1 + float64(in.ConsumerGroups))
	byThroughput := math.Ceil(out.NetworkInBytesPerSecond / in.BrokerWriteBudget)
	// RF replicas must sit on distinct brokers; with min.insync.replicas below
	// RF, one broker may be down while producers with acks=all still write.
	out.Brokers = max(in.ReplicationFactor, int64(byThroughput), 1)
	out.StoragePerBrokerBytes = out.StorageBytesTotal / float64(out.Brokers) / in.DiskFillTarget
	for _, f := range []struct {
		name  string
		value float64
	}{
		{"network_out_bytes_per_second", out.NetworkOutBytesPerSecond}, {"network_in_bytes_per_second", out.NetworkInBytesPerSecond},
		{"storage_per_broker_bytes", out.StoragePerBrokerBytes}, {"brokers", byThroughput},
	} {
		if f.value > maxReportable {
			return out, &sizingError{path.Root("sites"), fmt.Sprintf("%s would be more than %.3g, more than a sizing can "+
				"report: lower the sites' rates or the consumer groups.", f.name, maxReportable)}
		}
	}
	return out, nil
}
