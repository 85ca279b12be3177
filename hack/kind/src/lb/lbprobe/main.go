// Command lbprobe measures availability through a load balancer: it sends GET
// requests at a fixed rate and prints every failure with its time, then the
// totals; failure lines start with the wall-clock time in Unix milliseconds
// so that scripts can line them up with other events. -mode keepalive shares one HTTP/2 connection between all requests,
// as client-go does; -mode new opens a connection (TCP, TLS) per request, as
// separate kubectl runs do. A request fails on any transport error or a
// status other than 200. With -cert and -key the client authenticates (the
// kube-apiserver ends an anonymous client's HTTP/2 connection after each
// request, so only an authenticated client keeps its connection); without
// -ca the server's certificate is not verified.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"syscall"
	"time"
)

type result struct {
	at  time.Duration // since the start, when the request was sent
	err error
}

func main() {
	url := flag.String("url", "", "URL to GET, e.g. https://127.0.0.1:PORT/readyz")
	rate := flag.Float64("rate", 20, "requests per second")
	mode := flag.String("mode", "new", "keepalive (one shared connection) or new (a connection per request)")
	duration := flag.Duration("duration", 0, "how long to probe; 0: until SIGINT or SIGTERM")
	timeout := flag.Duration("timeout", 5*time.Second, "timeout of one request")
	caFile := flag.String("ca", "", "PEM CA bundle to verify the server with")
	certFile := flag.String("cert", "", "PEM client certificate")
	keyFile := flag.String("key", "", "PEM client key")
	flag.Parse()
	if *url == "" || *rate <= 0 || (*mode != "keepalive" && *mode != "new") {
		flag.Usage()
		os.Exit(2)
	}
	tlsConfig, err := clientTLS(*caFile, *certFile, *keyFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}

	newTransport := func() *http.Transport {
		return &http.Transport{TLSClientConfig: tlsConfig.Clone(), ForceAttemptHTTP2: true}
	}
	shared := newTransport()
	start := time.Now()
	fmt.Printf("start %s mode=%s rate=%g/s url=%s\n", start.UTC().Format(time.RFC3339Nano), *mode, *rate, *url)
	results := make(chan result, 1024)
	sent := 0
	ticker := time.NewTicker(time.Duration(float64(time.Second) / *rate))
	defer ticker.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-ticker.C:
		}
		sent++
		t := shared
		if *mode == "new" {
			t = newTransport()
		}
		at := time.Since(start)
		go func() {
			err := get(t, *url, *timeout)
			if t != shared {
				t.CloseIdleConnections()
			}
			results <- result{at: at, err: err}
		}()
	}
	var all []result
	for range sent {
		all = append(all, <-results)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].at < all[j].at })
	failed := 0
	var first, last time.Duration
	for _, r := range all {
		if r.err == nil {
			continue
		}
		if failed == 0 {
			first = r.at
		}
		last = r.at
		failed++
		fmt.Printf("%d +%.3fs FAIL %v\n", start.Add(r.at).UnixMilli(), r.at.Seconds(), r.err)
	}
	summary := fmt.Sprintf("mode=%s sent=%d ok=%d failed=%d", *mode, sent, sent-failed, failed)
	if sent > 0 {
		summary += fmt.Sprintf(" availability=%.2f%%", 100*float64(sent-failed)/float64(sent))
	}
	if failed > 0 {
		summary += fmt.Sprintf(" failures_between=+%.3fs..+%.3fs", first.Seconds(), last.Seconds())
	}
	fmt.Println(summary)
}

func clientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{InsecureSkipVerify: caFile == ""} //nolint:gosec // a probe, verified with -ca
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificates", caFile)
		}
	}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func get(t *http.Transport, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := t.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %.200q", resp.Status, body)
	}
	return nil
}
