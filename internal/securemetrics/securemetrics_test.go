package securemetrics_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
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
// ServiceAccount, with the RBAC of deploy/conntrack-agent.yaml and the
// certificate of a Secret (CertDir): the scraper verifies the server against
// its CA (no InsecureSkipVerify) before it sends a token; no token is
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
	certDir, caPool := servingCert(t)
	go func() {
		done <- securemetrics.Serve(ctx, securemetrics.Config{Addr: addr, Secure: true, CertDir: certDir},
			p.ServiceAccountConfig("telemetry-system", "conntrack-agent"))
	}()

	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool, ServerName: "localhost"}}}
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

// servingCert writes, as a kubernetes.io/tls Secret mounted would hold them,
// tls.crt and tls.key for "localhost" and 127.0.0.1, signed by a CA it
// returns as the pool a scraper trusts.
func servingCert(t *testing.T) (string, *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return dir, pool
}

// TestPlainMetricsOnlyOnLoopback: plain HTTP is refused on any address a
// neighbour could reach (the agent runs on the node's network).
func TestPlainMetricsOnlyOnLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:9402": true, "[::1]:9402": true, "localhost:9402": true, "0": true,
		":9402": false, "0.0.0.0:9402": false, "[::]:9402": false, "192.0.2.1:9402": false, "[2001:db8::1]:9402": false,
	} {
		err := securemetrics.Config{Addr: addr}.Validate()
		if (err == nil) != ok {
			t.Errorf("plain HTTP on %q: %v, want accepted %v", addr, err, ok)
		}
		if err := (securemetrics.Config{Addr: addr, Secure: true}).Validate(); err != nil {
			t.Errorf("secure on %q refused: %v", addr, err)
		}
	}
}
