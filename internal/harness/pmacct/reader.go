package pmacct

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

// Record is one record a collector wrote to Kafka (pmacct's JSON, the
// fields telemetry_collector_routing's default aggregate asks for).
type Record struct {
	Topic    string
	Arrived  time.Time  // when the reader got it
	Produced time.Time  // the Kafka record's timestamp
	Peer     netip.Addr // the exporter (peer_src_ip)
	Src      netip.Addr // the observed flow's source
	SrcPort  uint16
	DstPort  uint16
	Version  int // 5: sFlow, 10: IPFIX
	Tag      int64
	Packets  int64
}

type pmacctJSON struct {
	PeerIPSrc string `json:"peer_ip_src"`
	IPSrc     string `json:"ip_src"`
	PortSrc   uint16 `json:"port_src"`
	PortDst   uint16 `json:"port_dst"`
	Packets   int64  `json:"packets"`
	Version   int    `json:"export_proto_version"`
	Tag       int64  `json:"tag"`
}

// Reader reads every topic of the broker from its start, new topics
// included, until Close: what landed where, for the assertions.
type Reader struct {
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	recs   []Record
	bad    []string // records that are not pmacct's JSON
}

func NewReader(brokers []string) (*Reader, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeRegex(), kgo.ConsumeTopics(".*"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// New topics are found within a second, not the default five minutes.
		kgo.MetadataMinAge(100*time.Millisecond), kgo.MetadataMaxAge(time.Second))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Reader{cl: cl, cancel: cancel, done: make(chan struct{})}
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
				r.recs = append(r.recs, Record{Topic: rec.Topic, Arrived: now, Produced: rec.Timestamp,
					Peer: peer.Unmap(), Src: src.Unmap(), SrcPort: j.PortSrc, DstPort: j.PortDst, Version: j.Version, Tag: j.Tag, Packets: j.Packets})
			})
		}
	}()
	return r, nil
}

// Close stops reading.
func (r *Reader) Close() { r.cancel(); <-r.done; r.cl.Close() }

// Since is every record read that arrived at or after t.
func (r *Reader) Since(t time.Time) []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Record
	for _, rec := range r.recs {
		if !rec.Arrived.Before(t) {
			out = append(out, rec)
		}
	}
	return out
}

// Malformed are the records that were not pmacct's JSON.
func (r *Reader) Malformed() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bad...)
}

// Landed is, for a set of records, how many of each exporter's records are
// in each topic, by export protocol: "100.64.1.1 sFlow" -> topic -> count.
func Landed(recs []Record) map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, r := range recs {
		key := fmt.Sprintf("%s %s", r.Peer, ProtoName(r.Version))
		if out[key] == nil {
			out[key] = map[string]int{}
		}
		out[key][r.Topic]++
	}
	return out
}

// ProtoName names an export_proto_version.
func ProtoName(v int) string {
	switch v {
	case 5:
		return "sFlow"
	case 10:
		return "IPFIX"
	}
	return fmt.Sprintf("version %d", v)
}

// Describe prints Landed's result a line per exporter and protocol.
func Describe(m map[string]map[string]int) string {
	var lines []string
	for k, topics := range m {
		lines = append(lines, fmt.Sprintf("%s -> %v", k, topics))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// AllLanded says whether every exporter of topicOf has both sFlow and IPFIX
// records among recs in its own topic (the condition the pipeline's test,
// demo and benchmark wait for).
func AllLanded(recs []Record, topicOf map[netip.Addr]string) bool {
	got := Landed(recs)
	for addr, topic := range topicOf {
		for _, v := range []int{5, 10} {
			if got[fmt.Sprintf("%s %s", addr, ProtoName(v))][topic] == 0 {
				return false
			}
		}
	}
	return true
}
