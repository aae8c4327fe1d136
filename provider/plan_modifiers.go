package provider

import (
	"context"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
)

// stateWhileSame is UseStateForUnknown while the attributes it names are
// the same in the plan as in the state: a computed value that follows from
// them (a VPC from its node group, a health-check NodePort from the
// traffic policy) stays known, and shows no diff, until they change.
type stateWhileSame struct{ attrs []string }

// keepWhileSame returns the modifier for the attributes named.
func keepWhileSame(attrs ...string) stateWhileSame { return stateWhileSame{attrs: attrs} }

func (m stateWhileSame) Description(context.Context) string {
	return "the value in the state while " + strings.Join(m.attrs, ", ") + " do not change"
}

func (m stateWhileSame) MarkdownDescription(ctx context.Context) string { return m.Description(ctx) }

// same reports whether the attributes are equal in the state and the plan.
func (m stateWhileSame) same(ctx context.Context, state tfsdk.State, plan tfsdk.Plan, diags *diag.Diagnostics) bool {
	for _, a := range m.attrs {
		var before, after attr.Value
		diags.Append(state.GetAttribute(ctx, path.Root(a), &before)...)
		diags.Append(plan.GetAttribute(ctx, path.Root(a), &after)...)
		if diags.HasError() || before == nil || !before.Equal(after) {
			return false
		}
	}
	return true
}

func (m stateWhileSame) PlanModifyString(ctx context.Context, req planmodifier.StringRequest, resp *planmodifier.StringResponse) {
	if req.StateValue.IsNull() || !req.PlanValue.IsUnknown() || req.Plan.Raw.IsNull() {
		return
	}
	if m.same(ctx, req.State, req.Plan, &resp.Diagnostics) {
		resp.PlanValue = req.StateValue
	}
}

func (m stateWhileSame) PlanModifyInt64(ctx context.Context, req planmodifier.Int64Request, resp *planmodifier.Int64Response) {
	if req.StateValue.IsNull() || !req.PlanValue.IsUnknown() || req.Plan.Raw.IsNull() {
		return
	}
	if m.same(ctx, req.State, req.Plan, &resp.Diagnostics) {
		resp.PlanValue = req.StateValue
	}
}
