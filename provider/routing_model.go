package provider

import (
	"context"
	"maps"
	"net/netip"
	pathpkg "path"
	"slices"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/cidrset"
)

// The telemetry_collector_routing model: its Terraform values and their
// conversion to and from the pure routingSpec (routing_spec.go).

type routingModel struct {
	ID                    types.String  `tfsdk:"id"`
	Name                  types.String  `tfsdk:"name"`
	Namespace             types.String  `tfsdk:"namespace"`
	KafkaBootstrapServers types.List    `tfsdk:"kafka_bootstrap_servers"`
	Sites                 types.Map     `tfsdk:"sites"`
	SFlowPort             types.Int64   `tfsdk:"sflow_port"`
	IPFIXPort             types.Int64   `tfsdk:"ipfix_port"`
	FlushInterval         durationValue `tfsdk:"flush_interval"`
	MountPath             types.String  `tfsdk:"mount_path"`
	IPFIXTemplatesFile    types.String  `tfsdk:"ipfix_templates_file"`
	Aggregate             types.List    `tfsdk:"aggregate"`
	Tags                  types.Map     `tfsdk:"tags"`
	Checksum              types.String  `tfsdk:"checksum"`
}

type routingSiteModel struct {
	Topic       types.String `tfsdk:"topic"`
	FlowSources types.Set    `tfsdk:"flow_sources"`
}

var routingSiteAttrTypes = map[string]attr.Type{"topic": types.StringType, "flow_sources": types.SetType{ElemType: types.StringType}}

// spec converts the model to a routingSpec; known is false while any value
// it needs is unknown (a site's topic before the site is planned).
func (m *routingModel) spec(ctx context.Context) (s routingSpec, known bool, diags diag.Diagnostics) {
	s = routingSpec{Namespace: m.Namespace.ValueString(), Name: m.Name.ValueString(),
		SFlowPort: m.SFlowPort.ValueInt64(), IPFIXPort: m.IPFIXPort.ValueInt64(), MountPath: m.MountPath.ValueString(),
		TemplatesFile: m.IPFIXTemplatesFile.ValueString()}
	known = !m.KafkaBootstrapServers.IsUnknown() && !m.Sites.IsUnknown() && !m.SFlowPort.IsUnknown() && !m.IPFIXPort.IsUnknown() &&
		!m.FlushInterval.IsUnknown() && !m.MountPath.IsUnknown() && !m.Aggregate.IsUnknown() && !m.Namespace.IsUnknown() && !m.Name.IsUnknown() &&
		!m.IPFIXTemplatesFile.IsUnknown()
	if !known {
		return s, false, nil
	}
	diags.Append(m.KafkaBootstrapServers.ElementsAs(ctx, &s.Brokers, false)...)
	diags.Append(m.Aggregate.ElementsAs(ctx, &s.Aggregate, false)...)
	if d, err := parseDuration(m.FlushInterval.ValueString()); err == nil {
		s.FlushInterval = d
	} else {
		diags.AddAttributeError(path.Root("flush_interval"), "Invalid flush_interval", err.Error())
	}
	var sites map[string]routingSiteModel
	diags.Append(m.Sites.ElementsAs(ctx, &sites, false)...)
	if diags.HasError() {
		return s, false, diags
	}
	for _, name := range slices.Sorted(maps.Keys(sites)) {
		site := sites[name]
		if site.Topic.IsUnknown() || site.FlowSources.IsUnknown() {
			return s, false, diags
		}
		var raw []types.String
		diags.Append(site.FlowSources.ElementsAs(ctx, &raw, false)...)
		var sources []netip.Prefix
		for _, r := range raw {
			if r.IsUnknown() {
				return s, false, diags
			}
			p, err := cidrset.ParsePrefix(r.ValueString())
			if err != nil {
				diags.AddAttributeError(path.Root("sites").AtMapKey(name).AtName("flow_sources"), "Invalid CIDR", err.Error())
				continue
			}
			sources = append(sources, p)
		}
		s.Sites = append(s.Sites, routingSite{Name: name, Topic: site.Topic.ValueString(), Sources: sortedPrefixes(sources)})
	}
	return s, !diags.HasError(), diags
}

// fillDefaults puts the schema's defaults into a configuration (ValidateConfig
// sees it without them).
func (m *routingModel) fillDefaults() {
	if m.SFlowPort.IsNull() {
		m.SFlowPort = types.Int64Value(defaultSFlowPort)
	}
	if m.IPFIXPort.IsNull() {
		m.IPFIXPort = types.Int64Value(defaultIPFIXPort)
	}
	if m.FlushInterval.IsNull() {
		m.FlushInterval = newDuration(defaultFlushInterval)
	}
	if m.MountPath.IsNull() {
		m.MountPath = types.StringValue(defaultMountPath)
	}
	if m.Aggregate.IsNull() {
		m.Aggregate = stringList(defaultAggregate)
	}
}

// setComputed fills tags and checksum from a known spec.
func (m *routingModel) setComputed(s routingSpec, data map[string]string) {
	tags := map[string]attr.Value{}
	for _, site := range s.Sites {
		tags[site.Name] = types.Int64Value(siteTag(site.Name))
	}
	m.Tags = types.MapValueMust(types.Int64Type, tags)
	m.Checksum = types.StringValue(routingChecksum(data))
	m.ID = types.StringValue(s.Namespace + "/" + s.Name)
}

// setFrom refreshes the model from a spec read back from the cluster; a
// flush interval or mount path meaning the state's ("1m" for "60s",
// "/etc/pmacct/" for "/etc/pmacct") keeps its spelling, so refresh never
// invents a diff.
func (m *routingModel) setFrom(s routingSpec) {
	m.Namespace, m.Name = types.StringValue(s.Namespace), types.StringValue(s.Name)
	m.KafkaBootstrapServers = stringList(s.Brokers)
	m.SFlowPort, m.IPFIXPort = types.Int64Value(s.SFlowPort), types.Int64Value(s.IPFIXPort)
	if prior, err := parseDuration(m.FlushInterval.ValueString()); err != nil || prior != s.FlushInterval {
		m.FlushInterval = newDuration(formatDuration(s.FlushInterval))
	}
	if m.MountPath.IsNull() || pathpkg.Clean(m.MountPath.ValueString()) != s.MountPath {
		m.MountPath = types.StringValue(s.MountPath)
	}
	m.IPFIXTemplatesFile = types.StringNull()
	if s.TemplatesFile != "" {
		m.IPFIXTemplatesFile = types.StringValue(s.TemplatesFile)
	}
	m.Aggregate = stringList(s.Aggregate)
	sites := map[string]attr.Value{}
	for _, site := range s.Sites {
		sources := types.SetNull(types.StringType) // a site without sources, as telemetry_site has it
		if len(site.Sources) > 0 {
			var vs []attr.Value
			for _, p := range site.Sources {
				vs = append(vs, types.StringValue(p.String()))
			}
			sources = types.SetValueMust(types.StringType, vs)
		}
		sites[site.Name] = types.ObjectValueMust(routingSiteAttrTypes, map[string]attr.Value{
			"topic": types.StringValue(site.Topic), "flow_sources": sources})
	}
	m.Sites = types.MapValueMust(types.ObjectType{AttrTypes: routingSiteAttrTypes}, sites)
}

// flushSeconds says whether a flush interval is whole seconds (pmacct's unit).
func flushSeconds(d time.Duration) bool { return d >= time.Second && d%time.Second == 0 }
