//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

// statusEvent is a change of one node's entry in the singleton's status.
type statusEvent struct {
	at      time.Time
	node    string
	phase   v1alpha1.NodePhase
	applied int64
	message string
}

// rolloutWatch polls the singleton every 250 ms on each node's own apiserver and records every
// change of the nodes' entries and when it turned Available for each desired revision. Not
// through the load balancer: a request that it sends to the apiserver being restarted hangs or
// fails for seconds, and the changes written meanwhile would be seen late. One node restarts at a
// time, so the other two answer; the object's resourceVersion (etcd's revision, shared by the
// three apiservers) puts their answers in order.
type rolloutWatch struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	seen      int64 // resourceVersion of the newest object recorded
	events    []statusEvent
	last      map[string]statusEvent
	available map[int64]time.Time
}

func (h *haCluster) watchRollout() *rolloutWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &rolloutWatch{cancel: cancel, done: make(chan struct{}), last: map[string]statusEvent{}, available: map[int64]time.Time{}}
	var wg sync.WaitGroup
	for _, n := range h.nodes {
		c := h.clientOn(n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				reqCtx, cancelReq := context.WithTimeout(ctx, 2*time.Second)
				ap := &v1alpha1.AuditPolicy{}
				if err := c.Get(reqCtx, client.ObjectKey{Name: "cluster"}, ap); err == nil {
					w.record(ap, time.Now())
				}
				cancelReq()
				sleepCtx(ctx, 250*time.Millisecond)
			}
		}()
	}
	go func() { wg.Wait(); close(w.done) }()
	return w
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (w *rolloutWatch) record(ap *v1alpha1.AuditPolicy, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	rv, err := strconv.ParseInt(ap.ResourceVersion, 10, 64)
	if err != nil || rv <= w.seen {
		return // what another node's apiserver already answered, or older
	}
	w.seen = rv
	for _, e := range ap.Status.Nodes {
		ev := statusEvent{at: now, node: e.Name, phase: e.Phase, message: e.Message}
		if e.AppliedRevision != nil {
			ev.applied = *e.AppliedRevision
		}
		if prev, ok := w.last[e.Name]; ok && prev.phase == ev.phase && prev.applied == ev.applied && prev.message == ev.message {
			continue
		}
		w.last[e.Name] = ev
		w.events = append(w.events, ev)
	}
	if c := condition(ap, "Available"); c != nil && c.Status == metav1.ConditionTrue && ap.Status.DesiredRevision != nil {
		if _, ok := w.available[*ap.Status.DesiredRevision]; !ok {
			w.available[*ap.Status.DesiredRevision] = now
		}
	}
}

func (w *rolloutWatch) stop() {
	w.cancel()
	<-w.done
}

// rollingOut is when node's entry first said it rolls revision rev out, or zero.
func (w *rolloutWatch) rollingOut(node string, rev int64) time.Time {
	prefix := fmt.Sprintf("revision %d:", rev)
	return w.first(func(e statusEvent) bool {
		return e.node == node && e.phase == v1alpha1.NodeRollingOut && strings.HasPrefix(e.message, prefix)
	})
}

// applied is when node's entry first said Applied with revision rev, or zero.
func (w *rolloutWatch) applied(node string, rev int64) time.Time {
	return w.first(func(e statusEvent) bool { return e.node == node && e.phase == v1alpha1.NodeApplied && e.applied == rev })
}

// availableAt is when the singleton first said Available with rev desired, or zero.
func (w *rolloutWatch) availableAt(rev int64) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.available[rev]
}

func (w *rolloutWatch) first(match func(statusEvent) bool) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.events {
		if match(e) {
			return e.at
		}
	}
	return time.Time{}
}

// order is the nodes in the order they began rolling rev out.
func (w *rolloutWatch) order(nodes []string, rev int64) []string {
	var out []string
	times := map[string]time.Time{}
	for _, n := range nodes {
		if t := w.rollingOut(n, rev); !t.IsZero() {
			times[n] = t
			out = append(out, n)
		}
	}
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if times[out[j]].Before(times[out[i]]) {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// timeline is the recorded entry changes, for failure messages and the report.
func (w *rolloutWatch) timeline() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	for _, e := range w.events {
		fmt.Fprintf(&b, "%s %s %s applied=%d %s\n", e.at.Format("15:04:05.000"), e.node, e.phase, e.applied, e.message)
	}
	for rev, at := range w.available {
		fmt.Fprintf(&b, "%s Available with revision %d\n", at.Format("15:04:05.000"), rev)
	}
	return b.String()
}
