package provider

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/mapvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/setvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/objectplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/kubeapi"
)

var (
	_ resource.ResourceWithConfigure   = (*siteResource)(nil)
	_ resource.ResourceWithModifyPlan  = (*siteResource)(nil)
	_ resource.ResourceWithImportState = (*siteResource)(nil)
)

// siteResource is telemetry_site: one PoP exporting flows, and the Strimzi
// KafkaTopic its flows go to.
type siteResource struct {
	clients *clients
}

func newSiteResource() resource.Resource { return &siteResource{} }

var siteKafkaAttrTypes = map[string]attr.Type{"cluster": types.StringType, "namespace": types.StringType}

const (
	defaultTopicPrefix = "sfacctd-flows-"
	defaultSiteTimeout = 5 * time.Minute
	readyPollInterval  = 2 * time.Second
)

func (r *siteResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_site"
}

func (r *siteResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	replace := []planmodifier.String{stringplanmodifier.RequiresReplace()}
	resp.Schema = schema.Schema{
		MarkdownDescription: "A telemetry site: one PoP whose devices export flows (sFlow/IPFIX), and the Strimzi " +
			"`KafkaTopic` its flows are written to.\n\n" +
			"The topic is `<topic_prefix><name>` in the Kafka cluster's namespace, labelled `strimzi.io/cluster` " +
			"so the Topic Operator manages it. It is written with `kafka.strimzi.io/v1` where the cluster serves it " +
			"and `v1beta2` otherwise, decided at apply time (never at plan time). Writes are server-side applies " +
			"that own only the fields below, so status, finalizers and config keys added by others never show " +
			"as a diff.\n\n" +
			"The default partition count is derived from `expected_flows_per_second`: " +
			fmt.Sprintf("`max(1, ceil(flows/s x %d B / %s))`, i.e. one partition per %s flows/s (see ", defaultBytesPerFlow, partitionBudgetText, flowsPerPartitionText) +
			"`telemetry_kafka_sizing` for the reasoning). Partitions never decrease: a lower derived value keeps " +
			"the current count, and an explicit decrease replaces the topic (the plan says so, with a warning).",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Computed: true,
				MarkdownDescription: "`<namespace>/<topic name>` of the KafkaTopic; the import ID.",
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()}},
			"name": schema.StringAttribute{Required: true, PlanModifiers: replace,
				Validators:          []validator.String{dnsLabelValidator{max: 63}},
				MarkdownDescription: "The PoP ID, a lowercase DNS label (e.g. `ams01`). Changing it replaces the topic."},
			"kafka": schema.SingleNestedAttribute{Required: true,
				PlanModifiers:       []planmodifier.Object{objectplanmodifier.RequiresReplace()},
				MarkdownDescription: "The Strimzi Kafka cluster the topic belongs to. Changing it replaces the topic.",
				Attributes: map[string]schema.Attribute{
					"cluster": schema.StringAttribute{Required: true, Validators: []validator.String{dnsLabelValidator{max: 63}},
						MarkdownDescription: "Name of the `Kafka` resource (the `strimzi.io/cluster` label)."},
					"namespace": schema.StringAttribute{Required: true, Validators: []validator.String{dnsLabelValidator{max: 63}},
						MarkdownDescription: "Namespace of the Kafka cluster, where the KafkaTopic is created."},
				}},
			"topic_prefix": schema.StringAttribute{Optional: true, Computed: true, PlanModifiers: replace,
				Default: stringdefault.StaticString(defaultTopicPrefix),
				Validators: []validator.String{stringvalidator.RegexMatches(topicPrefixPattern,
					"must be lowercase letters, digits, '-' and '.', starting with a letter or digit")},
				MarkdownDescription: "Prefix of the topic name. Default `" + defaultTopicPrefix + "`. Changing it replaces the topic."},
			"expected_flows_per_second": schema.Int64Attribute{Optional: true, Computed: true,
				Default:    int64default.StaticInt64(defaultFlowsPerSecond),
				Validators: []validator.Int64{int64validator.Between(1, maxFlowsPerSecond)},
				MarkdownDescription: fmt.Sprintf("Flow records per second the site is expected to export, at most %d. Default %d. "+
					"Drives the default `partitions` and `telemetry_kafka_sizing`.", maxFlowsPerSecond, defaultFlowsPerSecond)},
			"partitions": schema.Int64Attribute{Optional: true, Computed: true,
				Validators: []validator.Int64{int64validator.Between(1, maxPartitions)},
				MarkdownDescription: fmt.Sprintf("Partitions of the topic, at most %d. Default derived from `expected_flows_per_second`. "+
					"Can grow in place; a decrease replaces the topic (Kafka cannot remove partitions), which the plan shows.", maxPartitions)},
			"replicas": schema.Int64Attribute{Optional: true, Computed: true, Default: int64default.StaticInt64(defaultReplicas),
				Validators:          []validator.Int64{int64validator.Between(1, 32767)},
				MarkdownDescription: fmt.Sprintf("Replication factor. Default %d.", defaultReplicas)},
			"retention": schema.StringAttribute{Optional: true, Computed: true, CustomType: durationType{},
				Default:    stringdefault.StaticString(defaultRetention),
				Validators: []validator.String{retentionValidator{}},
				MarkdownDescription: "How long flows are kept (`retention.ms`): a duration in whole milliseconds, e.g. `24h`, `7d`, " +
					"or `" + retentionForever + "` (Kafka's `-1`). Default `" + defaultRetention + "`."},
			"min_insync_replicas": schema.Int64Attribute{Optional: true, Computed: true, Default: int64default.StaticInt64(defaultMinInsync),
				Validators:          []validator.Int64{int64validator.AtLeast(1)},
				MarkdownDescription: fmt.Sprintf("`min.insync.replicas`; at most `replicas`. Default %d.", defaultMinInsync)},
			"flow_sources": schema.SetAttribute{Optional: true, ElementType: types.StringType,
				Validators: []validator.Set{setvalidator.ValueStringsAre(cidrValidator{}), setvalidator.SizeAtLeast(1)},
				MarkdownDescription: "CIDRs of the site's exporting devices, in canonical form. Feed their union to " +
					"`telemetry_nlb_ingress.allowed_sources`. Recorded on the KafkaTopic as an annotation."},
			"labels": schema.MapAttribute{Optional: true, ElementType: types.StringType,
				Validators:          []validator.Map{mapvalidator.KeysAre(stringvalidator.NoneOf(reservedLabels...))},
				MarkdownDescription: "Extra labels on the KafkaTopic. Labels others add are left alone and never show as a diff."},
			"wait_for_ready": schema.BoolAttribute{Optional: true, Computed: true, Default: booldefault.StaticBool(false),
				MarkdownDescription: "Wait until the Topic Operator reports the topic Ready at its current generation. Default false."},
			"topic_name": schema.StringAttribute{Computed: true,
				MarkdownDescription: "The Kafka topic name, `<topic_prefix><name>`."},
			"api_version": schema.StringAttribute{Computed: true,
				PlanModifiers:       []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
				MarkdownDescription: "The KafkaTopic API version in use, `kafka.strimzi.io/v1` or `kafka.strimzi.io/v1beta2`."},
			"timeouts": timeouts.Attributes(ctx, timeouts.Opts{Create: true, Update: true, Delete: true}),
		},
	}
}

func (r *siteResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.clients = clientsFrom(req.ProviderData, &resp.Diagnostics)
}

// ModifyPlan derives the partition count, refuses a decrease and checks
// min_insync_replicas against replicas, all at plan time and without any API
// call.
func (r *siteResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() {
		return // destroy
	}
	var plan, config siteModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.Config.Get(ctx, &config)...)
	if resp.Diagnostics.HasError() {
		return
	}
	var prior *siteModel
	if !req.State.Raw.IsNull() {
		prior = &siteModel{}
		resp.Diagnostics.Append(req.State.Get(ctx, prior)...)
	}

	switch {
	case !config.Partitions.IsNull() && !config.Partitions.IsUnknown():
		if prior != nil && config.Partitions.ValueInt64() < prior.Partitions.ValueInt64() {
			// Kafka cannot remove partitions: the topic is replaced, which the
			// plan shows (a refusal here would also block -replace).
			resp.RequiresReplace = append(resp.RequiresReplace, path.Root("partitions"))
			resp.Diagnostics.AddAttributeWarning(path.Root("partitions"), "Partitions decrease: the topic is replaced",
				fmt.Sprintf("The topic has %d partitions and the configuration asks for %d. Kafka cannot remove partitions, so "+
					"this plan deletes the topic, with the flows it holds, and creates it again. To keep the data, keep %d "+
					"or more partitions.", prior.Partitions.ValueInt64(), config.Partitions.ValueInt64(), prior.Partitions.ValueInt64()))
		}
	case config.Partitions.IsNull() && !plan.ExpectedFlowsPerSecond.IsUnknown():
		n := derivePartitions(plan.ExpectedFlowsPerSecond.ValueInt64())
		if prior != nil && prior.Partitions.ValueInt64() > n {
			n = prior.Partitions.ValueInt64() // never shrink a derived count
		}
		plan.Partitions = types.Int64Value(n)
	default:
		plan.Partitions = types.Int64Unknown()
	}

	// A default ("24h") is not checked for semantic equality by the
	// framework: keep the state's spelling ("1d" after an import) when it
	// denotes the same duration.
	if prior != nil {
		if same, _ := plan.Retention.StringSemanticEquals(ctx, prior.Retention); same {
			plan.Retention = prior.Retention
		}
	}

	if !plan.MinInsyncReplicas.IsUnknown() && !plan.Replicas.IsUnknown() &&
		plan.MinInsyncReplicas.ValueInt64() > plan.Replicas.ValueInt64() {
		resp.Diagnostics.AddAttributeError(path.Root("min_insync_replicas"), "min_insync_replicas exceeds replicas",
			fmt.Sprintf("min_insync_replicas (%d) must not exceed replicas (%d): producers with acks=all could never write.",
				plan.MinInsyncReplicas.ValueInt64(), plan.Replicas.ValueInt64()))
	}

	if prior != nil {
		if adopt, d := req.Private.GetKey(ctx, privateAdopt); !d.HasError() && string(adopt) == "true" {
			// Unknown until apply writes the provider's metadata: the plan
			// shows the update the adoption is.
			plan.APIVersion = types.StringUnknown()
			resp.Diagnostics.AddWarning("KafkaTopic made without telemetry_site", fmt.Sprintf("KafkaTopic %s lacks the labels and "+
				"annotations telemetry_site keeps on its topics (%s, %s, ...): this apply writes them; the topic's spec changes only "+
				"as the plan shows.", prior.ID.ValueString(), annotations.ManagedBy, annotations.ExpectedFlowsPerSecond))
		}
	}
	plan.TopicName = types.StringUnknown()
	plan.ID = types.StringUnknown()
	if kafka, ok := knownKafka(ctx, plan.Kafka); ok && !plan.Name.IsUnknown() && !plan.TopicPrefix.IsUnknown() {
		topic := plan.TopicPrefix.ValueString() + plan.Name.ValueString()
		if len(topic) > 249 {
			resp.Diagnostics.AddAttributeError(path.Root("name"), "Topic name too long",
				fmt.Sprintf("%q is %d characters; Kafka allows 249.", topic, len(topic)))
		}
		plan.TopicName = types.StringValue(topic)
		plan.ID = types.StringValue(kafka.Namespace.ValueString() + "/" + topic)
	}
	resp.Diagnostics.Append(resp.Plan.Set(ctx, &plan)...)
}

// privateAdopt marks, in the resource's private state, a KafkaTopic read
// without the provider's own labels and annotations (see Read).
const privateAdopt = "adopt"

func (r *siteResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var plan siteModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, d := plan.Timeouts.Create(ctx, defaultSiteTimeout)
	resp.Diagnostics.Append(d...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	c, version, ok := r.kube(ctx, "", &resp.Diagnostics)
	if !ok {
		return
	}
	spec, d := plan.spec(ctx)
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	existing := spec.topic(version)
	if err := c.Get(ctx, client.ObjectKeyFromObject(existing), existing); err == nil {
		resp.Diagnostics.AddError("KafkaTopic already exists",
			fmt.Sprintf("KafkaTopic %s/%s already exists. To manage it with Terraform, import it: "+
				"terraform import <address> %s/%s", spec.Namespace, spec.topicName(), spec.Namespace, spec.topicName()))
		return
	} else if !apierrors.IsNotFound(err) {
		resp.Diagnostics.AddError("Cannot read the KafkaTopic", err.Error())
		return
	}
	written := r.apply(ctx, c, version, spec, &plan, nil, &resp.Diagnostics)
	switch {
	case !resp.Diagnostics.HasError():
		resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	case written:
		// Written but not Ready in time: saved (tainted), so a retry or a
		// destroy finds it instead of "already exists". Only what this
		// create wrote: a KafkaTopic that already existed (another resource
		// won a race for the name) is not ours, and saving it would have
		// the next apply destroy it.
		resp.Diagnostics.Append(savePartial(ctx, &resp.State, &plan)...)
	}
}

func (r *siteResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var plan, state siteModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &plan)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, d := plan.Timeouts.Update(ctx, defaultSiteTimeout)
	resp.Diagnostics.Append(d...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	c, version, ok := r.kube(ctx, state.APIVersion.ValueString(), &resp.Diagnostics)
	if !ok {
		return
	}
	spec, d := plan.spec(ctx)
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	r.apply(ctx, c, version, spec, &plan, &state, &resp.Diagnostics)
	if resp.Diagnostics.HasError() {
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &plan)...)
	// The apply wrote the provider's metadata: the topic is adopted.
	resp.Diagnostics.Append(resp.Private.SetKey(ctx, privateAdopt, nil)...)
}

// apply writes the topic server-side, optionally waits for Ready, and fills
// the computed attributes of the plan.
// apply writes the topic: created when there is no prior state (so that
// the API server, not an earlier Get, decides which of two resources owns
// it), applied otherwise; then, when asked, waits for Ready.
// apply writes the KafkaTopic (creates it when prior is nil) and waits for it
// as configured; written reports whether this call wrote it, so a failed
// create saves state only for a topic it made.
func (r *siteResource) apply(ctx context.Context, c client.Client, version string, spec siteSpec, plan, prior *siteModel, diags *diag.Diagnostics) (written bool) {
	u := spec.topic(version)
	if prior == nil {
		err := createOwned(ctx, c, u.DeepCopy())
		if apierrors.IsAlreadyExists(err) {
			diags.AddError("KafkaTopic already exists", fmt.Sprintf("KafkaTopic %s/%s already exists (created by someone "+
				"else, or by another resource in this or a concurrent apply). To manage it with this resource, import it: "+
				"terraform import <address> %s/%s; if another resource manages it, remove one of the two.",
				spec.Namespace, spec.topicName(), spec.Namespace, spec.topicName()))
			return false
		}
		if err != nil {
			diags.AddError("Cannot write the KafkaTopic", fmt.Sprintf("creating KafkaTopic %s/%s: %v", spec.Namespace, spec.topicName(), err))
			return false
		}
	} else if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u),
		client.FieldOwner(annotations.ProviderManager), client.ForceOwnership); err != nil {
		diags.AddError("Cannot write the KafkaTopic", fmt.Sprintf("applying KafkaTopic %s/%s: %v", spec.Namespace, spec.topicName(), err))
		return false
	}
	plan.ID = types.StringValue(spec.Namespace + "/" + spec.topicName())
	plan.TopicName = types.StringValue(spec.topicName())
	plan.APIVersion = types.StringValue(kubeapi.StrimziGroup + "/" + version)
	if plan.WaitForReady.ValueBool() {
		if err := waitTopicReady(ctx, c, u); err != nil {
			diags.AddError("KafkaTopic not Ready", err.Error())
		}
	}
	return true
}

func waitTopicReady(ctx context.Context, c client.Client, want *unstructured.Unstructured) error {
	var why string
	err := wait.PollUntilContextCancel(ctx, readyPollInterval, true, func(ctx context.Context) (bool, error) {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(want.GroupVersionKind())
		if err := c.Get(ctx, client.ObjectKeyFromObject(want), got); err != nil {
			why = err.Error()
			return false, nil
		}
		if reason, refused := topicRefused(got); refused {
			return false, fmt.Errorf("the Strimzi Topic Operator refused KafkaTopic %s/%s as written (%s). The topic in Kafka "+
				"is unchanged: put the previous value back in the configuration, or replace the site (terraform apply "+
				"-replace=<address>, which deletes its data)", want.GetNamespace(), want.GetName(), reason)
		}
		var ready bool
		ready, why = topicReady(got)
		return ready, nil
	})
	if err != nil && !wait.Interrupted(err) {
		return err
	}
	if err != nil {
		return fmt.Errorf("KafkaTopic %s/%s did not become Ready (%s). Is the Strimzi Topic Operator running and "+
			"watching namespace %s? Raise timeouts or set wait_for_ready = false.", want.GetNamespace(), want.GetName(), why, want.GetNamespace())
	}
	return nil
}

func (r *siteResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var state siteModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ns, name, err := splitID(state.ID.ValueString())
	if err != nil {
		resp.Diagnostics.AddError("Invalid ID", err.Error())
		return
	}
	c, version, ok := r.kube(ctx, state.APIVersion.ValueString(), &resp.Diagnostics)
	if !ok {
		return
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(kubeapi.KafkaTopic(version))
	err = c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u)
	if meta.IsNoMatchError(err) && state.APIVersion.ValueString() != "" {
		// The version in state is no longer served (Strimzi 1.0 dropped v1beta2).
		if c, version, ok = r.kube(ctx, "", &resp.Diagnostics); !ok {
			return
		}
		u.SetGroupVersionKind(kubeapi.KafkaTopic(version))
		err = c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u)
	}
	if apierrors.IsNotFound(err) {
		resp.State.RemoveResource(ctx) // deleted outside Terraform: plan a re-create
		return
	}
	if err != nil {
		resp.Diagnostics.AddError("Cannot read the KafkaTopic", err.Error())
		return
	}
	var known []string
	if !state.Labels.IsNull() {
		for k := range state.Labels.Elements() {
			known = append(known, k)
		}
	} else if !state.Name.IsNull() {
		known = []string{} // no labels configured: report none
	}
	spec, err := siteFromTopic(u, known)
	if err != nil {
		resp.Diagnostics.AddError("Unexpected KafkaTopic", err.Error())
		return
	}
	resp.Diagnostics.Append(state.setFrom(ctx, spec)...)
	// A topic the provider never wrote (imported) lacks its labels and
	// annotations, which no attribute shows: the next plan must still write
	// them (ModifyPlan reads this mark).
	adopt := []byte(nil)
	if u.GetLabels()[annotations.ManagedBy] != annotations.ProviderManager || u.GetAnnotations()[annotations.ExpectedFlowsPerSecond] == "" {
		adopt = []byte("true")
	}
	resp.Diagnostics.Append(resp.Private.SetKey(ctx, privateAdopt, adopt)...)
	if reason, refused := topicRefused(u); refused {
		resp.Diagnostics.AddWarning("KafkaTopic refused by the Topic Operator", fmt.Sprintf("KafkaTopic %s/%s is not Ready at its "+
			"current generation (%s): Kafka still has the topic as it was. Put the refused value back in the configuration, "+
			"or replace the site.", ns, name, reason))
	}
	state.APIVersion = types.StringValue(kubeapi.StrimziGroup + "/" + version)
	if state.WaitForReady.IsNull() {
		state.WaitForReady = types.BoolValue(false)
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &state)...)
}

func (r *siteResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var state siteModel
	resp.Diagnostics.Append(req.State.Get(ctx, &state)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, d := state.Timeouts.Delete(ctx, defaultSiteTimeout)
	resp.Diagnostics.Append(d...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ns, name, err := splitID(state.ID.ValueString())
	if err != nil {
		resp.Diagnostics.AddError("Invalid ID", err.Error())
		return
	}
	c, version, ok := r.kube(ctx, state.APIVersion.ValueString(), &resp.Diagnostics)
	if !ok {
		return
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(kubeapi.KafkaTopic(version))
	u.SetNamespace(ns)
	u.SetName(name)
	if err := c.Delete(ctx, u); err != nil && !apierrors.IsNotFound(err) {
		resp.Diagnostics.AddError("Cannot delete the KafkaTopic", err.Error())
		return
	}
	err = wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		err := c.Get(ctx, client.ObjectKeyFromObject(u), u)
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		msg := fmt.Sprintf("KafkaTopic %s/%s is still present after deletion was requested.", ns, name)
		if slices.Contains(u.GetFinalizers(), kubeapi.TopicOperatorFinalizer) {
			msg += " It is held by the finalizer " + kubeapi.TopicOperatorFinalizer + ": the Strimzi Topic Operator must be " +
				"running to delete the Kafka topic and release it."
		}
		resp.Diagnostics.AddError("KafkaTopic not deleted", msg)
	}
}

// ImportState takes `<namespace>/<name>` of the KafkaTopic.
func (r *siteResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	if _, _, err := splitID(req.ID); err != nil {
		resp.Diagnostics.AddError("Invalid import ID", err.Error())
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), req.ID)...)
}

// kube returns a client and the KafkaTopic version to use: the one in state
// when given, otherwise the newest served (discovered now, at apply time).
func (r *siteResource) kube(_ context.Context, stateVersion string, diags *diag.Diagnostics) (client.Client, string, bool) {
	c, disco, ok := r.clients.kubeOrDiag(diags)
	if !ok {
		return nil, "", false
	}
	if v, ok := strings.CutPrefix(stateVersion, kubeapi.StrimziGroup+"/"); ok && v != "" {
		return c, v, true
	}
	version, err := r.clients.kafkaTopicVersion(disco)
	if err != nil {
		diags.AddError("Cannot reach the Kubernetes API server", kubeReachError(r.clients, err))
		return nil, "", false
	}
	if version == "" {
		diags.AddError("Strimzi is not installed",
			"The cluster serves no KafkaTopic API (kafka.strimzi.io/v1 or v1beta2). Install the Strimzi operator and its CRDs first.")
		return nil, "", false
	}
	return c, version, true
}
