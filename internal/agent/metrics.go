package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"slices"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"k8s.io/client-go/rest"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// MetricsOptions say where the agent serves its metrics.
type MetricsOptions struct {
	// BindAddress is the address of the HTTPS endpoint; "0" serves none.
	BindAddress string
	// CertDir holds tls.crt and tls.key; without them the endpoint makes a self-signed
	// certificate at start.
	CertDir string
}

// ServeMetrics serves the agent's metrics (kaudit's collectors, Go's and the process's) over HTTPS
// until ctx is done, to callers that cfg's apiserver authenticates (TokenReview) and allows to
// get the non-resource URL /metrics (SubjectAccessReview): the agent runs on the host network,
// so the endpoint is on the node's addresses (see docs/metrics.md). It returns once the server
// is set up; a failure to listen later (a port taken on the node) is logged, never fatal: the
// agent's rollouts matter more than its metrics.
func ServeMetrics(ctx context.Context, o MetricsOptions, cfg *rest.Config, kaudit ...prometheus.Collector) error {
	if o.BindAddress == "0" {
		return nil
	}
	for _, c := range kaudit {
		if err := crmetrics.Registry.Register(c); err != nil {
			return fmt.Errorf("registering the agent's metrics: %w", err)
		}
	}
	// controller-runtime registers Go's and the process's collectors when the manager's
	// packages, in the same binary, are linked in; otherwise the agent does.
	for metric, c := range map[string]prometheus.Collector{
		"go_goroutines":                 collectors.NewGoCollector(),
		"process_resident_memory_bytes": collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if !gathers(crmetrics.Registry, metric) {
			if err := crmetrics.Registry.Register(c); err != nil {
				return fmt.Errorf("registering the agent's metrics: %w", err)
			}
		}
	}
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	srv, err := metricsserver.NewServer(metricsserver.Options{
		BindAddress:    o.BindAddress,
		SecureServing:  true,
		FilterProvider: filters.WithAuthenticationAndAuthorization,
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

// gathers tells whether g already gathers the metric name.
func gathers(g prometheus.Gatherer, name string) bool {
	families, _ := g.Gather()
	return slices.ContainsFunc(families, func(f *dto.MetricFamily) bool { return f.GetName() == name })
}
