package agent

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	"github.com/kaudit/kaudit/internal/attribution"
	"github.com/kaudit/kaudit/internal/auditwatch"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/relevance"
	"github.com/kaudit/kaudit/internal/staticpod"
)

// DefaultMetricsPort is the agent's metrics port on the node (the DaemonSet runs on the host
// network): no control-plane component, kubelet or kube-proxy listens on it (see
// docs/metrics.md).
const DefaultMetricsPort = 10366

// revisionsFile in the state directory is the history of the revisions in force on the node,
// which the audit log's events are credited to.
const revisionsFile = "audit-log-revisions.json"

// maxInForce bounds the history kept: the attribution keeps the counts of its latest revisions
// only (attribution.DefaultKeepRevisions), and a rollback puts a revision in it twice.
const maxInForce = attribution.DefaultKeepRevisions + 2

// startPoll is how often the agent looks for the start of the apiserver of a new revision.
const startPoll = 5 * time.Second

// startFallback is how long the agent waits for the mirror pod to show the start of the
// apiserver of a new revision before it takes the time the manifest changed instead.
const startFallback = 2 * time.Minute

// AuditLogOptions configure an AuditLog.
type AuditLogOptions struct {
	Files *NodeFiles
	// MirrorPod gets the kube-apiserver mirror pod of this node, whose container's start time
	// says from when a revision was in force.
	MirrorPod func(ctx context.Context) (*corev1.Pod, error)
	Clock     clock.Clock
	// Retry is how often a log that cannot be followed is looked for again, and the manifest
	// read for a changed --audit-log-path; 0 means a minute.
	Retry time.Duration
	// PollInterval and CommitInterval are the watcher's (see auditwatch.Options).
	PollInterval, CommitInterval time.Duration
}

// AuditLog follows the node's kube-apiserver audit log and counts its events by the revision,
// module and rule that decided them (package auditwatch), for the agent's metrics. The log is
// the manifest's --audit-log-path; its checkpoint and the history of the revisions in force
// live in the state directory (see docs/design.md, "Node paths and files"). The agent pauses it
// during a rollout and hands it the new revision once the new apiserver is healthy, so that
// events written before a restart are credited to the revision that wrote them. It is a
// prometheus.Collector; without a log to follow it still works and says why.
type AuditLog struct {
	files     *NodeFiles
	mirrorPod func(ctx context.Context) (*corev1.Pod, error)
	clock     clock.Clock
	retry     time.Duration
	watch     auditwatch.Options

	mu            sync.Mutex
	watcher       *auditwatch.Watcher
	history       []inForce
	historyLoaded bool
	// paused is set from start until the first pass of the agent, and during a rollout.
	paused bool
	// unfollowed says why no log is followed, "" while one is.
	unfollowed string
	// waitingSince is when the agent started waiting for the start time of a new revision.
	waitingSince time.Time
}

// inForce is a revision that the node's apiserver ran from a time on.
type inForce struct {
	Revision int64 `json:"revision"`
	// Annotation is the manifest's policy-hash annotation of that apiserver.
	Annotation string    `json:"annotation"`
	Started    time.Time `json:"started"`
	Policy     string    `json:"policy"`
}

// NewAuditLog returns an AuditLog with o's defaults filled in; Run follows the log.
func NewAuditLog(o AuditLogOptions) *AuditLog {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.Retry <= 0 {
		o.Retry = time.Minute
	}
	return &AuditLog{
		files:     o.Files,
		mirrorPod: o.MirrorPod,
		clock:     o.Clock,
		retry:     o.Retry,
		watch: auditwatch.Options{
			PollInterval:   o.PollInterval,
			CommitInterval: o.CommitInterval,
			Clock:          o.Clock,
			Attribution:    attribution.Options{Categories: relevance.Categories},
		},
		paused:     true,
		unfollowed: "not started",
	}
}

// Run follows the log until ctx is done. While the log cannot be followed (no --audit-log-path,
// "-", a directory not mounted into the agent, a checkpoint that cannot be read) it says why,
// in the log and in kaudit_audit_log_followed, and looks again every Retry; it follows the log
// anew when the manifest names another path. Its files in the state directory rely on the
// agent's lock there: call it while the agent holds the lock (Agent.Run does).
func (l *AuditLog) Run(ctx context.Context) {
	log := logr.FromContextOrDiscard(ctx).WithName("auditlog")
	l.loadHistory(log)
	lastReason := ""
	for ctx.Err() == nil {
		file, err := l.logPath()
		var w *auditwatch.Watcher
		if err == nil {
			w, err = l.open(file, log)
		}
		if err != nil {
			l.setUnfollowed(err.Error())
			if err.Error() != lastReason {
				log.Info("not following the audit log; the agent works without its metrics and looks again", "reason", err.Error(), "every", l.retry)
				lastReason = err.Error()
			}
			select {
			case <-ctx.Done():
			case <-l.clock.After(l.retry):
			}
			continue
		}
		lastReason = ""
		log.Info("following the audit log", "path", file)
		wctx, cancel := context.WithCancel(ctx)
		go l.cancelOnNewPath(wctx, cancel, file, log)
		if err := w.Run(wctx); err != nil {
			log.Error(err, "saving the audit log checkpoint at exit failed")
		}
		cancel()
		l.mu.Lock()
		l.watcher = nil
		l.mu.Unlock()
	}
}

// cancelOnNewPath cancels when the manifest names another audit log path than file. A manifest
// it cannot read or work with (mid-replace, a kubeadm upgrade) changes nothing: the log being
// followed stays followed.
func (l *AuditLog) cancelOnNewPath(ctx context.Context, cancel context.CancelFunc, file string, log logr.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.clock.After(l.retry):
		}
		if now, err := l.logPath(); err == nil && now != file {
			log.Info("the manifest's audit log changed; following it anew", "was", file, "now", now)
			cancel()
			return
		}
	}
}

// logPath is the host path of the log the manifest's kube-apiserver writes, once its directory
// is seen by the agent.
func (l *AuditLog) logPath() (string, error) {
	manifest, err := l.files.ReadManifest()
	if err != nil {
		return "", err
	}
	_, host, err := staticpod.AuditLogPathInManifest(manifest)
	if err != nil {
		return "", fmt.Errorf("%s: %w", l.files.Paths.Manifest, err)
	}
	if fi, err := l.files.FS.Stat(l.files.Paths.local(path.Dir(host))); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("the audit log's directory %s is not mounted into the agent pod: add a read-only hostPath directory mount for it", path.Dir(host))
	}
	return host, nil
}

// open makes the watcher of file, with the history and the pause as they are.
func (l *AuditLog) open(file string, log logr.Logger) (*auditwatch.Watcher, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	opts := l.watch
	opts.Log = log
	opts.Follow.Path = l.files.Paths.local(file)
	opts.Follow.CheckpointDir = l.files.Paths.local(l.files.Paths.StateDir)
	w, err := auditwatch.New(opts, l.revisions(log))
	if err != nil {
		return nil, fmt.Errorf("following %s: %w", file, err)
	}
	if l.paused {
		w.Pause()
	}
	l.watcher, l.unfollowed = w, ""
	return w, nil
}

func (l *AuditLog) setUnfollowed(reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unfollowed = reason
}

// pause stops counting before a rollout changes what the apiserver runs; sync resumes.
func (l *AuditLog) pause() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.paused = true
	if l.watcher != nil {
		l.watcher.Pause()
	}
}

// sync records the revision the node runs, when it is a new one, and resumes counting; it
// stays paused while a rollout is unfinished, or until the new apiserver's start is known. It
// returns false while it waits for that start: the mirror pod shows it seconds after the
// apiserver is ready (see docs/design.md, "Restart and rollback").
func (l *AuditLog) sync(ctx context.Context) (settled bool) {
	if l == nil {
		return true
	}
	log := logr.FromContextOrDiscard(ctx).WithName("auditlog")
	if j, err := l.files.LoadJournal(); err != nil || j != nil {
		return true
	}
	if !l.record(ctx, log) {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.paused && l.watcher != nil {
		l.watcher.Resume()
	}
	l.paused = false
	return true
}

// record adds the revision in the node's state to the history when the apiserver running it
// is not there yet: from when its container started, as the mirror pod shows. It returns false
// while that start is not known yet.
func (l *AuditLog) record(ctx context.Context, log logr.Logger) bool {
	st, err := l.files.LoadState()
	if err != nil || st.Revision == 0 || st.Annotation == "" {
		return true
	}
	l.loadHistory(log)
	l.mu.Lock()
	// The revision too: a new revision with the same policy is adopted without a restart.
	last := len(l.history) - 1
	known := last >= 0 && l.history[last].Annotation == st.Annotation && l.history[last].Revision == st.Revision
	l.mu.Unlock()
	if known {
		return true
	}
	started, err := l.apiserverStarted(ctx, st.Annotation)
	if err != nil {
		now := l.clock.Now()
		if l.waitingSince.IsZero() {
			l.waitingSince = now
		}
		if now.Sub(l.waitingSince) < startFallback {
			log.V(1).Info("waiting for the start of the apiserver of the revision in force", "revision", st.Revision, "err", err)
			return false
		}
		log.Info("the start of the apiserver of the revision in force is not known; counting its events from the change of the manifest",
			"revision", st.Revision, "changed", st.LastRestartTime, "err", err)
		started = st.LastRestartTime
	}
	l.waitingSince = time.Time{}
	inForcePolicy, err := l.policy(st)
	if err != nil {
		log.Info("cannot read the policy in force; its events are counted with the revision before it", "revision", st.Revision, "err", err)
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.history = appendInForce(l.history, inForce{Revision: st.Revision, Annotation: st.Annotation, Started: started.UTC(), Policy: string(inForcePolicy)})
	if err := l.files.writeJSON(revisionsFile, l.history); err != nil {
		log.Info("cannot save the history of revisions in force; the next agent counts from the revision it finds", "err", err)
	}
	if l.watcher != nil {
		if err := l.watcher.SetRevisions(l.revisions(log)); err != nil {
			log.Error(err, "the revision in force cannot be counted", "revision", st.Revision)
		}
	}
	return true
}

// appendInForce appends e to history and keeps the last maxInForce. Earlier entries of the same
// revision take e's policy: a revision stands for one policy in the counts, and the agent
// rewrites a file whose comments alone differ (module names) without a restart.
func appendInForce(history []inForce, e inForce) []inForce {
	for i := range history {
		if history[i].Revision == e.Revision {
			history[i].Policy = e.Policy
		}
	}
	history = append(history, e)
	return slices.Clone(history[max(0, len(history)-maxInForce):])
}

// apiserverStarted is when the running kube-apiserver container started, provided its mirror
// pod carries annotation: it runs the revision recorded with it.
func (l *AuditLog) apiserverStarted(ctx context.Context, annotation string) (time.Time, error) {
	if l.mirrorPod == nil {
		return time.Time{}, errors.New("no mirror pod to read")
	}
	pod, err := l.mirrorPod(ctx)
	if err != nil {
		return time.Time{}, err
	}
	if got := pod.Annotations[staticpod.AnnotationPolicyHash]; got != annotation {
		return time.Time{}, fmt.Errorf("mirror pod %s/%s has %s=%q, the node runs %q", pod.Namespace, pod.Name, staticpod.AnnotationPolicyHash, got, annotation)
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == staticpod.APIServerContainer && cs.State.Running != nil {
			return cs.State.Running.StartedAt.Time, nil
		}
	}
	return time.Time{}, fmt.Errorf("mirror pod %s/%s: container %s is not running", pod.Namespace, pod.Name, staticpod.APIServerContainer)
}

// policy is the policy of the revision the node runs (st's), as the agent applied it: the
// node's file may have drifted from it (see docs/design.md, "Drift"). A node whose revision an
// older agent applied has no record of it: then the file the manifest's kube-apiserver loads,
// provided its rules are the revision's.
func (l *AuditLog) policy(st State) ([]byte, error) {
	if r, err := l.files.loadApplied(st); err != nil {
		return nil, err
	} else if r != nil {
		return []byte(r.Policy), nil
	}
	manifest, err := l.files.ReadManifest()
	if err != nil {
		return nil, err
	}
	_, host, err := staticpod.PolicyFileInManifest(manifest)
	if err != nil {
		return nil, err
	}
	b, err := l.files.FS.ReadFile(l.files.Paths.local(host))
	if err != nil {
		return nil, err
	}
	if h, err := policy.HashOf(b); err != nil || h != st.Hash {
		return nil, fmt.Errorf("%s is not revision %d's policy (drifted), and no record of that policy was kept", host, st.Revision)
	}
	return b, nil
}

// revisions is the history as the watcher takes it; called with l.mu held.
func (l *AuditLog) revisions(log logr.Logger) []attribution.Revision {
	out := make([]attribution.Revision, 0, len(l.history))
	for _, h := range l.history {
		out = append(out, attribution.Revision{Number: h.Revision, Policy: []byte(h.Policy), Started: h.Started})
	}
	// A policy the evaluator refuses cannot be counted; the rest can.
	if err := attribution.New(attribution.Options{}).SetRevisions(out); err != nil {
		log.Error(err, "a revision of the history cannot be counted; dropping it")
		out = slices.DeleteFunc(out, func(r attribution.Revision) bool {
			return attribution.New(attribution.Options{}).SetRevisions([]attribution.Revision{r}) != nil
		})
	}
	return out
}

// loadHistory reads the history saved by an earlier agent, once.
func (l *AuditLog) loadHistory(log logr.Logger) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.historyLoaded {
		return
	}
	l.historyLoaded = true
	var h []inForce
	ok, err := l.files.readJSON(revisionsFile, &h)
	if ok {
		l.history = h
	}
	if err != nil {
		log.Info("the history of revisions in force cannot be read; starting a new one", "file", l.files.inStateDir(revisionsFile), "err", err)
	}
}

var followedDesc = prometheus.NewDesc("kaudit_audit_log_followed",
	"1 while the agent follows its node's kube-apiserver audit log, 0 when it cannot (no --audit-log-path, \"-\", its directory not mounted into the agent; the agent's log says why): the kaudit_audit_* metrics are then absent.",
	nil, nil)

// Describe implements prometheus.Collector. It describes nothing, which makes the AuditLog an
// unchecked collector: the watcher's metrics come and go with the log.
func (l *AuditLog) Describe(chan<- *prometheus.Desc) {}

// Collect implements prometheus.Collector.
func (l *AuditLog) Collect(ch chan<- prometheus.Metric) {
	l.mu.Lock()
	w, followed := l.watcher, 0.0
	if l.unfollowed == "" {
		followed = 1
	}
	l.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(followedDesc, prometheus.GaugeValue, followed)
	if w != nil {
		w.Collect(ch)
	}
}
