package provider

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// TestKubeReachErrorNamesTheCause: each way of not reaching the API server
// is named for what it is, with the next step: an untrusted certificate is
// not "no answer", a wrong token says Unauthorized whether a write or a
// refresh's discovery met it, and a missing permission is not a bad
// credential.
func TestKubeReachErrorNamesTheCause(t *testing.T) {
	c := &clients{restCfg: &rest.Config{Host: "https://10.0.0.1:6443"}}
	tlsErr := &url.Error{Op: "Get", URL: "https://10.0.0.1:6443/api", Err: x509.UnknownAuthorityError{}}
	unauthorized := apierrors.NewUnauthorized("Unauthorized")
	for _, tc := range []struct {
		name string
		err  error
		gist []string
	}{
		{"untrusted certificate", tlsErr, []string{"certificate the provider does not trust", "cluster_ca_certificate"}},
		{"wrong token at apply", unauthorized, []string{"refused the credentials", "kubernetes.token"}},
		{"wrong token at refresh (discovery)", fmt.Errorf("failed to get server groups: %w", errors.New(unauthorized.Error())),
			[]string{"refused the credentials", "kubernetes.token"}},
		{"missing permission", apierrors.NewForbidden(schema.GroupResource{Resource: "services"}, "x", errors.New("no")),
			[]string{"Forbidden", "grant"}},
		{"no answer", &url.Error{Op: "Get", URL: "https://10.0.0.1:6443/api", Err: errors.New("connection refused")},
			[]string{"No answer", "reachable"}},
	} {
		got := kubeReachError(c, tc.err)
		for _, g := range tc.gist {
			if !strings.Contains(got, g) {
				t.Errorf("%s: %q does not say %q", tc.name, got, g)
			}
		}
	}
}

// TestTargetGroupBindingsAdvice: a TargetGroupBinding CRD that is not served
// is not a permission problem, and is not advised as one.
func TestTargetGroupBindingsAdvice(t *testing.T) {
	noMatch := &meta.NoKindMatchError{GroupKind: schema.GroupKind{Group: "elbv2.k8s.aws", Kind: "TargetGroupBinding"}}
	if got := targetGroupBindingsAdvice(noMatch); !strings.Contains(got, "CRDs are not installed") || strings.Contains(got, "Allow get") {
		t.Errorf("no matches for kind: %q", got)
	}
	forbidden := apierrors.NewForbidden(schema.GroupResource{Group: "elbv2.k8s.aws", Resource: "targetgroupbindings"}, "", errors.New("no"))
	if got := targetGroupBindingsAdvice(forbidden); !strings.Contains(got, "Allow get and list") {
		t.Errorf("forbidden: %q", got)
	}
}
