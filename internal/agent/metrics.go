package agent

import (
	"context"
	"crypto/tls"
	"fmt"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/client-go/rest"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/kaudit/kaudit/internal/metricsauth"
)

// MetricsOptions say where the agent serves its metrics.
type MetricsOptions struct {
	// BindAddress is the address of the HTTPS endpoint; "0" serves none.
	BindAddress string
	// CertDir holds tls.crt and tls.key; without them the endpoint makes a self-signed
	// certificate at start.
	CertDir string
}

// ServeMetrics serves the agent's metrics (kaudit's collectors, Go's and the process's, and
// nothing else) over HTTPS until ctx is done, to callers that cfg's apiserver authenticates
// (TokenReview) and allows to get the non-resource URL /metrics (SubjectAccessReview): the agent
// runs on the host network, so the endpoint is on the node's addresses (see docs/metrics.md). It
// returns once the server is set up; a failure to listen later (a port taken on the node) is
// logged, never fatal: the agent's rollouts matter more than its metrics.
//
// controller-runtime's metrics server serves its global crmetrics.Registry, into which the
// manager's metrics and controller-runtime's own register when their packages are linked in
// (the agent and the manager are one binary). ServeMetrics replaces that registry with one of
// the agent's own, so that the endpoint carries none of them: call it once, in the agent's
// process.
func ServeMetrics(ctx context.Context, o MetricsOptions, cfg *rest.Config, kaudit ...prometheus.Collector) error {
	if o.BindAddress == "0" {
		return nil
	}
	registry, err := newAgentRegistry(kaudit...)
	if err != nil {
		return err
	}
	crmetrics.Registry = registry
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	srv, err := metricsserver.NewServer(metricsserver.Options{
		BindAddress:    o.BindAddress,
		SecureServing:  true,
		FilterProvider: metricsauth.Filter,
		// HTTP/1.1 only, as the manager's endpoint: HTTP/2's stream reset and rapid reset
		// (CVE-2023-44487, CVE-2023-39325) on an endpoint every node address exposes.
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
		CertDir: o.CertDir,
	}, cfg, httpClient)
	if err != nil {
		return fmt.Errorf("metrics endpoint %s: %w", o.BindAddress, err)
	}
	go func() {
		if err := srv.Start(ctx); err != nil {
			logr.FromContextOrDiscard(ctx).Error(err, "the metrics endpoint stopped; the agent goes on without it", "address", o.BindAddress)
		}
	}()
	return nil
}

// newAgentRegistry is a registry of kaudit's collectors, Go's and the process's.
func newAgentRegistry(kaudit ...prometheus.Collector) (*prometheus.Registry, error) {
	registry := prometheus.NewRegistry()
	for _, c := range append(kaudit, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})) {
		if err := registry.Register(c); err != nil {
			return nil, fmt.Errorf("registering the agent's metrics: %w", err)
		}
	}
	return registry, nil
}
