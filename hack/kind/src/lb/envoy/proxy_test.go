package main

import (
	"io"
	"net"
	"strconv"
	"testing"
	"time"
)

func endpointOf(t *testing.T, a net.Addr) endpoint {
	t.Helper()
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return endpoint{host: host, port: p}
}

// echoServer answers every connection with what it reads, and closes its
// side after the client closed its own.
func echoServer(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln
}

// closedPort is an address nothing listens on.
func closedPort(t *testing.T) net.Addr {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr()
	_ = ln.Close()
	return a
}

// proxyTo starts a cluster without health checks (every host healthy) over
// addrs and a listener in front of it.
func proxyTo(t *testing.T, idle time.Duration, addrs ...net.Addr) (*cluster, string) {
	cfg := clusterConfig{name: "kube_apiservers", connectTimeout: 250 * time.Millisecond, panicThreshold: 50}
	for _, a := range addrs {
		cfg.endpoints = append(cfg.endpoints, endpointOf(t, a))
	}
	c := newCluster(cfg, newEventLog(), nil)
	c.start()
	t.Cleanup(c.stop)
	<-c.warm
	l, err := listen(listenerConfig{name: "l", address: "127.0.0.1:0", cluster: cfg.name, idleTimeout: idle},
		func(string) *cluster { return c })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.close)
	return c, l.ln.Addr().String()
}

// roundTrip sends ping over a new connection and reports whether it came back.
func roundTrip(t *testing.T, addr string) bool {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err) // the listener always accepts
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return false
	}
	buf := make([]byte, 4)
	_, err = io.ReadFull(c, buf)
	return err == nil && string(buf) == "ping"
}

// One connect attempt per connection: a host that refuses fails the client's
// connection, it is not retried on the next host.
func TestProxyMakesOneConnectAttempt(t *testing.T) {
	_, addr := proxyTo(t, time.Hour, echoServer(t).Addr(), closedPort(t))
	var got []bool
	for range 4 {
		got = append(got, roundTrip(t, addr))
	}
	if got[0] == got[1] || got[1] == got[2] || got[2] == got[3] {
		t.Errorf("round trips %v: want success and failure alternating (round robin, no retry)", got)
	}
}

func TestProxyKeepsConnectionsOfAnUnhealthyHost(t *testing.T) {
	c, addr := proxyTo(t, time.Hour, echoServer(t).Addr())
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1)
	if _, err := conn.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn, buf); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.hosts[0].health.healthy = false
	c.mu.Unlock()
	if _, err := conn.Write([]byte("b")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn, buf); err != nil || buf[0] != 'b' {
		t.Errorf("established connection broken after its host turned unhealthy: %v", err)
	}
}

func TestProxyPassesHalfClose(t *testing.T) {
	_, addr := proxyTo(t, time.Hour, echoServer(t).Addr())
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(conn) // the echo server closes once it has read our EOF
	if err != nil || string(got) != "hello" {
		t.Errorf("read %q, %v", got, err)
	}
}

func TestProxyIdleTimeout(t *testing.T) {
	_, addr := proxyTo(t, 50*time.Millisecond, echoServer(t).Addr())
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	start := time.Now()
	if _, err := conn.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("read %v, want EOF", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("closed after %v with a 50ms idle timeout", d)
	}
}

func TestProxyWithoutClusterCloses(t *testing.T) {
	l, err := listen(listenerConfig{name: "l", address: "127.0.0.1:0", cluster: "missing"}, func(string) *cluster { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	if roundTrip(t, l.ln.Addr().String()) {
		t.Error("a listener without its cluster proxied a connection")
	}
}
