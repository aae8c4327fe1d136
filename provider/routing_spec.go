package provider

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
)

// routingSpec is the collectors' routing in plain Go: which exporter
// addresses belong to which site, and the topic each site's flows go to.
// telemetry_collector_routing renders it into the files pmacct's collectors
// read (render) and reads it back from them (routingFromData), so import and
// drift work; both are pure and table-tested without a server or a pmacct.
//
// The routing is pmacct's own: the collector's core process tags each record
// by its exporter's address (pre_tag_map: `set_tag=<site's tag> ip=<prefix>`,
// first match wins), and each site has a Kafka plugin that passes only its
// tag (pre_tag_filter) to its topic (kafka_topic). A record whose exporter is
// in no site stays untagged (tag 0), which no plugin passes: it is dropped,
// never written to some other site's topic.
type routingSpec struct {
	Namespace, Name string
	// Brokers are the Kafka bootstrap servers, host:port.
	Brokers              []string
	SFlowPort, IPFIXPort int64
	FlushInterval        time.Duration
	// MountPath is where the collectors mount the ConfigMap: pre_tag_map is
	// named by its path there.
	MountPath string
	// TemplatesFile, when set, is where nfacctd keeps the IPFIX templates it
	// learnt (on a volume that outlives the pod), so a replaced collector
	// decodes the exporters' records at once instead of dropping them until
	// each exporter resends its templates.
	TemplatesFile string
	Aggregate     []string
	Sites         []routingSite // sorted by name
}

// routingSite is one site's share of the routing.
type routingSite struct {
	Name, Topic string
	Sources     []netip.Prefix // canonical, sorted
}

// The ConfigMap's keys: the pre-tag map both daemons read, and each daemon's
// configuration.
const (
	routingPreTagMap = "pretag.map"
	routingSFlowConf = "sfacctd.conf"
	routingIPFIXConf = "nfacctd.conf"
)

// Defaults of telemetry_collector_routing, named once for the schema, its
// descriptions and import.
const (
	defaultSFlowPort     = 6343 // sFlow's IANA port
	defaultIPFIXPort     = 4739 // IPFIX's IANA port
	defaultFlushInterval = "60s"
	defaultMountPath     = "/etc/pmacct"
	// pmacctMapEntries is pmacct's default maps_entries: a larger pre-tag map
	// needs the key raised, which render does.
	pmacctMapEntries = 384
)

// defaultAggregate is what each record carries: the exporter's address
// (peer_src_ip, kept end to end by the ingress), the export protocol's
// version (5 for sFlow, 10 for IPFIX), the flow's 5-tuple and ToS, and the
// site's tag.
var defaultAggregate = []string{"peer_src_ip", "export_proto_version", "src_host", "dst_host", "src_port", "dst_port", "proto", "tos", "tag"}

const routingHeader = "! Written by terraform-provider-telemetry (telemetry_collector_routing %s/%s): each exporter's\n" +
	"! flows go to its site's topic, an unlisted exporter's nowhere. terraform apply rewrites hand edits.\n"

// siteTag is a site's pmacct tag: derived from its name alone, so adding or
// removing another site never renumbers it (a collector still running the old
// files then routes nothing to the wrong topic). 63 bits, never 0 (pmacct's
// "untagged").
func siteTag(name string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	if t := int64(h.Sum64() >> 1); t != 0 {
		return t
	}
	return 1
}

// problems are what makes the routing ambiguous or unusable, each a sentence
// that says what to change; nil when it is sound.
func (s routingSpec) problems() []string {
	var out []string
	if len(s.Sites) == 0 {
		out = append(out, "no site: pmacct without a plugin runs its in-memory one, which routes flows to no topic. List at least one site.")
	}
	tags := map[int64]string{}
	for i, a := range s.Sites {
		if other, dup := tags[siteTag(a.Name)]; dup {
			out = append(out, fmt.Sprintf("sites %q and %q have the same tag %d: rename one.", other, a.Name, siteTag(a.Name)))
		}
		tags[siteTag(a.Name)] = a.Name
		for _, b := range s.Sites[i+1:] {
			if a.Topic == b.Topic {
				out = append(out, fmt.Sprintf("sites %q and %q both write to topic %q: one topic per site keeps one PoP's flows "+
					"out of another's.", a.Name, b.Name, a.Topic))
			}
			for _, pa := range a.Sources {
				for _, pb := range b.Sources {
					if pa.Overlaps(pb) {
						out = append(out, fmt.Sprintf("%s of site %q overlaps %s of site %q: an exporter there would be routed to "+
							"whichever comes first. Give each exporter address to one site.", pa, a.Name, pb, b.Name))
					}
				}
			}
		}
	}
	if s.SFlowPort == s.IPFIXPort {
		out = append(out, fmt.Sprintf("sflow_port and ipfix_port are both %d: the two collectors need a port each.", s.SFlowPort))
	}
	return out
}

// render is the ConfigMap's data.
func (s routingSpec) render() map[string]string {
	return map[string]string{
		routingPreTagMap: s.preTagMap(),
		routingSFlowConf: s.daemonConf("sfacctd", s.SFlowPort),
		routingIPFIXConf: s.daemonConf("nfacctd", s.IPFIXPort),
	}
}

func (s routingSpec) preTagMap() string {
	var b strings.Builder
	fmt.Fprintf(&b, routingHeader, s.Namespace, s.Name)
	for _, site := range s.Sites {
		fmt.Fprintf(&b, "! site %s -> topic %s\n", site.Name, site.Topic)
		for _, p := range site.Sources {
			fmt.Fprintf(&b, "set_tag=%d ip=%s\n", siteTag(site.Name), p)
		}
	}
	return b.String()
}

func (s routingSpec) entries() int {
	n := 0
	for _, site := range s.Sites {
		n += len(site.Sources)
	}
	return max(n, pmacctMapEntries)
}

func (s routingSpec) daemonConf(daemon string, port int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, routingHeader, s.Namespace, s.Name)
	line := func(k, v string) { fmt.Fprintf(&b, "%s: %s\n", k, v) }
	line("daemonize", "false")
	line(daemon+"_port", strconv.FormatInt(port, 10))
	line("pre_tag_map", path.Join(s.MountPath, routingPreTagMap))
	line("maps_entries", strconv.Itoa(s.entries()))
	if daemon == "nfacctd" && s.TemplatesFile != "" {
		line("nfacctd_templates_file", s.TemplatesFile)
	}
	line("aggregate", strings.Join(s.Aggregate, ", "))
	line("kafka_output", "json")
	if len(s.Brokers) == 1 {
		// One broker: pmacct reads its port from kafka_broker_port (a
		// "host:port" alone would be taken for a host name).
		host, port, _ := net.SplitHostPort(s.Brokers[0])
		line("kafka_broker_host", host)
		line("kafka_broker_port", port)
	} else {
		line("kafka_broker_host", strings.Join(s.Brokers, ","))
	}
	line("kafka_refresh_time", strconv.FormatInt(int64(s.FlushInterval/time.Second), 10))
	var plugins []string
	for _, site := range s.Sites {
		plugins = append(plugins, "kafka["+site.Name+"]")
	}
	line("plugins", strings.Join(plugins, ", "))
	for _, site := range s.Sites {
		line("kafka_topic["+site.Name+"]", site.Topic)
		line("pre_tag_filter["+site.Name+"]", strconv.FormatInt(siteTag(site.Name), 10))
	}
	return b.String()
}

// routingChecksum is a digest of a ConfigMap's data: the module puts it on
// the collectors' pod template, so a change of routing rolls them (pmacct
// reads its plugins only at start).
func routingChecksum(data map[string]string) string {
	h := sha256.New()
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "%s\x00%s\x00", k, data[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// routingFromData reads a ConfigMap's data back into a spec (namespace and
// name are the caller's). It accepts what render writes, whoever wrote it;
// an error says what it cannot read.
func routingFromData(data map[string]string) (routingSpec, error) {
	var s routingSpec
	sf, err := confKeys(data, routingSFlowConf)
	if err != nil {
		return s, err
	}
	nf, err := confKeys(data, routingIPFIXConf)
	if err != nil {
		return s, err
	}
	if s.SFlowPort, err = strconv.ParseInt(sf["sfacctd_port"], 10, 32); err != nil {
		return s, fmt.Errorf("%s: sfacctd_port %q is not a port", routingSFlowConf, sf["sfacctd_port"])
	}
	if s.IPFIXPort, err = strconv.ParseInt(nf["nfacctd_port"], 10, 32); err != nil {
		return s, fmt.Errorf("%s: nfacctd_port %q is not a port", routingIPFIXConf, nf["nfacctd_port"])
	}
	mapPath := sf["pre_tag_map"]
	if path.Base(mapPath) != routingPreTagMap {
		return s, fmt.Errorf("%s: pre_tag_map %q is not the ConfigMap's %s", routingSFlowConf, mapPath, routingPreTagMap)
	}
	s.MountPath = path.Dir(mapPath)
	s.TemplatesFile = nf["nfacctd_templates_file"]
	for _, a := range strings.Split(sf["aggregate"], ",") {
		if a = strings.TrimSpace(a); a != "" {
			s.Aggregate = append(s.Aggregate, a)
		}
	}
	refresh, err := strconv.ParseInt(sf["kafka_refresh_time"], 10, 64)
	if err != nil || refresh < 1 {
		return s, fmt.Errorf("%s: kafka_refresh_time %q is not a number of seconds", routingSFlowConf, sf["kafka_refresh_time"])
	}
	s.FlushInterval = time.Duration(refresh) * time.Second
	if port := sf["kafka_broker_port"]; port != "" {
		s.Brokers = []string{net.JoinHostPort(sf["kafka_broker_host"], port)}
	} else {
		s.Brokers = strings.Split(sf["kafka_broker_host"], ",")
	}
	bySite := map[int64]*routingSite{}
	for _, p := range strings.Split(sf["plugins"], ",") {
		p = strings.TrimSpace(p)
		name, ok := strings.CutPrefix(p, "kafka[")
		if name, ok = strings.CutSuffix(name, "]"); !ok || name == "" {
			return s, fmt.Errorf("%s: plugin %q is not a named Kafka plugin (kafka[<site>])", routingSFlowConf, p)
		}
		tag, err := strconv.ParseInt(sf["pre_tag_filter["+name+"]"], 10, 64)
		if err != nil || tag != siteTag(name) {
			return s, fmt.Errorf("%s: site %q's pre_tag_filter is %q, not its tag %d", routingSFlowConf, name, sf["pre_tag_filter["+name+"]"], siteTag(name))
		}
		s.Sites = append(s.Sites, routingSite{Name: name, Topic: sf["kafka_topic["+name+"]"]})
	}
	for i := range s.Sites {
		bySite[siteTag(s.Sites[i].Name)] = &s.Sites[i]
	}
	for n, line := range strings.Split(data[routingPreTagMap], "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "!") {
			continue
		}
		var tag, ip string
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "set_tag":
				tag = v
			case "ip":
				ip = v
			default:
				return s, fmt.Errorf("%s line %d: key %q is not one telemetry_collector_routing writes", routingPreTagMap, n+1, k)
			}
		}
		t, err := strconv.ParseInt(tag, 10, 64)
		site, ok := bySite[t]
		if err != nil || !ok {
			return s, fmt.Errorf("%s line %d: tag %q is no site's", routingPreTagMap, n+1, tag)
		}
		p, err := cidrset.ParsePrefix(ip)
		if err != nil {
			return s, fmt.Errorf("%s line %d: %v", routingPreTagMap, n+1, err)
		}
		site.Sources = append(site.Sources, p)
	}
	for i := range s.Sites {
		s.Sites[i].Sources = sortedPrefixes(s.Sites[i].Sources)
	}
	slices.SortFunc(s.Sites, func(a, b routingSite) int { return strings.Compare(a.Name, b.Name) })
	return s, nil
}

// confKeys reads a pmacct configuration's "key: value" lines ("!" starts a
// comment).
func confKeys(data map[string]string, key string) (map[string]string, error) {
	text, ok := data[key]
	if !ok {
		return nil, fmt.Errorf("the ConfigMap has no %s", key)
	}
	out := map[string]string{}
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "!") {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%s line %d: %q is not \"key: value\"", key, n+1, line)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}

// sortedPrefixes is the canonical order of a site's sources: IPv4 before
// IPv6, then by address and length, without duplicates.
func sortedPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := slices.Clone(ps)
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}
