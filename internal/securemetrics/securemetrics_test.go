package securemetrics_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/telemetry-platform/terraform-provider-telemetry/internal/harness/localplane"
	"github.com/telemetry-platform/terraform-provider-telemetry/internal/securemetrics"
)

// TestMetricsRequireAuthorization serves the agent's metrics as its
// ServiceAccount, with the RBAC of deploy/conntrack-agent.yaml: no token is
// refused, a token without the metrics-reader role is refused, Prometheus's
// token with it reads the metrics.
func TestMetricsRequireAuthorization(t *testing.T) {
	p := localplane.New(t, localplane.Options{NoAWS: true})
	admin, err := p.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	objs, err := localplane.ReadManifests(filepath.Join(localplane.RepoRoot(), "deploy", "conntrack-agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.ApplyManifests(ctx, localplane.RBAC(objs), false); err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(p.Config)
	if err != nil {
		t.Fatal(err)
	}
	token := func(name string) string {
		t.Helper()
		if err := admin.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}); err != nil {
			t.Fatal(err)
		}
		tok, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tok.Status.Token
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "prometheus-metrics"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "telemetry-metrics-reader"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "default", Name: "prometheus"}}}
	if err := admin.Create(ctx, binding); err != nil {
		t.Fatal(err)
	}
	prometheusToken, nobodyToken := token("prometheus"), token("nobody")

	probe := prometheus.NewCounter(prometheus.CounterOpts{Name: "telemetry_securemetrics_probe_total", Help: "test"})
	securemetrics.Registry().MustRegister(probe)
	probe.Inc()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	done := make(chan error, 1)
	go func() {
		done <- securemetrics.Serve(ctx, addr, true, p.ServiceAccountConfig("telemetry-system", "conntrack-agent"))
	}()

	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	get := func(tok string) (int, string, error) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/metrics", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _, err := get("")
		if err == nil {
			if code != http.StatusUnauthorized {
				t.Fatalf("no token: HTTP %d, want 401", code)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics server not up: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, _, err := get(nobodyToken); err != nil || code != http.StatusForbidden {
		t.Fatalf("token without the reader role: HTTP %d (%v), want 403", code, err)
	}
	code, body, err := get(prometheusToken)
	if err != nil || code != http.StatusOK || !strings.Contains(body, "telemetry_securemetrics_probe_total 1") {
		t.Fatalf("reader: HTTP %d (%v), body has the probe: %v", code, err, strings.Contains(body, "telemetry_securemetrics_probe_total"))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(fmt.Errorf("metrics server: %w", err))
	}
}
