//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
)

// loadNamespace holds the ConfigMaps that the availability clients read and write; no module
// the suite applies covers it, so its audit events stay at Metadata.
const (
	loadNamespace = "kaudit-e2e-load"
	// loadConfigMaps is how many ConfigMaps each client takes in turn, so that its writes of
	// one object are two seconds apart, as a controller's are, rather than racing each other.
	loadConfigMaps = 20
	// loadRate is each client's requests per second.
	loadRate = 20
	// loadTimeout is how long a request may take before it counts as failed. Writes take
	// seconds on a loaded 2-core machine (etcd's fsync), which is slowness, not unavailability.
	loadTimeout = 30 * time.Second
)

// loadConfigMap is the ConfigMap of the client writing key that request i uses.
func loadConfigMap(key string, i int) string { return fmt.Sprintf("%s-%02d", key, i/2%loadConfigMaps) }

// loadClient sends loadRate requests per second through the load balancer, alternately a read
// and a small write of its ConfigMaps, authenticated with the admin's client certificate (an
// anonymous HTTP/2 connection is closed after each request): kept alive, one HTTP/2 connection
// for all requests as client-go and controllers have, or a new connection per request as
// separate kubectl runs have. A request fails on any transport error, a status other than 2xx,
// or no answer within loadTimeout.
type loadClient struct {
	name    string
	newConn bool
	// key is the ConfigMap's data key this client writes.
	key    string
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	sent    int
	results []loadResult
}

type loadResult struct {
	at      time.Time
	latency time.Duration
	err     error
}

// loadReport is one client's outcome over its run.
type loadReport struct {
	name     string
	sent, ok int
	failures []loadResult
	// slowest is the longest a successful request took.
	slowest time.Duration
}

func (r loadReport) availability() float64 {
	if r.sent == 0 {
		return 0
	}
	return float64(r.ok) / float64(r.sent)
}

func (r loadReport) String() string {
	s := fmt.Sprintf("%s: %d/%d succeeded (%.2f%%, slowest %.1fs)", r.name, r.ok, r.sent, 100*r.availability(), r.slowest.Seconds())
	if len(r.failures) == 0 {
		return s
	}
	reasons := map[string]int{}
	for _, f := range r.failures {
		msg := f.err.Error()
		if len(msg) > 90 {
			msg = msg[:90]
		}
		reasons[msg]++
	}
	var parts []string
	for m, n := range reasons {
		parts = append(parts, fmt.Sprintf("%d x %s", n, m))
	}
	sort.Strings(parts)
	return fmt.Sprintf("%s; failed from %s to %s: %s", s, r.failures[0].at.Format("15:04:05.000"), r.failures[len(r.failures)-1].at.Format("15:04:05.000"), strings.Join(parts, "; "))
}

func (h *haCluster) startLoad(name, key string, newConn bool) *loadClient {
	tlsConfig, err := rest.TLSConfigFor(h.cfg)
	Expect(err).NotTo(HaveOccurred())
	l := &loadClient{name: name, newConn: newConn, key: key, done: make(chan struct{})}
	var ctx context.Context
	ctx, l.cancel = context.WithCancel(context.Background())
	transport := func() *http.Transport {
		return &http.Transport{TLSClientConfig: tlsConfig.Clone(), ForceAttemptHTTP2: true}
	}
	shared := transport()
	base := strings.TrimSuffix(h.cfg.Host, "/") + "/api/v1/namespaces/" + loadNamespace + "/configmaps/"
	go func() {
		defer close(l.done)
		var wg sync.WaitGroup
		tick := time.NewTicker(time.Second / loadRate)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				wg.Wait()
				shared.CloseIdleConnections()
				return
			case <-tick.C:
			}
			t := shared
			if newConn {
				t = transport()
			}
			l.mu.Lock()
			l.sent++
			l.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				at := time.Now()
				err := loadRequest(t, base+loadConfigMap(key, i), key, i)
				if t != shared {
					t.CloseIdleConnections()
				}
				l.mu.Lock()
				l.results = append(l.results, loadResult{at: at, latency: time.Since(at), err: err})
				l.mu.Unlock()
			}()
		}
	}()
	return l
}

// loadRequest is request i: a GET of the ConfigMap at url, or a merge patch of one key.
func loadRequest(t http.RoundTripper, url, key string, i int) error {
	ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	method, body, contentType := http.MethodGet, []byte(nil), ""
	if i%2 == 1 {
		method, contentType = http.MethodPatch, "application/merge-patch+json"
		body = fmt.Appendf(nil, `{"data":{%q:"%d"}}`, key, i)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := t.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return fmt.Errorf("%s: reading the answer: %w", method, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s: %.120s", method, resp.Status, b)
	}
	return nil
}

func (l *loadClient) stop() loadReport {
	l.cancel()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	r := loadReport{name: l.name, sent: l.sent}
	sort.Slice(l.results, func(i, j int) bool { return l.results[i].at.Before(l.results[j].at) })
	for _, res := range l.results {
		if res.err == nil {
			r.ok++
			r.slowest = max(r.slowest, res.latency)
		} else {
			r.failures = append(r.failures, res)
		}
	}
	return r
}

// availabilityRun is the two clients of one measurement.
type availabilityRun struct{ keptAlive, newConnection *loadClient }

// createLoadObjects makes the namespace and ConfigMaps the availability clients use.
func (h *haCluster) createLoadObjects() {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n", loadNamespace)
	for _, key := range []string{"kept-alive", "new-connection"} {
		for i := 0; i < loadConfigMaps; i++ {
			fmt.Fprintf(&b, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n  namespace: %s\n", loadConfigMap(key, 2*i), loadNamespace)
		}
	}
	h.applyRetrying(b.String())
}

func (h *haCluster) startAvailability() *availabilityRun {
	return &availabilityRun{keptAlive: h.startLoad("kept-alive", "kept-alive", false), newConnection: h.startLoad("new connection per request", "new-connection", true)}
}

func (a *availabilityRun) stop() (keptAlive, newConnection loadReport) {
	return a.keptAlive.stop(), a.newConnection.stop()
}

// readyzPoller asks every node's /readyz directly every 100 ms for the whole suite. An
// apiserver is down from an answer that is not 200 or a failed connection (refused, reset) to
// the next 200. No answer within the poller's 2 s timeout counts as down only next to such a
// sample or when it lasts lateDowntime: on a loaded 2-core machine a healthy apiserver
// sometimes answers late (3.3 s without an answer was seen while another node restarted),
// which is slowness, not a restart.
type readyzPoller struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	samples map[string][]readyzSample
}

type readyzSample struct {
	at    time.Time
	ready bool
	// late says that no answer came within the timeout.
	late bool
	why  string
}

// lateDowntime is how long no answer must last to count as down by itself: as long as the
// shortest restart.
const lateDowntime = restartMin

// downtime is one node's apiserver not ready, from the first failed sample to the next ready one
// (zero while it lasts).
type downtime struct {
	node       string
	from, to   time.Time
	firstError string
}

func (d downtime) String() string {
	to := "still down"
	if !d.to.IsZero() {
		to = fmt.Sprintf("to %s (%.1fs)", d.to.Format("15:04:05.000"), d.to.Sub(d.from).Seconds())
	}
	return fmt.Sprintf("%s down from %s %s: %s", d.node, d.from.Format("15:04:05.000"), to, d.firstError)
}

func (h *haCluster) startReadyzPoller() *readyzPoller {
	tlsConfig, err := rest.TLSConfigFor(h.cfg)
	Expect(err).NotTo(HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	p := &readyzPoller{cancel: cancel, done: make(chan struct{}), samples: map[string][]readyzSample{}}
	var wg sync.WaitGroup
	for _, n := range h.nodes {
		wg.Add(1)
		c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig.Clone(), ForceAttemptHTTP2: true}}
		url := h.url(n) + "/readyz"
		go func() {
			defer wg.Done()
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				s := readyzSample{at: time.Now()}
				resp, err := c.Get(url)
				var timeout interface{ Timeout() bool }
				switch {
				case err != nil:
					s.why = err.Error()
					s.late = errors.As(err, &timeout) && timeout.Timeout()
				default:
					b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
					resp.Body.Close()
					s.ready = resp.StatusCode == http.StatusOK
					if !s.ready {
						s.why = fmt.Sprintf("%s: %.100s", resp.Status, b)
					}
				}
				p.mu.Lock()
				p.samples[n] = append(p.samples[n], s)
				p.mu.Unlock()
			}
		}()
	}
	go func() { wg.Wait(); close(p.done) }()
	return p
}

func (p *readyzPoller) stop() {
	p.cancel()
	<-p.done
}

// downtimes are the nodes' downtimes that overlap [from, to], in order of their start.
func (p *readyzPoller) downtimes(from, to time.Time) []downtime {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []downtime
	for node, samples := range p.samples {
		var cur *downtime
		var definite bool // cur holds an answer that is not 200 or a failed connection
		keep := func(end time.Time) bool {
			return (definite || end.Sub(cur.from) >= lateDowntime) && !end.Before(from) && !cur.from.After(to)
		}
		for _, s := range samples {
			switch {
			case !s.ready && cur == nil:
				cur, definite = &downtime{node: node, from: s.at, firstError: s.why}, !s.late
			case !s.ready:
				definite = definite || !s.late
			case cur != nil:
				cur.to = s.at
				if keep(cur.to) {
					out = append(out, *cur)
				}
				cur = nil
			}
		}
		if cur != nil && keep(time.Now()) {
			out = append(out, *cur)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].from.Before(out[j].from) })
	return out
}

// overlapping are pairs of downtimes of two nodes at the same time.
func overlapping(ds []downtime) []string {
	var out []string
	for i, a := range ds {
		for _, b := range ds[i+1:] {
			aEnd, bEnd := a.to, b.to
			if aEnd.IsZero() {
				aEnd = time.Now()
			}
			if bEnd.IsZero() {
				bEnd = time.Now()
			}
			if a.node != b.node && a.from.Before(bEnd) && b.from.Before(aEnd) {
				out = append(out, a.String()+" while "+b.String())
			}
		}
	}
	return out
}

// restartMin is the shortest downtime that is a restart: kubelet stops the old apiserver
// after up to 30 s, and a new one takes 10 s and more to get ready.
const restartMin = 10 * time.Second

// restart is node's first downtime of at least restartMin that began at or after since; ok is
// false while there is none, or while it lasts.
func (p *readyzPoller) restart(node string, since time.Time) (d downtime, ok bool) {
	for _, d := range p.downtimes(since, time.Now()) {
		if d.node == node && !d.from.Before(since) && !d.to.IsZero() && d.to.Sub(d.from) >= restartMin {
			return d, true
		}
	}
	return downtime{}, false
}

// restarts is how many restarts (downtimes of at least restartMin that ended) node's apiserver
// had that began at or after since.
func (p *readyzPoller) restarts(node string, since time.Time) int {
	n := 0
	for _, d := range p.downtimes(since, time.Now()) {
		if d.node == node && !d.from.Before(since) && !d.to.IsZero() && d.to.Sub(d.from) >= restartMin {
			n++
		}
	}
	return n
}

// down says whether node's apiserver is not ready now, in a downtime that began at or after
// since and has lasted at least lasting.
func (p *readyzPoller) down(node string, since time.Time, lasting time.Duration) bool {
	for _, d := range p.downtimes(since, time.Now()) {
		if d.node == node && !d.from.Before(since) && d.to.IsZero() && time.Since(d.from) >= lasting {
			return true
		}
	}
	return false
}

// readyAfter is when node's apiserver was ready again after its first restart since since, or
// zero.
func (p *readyzPoller) readyAfter(node string, since time.Time) time.Time {
	d, _ := p.restart(node, since)
	return d.to
}
