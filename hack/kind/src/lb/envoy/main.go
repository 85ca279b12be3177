// Command envoy stands in for the envoy image kind runs as the load balancer
// in front of several control-plane nodes, on machines that cannot pull it.
// It implements exactly what kind configures and nothing better, so that
// availability measured through it is what kind's real load balancer gives:
//
//   - kind runs `envoy -c /home/envoy/envoy.yaml`; that bootstrap names the
//     CDS and LDS files, which kind replaces (mv) with the control-plane
//     endpoints and the listener. Both files are re-read every 250 ms; a
//     changed cluster is warmed (discovered and every host checked once)
//     before it replaces the old one, an invalid file is rejected and the
//     previous configuration kept, as envoy rejects an xDS update.
//   - Hosts: STRICT_DNS names re-resolved every dns_refresh_rate (5 s);
//     a new host starts unhealthy and gets no traffic until a check passes.
//   - Health checks as the CDS file says (see health.go, healthcheck.go).
//   - Connections: round robin over healthy hosts, over all hosts below the
//     panic threshold (50 %), one connect attempt within connect_timeout,
//     established connections kept when their host turns unhealthy (proxy.go).
//   - Admin address: GET /clusters (per host health_flags, envoy's format)
//     and /ready.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"reflect"
	"sort"
	"sync"
	"time"
)

const pollInterval = 250 * time.Millisecond

func main() {
	var configPath string
	flag.StringVar(&configPath, "c", "", "bootstrap configuration file (envoy.yaml)")
	flag.StringVar(&configPath, "config-path", "", "same as -c")
	flag.Parse()
	log.SetPrefix("envoy stand-in: ")
	if configPath == "" {
		log.Fatal("-c PATH is required")
	}
	data, err := os.ReadFile(configPath)
	if err != nil {
		log.Fatal(err)
	}
	b, err := parseBootstrap(data)
	if err != nil {
		log.Fatalf("%s: %v", configPath, err)
	}
	m := newManager(newEventLog(), net.DefaultResolver)
	if b.adminAddress != "" {
		go serveAdmin(b.adminAddress, m)
	}
	log.Printf("watching %s and %s", b.cdsPath, b.ldsPath)
	var cds, lds []byte
	for {
		cds = reload(b.cdsPath, cds, func(data []byte) error {
			cfgs, err := parseClusters(data)
			if err == nil {
				m.applyClusters(cfgs)
			}
			return err
		})
		lds = reload(b.ldsPath, lds, func(data []byte) error {
			cfgs, err := parseListeners(data)
			if err == nil {
				m.applyListeners(cfgs)
			}
			return err
		})
		time.Sleep(pollInterval)
	}
}

// reload applies path's content when it differs from last, and returns the
// content now in effect.
func reload(path string, last []byte, apply func([]byte) error) []byte {
	data, err := os.ReadFile(path)
	if err != nil {
		if last != nil {
			log.Printf("%v (keeping the configuration in effect)", err)
		}
		return last
	}
	if last != nil && bytes.Equal(data, last) {
		return last
	}
	if err := apply(data); err != nil {
		log.Printf("%s rejected: %v", path, err)
		return data // do not log the same rejection every poll
	}
	log.Printf("%s applied", path)
	return data
}

// manager holds the clusters and listeners in effect.
type manager struct {
	events   *eventLog
	resolver resolver

	mu        sync.Mutex
	active    map[string]*cluster
	warming   map[string]*cluster
	listeners map[string]*listener
}

func newManager(events *eventLog, r resolver) *manager {
	return &manager{
		events: events, resolver: r,
		active: map[string]*cluster{}, warming: map[string]*cluster{}, listeners: map[string]*listener{},
	}
}

func (m *manager) cluster(name string) *cluster {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.active[name]
}

func (m *manager) applyClusters(cfgs []clusterConfig) {
	m.mu.Lock()
	defer m.mu.Unlock()
	want := map[string]bool{}
	for _, cfg := range cfgs {
		want[cfg.name] = true
		if a := m.active[cfg.name]; a != nil && reflect.DeepEqual(a.cfg, cfg) {
			if w := m.warming[cfg.name]; w != nil {
				w.stop()
				delete(m.warming, cfg.name)
			}
			continue
		}
		if w := m.warming[cfg.name]; w != nil {
			if reflect.DeepEqual(w.cfg, cfg) {
				continue
			}
			w.stop()
		}
		c := newCluster(cfg, m.events, m.resolver)
		m.warming[cfg.name] = c
		c.start()
		go m.activateWhenWarm(c)
	}
	for name, c := range m.active {
		if !want[name] {
			c.stop()
			delete(m.active, name)
			log.Printf("cluster %s removed", name)
		}
	}
	for name, c := range m.warming {
		if !want[name] {
			c.stop()
			delete(m.warming, name)
		}
	}
}

func (m *manager) activateWhenWarm(c *cluster) {
	select {
	case <-c.warm:
	case <-c.ctx.Done():
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.warming[c.cfg.name] != c {
		return
	}
	delete(m.warming, c.cfg.name)
	if old := m.active[c.cfg.name]; old != nil {
		old.stop()
	}
	m.active[c.cfg.name] = c
	log.Printf("cluster %s warmed and in use", c.cfg.name)
}

func (m *manager) applyListeners(cfgs []listenerConfig) {
	m.mu.Lock()
	defer m.mu.Unlock()
	want := map[string]bool{}
	for _, cfg := range cfgs {
		want[cfg.name] = true
		if l := m.listeners[cfg.name]; l != nil {
			if l.cfg.Load().address == cfg.address {
				l.cfg.Store(&cfg)
				continue
			}
			l.close()
			delete(m.listeners, cfg.name)
		}
		l, err := listen(cfg, m.cluster)
		if err != nil {
			log.Printf("listener %s: %v", cfg.name, err)
			continue
		}
		m.listeners[cfg.name] = l
		log.Printf("listener %s on %s -> cluster %s", cfg.name, cfg.address, cfg.cluster)
	}
	for name, l := range m.listeners {
		if !want[name] {
			l.close()
			delete(m.listeners, name)
		}
	}
}

func serveAdmin(addr string, m *manager) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /clusters", func(w http.ResponseWriter, _ *http.Request) {
		m.mu.Lock()
		names := make([]string, 0, len(m.active))
		for name := range m.active {
			names = append(names, name)
		}
		sort.Strings(names)
		clusters := make([]*cluster, 0, len(names))
		for _, n := range names {
			clusters = append(clusters, m.active[n])
		}
		m.mu.Unlock()
		for _, c := range clusters {
			fmt.Fprint(w, c.status())
		}
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "LIVE")
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("admin on %s: %v", addr, srv.ListenAndServe())
}
