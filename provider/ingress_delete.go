package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/types"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
)

// ingressDelete is one destroy of telemetry_nlb_ingress. Its order is the
// apply's reversed where that keeps traffic refused and frees what AWS holds
// in use: the Service goes first (the nlb-policy controller removes its
// policies, the AWS Load Balancer Controller the NLB, which frees the
// frontend group), then the ingress's rules, then its frontend group. Every
// object the ingress may have made is found from the state or, for a create
// that failed before it saved, by its tags: nothing is left behind in AWS.
type ingressDelete struct {
	// poll is how often it looks whether the Service is gone (default a
	// second).
	poll  time.Duration
	kube  client.Client
	aws   func() (ingressAWS, bool) // the AWS side, once the Service is gone
	state *ingressModel
	owner ingressOwner
	diags *diag.Diagnostics
}

func (d *ingressDelete) run(ctx context.Context) {
	if !d.deleteService(ctx) {
		return
	}
	a, ok := d.aws()
	if !ok {
		return
	}
	if d.state.NodeSecurityGroupID.ValueString() == "" {
		// Imported and never applied: the ingress made nothing in AWS but,
		// perhaps, the frontend group of a migration that failed before it
		// saved anything, which its tags find.
		if err := deleteUnsavedFrontend(ctx, a, d.owner); err != nil {
			d.diags.AddError("Cannot delete the frontend security group", err.Error())
		}
		return
	}
	d.deleteAWS(ctx, a)
}

// deleteService deletes the Service and waits until it is gone (its
// finalizers released); false when it is not.
func (d *ingressDelete) deleteService(ctx context.Context) bool {
	svc := &corev1.Service{}
	svc.Namespace, svc.Name = d.owner.namespace, d.owner.name
	if err := d.kube.Delete(ctx, svc); err != nil && !apierrors.IsNotFound(err) {
		d.diags.AddError("Cannot delete the Service", err.Error())
		return false
	}
	poll := d.poll
	if poll == 0 {
		poll = time.Second
	}
	err := wait.PollUntilContextCancel(ctx, poll, true, func(ctx context.Context) (bool, error) {
		return apierrors.IsNotFound(d.kube.Get(ctx, client.ObjectKeyFromObject(svc), svc)), nil
	})
	if err != nil {
		d.diags.AddError("Service not deleted", fmt.Sprintf("Service %s/%s is still present: %s. "+
			"Start what holds it, then destroy again.", d.owner.namespace, d.owner.name, heldBy(svc.Finalizers)))
		return false
	}
	return true
}

// deleteAWS revokes the ingress's rules, then deletes its frontend group
// (one it does not own is left, with a warning).
func (d *ingressDelete) deleteAWS(ctx context.Context, a ingressAWS) {
	nodeSG := d.state.NodeSecurityGroupID.ValueString()
	vpcID, vpcCIDRs, err := a.vpcOf(ctx, nodeSG)
	if err != nil {
		d.diags.AddError("Cannot read the node security group", err.Error())
		return
	}
	frontend := d.state.FrontendSecurityGroupID.ValueString()
	if frontend == "" && !d.state.NLBSecurityGroup.Equal(types.BoolValue(false)) {
		// A create that failed before saving the group's ID: its tags find it.
		if frontend, err = a.findFrontend(ctx, d.owner, vpcID); err != nil {
			d.diags.AddError("Cannot read the frontend security group", err.Error())
			return
		}
	}
	if err := a.reconcileRules(ctx, d.owner, frontend, nodeSG, vpcCIDRs, nil); err != nil {
		d.diags.AddError("Cannot revoke the security-group rules", err.Error())
		return
	}
	if frontend == "" {
		return
	}
	owned, err := a.frontendOwned(ctx, d.owner, frontend)
	switch {
	case err != nil:
		d.diags.AddError("Cannot read the frontend security group", err.Error())
	case !owned:
		d.diags.AddWarning("Security group left in place", fmt.Sprintf("security group %s is not the frontend group "+
			"of %s in this cluster (it lacks the tags %s and %s): its rules other than this ingress's own are left as they "+
			"are, and it is not deleted.", frontend, d.owner.ref(), annotations.IngressTag, annotations.ClusterTag))
	default:
		if err := a.deleteFrontend(ctx, frontend); err != nil {
			d.diags.AddError("Cannot delete the frontend security group", err.Error())
		}
	}
}

// deleteUnsavedFrontend deletes the ingress's frontend group found by its
// tags, for an ingress whose state names no node group (imported, never
// applied): a first apply that failed after making the group saved nothing.
func deleteUnsavedFrontend(ctx context.Context, a ingressAWS, o ingressOwner) error {
	frontend, err := a.findFrontend(ctx, o, "")
	if err != nil || frontend == "" {
		return err
	}
	return a.deleteFrontend(ctx, frontend)
}
