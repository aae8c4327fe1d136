package provider

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
