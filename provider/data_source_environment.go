package provider

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/discovery"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/awsnlb"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
)

var _ datasource.DataSourceWithConfigure = (*environmentDataSource)(nil)

// environmentDataSource reports what the provider sees of the cluster and the
// AWS account: a pre-flight check a platform module can assert on before it
// creates anything (is Strimzi's KafkaTopic served, is Calico's API, which
// subnets will the NLB use).
type environmentDataSource struct {
	clients *clients
}

func newEnvironmentDataSource() datasource.DataSource { return &environmentDataSource{} }

type environmentModel struct {
	VPCID                types.String `tfsdk:"vpc_id"`
	KubernetesVersion    types.String `tfsdk:"kubernetes_version"`
	KafkaTopicAPIVersion types.String `tfsdk:"kafka_topic_api_version"`
	CalicoAPIServed      types.Bool   `tfsdk:"calico_api_served"`
	VPCCIDRBlocks        types.List   `tfsdk:"vpc_cidr_blocks"`
	Subnets              types.List   `tfsdk:"subnets"`
}

var subnetType = types.ObjectType{AttrTypes: map[string]attr.Type{
	"id": types.StringType, "cidr_block": types.StringType, "availability_zone": types.StringType,
}}

func (d *environmentDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_environment"
}

func (d *environmentDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "Reports what the provider sees of the Kubernetes cluster and, given a VPC, of the " +
			"AWS account: the Kubernetes version, which Strimzi `KafkaTopic` API version is served, whether " +
			"Calico's `projectcalico.org/v3` API is served, and the VPC's CIDR blocks and subnets. Use it as a " +
			"pre-flight check in a platform module (for example in a `precondition`).",
		Attributes: map[string]schema.Attribute{
			"vpc_id": schema.StringAttribute{Optional: true,
				MarkdownDescription: "A VPC to describe. Without it AWS is not contacted."},
			"kubernetes_version": schema.StringAttribute{Computed: true,
				MarkdownDescription: "The API server's version, e.g. `v1.37.2`."},
			"kafka_topic_api_version": schema.StringAttribute{Computed: true,
				MarkdownDescription: "`kafka.strimzi.io/v1` or `kafka.strimzi.io/v1beta2`, the newest served " +
					"`KafkaTopic` version; empty when Strimzi's CRDs are not installed."},
			"calico_api_served": schema.BoolAttribute{Computed: true,
				MarkdownDescription: "Whether `projectcalico.org/v3` GlobalNetworkPolicies are served (by Calico's " +
					"API server or its native v3 CRDs), as the nlb-policy controller needs."},
			"vpc_cidr_blocks": schema.ListAttribute{Computed: true, ElementType: types.StringType,
				MarkdownDescription: "The VPC's IPv4 CIDR blocks (empty without `vpc_id`)."},
			"subnets": schema.ListAttribute{Computed: true, ElementType: subnetType,
				MarkdownDescription: "The VPC's subnets, ordered by ID: `id`, `cidr_block`, `availability_zone`."},
		},
	}
}

func (d *environmentDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.clients = clientsFrom(req.ProviderData, &resp.Diagnostics)
}

func (d *environmentDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m environmentModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	_, disco, ok := d.clients.kubeOrDiag(&resp.Diagnostics)
	if !ok {
		return
	}
	version, err := disco.ServerVersion()
	if err != nil {
		resp.Diagnostics.AddError("Cannot reach the Kubernetes API server", kubeReachError(d.clients, err))
		return
	}
	m.KubernetesVersion = types.StringValue(version.GitVersion)
	topicVersion, err := servedKafkaTopicVersion(disco)
	if err != nil {
		resp.Diagnostics.AddError("Kubernetes API discovery", err.Error())
		return
	}
	if topicVersion != "" {
		topicVersion = kubeapi.StrimziGroup + "/" + topicVersion
	}
	m.KafkaTopicAPIVersion = types.StringValue(topicVersion)
	calico, err := servesResource(disco, kubeapi.CalicoGroupVersion.String(), "globalnetworkpolicies")
	if err != nil {
		resp.Diagnostics.AddError("Kubernetes API discovery", err.Error())
		return
	}
	m.CalicoAPIServed = types.BoolValue(calico)

	cidrs, subnets := []attr.Value{}, []attr.Value{}
	if !m.VPCID.IsNull() {
		ec, err := d.clients.EC2(ctx)
		if err != nil {
			resp.Diagnostics.AddError("AWS configuration", err.Error())
			return
		}
		vpcCIDRs, err := awsnlb.VPCCIDRs(ctx, ec, m.VPCID.ValueString())
		if err != nil {
			resp.Diagnostics.AddAttributeError(pathVPCID, "Cannot describe the VPC", err.Error())
			return
		}
		for _, c := range vpcCIDRs {
			cidrs = append(cidrs, types.StringValue(c))
		}
		pages := ec2.NewDescribeSubnetsPaginator(ec, &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{
			{Name: aws.String("vpc-id"), Values: []string{m.VPCID.ValueString()}},
		}})
		var all []ec2types.Subnet
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				resp.Diagnostics.AddError("Cannot list the VPC's subnets", err.Error())
				return
			}
			all = append(all, page.Subnets...)
		}
		sortSubnets(all)
		for _, s := range all {
			subnets = append(subnets, types.ObjectValueMust(subnetType.AttrTypes, map[string]attr.Value{
				"id":                types.StringValue(aws.ToString(s.SubnetId)),
				"cidr_block":        types.StringValue(aws.ToString(s.CidrBlock)),
				"availability_zone": types.StringValue(aws.ToString(s.AvailabilityZone)),
			}))
		}
	}
	m.VPCCIDRBlocks = types.ListValueMust(types.StringType, cidrs)
	m.Subnets = types.ListValueMust(subnetType, subnets)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

func servesResource(d discovery.DiscoveryInterface, groupVersion, resource string) (bool, error) {
	list, err := d.ServerResourcesForGroupVersion(groupVersion)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("discovering %s: %w", groupVersion, err)
	}
	for _, r := range list.APIResources {
		if r.Name == resource {
			return true, nil
		}
	}
	return false, nil
}

var pathVPCID = path.Root("vpc_id")

func sortSubnets(s []ec2types.Subnet) {
	slices.SortFunc(s, func(a, b ec2types.Subnet) int {
		return strings.Compare(aws.ToString(a.SubnetId), aws.ToString(b.SubnetId))
	})
}
