package localplane

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
)

// warmCaches lists every installed custom resource once, all at once, so
// their watch caches are ready before anything uses them. Why: the API
// server makes a resource's watch cache on its first request and, until the
// cache has loaded (KEP-4568, on by default since v1.31), answers lists and
// watches with 429 and Retry-After: 1 s, which client-go honours. Unwarmed,
// every test paid that second (measured: the first tier list took 1.0 s)
// for each kind it listed or watched first, one kind after another, and
// informers on a fresh plane started late; warmed side by side, the plane
// pays it once.
func warmCaches(ctx context.Context, cfg *rest.Config, crds []*apiextensionsv1.CustomResourceDefinition) error {
	mc, err := metadata.NewForConfig(cfg)
	if err != nil {
		return err
	}
	var g errgroup.Group
	for _, crd := range crds {
		gvr := schema.GroupVersionResource{Group: crd.Spec.Group, Version: storageVersion(crd), Resource: crd.Spec.Names.Plural}
		g.Go(func() error {
			if _, err := mc.Resource(gvr).List(ctx, metav1.ListOptions{ResourceVersion: "0"}); err != nil {
				return fmt.Errorf("listing %s to warm its cache: %w", gvr, err)
			}
			return nil
		})
	}
	return g.Wait()
}

// storageVersion is the version a CRD stores (the first served one if none
// is marked).
func storageVersion(crd *apiextensionsv1.CustomResourceDefinition) string {
	for _, v := range crd.Spec.Versions {
		if v.Storage {
			return v.Name
		}
	}
	return crd.Spec.Versions[0].Name
}

// crdCreateHold is how long the API server holds a create of a custom
// resource whose CRD is newly established (apiextensions-apiserver's
// customresource_handler.go, "justCreated": so that in HA clusters another
// server has seen the CRD before a follow-up request reaches it). The
// condition's time is in whole seconds, so the hold applies for 1 to 2 s
// after the CRD is established.
const crdCreateHold = 2 * time.Second

// awaitCRDsSettled returns once a create of any of crds' kinds is no longer
// held. Why: without it a plane's first tier took 2.0 s or 3 ms to create,
// depending on where the second boundary fell, and so did a test's first
// policy or topic on a fresh plane; a real cluster's CRDs were established
// long before the product runs. The wait is on the API server's own clock
// rule (the condition's time plus the hold), not on a guess.
func awaitCRDsSettled(ctx context.Context, cfg *rest.Config, crds []*apiextensionsv1.CustomResourceDefinition) error {
	cs, err := apiextensionsclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	list, err := cs.ApiextensionsV1().CustomResourceDefinitions().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	ours := map[string]bool{}
	for _, crd := range crds {
		ours[crd.Name] = true
	}
	var latest time.Time
	for _, crd := range list.Items {
		if !ours[crd.Name] {
			continue
		}
		for _, c := range crd.Status.Conditions {
			if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue && c.LastTransitionTime.After(latest) {
				latest = c.LastTransitionTime.Time
			}
		}
	}
	if d := time.Until(latest.Add(crdCreateHold)); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
