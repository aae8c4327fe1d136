package localplane

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// calicoWebhook is Calico's tiered-RBAC admission webhook
// (webhooks/pkg/webhook of the pinned Calico, built by `make calico`),
// running as its ServiceAccount with the RBAC of Calico's manifest. Every
// write of a Calico policy in the plane goes through it, as in a cluster
// running Calico 3.32+ on its native v3 CRDs: the writer needs get on the
// policy's tier and the verb on tier.<kind> named "<tier>.*".
type calicoWebhook struct {
	cmd *exec.Cmd
	// done is closed when the process has exited, err then says how.
	done chan struct{}
	err  error
}

// calicoWebhookBinary finds the webhook: CALICO_WEBHOOK if set, else the one
// built under bin/calico/.
func calicoWebhookBinary() (string, error) {
	return calicoArtifact("CALICO_WEBHOOK", "calico-webhook", "Calico's tiered-RBAC webhook")
}

// startCalicoWebhook runs the webhook and registers it with the API server.
// The webhook reads its credentials the in-cluster way, from
// /var/run/secrets/kubernetes.io/serviceaccount: it runs in a mount namespace
// of its own where a tmpfs over /run holds them, so the host is not touched
// (this needs root, like the network tests).
func (p *Plane) startCalicoWebhook(ctx context.Context, c client.Client, objs calicoObjects) (*calicoWebhook, error) {
	bin, err := calicoWebhookBinary()
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("Calico's tiered-RBAC webhook runs in a mount namespace of its own, which needs root: run the tests as root (`make test` in CI is)")
	}
	dir := filepath.Join(p.Dir, "calico-webhook")
	secrets := filepath.Join(dir, "serviceaccount")
	if err := os.MkdirAll(secrets, 0o700); err != nil {
		return nil, err
	}

	// Its ServiceAccount, with the RBAC Calico's manifest gives it, and a token.
	for _, o := range objs.webhookRBAC {
		if err := c.Create(ctx, o.DeepCopy()); err != nil {
			return nil, fmt.Errorf("creating %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	if err := c.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "calico-webhooks"}}); err != nil {
		return nil, fmt.Errorf("creating the webhook's ServiceAccount: %w", err)
	}
	cs, err := kubernetes.NewForConfig(p.Config)
	if err != nil {
		return nil, err
	}
	tok, err := cs.CoreV1().ServiceAccounts("kube-system").CreateToken(ctx, "calico-webhooks",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(24 * 3600))}}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating a token for the webhook: %w", err)
	}
	if err := os.WriteFile(filepath.Join(secrets, "token"), []byte(tok.Status.Token), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(secrets, "ca.crt"), p.Config.CAData, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(secrets, "namespace"), []byte("kube-system"), 0o600); err != nil {
		return nil, err
	}
	caPEM, err := writeServingCert(dir)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	api, err := url.Parse(p.Config.Host)
	if err != nil {
		return nil, err
	}

	script := `set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/secrets/kubernetes.io/serviceaccount
mount --bind "$SECRETS" /run/secrets/kubernetes.io/serviceaccount
exec "$@"`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
		bin, "webhook", "--tls-cert-file", filepath.Join(dir, "tls.crt"), "--tls-private-key-file", filepath.Join(dir, "tls.key"),
		"--port", strconv.Itoa(port))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "SECRETS=" + secrets,
		"KUBERNETES_SERVICE_HOST=" + api.Hostname(), "KUBERNETES_SERVICE_PORT=" + api.Port()}
	log, err := os.Create(filepath.Join(dir, "webhook.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := startChild(cmd); err != nil {
		return nil, fmt.Errorf("starting %s under unshare (util-linux): %w", bin, err)
	}
	w := &calicoWebhook{cmd: cmd, done: make(chan struct{})}
	go func() { w.err = cmd.Wait(); log.Close(); close(w.done) }()

	if err := waitReady(ctx, port, caPEM, w); err != nil {
		w.stop()
		out, _ := os.ReadFile(filepath.Join(dir, "webhook.log"))
		return nil, fmt.Errorf("Calico's webhook did not become ready: %w\n%s", err, out)
	}
	// Calico's ValidatingWebhookConfiguration, pointed at this process.
	for _, o := range objs.webhooks {
		cfg := o.DeepCopy()
		hooks, _, _ := unstructured.NestedSlice(cfg.Object, "webhooks")
		for i := range hooks {
			h := hooks[i].(map[string]any)
			path, _, _ := unstructured.NestedString(h, "clientConfig", "service", "path")
			h["clientConfig"] = map[string]any{
				"url":      fmt.Sprintf("https://127.0.0.1:%d%s", port, path),
				"caBundle": base64.StdEncoding.EncodeToString(caPEM),
			}
		}
		if err := unstructured.SetNestedSlice(cfg.Object, hooks, "webhooks"); err != nil {
			return nil, err
		}
		if err := c.Create(ctx, cfg); err != nil {
			w.stop()
			return nil, fmt.Errorf("registering Calico's webhook: %w", err)
		}
	}
	return w, nil
}

func (w *calicoWebhook) stop() error {
	if w != nil && w.cmd.Process != nil {
		stopGroup(w.cmd, w.done, 10*time.Second)
	}
	return nil
}

func waitReady(ctx context.Context, port int, caPEM []byte, w *calicoWebhook) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-w.done:
			return fmt.Errorf("exited: %v", w.err)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		resp, err := hc.Get(fmt.Sprintf("https://127.0.0.1:%d/readyz", port))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("no answer on /readyz within 30s")
}

// writeServingCert writes a self-signed certificate for 127.0.0.1 (tls.crt,
// tls.key) and returns it as the CA bundle.
func writeServingCert(dir string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "calico-webhooks.localplane"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), certPEM, 0o600); err != nil {
		return nil, err
	}
	return certPEM, os.WriteFile(filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
}
