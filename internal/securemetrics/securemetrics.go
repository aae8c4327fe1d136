// Package securemetrics serves both controllers' Prometheus metrics the way
// controller-runtime's secure metrics server does: over HTTPS, to clients
// whose bearer token the API server authenticates (TokenReview) and
// authorizes for a get on /metrics (SubjectAccessReview). The conntrack agent
// runs on the host network, so plain HTTP would expose its metrics to every
// neighbour of every node.
package securemetrics

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// Options are the metrics server options: authenticated and authorized
// HTTPS when secure (the certificate is self-signed unless a CertDir is set),
// plain HTTP otherwise (for an address bound to localhost).
func Options(addr string, secure bool) metricsserver.Options {
	o := metricsserver.Options{BindAddress: addr, SecureServing: secure}
	if secure {
		o.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	return o
}

// Registry is where a program outside a controller-runtime manager registers
// its metrics so that Serve exposes them: controller-runtime's registry, which
// already carries the Go runtime and process collectors.
func Registry() prometheus.Registerer { return ctrlmetrics.Registry }

// Serve runs the metrics server until ctx ends.
func Serve(ctx context.Context, addr string, secure bool, cfg *rest.Config) error {
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	srv, err := metricsserver.NewServer(Options(addr, secure), cfg, httpClient)
	if err != nil {
		return err
	}
	return srv.Start(ctx)
}
