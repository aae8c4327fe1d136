package provider

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/util/csaupgrade"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/annotations"
)

// createOwned creates obj, so that the API server, not an earlier Get,
// decides who owns its name: of two applies creating the same object, one
// gets AlreadyExists. The fields it wrote are then handed to the provider's
// server-side-apply manager, so that later applies own them and can remove
// them (a create is recorded as an Update, whose fields apply cannot drop).
func createOwned(ctx context.Context, c client.Client, obj client.Object) error {
	if err := c.Create(ctx, obj, client.FieldOwner(annotations.ProviderManager)); err != nil {
		return err
	}
	managers := sets.New(annotations.ProviderManager)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		patch, err := csaupgrade.UpgradeManagedFieldsPatch(obj, managers, annotations.ProviderManager)
		if err != nil || patch == nil {
			return err
		}
		err = c.Patch(ctx, obj, client.RawPatch(types.JSONPatchType, patch))
		if apierrors.IsConflict(err) {
			// Written meanwhile (a controller's finalizer): upgrade what is there now.
			if getErr := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); getErr != nil {
				return getErr
			}
		}
		return err
	})
}
