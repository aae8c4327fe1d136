package provider

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/mapvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/setvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	tfpath "github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
)

var (
	_ resource.ResourceWithConfigure      = (*routingResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*routingResource)(nil)
	_ resource.ResourceWithValidateConfig = (*routingResource)(nil)
	_ resource.ResourceWithImportState    = (*routingResource)(nil)
)

// routingResource is telemetry_collector_routing: the ConfigMap from which
// the collectors (pmacct's sfacctd and nfacctd) route each exporter's flows
// to its site's topic.
type routingResource struct {
	clients *clients
}

func newRoutingResource() resource.Resource { return &routingResource{} }

func (r *routingResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_collector_routing"
}

func (r *routingResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = routingSchema()
}

// routingSchema is the resource's schema; descriptions and defaults come from
// the constants routing_spec.go renders with.
func routingSchema() schema.Schema {
	replace := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	return schema.Schema{
		MarkdownDescription: "The collectors' routing: a `ConfigMap` holding pmacct's configuration for `sfacctd` (sFlow) and " +
			"`nfacctd` (IPFIX), so that each exporter's flows go to its site's Kafka topic and an unlisted exporter's go " +
			"nowhere.\n\n" +
			"Keys: `" + routingPreTagMap + "` (a pmacct `pre_tag_map` tagging each exporter address with its site's tag), `" +
			routingSFlowConf + "` and `" + routingIPFIXConf + "` (one Kafka plugin per site, passing only its tag " +
			"(`pre_tag_filter`) to its topic (`kafka_topic`), JSON records). Mount the ConfigMap at `mount_path` and run " +
			"`sfacctd -f " + defaultMountPath + "/" + routingSFlowConf + "` and `nfacctd -f " + defaultMountPath + "/" + routingIPFIXConf +
			"`; put `checksum` on the pod template so a change of routing restarts them (pmacct reads its plugins only at start).\n\n" +
			"**Which address routes.** nfacctd matches the IPFIX datagram's source address, which the ingress keeps end " +
			"to end (`telemetry_nlb_ingress`). sfacctd matches the sFlow *agent address* inside the datagram, which exporters " +
			"usually set to their own address; an exporter whose agent address is not in its site's `flow_sources` is " +
			"routed nowhere. The ingress admits by source address, so an admitted exporter could claim another site's agent " +
			"address: route sFlow by site only among exporters you trust to that extent.\n\n" +
			"Plan-time errors: two sites whose `flow_sources` overlap (pmacct would route the overlap to one of them), two " +
			"sites writing to one topic, the two ports equal. Drift: any edit of the ConfigMap's data shows as a change of " +
			"`checksum` and is rewritten. Import with `<namespace>/<name>` of a ConfigMap in this format.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Computed: true, MarkdownDescription: "`<namespace>/<name>` of the ConfigMap.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()}},
			"name": schema.StringAttribute{Required: true, PlanModifiers: replace, Validators: []validator.String{dnsLabelValidator{max: 63}},
				MarkdownDescription: "Name of the ConfigMap."},
			"namespace": schema.StringAttribute{Required: true, PlanModifiers: replace, Validators: []validator.String{dnsLabelValidator{max: 63}},
				MarkdownDescription: "Namespace of the ConfigMap: the collectors'."},
			"kafka_bootstrap_servers": schema.ListAttribute{Required: true, ElementType: types.StringType,
				Validators: []validator.List{listvalidator.SizeAtLeast(1), listvalidator.ValueStringsAre(hostPortValidator{})},
				MarkdownDescription: "Kafka bootstrap servers as `host:port` (`[address]:port` for IPv6), e.g. Strimzi's " +
					"`<cluster>-kafka-bootstrap.<namespace>:9092`."},
			"sites": schema.MapNestedAttribute{Required: true,
				Validators: []validator.Map{mapvalidator.SizeAtLeast(1), mapvalidator.KeysAre(dnsLabelValidator{max: 63})},
				MarkdownDescription: "The sites, by name (a site's Kafka plugin is named after it): each with its topic and its " +
					"exporters' addresses. From `telemetry_site`: `{ for k, s in telemetry_site.this : k => { topic = s.topic_name, " +
					"flow_sources = s.flow_sources } }`.",
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"topic": schema.StringAttribute{Required: true, Validators: []validator.String{stringvalidator.LengthBetween(1, 249)},
						MarkdownDescription: "The Kafka topic the site's flows go to."},
					"flow_sources": schema.SetAttribute{Optional: true, ElementType: types.StringType,
						Validators:          []validator.Set{setvalidator.SizeAtLeast(1), setvalidator.ValueStringsAre(cidrValidator{})},
						MarkdownDescription: "CIDRs of the site's exporters (IPv4 and IPv6). Without them the site receives nothing."},
				}},
			},
			"sflow_port": schema.Int64Attribute{Optional: true, Computed: true, Default: int64default.StaticInt64(defaultSFlowPort),
				Validators:          []validator.Int64{int64validator.Between(1, 65535)},
				MarkdownDescription: fmt.Sprintf("UDP port sfacctd listens on. Default: %d.", defaultSFlowPort)},
			"ipfix_port": schema.Int64Attribute{Optional: true, Computed: true, Default: int64default.StaticInt64(defaultIPFIXPort),
				Validators:          []validator.Int64{int64validator.Between(1, 65535)},
				MarkdownDescription: fmt.Sprintf("UDP port nfacctd listens on. Default: %d.", defaultIPFIXPort)},
			"flush_interval": schema.StringAttribute{Optional: true, Computed: true, CustomType: durationType{},
				Default: stringdefault.StaticString(defaultFlushInterval), Validators: []validator.String{flushIntervalValidator{}},
				MarkdownDescription: "How often the collectors write what they aggregated to Kafka (pmacct's `kafka_refresh_time`, " +
					"whole seconds): the floor of a record's exporter-to-topic latency. Default: `" + defaultFlushInterval + "`."},
			"mount_path": schema.StringAttribute{Optional: true, Computed: true, Default: stringdefault.StaticString(defaultMountPath),
				Validators:          []validator.String{stringvalidator.RegexMatches(absolutePath, "must be an absolute path without spaces")},
				MarkdownDescription: "Where the collectors mount the ConfigMap (the daemons name the pre-tag map by its path). Default: `" + defaultMountPath + "`."},
			"ipfix_templates_file": schema.StringAttribute{Optional: true,
				Validators: []validator.String{stringvalidator.RegexMatches(absolutePath, "must be an absolute path without spaces")},
				MarkdownDescription: "Where nfacctd keeps the IPFIX templates it learnt (`nfacctd_templates_file`), on a writable " +
					"volume that outlives the pod. IPFIX over UDP cannot be decoded without its exporter's templates: a new collector " +
					"pod without this file drops each exporter's records until the exporter resends them (every few seconds to " +
					"minutes, per exporter; 40 s with pmacct's nfprobe in the end-to-end test). sFlow needs no templates."},
			"aggregate": schema.ListAttribute{Optional: true, Computed: true, ElementType: types.StringType,
				Default: listdefault.StaticValue(stringList(defaultAggregate)),
				Validators: []validator.List{listvalidator.SizeAtLeast(1),
					listvalidator.ValueStringsAre(stringvalidator.RegexMatches(pmacctPrimitive, "must be a pmacct primitive such as src_host"))},
				MarkdownDescription: "pmacct primitives each record carries. Default: `" + strings.Join(defaultAggregate, ", ") +
					"` (`peer_src_ip` is the exporter's address)."},
			"tags": schema.MapAttribute{Computed: true, ElementType: types.Int64Type,
				MarkdownDescription: "Each site's pmacct tag (the `tag` field of its records): derived from the site's name alone, " +
					"so adding or removing a site never renumbers another."},
			"checksum": schema.StringAttribute{Computed: true,
				MarkdownDescription: "SHA-256 of the ConfigMap's data, known at plan time: an annotation on the collectors' pod " +
					"template, so they restart with a new routing."},
		},
	}
}

var (
	absolutePath    = regexp.MustCompile(`^/[^\s]*$`)
	pmacctPrimitive = regexp.MustCompile(`^[a-z0-9_]+$`)
)

func (r *routingResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.clients = clientsFrom(req.ProviderData, &resp.Diagnostics)
}

// ValidateConfig refuses, at plan time, a routing pmacct would make
// ambiguous: overlapping sources, a topic shared, the ports equal.
func (r *routingResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var config routingModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &config)...)
	if resp.Diagnostics.HasError() {
		return
	}
	config.fillDefaults()
	spec, known, d := config.spec(ctx)
	if d.HasError() || !known {
		return // the attributes' validators name bad values; unknown ones are checked at apply
	}
	for _, p := range spec.problems() {
		resp.Diagnostics.AddAttributeError(tfpath.Root("sites"), "Ambiguous collector routing", p)
	}
	for _, site := range spec.Sites {
		if len(site.Sources) == 0 {
			resp.Diagnostics.AddAttributeWarning(tfpath.Root("sites").AtMapKey(site.Name), "Site without exporters",
				fmt.Sprintf("Site %q has no flow_sources: no record is routed to topic %q until it has.", site.Name, site.Topic))
		}
	}
}

// ModifyPlan computes tags and checksum, so the plan shows whether the
// ConfigMap changes (and a hand edit of it, which Read reports as a
// different checksum, is planned as a rewrite).
func (r *routingResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() {
		return
	}
	var plan routingModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	spec, known, d := plan.spec(ctx)
	resp.Diagnostics.Append(d...)
	if !known || resp.Diagnostics.HasError() {
		plan.Tags, plan.Checksum = types.MapUnknown(types.Int64Type), types.StringUnknown()
	} else {
		plan.setComputed(spec, spec.render())
		// The problems ValidateConfig could not see while values were
		// unknown (topics of sites planned in the same run).
		for _, p := range spec.problems() {
			resp.Diagnostics.AddAttributeError(tfpath.Root("sites"), "Ambiguous collector routing", p)
		}
	}
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
}

func (r *routingResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	r.write(ctx, req.Plan, &resp.State, &resp.Diagnostics, true)
}

func (r *routingResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	r.write(ctx, req.Plan, &resp.State, &resp.Diagnostics, false)
}

// write renders the plan and writes the ConfigMap: created on create (so an
// existing one, someone else's, is refused, not overwritten), applied
// server-side on update.
func (r *routingResource) write(ctx context.Context, planIn tfsdk.Plan, state *tfsdk.State, diags *diag.Diagnostics, create bool) {
	var plan routingModel
	diags.Append(planIn.Get(ctx, &plan)...)
	if diags.HasError() {
		return
	}
	spec, known, d := plan.spec(ctx)
	diags.Append(d...)
	if diags.HasError() {
		return
	}
	if !known {
		diags.AddError("Collector routing not known", "A value of telemetry_collector_routing is still unknown at apply time; this is a provider bug: please report it.")
		return
	}
	if problems := spec.problems(); len(problems) > 0 {
		diags.AddError("Ambiguous collector routing", strings.Join(problems, "\n"))
		return
	}
	c, _, ok := r.clients.kubeOrDiag(diags)
	if !ok {
		return
	}
	data := spec.render()
	labels := map[string]string{annotations.ManagedBy: annotations.ProviderManager}
	if create {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: spec.Namespace, Name: spec.Name, Labels: labels}, Data: data}
		err := createOwned(ctx, c, cm)
		if apierrors.IsAlreadyExists(err) {
			diags.AddError("ConfigMap already exists", fmt.Sprintf("ConfigMap %s/%s already exists. To manage it with this "+
				"resource, import it: terraform import <address> %s/%s", spec.Namespace, spec.Name, spec.Namespace, spec.Name))
			return
		}
		if err != nil {
			diags.AddError("Cannot write the ConfigMap", fmt.Sprintf("creating ConfigMap %s/%s: %v", spec.Namespace, spec.Name, err))
			return
		}
	} else {
		ac := corev1ac.ConfigMap(spec.Name, spec.Namespace).WithLabels(labels).WithData(data)
		if err := c.Apply(ctx, ac, client.FieldOwner(annotations.ProviderManager), client.ForceOwnership); err != nil {
			diags.AddError("Cannot write the ConfigMap", fmt.Sprintf("applying ConfigMap %s/%s: %v", spec.Namespace, spec.Name, err))
			return
		}
	}
	plan.setComputed(spec, data)
	diags.Append(state.Set(ctx, &plan)...)
}

// stored is the state, the ConfigMap's key from its ID and a client.
func (r *routingResource) stored(ctx context.Context, st tfsdk.State, diags *diag.Diagnostics) (state routingModel, ns, name string, c client.Client, ok bool) {
	diags.Append(st.Get(ctx, &state)...)
	if diags.HasError() {
		return state, "", "", nil, false
	}
	ns, name, err := splitID(state.ID.ValueString())
	if err != nil {
		diags.AddError("Invalid ID", err.Error())
		return state, "", "", nil, false
	}
	c, _, ok = r.clients.kubeOrDiag(diags)
	return state, ns, name, c, ok
}

func (r *routingResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	state, ns, name, c, ok := r.stored(ctx, req.State, &resp.Diagnostics)
	if !ok {
		return
	}
	var cm corev1.ConfigMap
	err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &cm)
	if apierrors.IsNotFound(err) {
		resp.State.RemoveResource(ctx) // deleted outside Terraform: plan a re-create
		return
	}
	if err != nil {
		resp.Diagnostics.AddError("Cannot read the ConfigMap", err.Error())
		return
	}
	imported := state.Name.IsNull()
	spec, err := routingFromData(cm.Data)
	switch {
	case err != nil && imported:
		resp.Diagnostics.AddError("Not a collector routing", fmt.Sprintf("ConfigMap %s/%s is not in telemetry_collector_routing's "+
			"format (%v). Write the routing with this resource instead: remove the import, or delete the ConfigMap and apply.", ns, name, err))
		return
	case err != nil:
		// Edited by hand beyond reading: the attributes stay as configured,
		// the checksum says the data differs, and the plan rewrites it.
		resp.Diagnostics.AddWarning("Collector routing edited outside Terraform", fmt.Sprintf("ConfigMap %s/%s no longer reads as "+
			"the routing (%v): the next apply rewrites it.", ns, name, err))
	default:
		spec.Namespace, spec.Name = ns, name
		state.setFrom(spec)
	}
	if err == nil {
		state.setComputed(spec, cm.Data)
	}
	state.ID = types.StringValue(ns + "/" + name)
	state.Checksum = types.StringValue(routingChecksum(cm.Data))
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

func (r *routingResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	_, ns, name, c, ok := r.stored(ctx, req.State, &resp.Diagnostics)
	if !ok {
		return
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := c.Delete(ctx, cm); err != nil && !apierrors.IsNotFound(err) {
		resp.Diagnostics.AddError("Cannot delete the ConfigMap", err.Error())
	}
}

// ImportState takes `<namespace>/<name>` of the ConfigMap.
func (r *routingResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	if _, _, err := splitID(req.ID); err != nil {
		resp.Diagnostics.AddError("Invalid import ID", err.Error())
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, tfpath.Root("id"), req.ID)...)
}

// hostPortValidator accepts host:port with a port in 1-65535 ([address]:port
// for IPv6).
type hostPortValidator struct{}

func (hostPortValidator) Description(context.Context) string {
	return "must be host:port, e.g. kafka-bootstrap.kafka:9092 or [2001:db8::1]:9092"
}
func (v hostPortValidator) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }

func (v hostPortValidator) ValidateString(ctx context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	host, port, err := net.SplitHostPort(req.ConfigValue.ValueString())
	if n, perr := strconv.Atoi(port); err != nil || perr != nil || host == "" || n < 1 || n > 65535 || strings.ContainsAny(host, ", ") {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid bootstrap server", fmt.Sprintf("%q %s", req.ConfigValue.ValueString(), v.Description(ctx)))
	}
}

// flushIntervalValidator accepts whole seconds, pmacct's unit.
type flushIntervalValidator struct{}

func (flushIntervalValidator) Description(context.Context) string {
	return `must be a whole number of seconds, at least one, such as "10s" or "1m"`
}
func (v flushIntervalValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}

func (v flushIntervalValidator) ValidateString(ctx context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if d, err := parseDuration(req.ConfigValue.ValueString()); err != nil || !flushSeconds(d) {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid flush_interval", fmt.Sprintf("%q %s", req.ConfigValue.ValueString(), v.Description(ctx)))
	}
}
