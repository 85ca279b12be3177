package agent

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/drift"
	"github.com/kaudit/kaudit/internal/staticpod"
)

// DriftMetrics are the agent's drift metrics, a prometheus.Collector.
type DriftMetrics struct {
	drifted *prometheus.GaugeVec
	repairs *prometheus.CounterVec
}

func newDriftMetrics() *DriftMetrics {
	m := &DriftMetrics{
		drifted: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kaudit_node_drift",
			Help: "1 while the node's file (policy, or the kaudit-owned parts of the kube-apiserver manifest) differs from the revision the node applied, else 0."},
			[]string{"file"}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kaudit_node_drift_repairs_total",
			Help: "Times the node's file was found to differ from the applied revision and matched it again, since the agent started."},
			[]string{"file"}),
	}
	for _, f := range drift.Files {
		m.drifted.WithLabelValues(string(f)).Set(0)
		m.repairs.WithLabelValues(string(f))
	}
	return m
}

// Describe implements prometheus.Collector.
func (m *DriftMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.drifted.Describe(ch)
	m.repairs.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *DriftMetrics) Collect(ch chan<- prometheus.Metric) {
	m.drifted.Collect(ch)
	m.repairs.Collect(ch)
}

// DriftMetrics returns the agent's drift metrics, for its metrics registry.
func (a *Agent) DriftMetrics() *DriftMetrics { return a.drift.metrics }

// driftState is what the agent remembers about the drift of its node's files between passes.
type driftState struct {
	metrics *DriftMetrics
	// found is the last check's report while the files differ from the applied revision.
	found *drift.Report

	mu      sync.Mutex
	watcher *fsnotify.Watcher
	watched map[string]bool
}

// driftSettle is how long the file watch waits after a change before it checks: an editor
// writes a file in several steps (a swap file, a rename).
const driftSettle = 500 * time.Millisecond

// watchFiles kicks a pass when a file changes in the policy's or the manifest's directory, so
// drift is seen at once rather than at the next resync. Without inotify the resync still finds
// it.
func (a *Agent) watchFiles(ctx context.Context) {
	log := logr.FromContextOrDiscard(ctx)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Info("cannot watch the node's files; drift is found at each resync only", "err", err)
		return
	}
	defer func() {
		a.drift.mu.Lock()
		a.drift.watcher = nil
		a.drift.mu.Unlock()
		_ = w.Close()
	}()
	a.drift.mu.Lock()
	a.drift.watcher, a.drift.watched = w, map[string]bool{}
	a.drift.mu.Unlock()
	paths := a.rollout.Files.Paths
	a.watchDir(ctx, path.Dir(paths.Manifest))
	a.watchDir(ctx, path.Dir(paths.PolicyFile))
	var settle <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			// Only the two files matter (the policy directory may hold the audit log), and
			// the first change arms the settle time: a busy directory cannot postpone it.
			if name := path.Base(ev.Name); settle == nil && (name == path.Base(paths.Manifest) || name == path.Base(paths.PolicyFile)) {
				settle = a.clock.After(driftSettle)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			log.V(1).Info("watching the node's files", "err", err)
		case <-settle:
			settle = nil
			a.kick()
		}
	}
}

// watchDir adds the host directory dir to the file watch, once it runs.
func (a *Agent) watchDir(ctx context.Context, dir string) {
	a.drift.mu.Lock()
	defer a.drift.mu.Unlock()
	if a.drift.watcher == nil || a.drift.watched[dir] {
		return
	}
	if err := a.drift.watcher.Add(a.rollout.Files.Paths.local(dir)); err != nil {
		logr.FromContextOrDiscard(ctx).V(1).Info("cannot watch a directory of the node's files", "dir", dir, "err", err)
		return
	}
	a.drift.watched[dir] = true
}

// checkDrift compares the node's files with target when the node has applied it, reports what
// differs and repairs it (see docs/design.md, "Drift"). It runs in the pass, after any
// unfinished rollout is finished, so a rollout's own edits are never taken for drift. It
// returns handled = false to let the pass go on: a node that has not applied target yet, whose
// files match it, or whose repair needs kube-apiserver restarted, which the rollout does as for
// any revision (the files differ, so NodeFiles.UpToDate is false).
func (a *Agent) checkDrift(ctx context.Context, ap *v1alpha1.AuditPolicy, target Target) (next time.Duration, handled bool) {
	files := a.rollout.Files
	st, err := files.LoadState()
	// A node that does not run target yet gets every file written by its rollout; one whose
	// rollout of target failed reports that failure.
	if err != nil || st.Revision != target.Revision || st.Hash != target.Hash || st.Failed != nil && st.Failed.Key == target.Key() {
		if err == nil && (st.Revision != target.Revision || st.Hash != target.Hash) {
			a.driftForget() // the rollout of target writes every file anew
		}
		return 0, false
	}
	rep, err := drift.Check(drift.Node{FS: files.FS, Root: files.Paths.Root, Manifest: files.Paths.Manifest},
		drift.Applied{Revision: target.Revision, Hash: target.Hash, Policy: target.Policy, Flags: target.Flags})
	if err != nil {
		return 0, false // the pass reports a manifest it cannot work with
	}
	a.watchDir(ctx, path.Dir(rep.PolicyFile))
	if len(rep.Findings) == 0 {
		a.driftRepaired(ap, target)
		return 0, false
	}
	a.drift.found = &rep
	for _, f := range drift.Files {
		a.drift.metrics.drifted.WithLabelValues(string(f)).Set(boolGauge(rep.Drifted(f)))
	}
	msg := fmt.Sprintf("revision %d: the node's files differ from it: %s", target.Revision, rep.Message())
	a.event(ap, corev1.EventTypeWarning, v1alpha1.EventDriftDetected, fmt.Sprintf("node %s: %s", a.nodeName, rep.Message()))
	restart, why := a.driftNeedsRestart(ctx, rep)
	logr.FromContextOrDiscard(ctx).Info("the node's files differ from the applied revision", "revision", target.Revision, "findings", rep.Message(), "restart", restart, "why", why)
	if restart {
		_ = a.report(ctx, v1alpha1.NodeDrifted, fmt.Sprintf("%s; restoring them and restarting kube-apiserver: %s", msg, why))
		return 0, false
	}
	_ = a.report(ctx, v1alpha1.NodeDrifted, msg+"; restoring the policy file, no restart needed: "+why)
	if err := WriteAtomic(files.FS, files.Paths.local(rep.PolicyFile), "", target.Policy, 0o644); err != nil {
		_ = a.report(ctx, v1alpha1.NodeDrifted, fmt.Sprintf("%s; restoring %s failed: %v", msg, rep.PolicyFile, explain(err)))
		return a.retry, true
	}
	logr.FromContextOrDiscard(ctx).Info("restored the policy file", "file", rep.PolicyFile, "revision", target.Revision)
	return 0, true // the next pass sees the files match again
}

// driftNeedsRestart says whether repairing rep needs kube-apiserver restarted, and why or why
// not: a drifted manifest makes kubelet restart it anyway, and a policy file that audits
// otherwise matters only if the running apiserver may have loaded it, having started at or
// after the file's last change (pod times have one-second resolution). When the start is
// unknown it restarts.
func (a *Agent) driftNeedsRestart(ctx context.Context, rep drift.Report) (bool, string) {
	if rep.Drifted(drift.Manifest) {
		return true, "the manifest changed, so kubelet restarts kube-apiserver anyway"
	}
	if !rep.PolicyAuditsOtherwise {
		return false, "the policy file's rules are the revision's"
	}
	if rep.PolicyModTime.IsZero() {
		return true, "the policy file is missing"
	}
	s, ok := a.rollout.Health.(apiserverStart)
	if !ok {
		return true, "the start of kube-apiserver is unknown"
	}
	started, err := s.Started(ctx)
	if err != nil {
		return true, fmt.Sprintf("the start of kube-apiserver is unknown: %v", err)
	}
	changed := rep.PolicyModTime.Truncate(time.Second)
	if started.Before(changed) {
		return false, fmt.Sprintf("kube-apiserver started at %s, before the policy file changed at %s", started.UTC().Format(time.RFC3339), changed.UTC().Format(time.RFC3339))
	}
	return true, fmt.Sprintf("kube-apiserver started at %s, after the policy file changed at %s, so it may run the changed policy", started.UTC().Format(time.RFC3339), changed.UTC().Format(time.RFC3339))
}

// driftRepaired records that the node's files match target again after drift.
func (a *Agent) driftRepaired(ap *v1alpha1.AuditPolicy, target Target) {
	if a.drift.found == nil {
		return
	}
	for _, f := range drift.Files {
		if a.drift.found.Drifted(f) {
			a.drift.metrics.drifted.WithLabelValues(string(f)).Set(0)
			a.drift.metrics.repairs.WithLabelValues(string(f)).Inc()
		}
	}
	a.event(ap, corev1.EventTypeNormal, v1alpha1.EventDriftRepaired, fmt.Sprintf("node %s: the files match revision %d again (%s)", a.nodeName, target.Revision, a.drift.found.Message()))
	a.drift.found = nil
}

// driftForget drops what the last check found against a revision the node no longer targets,
// so that neither the status nor kaudit_node_drift reports it while the new one rolls out.
func (a *Agent) driftForget() {
	if a.drift.found == nil {
		return
	}
	for _, f := range drift.Files {
		a.drift.metrics.drifted.WithLabelValues(string(f)).Set(0)
	}
	a.drift.found = nil
}

// driftWaits keeps a drifted node's phase while the restart that repairs it waits at g (a gate,
// or the Lease another node holds).
func (a *Agent) driftWaits(g *gate) {
	if a.drift.found != nil && g.phase == v1alpha1.NodePending {
		g.phase = v1alpha1.NodeDrifted
		g.message = fmt.Sprintf("the node's files differ from the revision it applied: %s; the restart that restores them waits: %s", a.drift.found.Message(), g.message)
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// apiserverStart is a Health that can tell when the node's running kube-apiserver started.
type apiserverStart interface {
	Started(ctx context.Context) (time.Time, error)
}

// Started is when the kube-apiserver container of the mirror pod started; an error when it does
// not run.
func (h *APIServerHealth) Started(ctx context.Context) (time.Time, error) {
	pod, err := h.MirrorPod(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("getting the mirror pod: %w", err)
	}
	for _, c := range pod.Status.ContainerStatuses {
		if c.Name == staticpod.APIServerContainer && c.State.Running != nil {
			return c.State.Running.StartedAt.Time, nil
		}
	}
	return time.Time{}, errors.New("mirror pod " + pod.Namespace + "/" + pod.Name + ": container " + staticpod.APIServerContainer + " is not running")
}
