package provider

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/hashicorp/terraform-plugin-framework-validators/float64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

var _ datasource.DataSource = (*kafkaSizingDataSource)(nil)

// kafkaSizingDataSource is telemetry_kafka_sizing: a pure computation, no API
// call, so it is known at plan time whenever its inputs are.
type kafkaSizingDataSource struct{}

func newKafkaSizingDataSource() datasource.DataSource { return &kafkaSizingDataSource{} }

type kafkaSizingModel struct {
	Sites                    []kafkaSizingSiteModel `tfsdk:"sites"`
	BytesPerFlow             types.Int64            `tfsdk:"bytes_per_flow"`
	ReplicationFactor        types.Int64            `tfsdk:"replication_factor"`
	MinInsyncReplicas        types.Int64            `tfsdk:"min_insync_replicas"`
	ConsumerGroups           types.Int64            `tfsdk:"consumer_groups"`
	BrokerWriteMBps          types.Float64          `tfsdk:"broker_write_mbps"`
	BrokerWriteMegabytes     types.Float64          `tfsdk:"broker_write_megabytes_per_second"`
	DiskFillTarget           types.Float64          `tfsdk:"disk_fill_target"`
	Brokers                  types.Int64            `tfsdk:"brokers"`
	TotalFlowsPerSecond      types.Int64            `tfsdk:"total_flows_per_second"`
	TotalPartitions          types.Int64            `tfsdk:"total_partitions"`
	ProduceBytesPerSecond    types.Int64            `tfsdk:"produce_bytes_per_second"`
	NetworkInBytesPerSecond  types.Int64            `tfsdk:"network_in_bytes_per_second"`
	NetworkOutBytesPerSecond types.Int64            `tfsdk:"network_out_bytes_per_second"`
	StorageBytesTotal        types.Int64            `tfsdk:"storage_bytes_total"`
	StoragePerBrokerBytes    types.Int64            `tfsdk:"storage_per_broker_bytes"`
	Topics                   types.List             `tfsdk:"topics"`
}

type kafkaSizingSiteModel struct {
	Name                   types.String `tfsdk:"name"`
	ExpectedFlowsPerSecond types.Int64  `tfsdk:"expected_flows_per_second"`
	Retention              types.String `tfsdk:"retention"`
	Partitions             types.Int64  `tfsdk:"partitions"`
}

var sizingTopicType = types.ObjectType{AttrTypes: map[string]attr.Type{
	"name": types.StringType, "partitions": types.Int64Type,
	"produce_bytes_per_second": types.Int64Type, "storage_bytes": types.Int64Type,
}}

// defaultBrokerWriteMegabytes is what one broker is planned to write, in
// megabytes per second.
const defaultBrokerWriteMegabytes = 50.0

func (d *kafkaSizingDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_kafka_sizing"
}

var sizingDescription = `Derives the size of the Kafka cluster the telemetry sites need: brokers, partitions, storage and network. A pure computation, known at plan time.

Formulas (` + "`rate`" + ` is a site's ` + "`expected_flows_per_second x bytes_per_flow`" + `, RF the replication factor):

| output | formula |
| --- | --- |
| partitions of a site | its ` + "`partitions`" + ` if given, else ` + "`max(1, ceil(rate / " + partitionBudgetText + "))`" + `, as ` + "`telemetry_site`" + ` derives them |
| ` + "`produce_bytes_per_second`" + ` | sum of the sites' rates |
| ` + "`network_in_bytes_per_second`" + ` | produce x RF (leaders take the produce, followers the replication) |
| ` + "`network_out_bytes_per_second`" + ` | produce x (RF - 1 + consumer_groups) |
| ` + "`brokers`" + ` | max(RF, ceil(network_in / broker_write_megabytes_per_second)) |
| ` + "`storage_bytes_total`" + ` | sum of rate x retention x RF |
| ` + "`storage_per_broker_bytes`" + ` | storage_bytes_total / brokers / disk_fill_target |

Sources of the rules of thumb: partitions >= target throughput / per-partition throughput, where a partition
takes tens of MB/s ([Confluent: how to choose the number of partitions](https://www.confluent.io/blog/how-choose-number-topics-partitions-kafka-cluster/));
planning at ` + partitionBudgetText + ` per partition leaves consumers room to catch up. Storage = ingress x retention x replication
factor plus headroom, and write bandwidth = produce x RF (the usual Kafka capacity-planning arithmetic).
RF ` + strconv.Itoa(defaultReplicas) + ` with ` + "`min.insync.replicas`" + ` ` + strconv.Itoa(defaultMinInsync) + ` needs at least ` + strconv.Itoa(defaultReplicas) + ` brokers, so one broker may be down while acks=all producers
still write. These are starting points for capacity planning, not guarantees: measure your record sizes.`

func (d *kafkaSizingDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: sizingDescription,
		Attributes: map[string]schema.Attribute{
			"sites": schema.ListNestedAttribute{Required: true,
				Validators:          []validator.List{listvalidator.SizeAtLeast(1)},
				MarkdownDescription: "The sites, typically `[for s in telemetry_site.all : { name = s.name, expected_flows_per_second = s.expected_flows_per_second, retention = s.retention, partitions = s.partitions }]`.",
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"name": schema.StringAttribute{Required: true, MarkdownDescription: "The site's name."},
					"expected_flows_per_second": schema.Int64Attribute{Required: true,
						Validators:          []validator.Int64{int64validator.Between(0, maxFlowsPerSecond)},
						MarkdownDescription: fmt.Sprintf("Flow records per second, at most %d.", maxFlowsPerSecond)},
					"retention": schema.StringAttribute{Optional: true, Validators: []validator.String{retentionValidator{}},
						MarkdownDescription: "Retention, e.g. `24h` or `7d`. Default `" + defaultRetention + "`."},
					"partitions": schema.Int64Attribute{Optional: true, Validators: []validator.Int64{int64validator.Between(1, maxPartitions)},
						MarkdownDescription: "Partitions of its topic; derived when unset."},
				}},
			},
			"bytes_per_flow": schema.Int64Attribute{Optional: true, Validators: []validator.Int64{int64validator.Between(1, 65536)},
				MarkdownDescription: fmt.Sprintf("Bytes one flow record takes on Kafka. Default %d (a JSON-encoded sFlow/IPFIX record).", defaultBytesPerFlow)},
			"replication_factor": schema.Int64Attribute{Optional: true, Validators: []validator.Int64{int64validator.Between(1, 32767)},
				MarkdownDescription: fmt.Sprintf("Replication factor of the topics. Default %d.", defaultReplicas)},
			"min_insync_replicas": schema.Int64Attribute{Optional: true, Validators: []validator.Int64{int64validator.AtLeast(1)},
				MarkdownDescription: fmt.Sprintf("`min.insync.replicas`, checked against the replication factor. Default %d.", defaultMinInsync)},
			"consumer_groups": schema.Int64Attribute{Optional: true, Validators: []validator.Int64{int64validator.AtLeast(0)},
				MarkdownDescription: fmt.Sprintf("Consumer groups reading every topic in full. Default %d.", defaultConsumerGroups)},
			"broker_write_megabytes_per_second": schema.Float64Attribute{Optional: true,
				Validators: []validator.Float64{float64validator.AtLeast(1),
					float64validator.ConflictsWith(path.MatchRoot("broker_write_mbps"))},
				MarkdownDescription: fmt.Sprintf("Megabytes (10^6 bytes) per second one broker is planned to write (produce "+
					"plus replication). Default %g.", defaultBrokerWriteMegabytes)},
			"broker_write_mbps": schema.Float64Attribute{Optional: true, Validators: []validator.Float64{float64validator.AtLeast(1)},
				DeprecationMessage: "broker_write_mbps reads as megabits but means megabytes per second: use " +
					"broker_write_megabytes_per_second (same value, same meaning).",
				MarkdownDescription: "Deprecated: the same as `broker_write_megabytes_per_second`, megabytes (not megabits) per second."},
			"disk_fill_target": schema.Float64Attribute{Optional: true, Validators: []validator.Float64{float64validator.Between(0.1, 1)},
				MarkdownDescription: fmt.Sprintf("Fraction of a broker's disk retained data may fill. Default %g.", defaultDiskFillTarget)},
			"brokers":                      schema.Int64Attribute{Computed: true, MarkdownDescription: "Brokers needed."},
			"total_flows_per_second":       schema.Int64Attribute{Computed: true, MarkdownDescription: "Sum of the sites' flows per second."},
			"total_partitions":             schema.Int64Attribute{Computed: true, MarkdownDescription: "Partitions over all topics."},
			"produce_bytes_per_second":     schema.Int64Attribute{Computed: true, MarkdownDescription: "Bytes per second produced."},
			"network_in_bytes_per_second":  schema.Int64Attribute{Computed: true, MarkdownDescription: "Cluster network in, bytes per second."},
			"network_out_bytes_per_second": schema.Int64Attribute{Computed: true, MarkdownDescription: "Cluster network out, bytes per second."},
			"storage_bytes_total":          schema.Int64Attribute{Computed: true, MarkdownDescription: "Retained bytes over all replicas."},
			"storage_per_broker_bytes":     schema.Int64Attribute{Computed: true, MarkdownDescription: "Disk per broker, with headroom."},
			"topics": schema.ListAttribute{Computed: true, ElementType: sizingTopicType,
				MarkdownDescription: "Per site: `name`, `partitions`, `produce_bytes_per_second`, `storage_bytes`."},
		},
	}
}

func (d *kafkaSizingDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m kafkaSizingModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	in := sizingInput{
		BytesPerFlow: intOr(m.BytesPerFlow, defaultBytesPerFlow), ReplicationFactor: intOr(m.ReplicationFactor, defaultReplicas),
		MinInsync: intOr(m.MinInsyncReplicas, defaultMinInsync), ConsumerGroups: intOr(m.ConsumerGroups, defaultConsumerGroups),
		BrokerWriteBudget: floatOr(m.BrokerWriteMegabytes, floatOr(m.BrokerWriteMBps, defaultBrokerWriteMegabytes)) * 1e6,
		DiskFillTarget:    floatOr(m.DiskFillTarget, defaultDiskFillTarget),
	}
	for i, s := range m.Sites {
		retention := defaultRetention
		if !s.Retention.IsNull() {
			retention = s.Retention.ValueString()
		}
		r, err := parseRetention(retention)
		if err == nil && r < 0 {
			err = fmt.Errorf("site %q keeps its flows %s: storage has no bound to size; give the retention you plan for", s.Name.ValueString(), retentionForever)
		}
		if err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("sites").AtListIndex(i).AtName("retention"), "Invalid retention", err.Error())
			return
		}
		in.Sites = append(in.Sites, sizingSite{Name: s.Name.ValueString(), FlowsPerSecond: s.ExpectedFlowsPerSecond.ValueInt64(),
			Retention: r, Partitions: s.Partitions.ValueInt64()})
	}
	out, err := size(in)
	if serr := (*sizingError)(nil); errors.As(err, &serr) {
		resp.Diagnostics.AddAttributeError(serr.Attr, "Invalid sizing input", serr.Msg)
		return
	} else if err != nil {
		resp.Diagnostics.AddError("Invalid sizing input", err.Error())
		return
	}
	round := func(f float64) types.Int64 { return types.Int64Value(int64(math.Round(f))) }
	m.Brokers = types.Int64Value(out.Brokers)
	m.TotalFlowsPerSecond = types.Int64Value(out.TotalFlowsPerSecond)
	m.TotalPartitions = types.Int64Value(out.TotalPartitions)
	m.ProduceBytesPerSecond = round(out.ProduceBytesPerSecond)
	m.NetworkInBytesPerSecond = round(out.NetworkInBytesPerSecond)
	m.NetworkOutBytesPerSecond = round(out.NetworkOutBytesPerSecond)
	m.StorageBytesTotal = round(out.StorageBytesTotal)
	m.StoragePerBrokerBytes = round(out.StoragePerBrokerBytes)
	var topics []attr.Value
	for _, s := range out.Sites {
		topics = append(topics, types.ObjectValueMust(sizingTopicType.AttrTypes, map[string]attr.Value{
			"name": types.StringValue(s.Name), "partitions": types.Int64Value(s.Partitions),
			"produce_bytes_per_second": round(s.ProduceBytesPerSecond), "storage_bytes": round(s.StorageBytes),
		}))
	}
	m.Topics = types.ListValueMust(sizingTopicType, topics)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func intOr(v types.Int64, def int64) int64 {
	if v.IsNull() || v.IsUnknown() {
		return def
	}
	return v.ValueInt64()
}

func floatOr(v types.Float64, def float64) float64 {
	if v.IsNull() || v.IsUnknown() {
		return def
	}
	return v.ValueFloat64()
}
