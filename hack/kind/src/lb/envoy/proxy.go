package main

import (
	"errors"
	"io"
	"log"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// listener is envoy's listener with the tcp_proxy filter.
type listener struct {
	cfg      atomic.Pointer[listenerConfig]
	ln       net.Listener
	clusters func(name string) *cluster
}

func listen(cfg listenerConfig, clusters func(string) *cluster) (*listener, error) {
	ln, err := net.Listen("tcp", cfg.address)
	if err != nil {
		return nil, err
	}
	l := &listener{ln: ln, clusters: clusters}
	l.cfg.Store(&cfg)
	go l.serve()
	return l, nil
}

// close stops accepting; connections already proxied carry on, as envoy
// drains rather than cuts them.
func (l *listener) close() { _ = l.ln.Close() }

func (l *listener) serve() {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				log.Printf("listener %s: %v", l.cfg.Load().name, err)
			}
			return
		}
		go l.proxy(conn)
	}
}

// proxy makes one connection attempt to the host the cluster picks, within
// the cluster's connect_timeout, and closes the client's connection if there
// is no host or the attempt fails: envoy's tcp_proxy default is one attempt,
// never a retry on another host. Once connected, bytes flow both ways until
// both sides have closed, either side fails, or nothing moved for the idle
// timeout (tcp_proxy's default: 1 hour). A host that turns unhealthy keeps
// its established connections (envoy's close_connections_on_host_health_failure
// is false by default).
func (l *listener) proxy(down net.Conn) {
	cfg := l.cfg.Load()
	c := l.clusters(cfg.cluster)
	if c == nil {
		_ = down.Close()
		return
	}
	h := c.pick()
	if h == nil {
		_ = down.Close()
		return
	}
	up, err := net.DialTimeout("tcp", h.addr, c.cfg.connectTimeout)
	if err != nil {
		_ = down.Close()
		return
	}
	splice(down, up, cfg.idleTimeout)
}

// splice copies between a and b, passing half-closes on, until both
// directions end, then closes both.
func splice(a, b net.Conn, idle time.Duration) {
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			_ = a.Close()
			_ = b.Close()
		})
	}
	var timer *time.Timer
	if idle > 0 {
		timer = time.AfterFunc(idle, closeBoth)
		defer timer.Stop()
	}
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		buf := make([]byte, 32*1024)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if timer != nil {
					timer.Reset(idle)
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					closeBoth()
					return
				}
			}
			if errors.Is(err, io.EOF) {
				if cw, ok := dst.(interface{ CloseWrite() error }); ok {
					_ = cw.CloseWrite()
				}
				return
			}
			if err != nil {
				closeBoth()
				return
			}
		}
	}
	go pipe(a, b)
	go pipe(b, a)
	wg.Wait()
	closeBoth()
}
