package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// host is one upstream address of a cluster.
type host struct {
	target endpoint // the configured endpoint it was resolved from
	addr   string   // ip:port
	health hostHealth
	// absent: discovery no longer returns it; envoy keeps such a host while
	// it passes health checks and drops it at the first discovery after it fails.
	absent  bool
	stop    context.CancelFunc
	checked chan struct{} // closed when its first check completed
}

// resolver is the part of net.Resolver the cluster uses.
type resolver interface {
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
}

// cluster is envoy's upstream cluster: discovered hosts, their active health
// checks, and round-robin selection with the panic threshold.
type cluster struct {
	cfg      clusterConfig
	events   *eventLog
	resolver resolver

	mu    sync.Mutex
	hosts []*host
	next  int // round-robin position

	// hadTraffic: a connection to an upstream was attempted; until then
	// envoy health-checks at no_traffic_interval.
	hadTraffic atomic.Bool

	ctx    context.Context
	cancel context.CancelFunc
	warm   chan struct{} // closed once warmed (see start)
}

func newCluster(cfg clusterConfig, events *eventLog, r resolver) *cluster {
	ctx, cancel := context.WithCancel(context.Background())
	return &cluster{cfg: cfg, events: events, resolver: r, ctx: ctx, cancel: cancel, warm: make(chan struct{})}
}

// start discovers the hosts and starts checking them. Like envoy's cluster
// warming, warm is closed only after the first discovery and, with health
// checking, the first check of every host; until then the cluster is not
// used and the previous version of it (if any) keeps serving.
func (c *cluster) start() {
	go func() {
		c.discover()
		if c.cfg.health != nil {
			c.mu.Lock()
			waits := make([]chan struct{}, 0, len(c.hosts))
			for _, h := range c.hosts {
				waits = append(waits, h.checked)
			}
			c.mu.Unlock()
			for _, w := range waits {
				select {
				case <-w:
				case <-c.ctx.Done():
					return
				}
			}
		}
		close(c.warm)
		if !c.cfg.resolve {
			return
		}
		for {
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(c.cfg.dnsRefresh):
			}
			c.discover()
		}
	}()
}

func (c *cluster) stop() {
	c.cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range c.hosts {
		h.stop()
	}
}

// discover resolves every endpoint and updates the host set.
func (c *cluster) discover() {
	for _, e := range c.cfg.endpoints {
		addrs, err := c.addresses(e)
		if err != nil {
			// Envoy keeps the hosts it has when a resolution fails.
			log.Printf("cluster %s: resolving %s: %v (keeping its hosts)", c.cfg.name, e.host, err)
			continue
		}
		c.update(e, addrs)
	}
}

// addresses resolves e. A name that does not exist (NXDOMAIN, no records)
// resolves to no addresses, as in envoy; other errors are errors.
func (c *cluster) addresses(e endpoint) ([]string, error) {
	if !c.cfg.resolve {
		return []string{e.String()}, nil
	}
	ctx, cancel := context.WithTimeout(c.ctx, 5*time.Second)
	defer cancel()
	ips, err := c.resolver.LookupIPAddr(ctx, e.host)
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var v4, v6 []string
	for _, ip := range ips {
		a := net.JoinHostPort(ip.IP.String(), strconv.Itoa(e.port))
		if ip.IP.To4() != nil {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	return pickFamily(c.cfg.family, v4, v6), nil
}

// pickFamily applies dns_lookup_family to resolved addresses.
func pickFamily(family string, v4, v6 []string) []string {
	switch family {
	case "V4_ONLY":
		return v4
	case "V6_ONLY":
		return v6
	case "V4_PREFERRED":
		if len(v4) > 0 {
			return v4
		}
		return v6
	case "ALL":
		return append(v4, v6...)
	default: // AUTO: IPv6 first
		if len(v6) > 0 {
			return v6
		}
		return v4
	}
}

// update sets the hosts of target to addrs and starts checking new hosts.
func (c *cluster) update(target endpoint, addrs []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var added, removed []*host
	c.hosts, added, removed = updateHosts(c.hosts, target, addrs, c.cfg.health != nil)
	for _, h := range removed {
		h.stop()
		log.Printf("cluster %s: host %s (%s) removed", c.cfg.name, h.addr, target.host)
	}
	for _, h := range added {
		ctx, cancel := context.WithCancel(c.ctx)
		h.stop = cancel
		log.Printf("cluster %s: host %s (%s) added", c.cfg.name, h.addr, target.host)
		if c.cfg.health != nil {
			go c.checkLoop(ctx, h)
		} else {
			close(h.checked)
		}
	}
}

// updateHosts returns hosts with the hosts of target set to addrs, the way
// envoy updates a dynamic host list: a host whose address stays keeps its
// health; a new address is a new host, unhealthy until its first check passes
// when health checking is on; a vanished address is removed unless it still
// passes health checks, in which case it stays, marked absent.
func updateHosts(hosts []*host, target endpoint, addrs []string, activeChecks bool) (next, added, removed []*host) {
	want := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		want[a] = true
	}
	next = make([]*host, 0, len(hosts)+len(addrs))
	for _, h := range hosts {
		switch {
		case h.target != target:
		case want[h.addr]:
			h.absent = false
			delete(want, h.addr)
		case activeChecks && h.health.healthy:
			h.absent = true
		default:
			removed = append(removed, h)
			continue
		}
		next = append(next, h)
	}
	for _, a := range addrs {
		if !want[a] {
			continue
		}
		delete(want, a)
		h := &host{target: target, addr: a, health: newHostHealth(activeChecks), checked: make(chan struct{})}
		next = append(next, h)
		added = append(added, h)
	}
	return next, added, removed
}

// checkLoop health-checks h until ctx ends.
func (c *cluster) checkLoop(ctx context.Context, h *host) {
	hc := c.cfg.health
	if hc.initialJitter > 0 {
		if !sleep(ctx, rand.N(hc.initialJitter)) {
			return
		}
	}
	session := &httpCheck{cfg: hc, addr: h.addr}
	defer session.close()
	for {
		o, detail := session.run(ctx)
		if ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		first := !h.health.checked
		t := h.health.record(o, hc.healthyThreshold, hc.unhealthyThreshold)
		c.mu.Unlock()
		c.events.healthCheck(c.cfg.name, h, o, t, first, detail, hc)
		if first {
			close(h.checked)
		}
		if !sleep(ctx, hc.nextInterval(o, t, c.hadTraffic.Load())) {
			return
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// pick chooses the host for a new connection: round robin over the healthy
// hosts, or over all hosts when fewer than panicThreshold percent are healthy
// (envoy's panic mode, which sends traffic to hosts that fail their checks
// rather than to none). nil when the cluster has no hosts.
func (c *cluster) pick() *host {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.hosts) == 0 {
		return nil
	}
	candidates := make([]*host, 0, len(c.hosts))
	for _, h := range c.hosts {
		if h.health.healthy {
			candidates = append(candidates, h)
		}
	}
	if 100*float64(len(candidates))/float64(len(c.hosts)) < c.cfg.panicThreshold {
		candidates = c.hosts
	}
	if len(candidates) == 0 {
		return nil
	}
	h := candidates[c.next%len(candidates)]
	c.next++
	c.hadTraffic.Store(true)
	return h
}

// status lists the hosts in the format of envoy's admin /clusters.
func (c *cluster) status() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, h := range c.hosts {
		flags := "healthy"
		if !h.health.healthy || h.absent {
			flags = ""
			if !h.health.healthy {
				flags += "/failed_active_hc"
				if h.health.lastOutcome == timedOut {
					flags += "/active_hc_timeout"
				}
			}
			if h.absent {
				flags += "/pending_dynamic_removal"
			}
		}
		fmt.Fprintf(&b, "%s::%s::hostname::%s\n", c.cfg.name, h.addr, h.target.host)
		fmt.Fprintf(&b, "%s::%s::health_flags::%s\n", c.cfg.name, h.addr, flags)
	}
	return b.String()
}
