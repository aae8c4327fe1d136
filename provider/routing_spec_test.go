package provider

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/types"
)

func exampleRouting() routingSpec {
	return routingSpec{Namespace: "flows", Name: "routing", Brokers: []string{"telemetry-kafka-bootstrap.kafka:9092"},
		SFlowPort: 6343, IPFIXPort: 4739, FlushInterval: time.Minute, MountPath: "/etc/pmacct", Aggregate: defaultAggregate,
		Sites: []routingSite{
			{Name: "ams1", Topic: "sfacctd-flows-ams1", Sources: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/28"), netip.MustParsePrefix("2001:db8:1::/48")}},
			{Name: "fra-2", Topic: "sfacctd-flows-fra-2", Sources: []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32")}},
		}}
}

// TestRoutingRender: what pmacct reads, line by line, for the keys that
// route: each site's sources tagged with its tag, each plugin filtering that
// tag into its topic.
func TestRoutingRender(t *testing.T) {
	s := exampleRouting()
	data := s.render()
	ams, fra := siteTag("ams1"), siteTag("fra-2")
	for key, lines := range map[string][]string{
		routingPreTagMap: {fmt.Sprintf("set_tag=%d ip=192.0.2.0/28", ams), fmt.Sprintf("set_tag=%d ip=2001:db8:1::/48", ams),
			fmt.Sprintf("set_tag=%d ip=198.51.100.7/32", fra)},
		routingSFlowConf: {"sfacctd_port: 6343", "pre_tag_map: /etc/pmacct/pretag.map", "plugins: kafka[ams1], kafka[fra-2]",
			"kafka_topic[ams1]: sfacctd-flows-ams1", fmt.Sprintf("pre_tag_filter[ams1]: %d", ams),
			"kafka_topic[fra-2]: sfacctd-flows-fra-2", fmt.Sprintf("pre_tag_filter[fra-2]: %d", fra),
			"kafka_broker_host: telemetry-kafka-bootstrap.kafka", "kafka_broker_port: 9092", "kafka_refresh_time: 60",
			"kafka_output: json", "aggregate: peer_src_ip, export_proto_version, src_host, dst_host, src_port, dst_port, proto, tos, tag"},
		routingIPFIXConf: {"nfacctd_port: 4739", "plugins: kafka[ams1], kafka[fra-2]"},
	} {
		got := strings.Split(data[key], "\n")
		for _, want := range lines {
			found := false
			for _, l := range got {
				found = found || l == want
			}
			if !found {
				t.Errorf("%s lacks %q:\n%s", key, want, data[key])
			}
		}
	}
	if strings.Contains(data[routingPreTagMap], "set_tag=0") {
		t.Errorf("a site tagged 0, pmacct's untagged:\n%s", data[routingPreTagMap])
	}
	// Two brokers: one comma-separated host list with ports.
	s.Brokers = []string{"10.0.0.1:9092", "[2001:db8::9]:9093"}
	if conf := s.render()[routingSFlowConf]; !strings.Contains(conf, "kafka_broker_host: 10.0.0.1:9092,[2001:db8::9]:9093\n") ||
		strings.Contains(conf, "kafka_broker_port") {
		t.Errorf("two brokers rendered as:\n%s", conf)
	}
	// More sources than pmacct's default map size: maps_entries raised.
	s.Sites[0].Sources = nil
	for i := range 400 {
		s.Sites[0].Sources = append(s.Sites[0].Sources, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 32))
	}
	if conf := s.render()[routingSFlowConf]; !strings.Contains(conf, "maps_entries: 401\n") {
		t.Errorf("401 map entries, maps_entries not raised:\n%s", conf)
	}
}

// TestRoutingRoundTrip: whatever render writes, routingFromData reads back
// as the same spec (import and drift depend on it), over random specs.
func TestRoutingRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		s := routingSpec{Namespace: "ns", Name: "r", SFlowPort: 1 + r.Int64N(65535), IPFIXPort: 1 + r.Int64N(65535),
			FlushInterval: time.Duration(1+r.IntN(600)) * time.Second, MountPath: []string{"/etc/pmacct", "/config/x"}[r.IntN(2)],
			Aggregate: defaultAggregate[:1+r.IntN(len(defaultAggregate))], TemplatesFile: []string{"", "/var/lib/pmacct/templates.json"}[r.IntN(2)]}
		s.Brokers = []string{"b0:9092", "[2001:db8::1]:9092", "10.0.0.3:19092"}[:1+r.IntN(3)]
		if r.IntN(2) == 0 && len(s.Brokers) == 1 {
			s.Brokers = []string{"[2001:db8::7]:9092"}
		}
		for j := range 1 + r.IntN(5) {
			site := routingSite{Name: fmt.Sprintf("pop-%d", j), Topic: fmt.Sprintf("t.%d", j)}
			for k := range r.IntN(4) {
				if r.IntN(2) == 0 {
					site.Sources = append(site.Sources, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(j), byte(k), 0}), 24))
				} else {
					site.Sources = append(site.Sources, netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(j), byte(k)}), 48))
				}
			}
			site.Sources = sortedPrefixes(site.Sources)
			s.Sites = append(s.Sites, site)
		}
		got, err := routingFromData(s.render())
		if err != nil {
			t.Fatalf("case %d: %v\n%v", i, err, s.render())
		}
		got.Namespace, got.Name = s.Namespace, s.Name
		for j := range got.Sites {
			if len(got.Sites[j].Sources) == 0 {
				got.Sites[j].Sources = nil
			}
		}
		for j := range s.Sites {
			if len(s.Sites[j].Sources) == 0 {
				s.Sites[j].Sources = nil
			}
		}
		if !reflect.DeepEqual(got, s) {
			t.Fatalf("case %d: read back\n%+v\nwrote\n%+v", i, got, s)
		}
	}
}

// TestRoutingProblems: what pmacct would route ambiguously is refused with
// a sentence naming the sites.
func TestRoutingProblems(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(*routingSpec)
		want string // "" for none
	}{
		{"sound", func(*routingSpec) {}, ""},
		{"IPv4 overlap", func(s *routingSpec) {
			s.Sites[1].Sources = append(s.Sites[1].Sources, netip.MustParsePrefix("192.0.2.8/29"))
		},
			`192.0.2.0/28 of site "ams1" overlaps 192.0.2.8/29 of site "fra-2"`},
		{"IPv6 overlap", func(s *routingSpec) { s.Sites[1].Sources = []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")} },
			`2001:db8:1::/48 of site "ams1" overlaps 2001:db8::/32 of site "fra-2"`},
		{"adjacent, no overlap", func(s *routingSpec) { s.Sites[1].Sources = []netip.Prefix{netip.MustParsePrefix("192.0.2.16/28")} }, ""},
		{"one topic", func(s *routingSpec) { s.Sites[1].Topic = s.Sites[0].Topic }, `both write to topic "sfacctd-flows-ams1"`},
		{"same ports", func(s *routingSpec) { s.IPFIXPort = s.SFlowPort }, "sflow_port and ipfix_port are both 6343"},
		{"no site", func(s *routingSpec) { s.Sites = nil }, "no site"},
	} {
		s := exampleRouting()
		c.edit(&s)
		got := strings.Join(s.problems(), "\n")
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("%s: problems %q, want %q", c.name, got, c.want)
		}
	}
}

// TestSiteTagStable: a site's tag depends on its name only, is never 0 and
// differs between names.
func TestSiteTagStable(t *testing.T) {
	seen := map[int64]string{}
	for i := range 10000 {
		name := fmt.Sprintf("pop-%d", i)
		tag := siteTag(name)
		if tag <= 0 || tag != siteTag(name) {
			t.Fatalf("tag of %s: %d", name, tag)
		}
		if other, dup := seen[tag]; dup {
			t.Fatalf("%s and %s share tag %d", name, other, tag)
		}
		seen[tag] = name
	}
}

// TestRoutingFromHandEdits: what the reader refuses says what and where.
func TestRoutingFromHandEdits(t *testing.T) {
	for _, c := range []struct {
		name string
		edit func(map[string]string)
		want string
	}{
		{"no nfacctd.conf", func(d map[string]string) { delete(d, routingIPFIXConf) }, "has no nfacctd.conf"},
		{"foreign map key", func(d map[string]string) { d[routingPreTagMap] += "set_tag=1 ip=10.0.0.0/8 filter='udp'\n" }, `key "filter"`},
		{"tag of no site", func(d map[string]string) { d[routingPreTagMap] += "set_tag=5 ip=10.0.0.0/8\n" }, `tag "5" is no site's`},
		{"memory plugin", func(d map[string]string) {
			d[routingSFlowConf] = strings.Replace(d[routingSFlowConf], "plugins: kafka[ams1]", "plugins: memory", 1)
		}, `plugin "memory"`},
	} {
		data := exampleRouting().render()
		c.edit(data)
		if _, err := routingFromData(data); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// TestRoutingRefreshKeepsSpelling: values that read back the same in
// another spelling keep the configuration's, so a refresh plans nothing.
func TestRoutingRefreshKeepsSpelling(t *testing.T) {
	m := routingModel{MountPath: types.StringValue("/etc/pmacct/"), FlushInterval: newDuration("1m")}
	s := exampleRouting()
	m.setFrom(s)
	if m.MountPath.ValueString() != "/etc/pmacct/" || m.FlushInterval.ValueString() != "1m" {
		t.Errorf("refresh rewrote the spelling: mount_path %q, flush_interval %q", m.MountPath.ValueString(), m.FlushInterval.ValueString())
	}
	s.MountPath, s.FlushInterval = "/config", 10*time.Second
	m.setFrom(s)
	if m.MountPath.ValueString() != "/config" || m.FlushInterval.ValueString() != "10s" {
		t.Errorf("refresh missed a change: mount_path %q, flush_interval %q", m.MountPath.ValueString(), m.FlushInterval.ValueString())
	}
}
