package main

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"time"

	"sigs.k8s.io/yaml"
)

// The files below are decoded strictly: a field this stand-in does not
// implement is an error, so a kind version that configures envoy differently
// fails loudly instead of being served by a load balancer that behaves
// differently from the one it configured.

// bootstrapFile is envoy.yaml as kind writes it: where the CDS and LDS files are.
type bootstrapFile struct {
	Node struct {
		Cluster string `json:"cluster"`
		ID      string `json:"id"`
	} `json:"node"`
	DynamicResources struct {
		CDSConfig configSource `json:"cds_config"`
		LDSConfig configSource `json:"lds_config"`
	} `json:"dynamic_resources"`
	Admin *struct {
		AccessLogPath string  `json:"access_log_path"`
		Address       address `json:"address"`
	} `json:"admin"`
}

type configSource struct {
	ResourceAPIVersion string `json:"resource_api_version"`
	PathConfigSource   struct {
		Path string `json:"path"`
	} `json:"path_config_source"`
}

type address struct {
	SocketAddress struct {
		Address   string `json:"address"`
		PortValue int    `json:"port_value"`
	} `json:"socket_address"`
}

func (a address) hostPort() string {
	return net.JoinHostPort(a.SocketAddress.Address, strconv.Itoa(a.SocketAddress.PortValue))
}

// duration is a protobuf Duration in its JSON form ("0.25s").
type duration struct{ time.Duration }

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration %s: want a string such as \"2s\": %w", b, err)
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("duration %q: want a non-negative duration such as \"0.25s\"", s)
	}
	d.Duration = v
	return nil
}

func (d *duration) or(def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}

type clusterFile struct {
	Resources []clusterResource `json:"resources"`
}

type clusterResource struct {
	Type            string    `json:"@type"`
	Name            string    `json:"name"`
	ConnectTimeout  *duration `json:"connect_timeout"`
	DiscoveryType   string    `json:"type"`
	LBPolicy        string    `json:"lb_policy"`
	DNSLookupFamily string    `json:"dns_lookup_family"`
	DNSRefreshRate  *duration `json:"dns_refresh_rate"`
	CommonLBConfig  *struct {
		HealthyPanicThreshold *struct {
			Value float64 `json:"value"`
		} `json:"healthy_panic_threshold"`
	} `json:"common_lb_config"`
	HealthChecks           []healthCheckResource  `json:"health_checks"`
	TransportSocketMatches []transportSocketMatch `json:"transport_socket_matches"`
	LoadAssignment         struct {
		ClusterName string `json:"cluster_name"`
		Endpoints   []struct {
			LBEndpoints []struct {
				Endpoint struct {
					Address address `json:"address"`
				} `json:"endpoint"`
			} `json:"lb_endpoints"`
		} `json:"endpoints"`
	} `json:"load_assignment"`
}

type healthCheckResource struct {
	Timeout                      *duration         `json:"timeout"`
	Interval                     *duration         `json:"interval"`
	UnhealthyThreshold           *uint32           `json:"unhealthy_threshold"`
	HealthyThreshold             *uint32           `json:"healthy_threshold"`
	InitialJitter                *duration         `json:"initial_jitter"`
	NoTrafficInterval            *duration         `json:"no_traffic_interval"`
	NoTrafficHealthyInterval     *duration         `json:"no_traffic_healthy_interval"`
	UnhealthyInterval            *duration         `json:"unhealthy_interval"`
	UnhealthyEdgeInterval        *duration         `json:"unhealthy_edge_interval"`
	HealthyEdgeInterval          *duration         `json:"healthy_edge_interval"`
	ReuseConnection              *bool             `json:"reuse_connection"`
	AlwaysLogHealthCheckFailures bool              `json:"always_log_health_check_failures"`
	AlwaysLogHealthCheckSuccess  bool              `json:"always_log_health_check_success"`
	EventLogPath                 string            `json:"event_log_path"`
	TransportSocketMatchCriteria map[string]string `json:"transport_socket_match_criteria"`
	HTTPHealthCheck              *struct {
		Path string `json:"path"`
		Host string `json:"host"`
	} `json:"http_health_check"`
}

type transportSocketMatch struct {
	Name            string            `json:"name"`
	Match           map[string]string `json:"match"`
	TransportSocket struct {
		Name        string `json:"name"`
		TypedConfig struct {
			Type             string `json:"@type"`
			CommonTLSContext struct {
				ValidationContext *struct {
					TrustChainVerification string `json:"trust_chain_verification"`
				} `json:"validation_context"`
			} `json:"common_tls_context"`
		} `json:"typed_config"`
	} `json:"transport_socket"`
}

type listenerFile struct {
	Resources []listenerResource `json:"resources"`
}

type listenerResource struct {
	Type         string  `json:"@type"`
	Name         string  `json:"name"`
	Address      address `json:"address"`
	FilterChains []struct {
		Filters []struct {
			Name        string `json:"name"`
			TypedConfig struct {
				Type               string    `json:"@type"`
				StatPrefix         string    `json:"stat_prefix"`
				Cluster            string    `json:"cluster"`
				IdleTimeout        *duration `json:"idle_timeout"`
				MaxConnectAttempts *uint32   `json:"max_connect_attempts"`
			} `json:"typed_config"`
		} `json:"filters"`
	} `json:"filter_chains"`
}

// Envoy's defaults for what kind leaves unset.
const (
	defaultConnectTimeout    = 5 * time.Second
	defaultDNSRefreshRate    = 5 * time.Second
	defaultPanicThreshold    = 50
	defaultNoTrafficInterval = 60 * time.Second
	defaultTCPIdleTimeout    = time.Hour
)

const (
	clusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	listenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	tcpProxyType = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
	tlsType      = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
)

// clusterConfig is one upstream cluster, with envoy's defaults applied.
type clusterConfig struct {
	name           string
	connectTimeout time.Duration
	// resolve: STRICT_DNS (every address of every endpoint's name is a host,
	// re-resolved every dnsRefresh); otherwise STATIC (literal addresses).
	resolve    bool
	family     string // dns_lookup_family
	dnsRefresh time.Duration
	// panicThreshold: below this percentage of healthy hosts, envoy balances
	// over all hosts, healthy or not.
	panicThreshold float64
	endpoints      []endpoint
	health         *healthConfig // nil: no active health checking, every host healthy
}

type endpoint struct {
	host string
	port int
}

func (e endpoint) String() string { return net.JoinHostPort(e.host, strconv.Itoa(e.port)) }

// healthConfig is one active HTTP health check, with envoy's defaults applied.
type healthConfig struct {
	timeout, interval                           time.Duration
	unhealthyThreshold, healthyThreshold        uint32
	initialJitter                               time.Duration
	noTrafficInterval, noTrafficHealthyInterval time.Duration
	unhealthyInterval, unhealthyEdgeInterval    time.Duration
	healthyEdgeInterval                         time.Duration
	reuseConnection                             bool
	path, host                                  string // host: the Host header
	tls                                         bool   // TLS without verifying the server (ACCEPT_UNTRUSTED)
	logFailures, logSuccesses                   bool
	eventLogPath                                string
}

type listenerConfig struct {
	name        string
	address     string // host:port to listen on
	cluster     string
	idleTimeout time.Duration // 0: none
}

type bootstrap struct {
	cdsPath, ldsPath string
	adminAddress     string // "" when there is no admin section
}

func parseBootstrap(data []byte) (bootstrap, error) {
	var f bootstrapFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return bootstrap{}, fmt.Errorf("bootstrap: %w", err)
	}
	b := bootstrap{
		cdsPath: f.DynamicResources.CDSConfig.PathConfigSource.Path,
		ldsPath: f.DynamicResources.LDSConfig.PathConfigSource.Path,
	}
	if b.cdsPath == "" || b.ldsPath == "" {
		return bootstrap{}, fmt.Errorf("bootstrap: dynamic_resources needs cds_config and lds_config with path_config_source.path")
	}
	if f.Admin != nil {
		b.adminAddress = f.Admin.Address.hostPort()
	}
	return b, nil
}

func parseClusters(data []byte) ([]clusterConfig, error) {
	var f clusterFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("clusters: %w", err)
	}
	out := make([]clusterConfig, 0, len(f.Resources))
	for i, r := range f.Resources {
		c, err := r.config()
		if err != nil {
			return nil, fmt.Errorf("clusters: resources[%d] %q: %w", i, r.Name, err)
		}
		out = append(out, c)
	}
	return out, nil
}

func (r clusterResource) config() (clusterConfig, error) {
	if r.Type != clusterType {
		return clusterConfig{}, fmt.Errorf("@type %q: want %s", r.Type, clusterType)
	}
	if r.Name == "" {
		return clusterConfig{}, fmt.Errorf("name is empty")
	}
	if r.LBPolicy != "" && r.LBPolicy != "ROUND_ROBIN" {
		return clusterConfig{}, fmt.Errorf("lb_policy %q: only ROUND_ROBIN is implemented", r.LBPolicy)
	}
	c := clusterConfig{
		name:           r.Name,
		connectTimeout: r.ConnectTimeout.or(defaultConnectTimeout),
		family:         r.DNSLookupFamily,
		dnsRefresh:     r.DNSRefreshRate.or(defaultDNSRefreshRate),
		panicThreshold: defaultPanicThreshold,
	}
	switch r.DiscoveryType {
	case "STRICT_DNS":
		c.resolve = true
	case "STATIC", "":
	default:
		return clusterConfig{}, fmt.Errorf("type %q: only STRICT_DNS and STATIC are implemented", r.DiscoveryType)
	}
	switch c.family {
	case "":
		c.family = "AUTO"
	case "AUTO", "V4_ONLY", "V6_ONLY", "V4_PREFERRED", "ALL":
	default:
		return clusterConfig{}, fmt.Errorf("dns_lookup_family %q is not one of AUTO, V4_ONLY, V6_ONLY, V4_PREFERRED, ALL", c.family)
	}
	if r.CommonLBConfig != nil && r.CommonLBConfig.HealthyPanicThreshold != nil {
		c.panicThreshold = r.CommonLBConfig.HealthyPanicThreshold.Value
	}
	if r.LoadAssignment.ClusterName != "" && r.LoadAssignment.ClusterName != r.Name {
		return clusterConfig{}, fmt.Errorf("load_assignment.cluster_name %q differs from name", r.LoadAssignment.ClusterName)
	}
	for _, locality := range r.LoadAssignment.Endpoints {
		for _, e := range locality.LBEndpoints {
			sa := e.Endpoint.Address.SocketAddress
			if sa.Address == "" || sa.PortValue <= 0 || sa.PortValue > 65535 {
				return clusterConfig{}, fmt.Errorf("endpoint %q port %d: want an address and a port in 1-65535", sa.Address, sa.PortValue)
			}
			if !c.resolve && net.ParseIP(sa.Address) == nil {
				return clusterConfig{}, fmt.Errorf("endpoint %q: a STATIC cluster needs IP addresses", sa.Address)
			}
			c.endpoints = append(c.endpoints, endpoint{host: sa.Address, port: sa.PortValue})
		}
	}
	switch len(r.HealthChecks) {
	case 0:
	case 1:
		h, err := r.HealthChecks[0].config(r.Name, r.TransportSocketMatches)
		if err != nil {
			return clusterConfig{}, fmt.Errorf("health_checks[0]: %w", err)
		}
		c.health = &h
	default:
		return clusterConfig{}, fmt.Errorf("health_checks: envoy supports one health checker per cluster, found %d", len(r.HealthChecks))
	}
	return c, nil
}

func (r healthCheckResource) config(clusterName string, sockets []transportSocketMatch) (healthConfig, error) {
	if r.Timeout == nil || r.Interval == nil || r.UnhealthyThreshold == nil || r.HealthyThreshold == nil {
		return healthConfig{}, fmt.Errorf("timeout, interval, unhealthy_threshold and healthy_threshold are required")
	}
	if r.HTTPHealthCheck == nil || r.HTTPHealthCheck.Path == "" {
		return healthConfig{}, fmt.Errorf("only http_health_check with a path is implemented")
	}
	if *r.UnhealthyThreshold == 0 || *r.HealthyThreshold == 0 {
		return healthConfig{}, fmt.Errorf("thresholds must be at least 1")
	}
	if r.Interval.Duration <= 0 || r.Timeout.Duration <= 0 {
		return healthConfig{}, fmt.Errorf("interval and timeout must be positive")
	}
	interval := r.Interval.Duration
	noTraffic := r.NoTrafficInterval.or(defaultNoTrafficInterval)
	unhealthy := r.UnhealthyInterval.or(interval)
	h := healthConfig{
		timeout:                  r.Timeout.Duration,
		interval:                 interval,
		unhealthyThreshold:       *r.UnhealthyThreshold,
		healthyThreshold:         *r.HealthyThreshold,
		initialJitter:            r.InitialJitter.or(0),
		noTrafficInterval:        noTraffic,
		noTrafficHealthyInterval: r.NoTrafficHealthyInterval.or(noTraffic),
		unhealthyInterval:        unhealthy,
		unhealthyEdgeInterval:    r.UnhealthyEdgeInterval.or(unhealthy),
		healthyEdgeInterval:      r.HealthyEdgeInterval.or(interval),
		reuseConnection:          r.ReuseConnection == nil || *r.ReuseConnection,
		path:                     r.HTTPHealthCheck.Path,
		host:                     r.HTTPHealthCheck.Host,
		logFailures:              r.AlwaysLogHealthCheckFailures,
		logSuccesses:             r.AlwaysLogHealthCheckSuccess,
		eventLogPath:             r.EventLogPath,
	}
	if h.host == "" {
		h.host = clusterName // envoy's default Host header
	}
	if len(r.TransportSocketMatchCriteria) > 0 {
		m, err := matchingSocket(r.TransportSocketMatchCriteria, sockets)
		if err != nil {
			return healthConfig{}, err
		}
		h.tls = m
	}
	return h, nil
}

// matchingSocket reports whether the transport socket that criteria select is
// TLS; the only TLS implemented is envoy's ACCEPT_UNTRUSTED (no verification),
// which is what kind configures for its health checks.
func matchingSocket(criteria map[string]string, sockets []transportSocketMatch) (bool, error) {
	for _, s := range sockets {
		if !subset(s.Match, criteria) {
			continue
		}
		ts := s.TransportSocket
		if ts.Name != "envoy.transport_sockets.tls" || ts.TypedConfig.Type != tlsType {
			return false, fmt.Errorf("transport socket %q: only %s is implemented", s.Name, tlsType)
		}
		vc := ts.TypedConfig.CommonTLSContext.ValidationContext
		if vc == nil || vc.TrustChainVerification != "ACCEPT_UNTRUSTED" {
			return false, fmt.Errorf("transport socket %q: only validation_context.trust_chain_verification ACCEPT_UNTRUSTED is implemented", s.Name)
		}
		return true, nil
	}
	return false, nil // no match: envoy uses the cluster's default socket, plaintext
}

func subset(match, criteria map[string]string) bool {
	for k, v := range match {
		if criteria[k] != v {
			return false
		}
	}
	return true
}

func parseListeners(data []byte) ([]listenerConfig, error) {
	var f listenerFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("listeners: %w", err)
	}
	out := make([]listenerConfig, 0, len(f.Resources))
	for i, r := range f.Resources {
		l, err := r.config()
		if err != nil {
			return nil, fmt.Errorf("listeners: resources[%d] %q: %w", i, r.Name, err)
		}
		out = append(out, l)
	}
	return out, nil
}

func (r listenerResource) config() (listenerConfig, error) {
	if r.Type != listenerType {
		return listenerConfig{}, fmt.Errorf("@type %q: want %s", r.Type, listenerType)
	}
	if len(r.FilterChains) != 1 || len(r.FilterChains[0].Filters) != 1 {
		return listenerConfig{}, fmt.Errorf("want one filter chain with one filter (tcp_proxy)")
	}
	f := r.FilterChains[0].Filters[0]
	if f.Name != "envoy.filters.network.tcp_proxy" || f.TypedConfig.Type != tcpProxyType {
		return listenerConfig{}, fmt.Errorf("filter %q: only envoy.filters.network.tcp_proxy is implemented", f.Name)
	}
	if f.TypedConfig.Cluster == "" {
		return listenerConfig{}, fmt.Errorf("tcp_proxy.cluster is empty")
	}
	if n := f.TypedConfig.MaxConnectAttempts; n != nil && *n != 1 {
		return listenerConfig{}, fmt.Errorf("tcp_proxy.max_connect_attempts %d: only 1 (envoy's default) is implemented", *n)
	}
	sa := r.Address.SocketAddress
	if sa.PortValue <= 0 || sa.PortValue > 65535 {
		return listenerConfig{}, fmt.Errorf("address port %d: want 1-65535", sa.PortValue)
	}
	return listenerConfig{
		name:        r.Name,
		address:     r.Address.hostPort(),
		cluster:     f.TypedConfig.Cluster,
		idleTimeout: f.TypedConfig.IdleTimeout.or(defaultTCPIdleTimeout),
	}, nil
}
