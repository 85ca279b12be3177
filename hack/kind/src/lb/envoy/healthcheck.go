package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// httpCheck is envoy's HTTP health check session for one host: HTTP/1.1 GET of
// the configured path with Host set to the cluster name (or the configured
// host) and User-Agent Envoy/HC, over TLS without verification when the
// transport socket says so, without SNI or ALPN. The timeout covers connecting,
// the TLS handshake and the response. With reuse_connection (envoy's default)
// the connection is kept between checks until either side closes it.
type httpCheck struct {
	cfg  *healthConfig
	addr string
	conn net.Conn
	br   *bufio.Reader
}

func (c *httpCheck) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn, c.br = nil, nil
	}
}

// run performs one check.
func (c *httpCheck) run(ctx context.Context) (outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	if c.conn != nil && !c.idleConnOpen() {
		// Envoy drops a kept connection as soon as the server closes it and
		// connects afresh for the next check.
		c.close()
	}
	if c.conn == nil {
		if err := c.connect(ctx); err != nil {
			return failure(err)
		}
	}
	o, err := c.exchange(deadline)
	if !c.cfg.reuseConnection {
		c.close()
	}
	return o, err
}

func failure(err error) (outcome, error) {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return timedOut, err
	}
	return networkFailure, err
}

func (c *httpCheck) connect(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		return fmt.Errorf("connect %s: %w", c.addr, err)
	}
	if c.cfg.tls {
		// No ServerName: envoy sends no SNI unless configured; no ALPN either.
		tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // envoy's ACCEPT_UNTRUSTED
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return fmt.Errorf("TLS handshake with %s: %w", c.addr, err)
		}
		conn = tc
	}
	c.conn, c.br = conn, bufio.NewReader(conn)
	return nil
}

// exchange sends the request and reads the response. A transport error
// closes the connection; an unexpected status keeps it, as envoy does.
func (c *httpCheck) exchange(deadline time.Time) (outcome, error) {
	broken := func(err error) (outcome, error) {
		c.close()
		return failure(err)
	}
	if err := c.conn.SetDeadline(deadline); err != nil {
		return broken(err)
	}
	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: Envoy/HC\r\n\r\n", c.cfg.path, c.cfg.host)
	if _, err := io.WriteString(c.conn, req); err != nil {
		return broken(fmt.Errorf("send to %s: %w", c.addr, err))
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return broken(fmt.Errorf("response from %s: %w", c.addr, err))
	}
	_, err = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		return broken(fmt.Errorf("response body from %s: %w", c.addr, err))
	}
	if err := c.conn.SetDeadline(time.Time{}); err != nil {
		return broken(err)
	}
	o := passed
	if resp.StatusCode != http.StatusOK {
		o = badStatus
	}
	if resp.Close { // "Connection: close" or HTTP/1.0
		c.close()
	}
	if o == badStatus {
		return o, fmt.Errorf("%s answered %s", c.addr, resp.Status)
	}
	return o, nil
}

// idleConnOpen reports whether the kept connection is still open: a read that
// times out at once means nothing arrived, in particular no close.
func (c *httpCheck) idleConnOpen() bool {
	if err := c.conn.SetReadDeadline(time.Now()); err != nil {
		return false
	}
	_, err := c.br.Peek(1)
	_ = c.conn.SetReadDeadline(time.Time{})
	return errors.Is(err, os.ErrDeadlineExceeded)
}
