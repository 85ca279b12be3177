package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func hostsWithHealth(healthy ...bool) []*host {
	hs := make([]*host, len(healthy))
	for i, ok := range healthy {
		hs[i] = &host{addr: string(rune('a' + i)), health: hostHealth{healthy: ok}}
	}
	return hs
}

func picks(c *cluster, n int) string {
	s := ""
	for range n {
		if h := c.pick(); h != nil {
			s += h.addr
		} else {
			s += "-"
		}
	}
	return s
}

func TestPickRoundRobinOverHealthyHosts(t *testing.T) {
	c := &cluster{cfg: clusterConfig{panicThreshold: 50}, hosts: hostsWithHealth(true, false, true)}
	if got := picks(c, 6); got != "acacac" {
		t.Errorf("picks %q, want acacac", got)
	}
	if !c.hadTraffic.Load() {
		t.Error("a pick is traffic")
	}
}

// Below the panic threshold envoy balances over all hosts, healthy or not.
func TestPickPanicMode(t *testing.T) {
	for _, tc := range []struct {
		name    string
		healthy []bool
		panic   float64
		want    string
	}{
		{"one of three healthy", []bool{false, true, false}, 50, "abcabc"},
		{"none healthy", []bool{false, false, false}, 50, "abcabc"},
		{"half healthy is not panic", []bool{true, false}, 50, "aaaa"},
		{"panic threshold 0: none healthy, no host", []bool{false, false}, 0, "----"},
		{"no hosts", nil, 50, "--"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &cluster{cfg: clusterConfig{panicThreshold: tc.panic}, hosts: hostsWithHealth(tc.healthy...)}
			if got := picks(c, len(tc.want)); got != tc.want {
				t.Errorf("picks %q, want %q", got, tc.want)
			}
		})
	}
}

func addrs(hs []*host) []string {
	out := []string{}
	for _, h := range hs {
		out = append(out, h.addr)
	}
	return out
}

func TestUpdateHosts(t *testing.T) {
	cp1 := endpoint{host: "cp1", port: 6443}
	cp2 := endpoint{host: "cp2", port: 6443}
	hosts, added, removed := updateHosts(nil, cp1, []string{"10.0.0.1:6443"}, true)
	hosts, _, _ = updateHosts(hosts, cp2, []string{"10.0.0.2:6443"}, true)
	if len(added) != 1 || len(removed) != 0 || hosts[0].health.healthy {
		t.Fatalf("first update: added %v removed %v, new host healthy %v", addrs(added), addrs(removed), hosts[0].health.healthy)
	}
	hosts[0].health.healthy = true

	// The same address keeps its host and health.
	before := hosts[0]
	hosts, added, removed = updateHosts(hosts, cp1, []string{"10.0.0.1:6443"}, true)
	if hosts[0] != before || len(added)+len(removed) != 0 {
		t.Errorf("unchanged address: added %v removed %v", addrs(added), addrs(removed))
	}

	// cp1 moves: the healthy old host stays (absent) next to the new, unhealthy one.
	hosts, added, removed = updateHosts(hosts, cp1, []string{"10.0.0.3:6443"}, true)
	if got := addrs(hosts); !reflect.DeepEqual(got, []string{"10.0.0.1:6443", "10.0.0.2:6443", "10.0.0.3:6443"}) {
		t.Errorf("hosts %v", got)
	}
	if !hosts[0].absent || hosts[2].health.healthy || len(added) != 1 || len(removed) != 0 {
		t.Errorf("absent %v, new healthy %v, added %v, removed %v", hosts[0].absent, hosts[2].health.healthy, addrs(added), addrs(removed))
	}

	// Once the absent host fails its checks, the next discovery drops it.
	hosts[0].health.healthy = false
	hosts, added, removed = updateHosts(hosts, cp1, []string{"10.0.0.3:6443"}, true)
	if got := addrs(hosts); !reflect.DeepEqual(got, []string{"10.0.0.2:6443", "10.0.0.3:6443"}) || len(added) != 0 || len(removed) != 1 {
		t.Errorf("hosts %v, added %v, removed %v", got, addrs(added), addrs(removed))
	}

	// A name that no longer resolves drops its unhealthy hosts.
	hosts, _, removed = updateHosts(hosts, cp1, nil, true)
	if got := addrs(hosts); !reflect.DeepEqual(got, []string{"10.0.0.2:6443"}) || len(removed) != 1 {
		t.Errorf("hosts %v, removed %v", got, addrs(removed))
	}

	// Without health checks hosts are healthy at once and dropped at once.
	hosts, _, _ = updateHosts(nil, cp1, []string{"10.0.0.1:6443"}, false)
	if !hosts[0].health.healthy {
		t.Error("host without health checks not healthy")
	}
	if hosts, _, _ = updateHosts(hosts, cp1, nil, false); len(hosts) != 0 {
		t.Errorf("hosts %v", addrs(hosts))
	}
}

func TestPickFamily(t *testing.T) {
	v4, v6 := []string{"4"}, []string{"6"}
	for family, want := range map[string][]string{
		"V4_PREFERRED": {"4"}, "AUTO": {"6"}, "V4_ONLY": {"4"}, "V6_ONLY": {"6"}, "ALL": {"4", "6"},
	} {
		if got := pickFamily(family, v4, v6); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %v, want %v", family, got, want)
		}
	}
	if got := pickFamily("V4_PREFERRED", nil, v6); !reflect.DeepEqual(got, v6) {
		t.Errorf("V4_PREFERRED without IPv4: %v", got)
	}
}

// backend is an HTTPS server whose /healthz status can be switched, counting
// the connections and requests it gets.
type backend struct {
	srv         *httptest.Server
	status      atomic.Int32
	connections atomic.Int32
	mu          sync.Mutex
	requests    []*http.Request
}

func newBackend(t *testing.T) *backend {
	b := &backend{}
	b.status.Store(http.StatusOK)
	b.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.requests = append(b.requests, r)
		b.mu.Unlock()
		w.WriteHeader(int(b.status.Load()))
	}))
	b.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.connections.Add(1)
		}
	}
	b.srv.StartTLS()
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) endpoint(t *testing.T) endpoint {
	return endpointOf(t, b.srv.Listener.Addr())
}

func fastChecks() *healthConfig {
	return &healthConfig{
		timeout: time.Second, interval: 20 * time.Millisecond, noTrafficInterval: 20 * time.Millisecond,
		noTrafficHealthyInterval: 20 * time.Millisecond, unhealthyInterval: 20 * time.Millisecond,
		unhealthyEdgeInterval: 20 * time.Millisecond, healthyEdgeInterval: 20 * time.Millisecond,
		unhealthyThreshold: 2, healthyThreshold: 1, reuseConnection: true,
		path: "/healthz", host: "kube_apiservers", tls: true,
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (c *cluster) healthy(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hosts[i].health.healthy
}

func TestHealthChecksAgainstABackend(t *testing.T) {
	b := newBackend(t)
	cfg := clusterConfig{name: "kube_apiservers", connectTimeout: time.Second, panicThreshold: 50,
		endpoints: []endpoint{b.endpoint(t)}, health: fastChecks()}
	c := newCluster(cfg, newEventLog(), nil)
	c.start()
	defer c.stop()
	select {
	case <-c.warm:
	case <-time.After(5 * time.Second):
		t.Fatal("cluster did not warm")
	}
	if !c.healthy(0) {
		t.Fatal("host not healthy after its first check passed")
	}

	b.mu.Lock()
	r := b.requests[0]
	b.mu.Unlock()
	if r.Method != http.MethodGet || r.URL.Path != "/healthz" || r.Host != "kube_apiservers" ||
		r.UserAgent() != "Envoy/HC" || r.ProtoMajor != 1 || r.TLS.ServerName != "" || r.TLS.NegotiatedProtocol != "" {
		t.Errorf("request %s %s Host %q UA %q proto %s SNI %q ALPN %q", r.Method, r.URL.Path, r.Host, r.UserAgent(), r.Proto, r.TLS.ServerName, r.TLS.NegotiatedProtocol)
	}

	b.status.Store(http.StatusInternalServerError)
	eventually(t, "a 500 to eject the host", func() bool { return !c.healthy(0) })
	b.status.Store(http.StatusOK)
	eventually(t, "a 200 to add the host back", func() bool { return c.healthy(0) })
	if n := b.connections.Load(); n != 1 {
		t.Errorf("%d connections, want 1 (reuse_connection)", n)
	}

	b.srv.Close()
	eventually(t, "network failures to eject the host", func() bool { return !c.healthy(0) })
	c.mu.Lock()
	last := c.hosts[0].health.lastOutcome
	c.mu.Unlock()
	if last != networkFailure {
		t.Errorf("last outcome %v, want %v", last, networkFailure)
	}
}

func TestHealthCheckTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers the TLS handshake
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	hc := fastChecks()
	hc.timeout = 50 * time.Millisecond
	check := &httpCheck{cfg: hc, addr: ln.Addr().String()}
	defer check.close()
	start := time.Now()
	o, err := check.run(context.Background())
	if o != timedOut || err == nil {
		t.Errorf("outcome %v (%v), want %v", o, err, timedOut)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("check took %v with a 50ms timeout", d)
	}
}

func TestManagerUsesAClusterOnlyOnceWarm(t *testing.T) {
	b := newBackend(t)
	hc := fastChecks()
	hc.timeout, hc.interval = 3*time.Second, time.Hour
	block := make(chan struct{})
	b.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { <-block })
	m := newManager(newEventLog(), nil)
	cfg := clusterConfig{name: "kube_apiservers", connectTimeout: time.Second, panicThreshold: 50,
		endpoints: []endpoint{b.endpoint(t)}, health: hc}
	m.applyClusters([]clusterConfig{cfg})
	time.Sleep(50 * time.Millisecond)
	if m.cluster("kube_apiservers") != nil {
		t.Fatal("cluster in use before its first health check completed")
	}
	close(block)
	eventually(t, "the cluster to warm", func() bool { return m.cluster("kube_apiservers") != nil })
	first := m.cluster("kube_apiservers")

	// The same configuration again changes nothing; another replaces the cluster once warm.
	m.applyClusters([]clusterConfig{cfg})
	if m.cluster("kube_apiservers") != first {
		t.Error("an unchanged configuration replaced the cluster")
	}
	cfg.connectTimeout = 2 * time.Second
	m.applyClusters([]clusterConfig{cfg})
	eventually(t, "the changed cluster", func() bool { return m.cluster("kube_apiservers") != first })
	if first.ctx.Err() == nil {
		t.Error("the replaced cluster still runs")
	}
	m.applyClusters(nil)
	if m.cluster("kube_apiservers") != nil {
		t.Error("a removed cluster is still in use")
	}
}
