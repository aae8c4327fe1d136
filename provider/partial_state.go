package provider

import (
	"context"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
)

// savePartial stores what a create that failed part-way made, so that
// refresh, the next apply (which replaces the tainted object) and destroy
// find it. Values the create never reached are unknown in the plan; they are
// saved as null, because Terraform rejects unknown values after apply (each
// one an "invalid result object" error) and keeps nothing of the object then.
func savePartial(ctx context.Context, state *tfsdk.State, model any) diag.Diagnostics {
	diags := state.Set(ctx, model)
	if diags.HasError() {
		return diags
	}
	raw, err := tftypes.Transform(state.Raw, func(_ *tftypes.AttributePath, v tftypes.Value) (tftypes.Value, error) {
		if !v.IsKnown() {
			return tftypes.NewValue(v.Type(), nil), nil
		}
		return v, nil
	})
	if err != nil {
		diags.AddError("Cannot save the partial state", err.Error())
		return diags
	}
	state.Raw = raw
	return diags
}
