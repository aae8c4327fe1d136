package provider

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// The telemetry_site model: its Terraform values and their conversion to and
// from the pure siteSpec (site_spec.go).

type siteModel struct {
	ID                     types.String   `tfsdk:"id"`
	Name                   types.String   `tfsdk:"name"`
	Kafka                  types.Object   `tfsdk:"kafka"`
	TopicPrefix            types.String   `tfsdk:"topic_prefix"`
	ExpectedFlowsPerSecond types.Int64    `tfsdk:"expected_flows_per_second"`
	Partitions             types.Int64    `tfsdk:"partitions"`
	Replicas               types.Int64    `tfsdk:"replicas"`
	Retention              durationValue  `tfsdk:"retention"`
	MinInsyncReplicas      types.Int64    `tfsdk:"min_insync_replicas"`
	FlowSources            types.Set      `tfsdk:"flow_sources"`
	Labels                 types.Map      `tfsdk:"labels"`
	WaitForReady           types.Bool     `tfsdk:"wait_for_ready"`
	TopicName              types.String   `tfsdk:"topic_name"`
	APIVersion             types.String   `tfsdk:"api_version"`
	Timeouts               timeouts.Value `tfsdk:"timeouts"`
}

type siteKafkaModel struct {
	Cluster   types.String `tfsdk:"cluster"`
	Namespace types.String `tfsdk:"namespace"`
}

func knownKafka(ctx context.Context, o types.Object) (siteKafkaModel, bool) {
	var k siteKafkaModel
	if o.IsNull() || o.IsUnknown() {
		return k, false
	}
	if diags := o.As(ctx, &k, objectAsOptions); diags.HasError() {
		return k, false
	}
	return k, !k.Cluster.IsUnknown() && !k.Namespace.IsUnknown()
}

// spec converts a known plan to a siteSpec.
func (m *siteModel) spec(ctx context.Context) (siteSpec, diag.Diagnostics) {
	var diags diag.Diagnostics
	kafka, _ := knownKafka(ctx, m.Kafka)
	retention, err := parseRetention(m.Retention.ValueString())
	if err != nil {
		diags.AddAttributeError(path.Root("retention"), "Invalid retention", err.Error())
	}
	s := siteSpec{
		Name: m.Name.ValueString(), Cluster: kafka.Cluster.ValueString(), Namespace: kafka.Namespace.ValueString(),
		TopicPrefix: m.TopicPrefix.ValueString(), ExpectedFlowsPerSecond: m.ExpectedFlowsPerSecond.ValueInt64(),
		Partitions: m.Partitions.ValueInt64(), Replicas: m.Replicas.ValueInt64(), MinInsync: m.MinInsyncReplicas.ValueInt64(),
		Retention: retention, Labels: map[string]string{},
	}
	diags.Append(m.FlowSources.ElementsAs(ctx, &s.FlowSources, false)...)
	if !m.Labels.IsNull() {
		diags.Append(m.Labels.ElementsAs(ctx, &s.Labels, false)...)
	}
	return s, diags
}

// setFrom refreshes the model from what the cluster holds. Values that mean
// the same as the state's (a retention of "1d" versus "24h") keep the
// state's spelling, so refresh never invents a diff.
func (m *siteModel) setFrom(ctx context.Context, s siteSpec) diag.Diagnostics {
	var diags diag.Diagnostics
	m.ID = types.StringValue(s.Namespace + "/" + s.topicName())
	m.Name = types.StringValue(s.Name)
	m.Kafka = types.ObjectValueMust(siteKafkaAttrTypes, map[string]attr.Value{
		"cluster": types.StringValue(s.Cluster), "namespace": types.StringValue(s.Namespace)})
	m.TopicPrefix = types.StringValue(s.TopicPrefix)
	m.TopicName = types.StringValue(s.topicName())
	m.ExpectedFlowsPerSecond = types.Int64Value(s.ExpectedFlowsPerSecond)
	m.Partitions = types.Int64Value(s.Partitions)
	m.Replicas = types.Int64Value(s.Replicas)
	m.MinInsyncReplicas = types.Int64Value(s.MinInsync)
	if prior, err := parseRetention(m.Retention.ValueString()); err != nil || prior != s.Retention {
		m.Retention = newDuration(formatRetention(s.Retention))
	}
	if len(s.FlowSources) == 0 {
		m.FlowSources = types.SetNull(types.StringType)
	} else {
		var d diag.Diagnostics
		m.FlowSources, d = types.SetValueFrom(ctx, types.StringType, s.FlowSources)
		diags.Append(d...)
	}
	if len(s.Labels) == 0 && m.Labels.IsNull() {
		m.Labels = types.MapNull(types.StringType)
	} else {
		var d diag.Diagnostics
		m.Labels, d = types.MapValueFrom(ctx, types.StringType, s.Labels)
		diags.Append(d...)
	}
	return diags
}
