package provider

import (
	"errors"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"
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

// TestSizingOverflowBlamesTheRightThing: a total that overflows while each
// site's own storage is within bounds blames the sum, at the sites list, not
// the site that happened to be added last; a site whose own storage
// overflows is named.
func TestSizingOverflowBlamesTheRightThing(t *testing.T) {
	in := sizingInput{BytesPerFlow: 500, ReplicationFactor: 3, MinInsync: 2, ConsumerGroups: 1, BrokerWriteBudget: 50e6, DiskFillTarget: 0.5}
	// 1e8 flows/s x 500 B x RF 3 = 1.5e11 B/s: 427 days is about 0.6 of what a sizing reports.
	each := 427 * 24 * time.Hour
	in.Sites = []sizingSite{{Name: "s001", FlowsPerSecond: maxFlowsPerSecond, Retention: each}, {Name: "s002", FlowsPerSecond: maxFlowsPerSecond, Retention: each}}
	_, err := size(in)
	var se *sizingError
	if !errors.As(err, &se) || strings.Contains(se.Error(), "s002") || !strings.Contains(se.Error(), "of the 2 sites") {
		t.Errorf("a total that overflows: %v", err)
	}
	in.Sites = []sizingSite{{Name: "s001", FlowsPerSecond: maxFlowsPerSecond, Retention: 3 * each}}
	if _, err := size(in); err == nil || !strings.Contains(err.Error(), `site "s001": its storage alone`) {
		t.Errorf("a site that overflows alone: %v", err)
	}
}
