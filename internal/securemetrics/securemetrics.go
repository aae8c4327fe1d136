// Package securemetrics serves both controllers' Prometheus metrics the way
// controller-runtime's secure metrics server does: over HTTPS, to clients
// whose bearer token the API server authenticates (TokenReview) and
// authorizes for a get on /metrics (SubjectAccessReview). The conntrack agent
// runs on the host network, so plain HTTP would expose its metrics to every
// neighbour of every node.
package securemetrics

import (
	"context"
	"fmt"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// Config is how the metrics are served.
type Config struct {
	// Addr is the address to listen on; "0" serves none.
	Addr string
	// Secure serves HTTPS to authenticated, authorized clients; false serves
	// plain HTTP, which Validate accepts only on a loopback address.
	Secure bool
	// CertDir holds tls.crt and tls.key (a Secret, issued and rotated by
	// cert-manager or by hand): served, and reloaded when they change, so a
	// scraper verifies the server before it sends its token. Empty: a
	// certificate self-signed at each start, which a scraper can only skip
	// verifying.
	CertDir string
}

// Validate refuses plain HTTP anywhere but on loopback: the agent's address
// is the node's, and anyone who can reach it would read the metrics.
func (c Config) Validate() error {
	if c.Secure || c.Addr == "0" || c.Addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("metrics address %q: %w", c.Addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("plain-HTTP metrics (--metrics-secure=false) on %q would be open to anyone who reaches that address: "+
			"bind them to loopback (127.0.0.1:PORT or [::1]:PORT), or serve them secure", c.Addr)
	}
	return nil
}

// Options are the metrics server options for c (see Config).
func (c Config) Options() metricsserver.Options {
	o := metricsserver.Options{BindAddress: c.Addr, SecureServing: c.Secure}
	if c.Secure {
		o.FilterProvider = filters.WithAuthenticationAndAuthorization
		o.CertDir = c.CertDir
	}
	return o
}

// Registry is where a program outside a controller-runtime manager registers
// its metrics so that Serve exposes them: controller-runtime's registry, which
// already carries the Go runtime and process collectors.
func Registry() prometheus.Registerer { return ctrlmetrics.Registry }

// Serve runs the metrics server until ctx ends.
func Serve(ctx context.Context, c Config, cfg *rest.Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	srv, err := metricsserver.NewServer(c.Options(), cfg, httpClient)
	if err != nil {
		return err
	}
	return srv.Start(ctx)
}
