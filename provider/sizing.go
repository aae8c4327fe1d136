package provider

import (
	"fmt"
	"math"
	"time"
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

// size applies the rules of thumb documented on telemetry_kafka_sizing.
func size(in sizingInput) (sizingResult, error) {
	var out sizingResult
	if in.ReplicationFactor < 1 || in.BytesPerFlow < 1 || in.BrokerWriteBudget <= 0 || in.DiskFillTarget <= 0 || in.DiskFillTarget > 1 {
		return out, fmt.Errorf("invalid sizing parameters: %+v", in)
	}
	if in.MinInsync > in.ReplicationFactor {
		return out, fmt.Errorf("min_insync_replicas (%d) must not exceed replication_factor (%d)", in.MinInsync, in.ReplicationFactor)
	}
	rf := float64(in.ReplicationFactor)
	for _, s := range in.Sites {
		bps := float64(s.FlowsPerSecond * in.BytesPerFlow)
		partitions := s.Partitions
		if partitions == 0 {
			partitions = derivePartitions(s.FlowsPerSecond)
		}
		storage := bps * s.Retention.Seconds() * rf
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
	byThroughput := int64(math.Ceil(out.NetworkInBytesPerSecond / in.BrokerWriteBudget))
	// RF replicas must sit on distinct brokers; with min.insync.replicas below
	// RF, one broker may be down while producers with acks=all still write.
	out.Brokers = max(in.ReplicationFactor, byThroughput, 1)
	out.StoragePerBrokerBytes = out.StorageBytesTotal / float64(out.Brokers) / in.DiskFillTarget
	return out, nil
}
