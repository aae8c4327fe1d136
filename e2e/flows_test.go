package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// flowRecord is one record a collector wrote to Kafka (pmacct's JSON, the
// fields telemetry_collector_routing's default aggregate asks for).
type flowRecord struct {
	Topic    string
	Arrived  time.Time // when the reader got it
	Produced time.Time // the Kafka record's timestamp
	Peer     netip.Addr
	Src      netip.Addr
	Version  int // 5: sFlow, 10: IPFIX
	Tag      int64
}

type pmacctJSON struct {
	PeerIPSrc string `json:"peer_ip_src"`
	IPSrc     string `json:"ip_src"`
	Version   int    `json:"export_proto_version"`
	Tag       int64  `json:"tag"`
}

// topicReader reads every topic of the broker from its start, new topics
// included, until Close: what landed where, for the assertions.
type topicReader struct {
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	recs   []flowRecord
	bad    []string // records that are not pmacct's JSON
}

func newTopicReader(brokers []string) (*topicReader, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeRegex(), kgo.ConsumeTopics(".*"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// New topics are found within a second, not the default five minutes.
		kgo.MetadataMinAge(100*time.Millisecond), kgo.MetadataMaxAge(time.Second))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &topicReader{cl: cl, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			now := time.Now()
			fs.EachRecord(func(rec *kgo.Record) {
				var j pmacctJSON
				r.mu.Lock()
				defer r.mu.Unlock()
				if err := json.Unmarshal(rec.Value, &j); err != nil {
					r.bad = append(r.bad, fmt.Sprintf("%s: %q", rec.Topic, rec.Value))
					return
				}
				peer, _ := netip.ParseAddr(j.PeerIPSrc)
				src, _ := netip.ParseAddr(j.IPSrc)
				r.recs = append(r.recs, flowRecord{Topic: rec.Topic, Arrived: now, Produced: rec.Timestamp,
					Peer: peer.Unmap(), Src: src.Unmap(), Version: j.Version, Tag: j.Tag})
			})
		}
	}()
	return r, nil
}

func (r *topicReader) Close() { r.cancel(); <-r.done; r.cl.Close() }

// since is every record read that arrived at or after t.
func (r *topicReader) since(t time.Time) []flowRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []flowRecord
	for _, rec := range r.recs {
		if !rec.Arrived.Before(t) {
			out = append(out, rec)
		}
	}
	return out
}

func (r *topicReader) malformed() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bad...)
}

// landed is, for a set of records, which topics each exporter's records
// are in, by export protocol: "100.64.1.1 sFlow -> [t1]".
func landed(recs []flowRecord) map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, r := range recs {
		key := fmt.Sprintf("%s %s", r.Peer, protoName(r.Version))
		if out[key] == nil {
			out[key] = map[string]int{}
		}
		out[key][r.Topic]++
	}
	return out
}

func protoName(v int) string {
	switch v {
	case 5:
		return "sFlow"
	case 10:
		return "IPFIX"
	}
	return fmt.Sprintf("version %d", v)
}

func describe(m map[string]map[string]int) string {
	var lines []string
	for k, topics := range m {
		lines = append(lines, fmt.Sprintf("%s -> %v", k, topics))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
