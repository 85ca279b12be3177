package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	"github.com/kaudit/kaudit/internal/staticpod"
)

// Health tells when a node's apiserver runs a given manifest and is ready.
type Health interface {
	// Wait returns nil once the apiserver's mirror pod carries the policy-hash annotation value,
	// its apiserver container started at or after since, and the local /readyz answers ok. It
	// returns an error saying what was last seen when timeout passes first.
	Wait(ctx context.Context, annotation string, since time.Time, timeout time.Duration) error
}

// APIServerHealth checks the mirror pod through the API and /readyz on the node. It never
// depends on seeing the apiserver go down: a fast restart can hide it.
type APIServerHealth struct {
	// MirrorPod gets the kube-apiserver mirror pod of this node.
	MirrorPod func(ctx context.Context) (*corev1.Pod, error)
	// Readyz returns nil when the local apiserver is ready.
	Readyz   func(ctx context.Context) error
	Clock    clock.Clock
	Interval time.Duration
}

// Wait implements Health.
func (h *APIServerHealth) Wait(ctx context.Context, annotation string, since time.Time, timeout time.Duration) error {
	interval := h.Interval
	if interval <= 0 {
		interval = time.Second
	}
	deadline := h.Clock.Now().Add(timeout)
	var reason error
	var restarted bool
	for {
		// Each check ends by the overall deadline (at least one interval): an API call to an
		// apiserver that accepts connections but never answers must not outlast the timeout.
		cctx, cancel := context.WithTimeout(ctx, max(deadline.Sub(h.Clock.Now()), interval))
		last := h.check(cctx, annotation, since, &restarted)
		cancel()
		if last == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// A check cut short by the deadline says less than the one before it (a /readyz
		// answer naming the failing check), so the reason shown is the last complete one.
		if reason == nil || !errors.Is(last, context.DeadlineExceeded) {
			reason = last
		}
		if !h.Clock.Now().Before(deadline) {
			return fmt.Errorf("kube-apiserver not healthy %s after the change: %w", timeout, reason)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-h.Clock.After(interval):
		}
	}
}

// check is one look at the mirror pod and /readyz. restarted carries over from the checks
// before it whether the mirror pod has shown the apiserver container running since the change:
// kubelet reports the new container's start on the mirror pod it replaces, then creates the
// mirror pod of the new manifest, whose status it reports 10-15 s later (measured on kind). The
// new annotation means that kubelet runs the new manifest; the start, seen on either, or the
// new mirror pod's creation since the change, that the container restarted after the change
// (see docs/design.md, "Restart and rollback").
func (h *APIServerHealth) check(ctx context.Context, annotation string, since time.Time, restarted *bool) error {
	pod, err := h.MirrorPod(ctx)
	if err != nil {
		return fmt.Errorf("getting the mirror pod: %w", err)
	}
	var started *time.Time
	for _, c := range pod.Status.ContainerStatuses {
		if c.Name == staticpod.APIServerContainer && c.State.Running != nil {
			t := c.State.Running.StartedAt.Time
			started = &t
		}
	}
	// Pod times have a resolution of one second.
	if started != nil && !started.Before(since.Truncate(time.Second)) {
		*restarted = true
	}
	if got := pod.Annotations[staticpod.AnnotationPolicyHash]; got != annotation {
		return fmt.Errorf("mirror pod %s/%s has %s=%q, want %q", pod.Namespace, pod.Name, staticpod.AnnotationPolicyHash, got, annotation)
	}
	// A mirror pod of the new manifest created since the change is a restart too: kubelet
	// creates it only once the previous pod has terminated, and its report of the new
	// container on the replaced mirror pod can fail (that pod is being deleted).
	if !pod.CreationTimestamp.Time.Before(since.Truncate(time.Second)) {
		*restarted = true
	}
	switch {
	case *restarted:
	case started == nil:
		return fmt.Errorf("mirror pod %s/%s: container %s is not running", pod.Namespace, pod.Name, staticpod.APIServerContainer)
	default:
		return fmt.Errorf("mirror pod %s/%s: container %s started at %s, before the change at %s", pod.Namespace, pod.Name, staticpod.APIServerContainer, started.UTC().Format(time.RFC3339), since.UTC().Format(time.RFC3339))
	}
	if err := h.Readyz(ctx); err != nil {
		return fmt.Errorf("/readyz: %w", err)
	}
	return nil
}

// ReadyzOptions say how to reach the local apiserver's /readyz.
type ReadyzOptions struct {
	// URL, e.g. https://127.0.0.1:6443/readyz.
	URL string
	// CAFile verifies the serving certificate (the service account's ca.crt); empty uses the
	// system roots.
	CAFile string
	// ServerName is the name verified in the serving certificate. kubeadm's apiserver
	// certificate always holds "kubernetes", while 127.0.0.1 is not always among its SANs.
	ServerName string
	// InsecureSkipVerify skips certificate verification (for clusters whose CA is not at hand).
	InsecureSkipVerify bool
	// TokenFile, when set, is sent as a bearer token. /readyz is readable without
	// authentication by default (system:public-info-viewer); clusters that disable anonymous
	// auth need the service account token here.
	TokenFile string
	// Timeout of one request.
	Timeout time.Duration
}

// NewReadyz returns a check of the local apiserver's /readyz.
func NewReadyz(o ReadyzOptions) (func(ctx context.Context) error, error) {
	tlsConfig := &tls.Config{ServerName: o.ServerName, InsecureSkipVerify: o.InsecureSkipVerify} //nolint:gosec // opt-in, documented
	if o.CAFile != "" && !o.InsecureSkipVerify {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("readyz CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("readyz CA file %s holds no PEM certificate", o.CAFile)
		}
		tlsConfig.RootCAs = pool
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	transport := &http.Transport{TLSClientConfig: tlsConfig, DisableKeepAlives: true, Proxy: nil}
	client := &http.Client{Transport: transport, Timeout: timeout}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, o.URL, nil)
		if err != nil {
			return err
		}
		if o.TokenFile != "" {
			tok, err := os.ReadFile(o.TokenFile)
			if err != nil {
				return fmt.Errorf("reading token: %w", err)
			}
			req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s answered %d: %s", o.URL, resp.StatusCode, strings.TrimSpace(lastLines(string(body), 3)))
		}
		return nil
	}, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}
