package localplane

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	calicov3 "github.com/projectcalico/api/pkg/apis/projectcalico/v3"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// calicoManifest finds Calico's own manifest (manifests/calico-v3-crds.yaml of
// the pinned Calico, extracted by `make calico`): CALICO_MANIFEST if set, else
// the one cached under bin/calico/.
func calicoManifest() (string, error) {
	return calicoArtifact("CALICO_MANIFEST", "calico-v3-crds.yaml", "Calico's manifest")
}

// calicoArtifact finds a file `make calico` produces from the pinned Calico
// source: the path in the environment variable, else bin/calico/<commit>/name.
func calicoArtifact(env, name, what string) (string, error) {
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w (run `make calico`)", env, p, err)
		}
		return p, nil
	}
	matches, _ := filepath.Glob(filepath.Join(RepoRoot(), "bin", "calico", "*", name))
	if len(matches) != 1 {
		return "", fmt.Errorf("%s not found in bin/calico/ (%d candidates): run `make calico`, which takes it from the pinned "+
			"Calico source (../shared/third_party, or a clone of upstream at the pinned commit)", what, len(matches))
	}
	return matches[0], nil
}

// calicoObjects are what the local plane takes from Calico's manifest: the
// projectcalico.org CRDs, and the admission policies that default a policy's
// tier and types and protect the built-in tiers (Calico's webhooks, its
// Deployments and RBAC are left out).
type calicoObjects struct {
	crds      []*apiextensionsv1.CustomResourceDefinition
	admission []*unstructured.Unstructured
	// webhooks is the tiered-RBAC ValidatingWebhookConfiguration, and
	// webhookRBAC the webhook's ClusterRole and binding.
	webhooks    []*unstructured.Unstructured
	webhookRBAC []*unstructured.Unstructured
}

func loadCalico() (calicoObjects, error) {
	var out calicoObjects
	path, err := calicoManifest()
	if err != nil {
		return out, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return out, err
	}
	for _, doc := range bytes.Split(data, []byte("\n---\n")) {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			return out, fmt.Errorf("parsing %s: %w", path, err)
		}
		switch u.GetKind() {
		case "CustomResourceDefinition":
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := yaml.Unmarshal(doc, crd); err != nil {
				return out, fmt.Errorf("parsing CRD %s: %w", u.GetName(), err)
			}
			if crd.Spec.Group == calicov3.GroupName {
				out.crds = append(out.crds, crd)
			}
		case "MutatingAdmissionPolicy", "MutatingAdmissionPolicyBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding":
			out.admission = append(out.admission, u)
		case "ValidatingWebhookConfiguration":
			out.webhooks = append(out.webhooks, u)
		case "ClusterRole", "ClusterRoleBinding":
			if u.GetName() == "calico-webhooks" {
				out.webhookRBAC = append(out.webhookRBAC, u)
			}
		}
	}
	if len(out.crds) == 0 || len(out.admission) == 0 || len(out.webhooks) != 1 || len(out.webhookRBAC) != 2 {
		return out, fmt.Errorf("%s holds %d Calico CRDs, %d admission policies, %d webhook configurations and %d webhook RBAC objects: "+
			"not the Calico manifest this plane was written for", path, len(out.crds), len(out.admission), len(out.webhooks), len(out.webhookRBAC))
	}
	return out, nil
}

// createCalicoAdmission creates Calico's admission policies (and their
// bindings) from its manifest.
func createCalicoAdmission(ctx context.Context, c client.Client, objs calicoObjects) error {
	for _, u := range objs.admission {
		if err := c.Create(ctx, u.DeepCopy()); err != nil {
			return fmt.Errorf("creating Calico's %s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	return nil
}

// createCalicoTiers creates what calico-node and kube-controllers would
// create: the built-in tiers.
func createCalicoTiers(ctx context.Context, c client.Client) error {
	for _, t := range []struct {
		name   string
		order  float64
		action calicov3.Action
	}{
		{"default", calicov3.DefaultTierOrder, calicov3.Deny},
		{"kube-admin", calicov3.AdminNetworkPolicyTierOrder, calicov3.Pass},
		{"kube-baseline", calicov3.BaselineAdminNetworkPolicyTierOrder, calicov3.Pass},
	} {
		tier := &calicov3.Tier{ObjectMeta: metav1.ObjectMeta{Name: t.name},
			Spec: calicov3.TierSpec{Order: ptr.To(t.order), DefaultAction: ptr.To(t.action)}}
		if err := c.Create(ctx, tier); err != nil {
			return fmt.Errorf("creating Calico's tier %s: %w", t.name, err)
		}
	}
	return nil
}
