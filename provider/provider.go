// Package provider is the telemetry Terraform provider: telemetry sites (a
// PoP, its exporters and its Strimzi KafkaTopic), NLB ingress (a Service for
// the AWS Load Balancer Controller whose security-group footprint is bounded
// by ports, never by sources) and Kafka sizing derived from the sites.
package provider

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
)

// Address is where the registry serves the provider.
const Address = "registry.terraform.io/telemetry-platform/telemetry"

var _ provider.Provider = (*telemetryProvider)(nil)

type telemetryProvider struct {
	version string
}

// New returns a constructor of the provider, as providerserver expects.
func New(version string) func() provider.Provider {
	return func() provider.Provider { return &telemetryProvider{version: version} }
}

type providerModel struct {
	Kubernetes *kubernetesModel `tfsdk:"kubernetes"`
	AWS        *awsModel        `tfsdk:"aws"`
}

func (p *telemetryProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "telemetry"
	resp.Version = p.version
}

func (p *telemetryProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = schema.Schema{
		MarkdownDescription: "The telemetry provider models a network-telemetry pipeline on Kubernetes and AWS: " +
			"the sites (PoPs) that export flows, the Strimzi KafkaTopic each one writes to, the NLB that " +
			"receives the flows, and the Kafka sizing the sites imply.\n\n" +
			"It talks to a Kubernetes API server (the `kubernetes` block, configured like the kubernetes " +
			"provider) and to AWS (the `aws` block, configured like the aws provider). Neither is contacted " +
			"while validating or planning new resources: clients are built on first use, so values that are " +
			"unknown until apply (a cluster created in the same configuration) are fine for a first apply. " +
			"Reading resources that exist (refresh, import, later plans) needs the cluster and AWS reachable, so " +
			"their values must be known by then.",
		Blocks: map[string]schema.Block{
			"kubernetes": kubernetesBlock(),
			"aws":        awsBlock(),
		},
	}
}

func (p *telemetryProvider) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var cfg providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	c := newClients(cfg.Kubernetes, cfg.AWS, p.version)
	resp.DataSourceData = c
	resp.ResourceData = c
}

func (p *telemetryProvider) Resources(context.Context) []func() resource.Resource {
	return []func() resource.Resource{
		newSiteResource,
		newNLBIngressResource,
		newLBIngressResource,
		newRoutingResource,
	}
}

func (p *telemetryProvider) DataSources(context.Context) []func() datasource.DataSource {
	return []func() datasource.DataSource{
		newEnvironmentDataSource,
		newKafkaSizingDataSource,
		newLBCServicesDataSource,
	}
}
