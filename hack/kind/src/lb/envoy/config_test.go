package main

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testdata/kind-*.yaml are the files kind v0.33.0 wrote into the load
// balancer of a three-control-plane cluster (docker exec ... cat).

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestParseKindBootstrap(t *testing.T) {
	b, err := parseBootstrap([]byte(readTestdata(t, "kind-envoy.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	want := bootstrap{cdsPath: "/home/envoy/cds.yaml", ldsPath: "/home/envoy/lds.yaml", adminAddress: "0.0.0.0:10000"}
	if b != want {
		t.Errorf("got %+v, want %+v", b, want)
	}
}

func TestParseKindClusters(t *testing.T) {
	got, err := parseClusters([]byte(readTestdata(t, "kind-cds.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	want := []clusterConfig{{
		name:           "kube_apiservers",
		connectTimeout: 250 * time.Millisecond,
		resolve:        true,
		family:         "V4_PREFERRED",
		dnsRefresh:     5 * time.Second,
		panicThreshold: 50,
		endpoints: []endpoint{
			{host: "kaudit-ha-dev-control-plane", port: 6443},
			{host: "kaudit-ha-dev-control-plane2", port: 6443},
			{host: "kaudit-ha-dev-control-plane3", port: 6443},
		},
		health: &healthConfig{
			timeout:                  3 * time.Second,
			interval:                 2 * time.Second,
			unhealthyThreshold:       2,
			healthyThreshold:         1,
			initialJitter:            0,
			noTrafficInterval:        3 * time.Second,
			noTrafficHealthyInterval: 3 * time.Second,
			unhealthyInterval:        2 * time.Second,
			unhealthyEdgeInterval:    2 * time.Second,
			healthyEdgeInterval:      2 * time.Second,
			reuseConnection:          true,
			path:                     "/healthz",
			host:                     "kube_apiservers",
			tls:                      true,
			logFailures:              true,
			logSuccesses:             true,
			eventLogPath:             "/dev/stdout",
		},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v %+v\nwant\n%+v %+v", got, got[0].health, want, want[0].health)
	}
}

func TestParseKindListeners(t *testing.T) {
	got, err := parseListeners([]byte(readTestdata(t, "kind-lds.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	want := []listenerConfig{{name: "listener_apiserver", address: "0.0.0.0:6443", cluster: "kube_apiservers", idleTimeout: time.Hour}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

// kind starts the container with empty resources and replaces them later.
func TestParseEmptyResources(t *testing.T) {
	c, err := parseClusters([]byte("resources: []"))
	if err != nil || len(c) != 0 {
		t.Errorf("clusters: %v, %v", c, err)
	}
	l, err := parseListeners([]byte("resources: []"))
	if err != nil || len(l) != 0 {
		t.Errorf("listeners: %v, %v", l, err)
	}
}

func TestParseDefaultsAndOverrides(t *testing.T) {
	cds := strings.NewReplacer(
		"  connect_timeout: 0.25s\n", "  dns_refresh_rate: 1s\n  common_lb_config:\n    healthy_panic_threshold:\n      value: 0\n",
		"    no_traffic_interval: 3s\n", "    unhealthy_interval: 7s\n    reuse_connection: false\n",
		"      path: /healthz\n", "      path: /readyz\n      host: lb\n",
	).Replace(readTestdata(t, "kind-cds.yaml"))
	got, err := parseClusters([]byte(cds))
	if err != nil {
		t.Fatal(err)
	}
	c, h := got[0], got[0].health
	if c.connectTimeout != defaultConnectTimeout || c.dnsRefresh != time.Second || c.panicThreshold != 0 {
		t.Errorf("cluster: connect %v, refresh %v, panic %v", c.connectTimeout, c.dnsRefresh, c.panicThreshold)
	}
	if h.noTrafficInterval != defaultNoTrafficInterval || h.unhealthyInterval != 7*time.Second ||
		h.unhealthyEdgeInterval != 7*time.Second || h.healthyEdgeInterval != 2*time.Second || h.reuseConnection {
		t.Errorf("health intervals: %+v", h)
	}
	if h.path != "/readyz" || h.host != "lb" {
		t.Errorf("health request: path %q host %q", h.path, h.host)
	}
}

// What kind does not configure is not implemented, and must not be accepted
// silently.
func TestParseRejectsWhatIsNotImplemented(t *testing.T) {
	cds := readTestdata(t, "kind-cds.yaml")
	lds := readTestdata(t, "kind-lds.yaml")
	for _, tc := range []struct {
		name, file, old, new string
	}{
		{"unknown cluster field", cds, "  type: STRICT_DNS\n", "  type: STRICT_DNS\n  close_connections_on_host_health_failure: true\n"},
		{"unknown health check field", cds, "    interval: 2s\n", "    interval: 2s\n    interval_jitter: 1s\n"},
		{"lb policy", cds, "ROUND_ROBIN", "LEAST_REQUEST"},
		{"discovery type", cds, "STRICT_DNS", "EDS"},
		{"verified TLS", cds, "ACCEPT_UNTRUSTED", "VERIFY_TRUST_CHAIN"},
		{"no interval", cds, "    interval: 2s\n", ""},
		{"bad duration", cds, "interval: 2s", "interval: 2"},
		{"zero threshold", cds, "healthy_threshold: 1", "healthy_threshold: 0"},
		{"tcp health check", cds, "    http_health_check:\n      path: /healthz\n", "    tcp_health_check: {}\n"},
		{"second health check", cds, "  transport_socket_matches:", "  - timeout: 1s\n    interval: 1s\n    unhealthy_threshold: 1\n    healthy_threshold: 1\n    http_health_check: {path: /}\n  transport_socket_matches:"},
		{"connect attempts", lds, "        cluster: kube_apiservers\n", "        cluster: kube_apiservers\n        max_connect_attempts: 3\n"},
		{"other filter", lds, "envoy.filters.network.tcp_proxy", "envoy.filters.network.http_connection_manager"},
		{"unknown listener field", lds, "  name: listener_apiserver\n", "  name: listener_apiserver\n  per_connection_buffer_limit_bytes: 1\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			changed := strings.Replace(tc.file, tc.old, tc.new, 1)
			if changed == tc.file {
				t.Fatalf("%q not found in the kind file", tc.old)
			}
			var err error
			if tc.file == cds {
				_, err = parseClusters([]byte(changed))
			} else {
				_, err = parseListeners([]byte(changed))
			}
			if err == nil {
				t.Errorf("accepted:\n%s", changed)
			}
		})
	}
}
