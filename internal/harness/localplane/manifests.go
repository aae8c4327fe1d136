package localplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ReadManifests parses a multi-document YAML file of Kubernetes objects.
func ReadManifests(path string) ([]*unstructured.Unstructured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

// ApplyManifests server-side applies the objects: for real when dryRun is
// false, else with dryRun=All (the API server validates and admits them,
// and stores nothing). Namespaces are always created for real first, since a
// dry run into a missing namespace fails.
func (p *Plane) ApplyManifests(ctx context.Context, objs []*unstructured.Unstructured, dryRun bool) error {
	c, err := p.Client()
	if err != nil {
		return err
	}
	apply := func(o *unstructured.Unstructured, dry bool) error {
		opts := []client.ApplyOption{client.FieldOwner("localplane"), client.ForceOwnership}
		if dry {
			opts = append(opts, client.DryRunAll)
		}
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), opts...); err != nil {
			return fmt.Errorf("%s %s: %w", o.GetKind(), o.GetName(), err)
		}
		return nil
	}
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			if err := apply(o, false); err != nil {
				return err
			}
		}
	}
	for _, o := range objs {
		if o.GetKind() != "Namespace" {
			if err := apply(o, dryRun); err != nil {
				return err
			}
		}
	}
	return nil
}

// ServiceAccountConfig is the plane's admin configuration impersonating a
// ServiceAccount, to run a component with exactly its RBAC.
func (p *Plane) ServiceAccountConfig(namespace, name string) *rest.Config {
	cfg := rest.CopyConfig(p.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + namespace + ":" + name,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}
	return cfg
}

// AwaitAllowed returns once the API server authorizes as for what: RBAC
// objects just created are in force only once its caches have them, so a
// request made as the subject straight after can still be refused.
func (p *Plane) AwaitAllowed(ctx context.Context, as rest.ImpersonationConfig, what authorizationv1.ResourceAttributes) error {
	cs, err := kubernetes.NewForConfig(p.Config)
	if err != nil {
		return err
	}
	var last string
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		sar, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{User: as.UserName, Groups: as.Groups, ResourceAttributes: &what}}, metav1.CreateOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = sar.Status.Reason
		return sar.Status.Allowed, nil
	})
	if err != nil {
		return fmt.Errorf("%s may not %s %s.%s (%s): %w", as.UserName, what.Verb, what.Resource, what.Group, last, err)
	}
	return nil
}

// RBAC keeps the ServiceAccounts, roles and bindings of a manifest set.
func RBAC(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		switch o.GetKind() {
		case "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			out = append(out, o)
		}
	}
	return out
}

// ServiceAccountKubeconfig writes a kubeconfig that acts as the
// ServiceAccount (the admin's credentials impersonating it, as
// ServiceAccountConfig does), for a binary run with exactly that account's
// rights, and returns its path.
func (p *Plane) ServiceAccountKubeconfig(namespace, name string) (string, error) {
	cfg, err := clientcmd.LoadFromFile(p.Kubeconfig)
	if err != nil {
		return "", err
	}
	as := p.ServiceAccountConfig(namespace, name).Impersonate
	for _, ai := range cfg.AuthInfos {
		ai.Impersonate, ai.ImpersonateGroups = as.UserName, as.Groups
	}
	path := filepath.Join(p.Dir, "kubeconfig-"+namespace+"-"+name)
	return path, clientcmd.WriteToFile(*cfg, path)
}

// HelmBinary is the helm the tests render the chart with: $HELM, else the
// one `make helm` links into bin/tools (make test does).
func HelmBinary() (string, error) {
	bin := os.Getenv("HELM")
	if bin == "" {
		bin = filepath.Join(RepoRoot(), "bin", "tools", "helm")
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("helm not found at %s: `make helm` builds it (`make test` does), or set HELM", bin)
	}
	return bin, nil
}
