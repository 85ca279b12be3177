package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
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
	// statusDelay is Options.KubeletStatusDelay.
	statusDelay time.Duration
	// found is the last check's report while the files differ from the applied revision.
	found *drift.Report
	// restart is what the node reports while the pass restarts kube-apiserver to repair drift,
	// "" otherwise. The pass reports it, once it knows whether a gate holds the restart: two
	// reports in one pass would flap the status, and each change of it kicks another pass.
	restart string

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

// driftRestoreFile in the state directory records a policy file restored without a restart
// until kubelet has had the time to show any restart of kube-apiserver before the restore, and
// a drifted policy file that kube-apiserver may run until a rollout restarts it.
const driftRestoreFile = "drift-restore.json"

// driftRestore is a drifted policy file that the agent restored without a restart, as far as
// the mirror pod showed then (see Agent.confirmRestore), or, with Restart, one that
// kube-apiserver may have loaded.
type driftRestore struct {
	// Annotation is the manifest's policy-hash annotation at the restore: once it changes, a
	// rollout has restarted kube-apiserver on the restored file, which settles the question.
	Annotation string `json:"annotation"`
	// Changed is the drifted file's modification time (the earliest, when edited again before
	// the verdict); Restored when the agent last wrote the revision's policy back.
	Changed  time.Time `json:"changed"`
	Restored time.Time `json:"restored"`
	// Restart says that kube-apiserver started after the change, so needs a restart whoever
	// puts the file back: the rollout that repairs the drift may wait at a gate, and someone
	// may restore the file by hand meanwhile.
	Restart bool `json:"restart,omitempty"`
}

// DefaultKubeletStatusDelay is how long the agent gives kubelet to show a restart of
// kube-apiserver in its mirror pod's status: kubelet reports a container's start 10 to 15
// seconds late.
const DefaultKubeletStatusDelay = 20 * time.Second

// checkDrift compares the node's files with target when the node has applied it, reports what
// differs and repairs it (see docs/design.md, "Drift"). It runs in the pass, after any
// unfinished rollout is finished, so a rollout's own edits are never taken for drift. It
// returns handled = false to let the pass go on: a node that has not applied target yet, whose
// files match it, or whose repair needs kube-apiserver restarted, which the rollout does as for
// any revision. restart says that the files match but kube-apiserver may run a drifted policy
// file restored meanwhile: the pass then rolls target out although the files are up to date.
func (a *Agent) checkDrift(ctx context.Context, ap *v1alpha1.AuditPolicy, target Target) (next time.Duration, handled, restart bool) {
	files := a.rollout.Files
	a.drift.restart = ""
	st, err := files.LoadState()
	// A node that does not run target yet gets every file written by its rollout, and is
	// checked against the revision it runs while that rollout waits (checkAppliedDrift); one
	// whose rollout of target failed reports that failure.
	if err != nil || !files.runs(st, target) || st.Failed != nil && st.Failed.Key == target.Key() {
		return 0, false, false
	}
	restore, restoreErr := a.loadDriftRestore(st)
	rep, err := drift.Check(drift.Node{FS: files.FS, Root: files.Paths.Root, Manifest: files.Paths.Manifest},
		drift.Applied{Revision: target.Revision, Hash: target.Hash, Policy: target.Policy, Flags: target.Flags})
	if err != nil {
		return 0, false, false // the pass reports a manifest it cannot work with
	}
	a.watchDir(ctx, path.Dir(rep.PolicyFile))
	log := logr.FromContextOrDiscard(ctx)
	if len(rep.Findings) == 0 {
		switch {
		case restoreErr != nil:
			// Safety first: a restore whose verdict is lost counts as one that needs the restart.
			a.drift.restart = fmt.Sprintf("revision %d: the policy file was restored, but the record of the restore cannot be read (%v); restarting kube-apiserver", target.Revision, restoreErr)
			return 0, false, true
		case restore != nil && restore.Restart:
			a.drift.restart = fmt.Sprintf("revision %d: the policy file matches it again, but kube-apiserver started after it changed at %s, so it may run the changed policy; restarting kube-apiserver",
				target.Revision, restore.Changed.UTC().Format(time.RFC3339))
			return 0, false, true
		case restore != nil:
			return a.confirmRestore(ctx, ap, target, *restore)
		}
		a.driftRepaired(ap, target)
		return 0, false, false
	}
	a.drift.found = &rep
	for _, f := range drift.Files {
		a.drift.metrics.drifted.WithLabelValues(string(f)).Set(boolGauge(rep.Drifted(f)))
	}
	msg := fmt.Sprintf("revision %d: the node's files differ from it: %s", target.Revision, rep.Message())
	a.event(ap, corev1.EventTypeWarning, v1alpha1.EventDriftDetected, fmt.Sprintf("node %s: %s", a.nodeName, rep.Message()))
	restartNow, why := a.driftNeedsRestart(ctx, rep)
	log.Info("the node's files differ from the applied revision", "revision", target.Revision, "findings", rep.Message(), "restart", restartNow, "why", why)
	if restartNow {
		a.drift.restart = fmt.Sprintf("%s; restoring them and restarting kube-apiserver: %s", msg, why)
		if rep.PolicyAuditsOtherwise && !rep.PolicyModTime.IsZero() && (restore == nil || !restore.Restart) {
			// The restart may wait at a gate: recorded, so that the file put back by hand
			// meanwhile still gets it (also after an agent restart).
			record := driftRestore{Annotation: st.Annotation, Changed: rep.PolicyModTime, Restart: true}
			if err := files.writeJSON(driftRestoreFile, record); err != nil {
				log.Error(err, "recording that kube-apiserver needs a restart for the drifted policy file failed; the waiting rollout still restarts it unless the file is put back first")
			}
		}
		return 0, false, false
	}
	var record driftRestore
	if !rep.PolicyAuditsOtherwise {
		_ = a.report(ctx, v1alpha1.NodeDrifted, msg+"; restoring the policy file, no restart needed: "+why)
	} else {
		// The mirror pod may not show yet a restart since the edit: restore now, so that any
		// later start loads the revision's policy, and decide once kubelet has reported it.
		now := a.clock.Now()
		// A restart found needed for an earlier change of the file is still needed.
		record = driftRestore{Annotation: st.Annotation, Changed: rep.PolicyModTime, Restored: now, Restart: restore != nil && restore.Restart}
		if restore != nil && restore.Changed.Before(record.Changed) {
			record.Changed = restore.Changed
		}
		// Recorded before the write: an agent stopped in between finds the record and decides.
		if err := files.writeJSON(driftRestoreFile, record); err != nil {
			_ = a.report(ctx, v1alpha1.NodeDrifted, fmt.Sprintf("%s; recording the restore of %s failed: %v", msg, rep.PolicyFile, explain(err)))
			return a.retry, true, false
		}
		_ = a.report(ctx, v1alpha1.NodeDrifted, fmt.Sprintf("%s; restoring the policy file, no restart needed unless kube-apiserver restarted before the restore: %s; checked again at %s, once kubelet shows any such restart",
			msg, why, now.Add(a.drift.statusDelay).UTC().Format(time.RFC3339)))
	}
	if err := WriteAtomic(files.FS, files.Paths.local(rep.PolicyFile), "", target.Policy, 0o644); err != nil {
		_ = a.report(ctx, v1alpha1.NodeDrifted, fmt.Sprintf("%s; restoring %s failed: %v", msg, rep.PolicyFile, explain(err)))
		return a.retry, true, false
	}
	log.Info("restored the policy file", "file", rep.PolicyFile, "revision", target.Revision)
	if rep.PolicyAuditsOtherwise {
		// A start between the record and the end of the write may have loaded the drifted
		// file: the restore is when the write ended.
		record.Restored = a.clock.Now()
		if err := files.writeJSON(driftRestoreFile, record); err != nil {
			_ = a.report(ctx, v1alpha1.NodeDrifted, fmt.Sprintf("%s; recording the restore of %s failed: %v", msg, rep.PolicyFile, explain(err)))
			return a.retry, true, false
		}
		return a.drift.statusDelay, true, false
	}
	return 0, true, false // the next pass sees the files match again
}

// loadDriftRestore reads the record of a policy file restored without a restart on the
// apiserver that runs now (st's annotation), nil when there is none. A record of an earlier
// apiserver is removed: a rollout has restarted it since.
func (a *Agent) loadDriftRestore(st State) (*driftRestore, error) {
	files := a.rollout.Files
	var r driftRestore
	if ok, err := files.readJSON(driftRestoreFile, &r); err != nil || !ok {
		return nil, err
	}
	if r.Annotation != st.Annotation {
		return nil, a.rollout.Files.removeDriftRestore()
	}
	return &r, nil
}

func (f *NodeFiles) removeDriftRestore() error {
	if err := f.FS.Remove(f.inStateDir(driftRestoreFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", f.inStateDir(driftRestoreFile), err)
	}
	return nil
}

// confirmRestore decides, once kubelet has had the time to show it, whether kube-apiserver
// restarted between the edit of the policy file and its restore, and so may run the edited
// file: then it returns restart = true, and the rollout restarts kube-apiserver.
func (a *Agent) confirmRestore(ctx context.Context, ap *v1alpha1.AuditPolicy, target Target, r driftRestore) (next time.Duration, handled, restart bool) {
	if wait := r.Restored.Add(a.drift.statusDelay).Sub(a.clock.Now()); wait > 0 {
		return wait, true, false
	}
	restart, why := a.loadedDrifted(ctx, r)
	logr.FromContextOrDiscard(ctx).Info("checked the start of kube-apiserver after restoring the policy file", "revision", target.Revision, "restart", restart, "why", why)
	if restart {
		a.drift.restart = fmt.Sprintf("revision %d: the policy file was restored; restarting kube-apiserver: %s", target.Revision, why)
		return 0, false, true
	}
	if err := a.rollout.Files.removeDriftRestore(); err != nil {
		_ = a.report(ctx, v1alpha1.NodeDrifted, fmt.Sprintf("revision %d: the policy file was restored and needs no restart (%s), but %v", target.Revision, why, explain(err)))
		return a.retry, true, false
	}
	a.driftRepaired(ap, target)
	return 0, false, false
}

// loadedDrifted says whether kube-apiserver may have loaded the policy file between its change
// and its restore (r), from its start as the mirror pod shows it (in whole seconds, so a start
// in the second of the edit counts as after it, and one in the second of the restore as
// before it), and why. When the start is unknown it says so.
func (a *Agent) loadedDrifted(ctx context.Context, r driftRestore) (bool, string) {
	started, err := a.apiserverStarted(ctx)
	if err != nil {
		return true, err.Error()
	}
	changed := r.Changed.Truncate(time.Second)
	format := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	switch {
	case started.Before(changed):
		return false, fmt.Sprintf("kube-apiserver started at %s, before the policy file changed at %s", format(started), format(changed))
	case !started.Before(r.Restored):
		return false, fmt.Sprintf("kube-apiserver started at %s, after the policy file was restored at %s", format(started), format(r.Restored))
	}
	return true, fmt.Sprintf("kube-apiserver started at %s, after the policy file changed at %s and before it was restored at %s, so it may run the changed policy",
		format(started), format(changed), format(r.Restored))
}

// apiserverStarted is when the running kube-apiserver started, or an error saying that it is
// unknown.
func (a *Agent) apiserverStarted(ctx context.Context) (time.Time, error) {
	s, ok := a.rollout.Health.(apiserverStart)
	if !ok {
		return time.Time{}, errors.New("the start of kube-apiserver is unknown")
	}
	started, err := s.Started(ctx)
	if err != nil {
		return time.Time{}, fmt.Errorf("the start of kube-apiserver is unknown: %w", err)
	}
	return started, nil
}

// driftNeedsRestart says whether repairing rep needs kube-apiserver restarted, and why or why
// not: a drifted manifest makes kubelet restart it anyway, and a policy file that audits
// otherwise matters only if the running apiserver may have loaded it, having started at or
// after the file's last change (pod times have one-second resolution). When the start is
// unknown it restarts. A start before the change is not the last word: kubelet shows a restart
// seconds late, so checkDrift asks again after the restore (confirmRestore).
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
	started, err := a.apiserverStarted(ctx)
	if err != nil {
		return true, err.Error()
	}
	changed := rep.PolicyModTime.Truncate(time.Second)
	if started.Before(changed) {
		return false, fmt.Sprintf("kube-apiserver started at %s, before the policy file changed at %s", started.UTC().Format(time.RFC3339), changed.UTC().Format(time.RFC3339))
	}
	return true, fmt.Sprintf("kube-apiserver started at %s, after the policy file changed at %s, so it may run the changed policy", started.UTC().Format(time.RFC3339), changed.UTC().Format(time.RFC3339))
}

// checkAppliedDrift checks the node's files against the revision the node runs while the
// rollout of target, a newer one, waits at a gate: it restores a policy file that needs no
// restart, and otherwise leaves the repair to that rollout, which writes every file. handled
// says that the pass ends here: the node's entry stays as this check left it, and the gate's
// report must not follow.
func (a *Agent) checkAppliedDrift(ctx context.Context, ap *v1alpha1.AuditPolicy, target Target) (next time.Duration, handled bool) {
	files := a.rollout.Files
	st, err := files.LoadState()
	if err != nil || st.Revision == 0 || files.runs(st, target) {
		return 0, false
	}
	applied, err := files.loadApplied(st)
	if err != nil || applied == nil {
		// Without a record of what the node runs there is nothing to compare with: the rollout
		// of target writes every file.
		a.driftForget()
		return 0, false
	}
	next, handled, _ = a.checkDrift(ctx, ap, applied.target())
	return next, handled
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
	a.forgetEvent(v1alpha1.EventDriftDetected)
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
	a.forgetEvent(v1alpha1.EventDriftDetected)
	a.drift.found = nil
}

// driftWaits keeps a drifted node's phase while the restart that repairs it waits at g (a gate,
// or the Lease another node holds).
func (a *Agent) driftWaits(g *gate) {
	if g.phase != v1alpha1.NodePending {
		return
	}
	switch {
	case a.drift.restart != "":
		g.phase = v1alpha1.NodeDrifted
		g.message = fmt.Sprintf("%s; the restart waits: %s", a.drift.restart, g.message)
	case a.drift.found != nil:
		g.phase = v1alpha1.NodeDrifted
		g.message = fmt.Sprintf("the node's files differ from the revision it applied: %s; the restart that restores them waits: %s", a.drift.found.Message(), g.message)
	}
}

// reportDriftRestart reports the drift that the rollout about to begin repairs, once it holds the
// Lease (while another node holds it, driftWaits says so instead).
func (a *Agent) reportDriftRestart(ctx context.Context) {
	if a.drift.restart != "" {
		_ = a.report(ctx, v1alpha1.NodeDrifted, a.drift.restart)
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
