package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/revision"
	"github.com/kaudit/kaudit/internal/staticpod"
)

// Recorder records Kubernetes events (client-go's record.EventRecorder).
type Recorder interface {
	Event(object runtime.Object, eventtype, reason, message string)
}

// Options configure an Agent.
type Options struct {
	// NodeName is this node's name (the downward API's spec.nodeName).
	NodeName string
	// Namespace holds the revisions and the Lease; "" means DefaultNamespace.
	Namespace string
	Client    client.WithWatch
	// Rollout does the node's side; New sets its Progress.
	Rollout *Rollout
	Lease   *Lease
	Status  *StatusWriter
	// Recorder may be nil.
	Recorder Recorder
	// AuditLog, when set, follows the node's audit log; the agent pauses it during rollouts.
	AuditLog *AuditLog
	Clock    clock.Clock
	// Resync is the period of a pass without any change (0: a minute); Retry the delay after
	// an error or while another node holds the lease (0: 10 s).
	Resync time.Duration
	Retry  time.Duration
	// KubeletStatusDelay is how long kubelet may take to show a restart of kube-apiserver in
	// its mirror pod; 0 means DefaultKubeletStatusDelay.
	KubeletStatusDelay time.Duration
}

// Agent brings its node to the singleton's desired revision, one node of the cluster at a time.
// It is level-triggered: every pass reads the singleton and the node's files and does the next
// thing, so a pass after any restart of the agent picks up where the last one stopped. It logs
// to the logr.Logger in the context.
type Agent struct {
	nodeName  string
	namespace string
	client    client.WithWatch
	rollout   *Rollout
	lease     *Lease
	status    *StatusWriter
	recorder  Recorder
	auditLog  *AuditLog
	clock     clock.Clock
	resync    time.Duration
	retry     time.Duration

	wake      chan struct{}
	lastEvent string
	// lastRepeating is the last message of each of repeatingEvents.
	lastRepeating map[string]string
	drift         driftState
}

// New returns an Agent with o's defaults filled in. It sets o.Rollout.Progress to report each
// phase of a rollout in the node's status entry as it happens.
func New(o Options) *Agent {
	a := &Agent{
		nodeName:      o.NodeName,
		namespace:     o.Namespace,
		client:        o.Client,
		rollout:       o.Rollout,
		lease:         o.Lease,
		status:        o.Status,
		recorder:      o.Recorder,
		auditLog:      o.AuditLog,
		clock:         o.Clock,
		resync:        o.Resync,
		retry:         o.Retry,
		wake:          make(chan struct{}, 1),
		lastRepeating: map[string]string{},
		drift:         driftState{metrics: newDriftMetrics(), statusDelay: o.KubeletStatusDelay},
	}
	if a.drift.statusDelay <= 0 {
		a.drift.statusDelay = DefaultKubeletStatusDelay
	}
	if a.resync <= 0 {
		a.resync = time.Minute
	}
	if a.retry <= 0 {
		a.retry = 10 * time.Second
	}
	if a.namespace == "" {
		a.namespace = DefaultNamespace
	}
	a.rollout.Progress = func(ctx context.Context, phase v1alpha1.NodePhase, msg string) {
		_ = a.report(ctx, phase, msg)
	}
	return a
}

// Run passes until ctx is done, after each change of the singleton and at least every Resync.
// It first takes the node's state directory lock and holds it until it returns, waiting while
// another agent on the node holds it (see NodeFiles.LockStateDir).
func (a *Agent) Run(ctx context.Context) error {
	lock, err := a.rollout.Files.LockStateDir(ctx, a.clock, func(lock, holder string) {
		logr.FromContextOrDiscard(ctx).Info("another kaudit agent runs on this node; waiting for it to exit", "lock", lock, "holder", holder)
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer func() { _ = lock.Unlock() }()
	go a.watch(ctx)
	go a.watchFiles(ctx)
	if a.auditLog != nil {
		done := make(chan struct{})
		defer func() { <-done }() // its checkpoint is saved under the lock
		go func() { defer close(done); a.auditLog.Run(ctx) }()
	}
	for {
		next := a.Pass(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if !a.auditLog.sync(ctx) {
			next = min(next, startPoll)
		}
		if next <= 0 {
			continue
		}
		t := a.clock.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-a.wake:
			t.Stop()
		case <-t.C():
		}
	}
}

func (a *Agent) kick() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// watch kicks a pass on every change of the singleton (its status included: another node
// finishing its rollout is a reason to try for the lease).
func (a *Agent) watch(ctx context.Context) {
	for ctx.Err() == nil {
		w, err := a.client.Watch(ctx, &v1alpha1.AuditPolicyList{}, client.MatchingFields{"metadata.name": v1alpha1.SingletonName})
		if err == nil {
			for range w.ResultChan() {
				a.kick()
			}
			w.Stop()
		} else {
			logr.FromContextOrDiscard(ctx).V(1).Info("watching the AuditPolicy failed", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-a.clock.After(time.Second):
		}
	}
}

// Pass does the next step towards the desired revision and returns when to pass again (0: at
// once). The steps: finish an unfinished rollout; find the next target (nextTarget), repairing
// drift of the node's files from the revision it applied on the way (checkDrift); check that
// the node may restart now (restartGate), and while a newer target waits there, check the
// files against the revision the node runs (checkAppliedDrift); roll out under the Lease
// (rollOut).
func (a *Agent) Pass(ctx context.Context) time.Duration {
	ap := &v1alpha1.AuditPolicy{}
	getErr := a.client.Get(ctx, client.ObjectKey{Name: v1alpha1.SingletonName}, ap)
	timeout := v1alpha1.DefaultHealthTimeout
	if getErr == nil {
		timeout = ap.Spec.Rollout.HealthTimeoutOrDefault()
	}

	// An unfinished rollout comes first, even while the API is unreachable: with a single
	// control plane, our own restart is why it is unreachable.
	if j, err := a.rollout.Files.LoadJournal(); err != nil {
		_ = a.report(ctx, v1alpha1.NodeFailed, err.Error())
		return a.retry
	} else if j != nil {
		if j.HealthTimeout > 0 {
			timeout = j.HealthTimeout
		}
		return a.resume(ctx, ap, getErr == nil, timeout)
	}
	if apierrors.IsNotFound(getErr) {
		return a.resync
	}
	if getErr != nil {
		logr.FromContextOrDiscard(ctx).Info("cannot read the AuditPolicy", "err", getErr)
		return a.retry
	}
	target, next := a.nextTarget(ctx, ap, timeout)
	if target == nil {
		return next
	}
	g, err := a.restartGate(ap, *target)
	if err != nil {
		a.fail(ctx, ap, err.Error())
		return a.retry
	}
	if g == nil || !g.halted {
		a.forgetEvent(v1alpha1.ReasonRolloutHalted)
	}
	if g != nil && g.phase == v1alpha1.NodePending {
		if next, handled := a.checkAppliedDrift(ctx, ap, *target); handled {
			return min(max(next, a.retry), g.wait)
		}
	} else if st, err := a.rollout.Files.LoadState(); err == nil && !a.rollout.Files.runs(st, *target) {
		// The rollout of target writes every file anew, or its failure is what the node reports.
		a.driftForget()
	}
	if g != nil {
		a.driftWaits(g)
		return a.waitAt(ctx, ap, *g)
	}
	return a.rollOut(ctx, ap, *target, timeout)
}

// nextTarget is the revision this node should roll out, with timeout as its health timeout. It
// is nil, with when to pass again, while the manager has chosen no revision, when the revision
// cannot be read or must never be written, when the node's files drifted and were restored
// without a restart (checkDrift), and when the node already runs it (then the node adopts it:
// see NodeFiles.Adopt), unless kube-apiserver may run a drifted policy file that has been
// restored since (checkDrift's restart): then the rollout restarts it on the restored one.
func (a *Agent) nextTarget(ctx context.Context, ap *v1alpha1.AuditPolicy, timeout time.Duration) (*Target, time.Duration) {
	if ap.Status.DesiredRevision == nil {
		return nil, a.reportThen(ctx, v1alpha1.NodePending, "waiting for the manager to choose a revision", a.resync)
	}
	target, err := a.readTarget(ctx, ap)
	var bad *badRevisionError
	if errors.As(err, &bad) {
		a.fail(ctx, ap, err.Error())
		return nil, a.resync
	}
	if err != nil {
		_ = a.report(ctx, v1alpha1.NodePending, err.Error())
		return nil, a.retry
	}
	target.HealthTimeout = timeout
	next, handled, restart := a.checkDrift(ctx, ap, target)
	if handled {
		return nil, next
	}
	if restart {
		return &target, 0
	}
	files := a.rollout.Files
	up, err := files.UpToDate(target)
	if err != nil {
		a.fail(ctx, ap, fmt.Sprintf("revision %d: %v", target.Revision, err))
		var layout *layoutError
		if errors.As(err, &layout) {
			return nil, a.resync
		}
		return nil, a.retry
	}
	if up {
		if err := files.Adopt(target); err != nil {
			a.fail(ctx, ap, fmt.Sprintf("revision %d: %v", target.Revision, err))
			return nil, a.retry
		}
		// No journal, so no rollout of ours is under way: if the agent stopped between the end of
		// one and settle, the Lease it still holds is handed on now, not when it expires.
		if err := a.lease.ReleaseAfter(ctx, ap.Spec.Rollout.MinReadyTimeOrDefault()); err != nil {
			logr.FromContextOrDiscard(ctx).Info("cannot hand the rollout lease on; it expires on its own", "err", err)
		}
		return nil, a.reportThen(ctx, v1alpha1.NodeApplied, fmt.Sprintf("revision %d applied", target.Revision), a.resync)
	}
	return &target, 0
}

// gate holds back a restart: when to pass again, and what the node reports meanwhile.
type gate struct {
	wait    time.Duration
	phase   v1alpha1.NodePhase
	message string
	// halted says that another node's failure halts the rollout, which is also an event.
	halted bool
	// retryUnreported makes the next pass come after Retry instead of wait when the report
	// fails (see reportThen).
	retryUnreported bool
}

// restartGate says whether this node may restart its apiserver for target now: nil when it
// may, otherwise why not. The checks, in order: a failure of this node recorded for target
// under the current spec generation (not retried until the revision or the spec changes),
// another node's failure (which halts the rollout), a kubeadm upgrade in progress on the node,
// and rollout.minRestartInterval since this node's last restart.
func (a *Agent) restartGate(ap *v1alpha1.AuditPolicy, target Target) (*gate, error) {
	st, err := a.rollout.Files.LoadState()
	if err != nil {
		return nil, err
	}
	if st.Failed != nil && st.Failed.Key == target.Key() && st.Failed.Generation >= ap.Generation {
		phase := v1alpha1.NodeFailed
		if st.Failed.RolledBack {
			phase = v1alpha1.NodeRolledBack
		}
		return &gate{wait: a.resync, phase: phase, message: st.Failed.Message, retryUnreported: true}, nil
	}
	if other, msg := a.haltedBy(ap); other != "" {
		m := fmt.Sprintf("revision %d waits: the rollout is halted because node %s failed: %s", target.Revision, other, msg)
		return &gate{wait: a.resync, phase: v1alpha1.NodePending, message: m, halted: true, retryUnreported: true}, nil
	}
	if dir, err := a.rollout.Files.KubeadmUpgrade(); err != nil {
		return nil, err
	} else if dir != "" {
		m := fmt.Sprintf("revision %d waits: a kubeadm upgrade is in progress on this node (%s exists); kubeadm removes that directory when the upgrade succeeds, "+
			"and keeps it after a failed one: then remove it once no upgrade runs", target.Revision, dir)
		return &gate{wait: a.retry, phase: v1alpha1.NodePending, message: m}, nil
	}
	if interval := ap.Spec.Rollout.MinRestartIntervalOrDefault(); interval > 0 && !st.LastRestartTime.IsZero() {
		if wait := st.LastRestartTime.Add(interval).Sub(a.clock.Now()); wait > 0 {
			m := fmt.Sprintf("revision %d waits %s: rollout.minRestartInterval is %s", target.Revision, wait.Round(time.Second), interval)
			return &gate{wait: wait, phase: v1alpha1.NodePending, message: m}, nil
		}
	}
	return nil, nil
}

// waitAt reports why g holds the restart back and returns when to pass again.
func (a *Agent) waitAt(ctx context.Context, ap *v1alpha1.AuditPolicy, g gate) time.Duration {
	if g.halted {
		a.event(ap, corev1.EventTypeWarning, v1alpha1.ReasonRolloutHalted, g.message)
	}
	if g.retryUnreported {
		return a.reportThen(ctx, g.phase, g.message, g.wait)
	}
	_ = a.report(ctx, g.phase, g.message)
	return g.wait
}

// rollOut rolls this node out to target while it holds the rollout Lease, and returns when to
// pass again. When another node holds the Lease, it reports that it waits for it.
func (a *Agent) rollOut(ctx context.Context, ap *v1alpha1.AuditPolicy, target Target, timeout time.Duration) time.Duration {
	duration := LeaseDuration(timeout)
	ok, busy, err := a.lease.tryAcquire(ctx, duration)
	if err != nil {
		logr.FromContextOrDiscard(ctx).Info("cannot take the rollout lease", "err", err)
		return a.retry
	}
	if !ok {
		g := gate{phase: v1alpha1.NodePending, message: fmt.Sprintf("revision %d waits for node %s to finish its rollout and rollout.minReadyTime after it", target.Revision, busy.holder)}
		a.driftWaits(&g)
		_ = a.report(ctx, g.phase, g.message)
		// Try again when the lease expires, which after a successful rollout is minReadyTime
		// from when this agent read it (see settle and Lease.expiresAt), or after Retry if sooner.
		if until := busy.expires.Sub(a.clock.Now()); !busy.expires.IsZero() && until < a.retry {
			return max(until, 0)
		}
		return a.retry
	}
	// The lease is kept when a rollout is interrupted (the agent stops while kubelet restarts
	// the apiserver): the next agent on this node takes it back as the same holder and finishes.
	keep := false
	defer func() {
		if !keep {
			a.release(ctx)
		}
	}()
	var next time.Duration
	next, keep = a.applyHoldingLease(ctx, ap, target, timeout, duration)
	return next
}

// applyHoldingLease checks the singleton again, then applies target while it renews the Lease
// and reports how the rollout ended. It returns when to pass again and whether to keep the
// Lease rather than release it.
func (a *Agent) applyHoldingLease(ctx context.Context, ap *v1alpha1.AuditPolicy, target Target, timeout, duration time.Duration) (next time.Duration, keepLease bool) {
	// Read again now that we hold the lease: while we waited, the desired revision may have
	// moved on (coalescing), or the previous holder may have failed (it reports before it
	// releases the lease).
	latest := &v1alpha1.AuditPolicy{}
	if err := a.client.Get(ctx, client.ObjectKey{Name: v1alpha1.SingletonName}, latest); err != nil {
		return a.retry, false
	}
	if ptr.Deref(latest.Status.DesiredRevision, 0) != *ap.Status.DesiredRevision || latest.Generation != ap.Generation {
		return 0, false
	}
	if other, _ := a.haltedBy(latest); other != "" {
		return 0, false
	}
	stopRenew := a.renew(ctx, duration)
	a.reportDriftRestart(ctx)
	a.event(ap, corev1.EventTypeNormal, v1alpha1.EventRolloutStarted, fmt.Sprintf("node %s: rolling out revision %d", a.nodeName, target.Revision))
	// Until the new apiserver's start is known (Run's sync), its events would be credited to the
	// old revision.
	a.auditLog.pause()
	res, err := a.rollout.Apply(ctx, target, timeout)
	stopRenew()
	if err != nil {
		logr.FromContextOrDiscard(ctx).Info("rollout interrupted; the next start of the agent finishes it", "revision", target.Revision, "err", err)
		return 0, true
	}
	keepLease = res.Phase == v1alpha1.NodeApplied && a.settle(ctx, latest, res)
	if !a.finish(ctx, ap, target.Revision, res) {
		logr.FromContextOrDiscard(ctx).Info("keeping the rollout lease until it expires: the failure could not be reported, and the next node must not roll out the same revision", "revision", target.Revision)
		return a.retry, true
	}
	// A rollback settles once its failure is visible; until then the Lease stays ours.
	if res.Phase == v1alpha1.NodeRolledBack {
		keepLease = a.settle(ctx, latest, res)
	}
	if res.Phase == v1alpha1.NodeFailed && !res.Restarted {
		return a.retry, keepLease
	}
	return 0, keepLease
}

// settle hands the Lease on after a rollout or a rollback that restarted the node's apiserver
// and found it ready: it keeps the Lease for rollout.minReadyTime more (ap's, or the default without ap),
// so that the next node restarts only once load balancers and clients have seen this one
// healthy, and returns true. It does so before the node reports Applied: the report wakes the
// other agents, which then wait for exactly the rest of minReadyTime (see rollOut); after a
// rollback, only once the failure is reported. Any other outcome returns false and leaves the
// Lease to the caller.
func (a *Agent) settle(ctx context.Context, ap *v1alpha1.AuditPolicy, res Result) bool {
	// A rollback restarted the apiserver too, twice: it settles as long.
	if !res.Restarted || res.Phase != v1alpha1.NodeApplied && res.Phase != v1alpha1.NodeRolledBack {
		return false
	}
	d := v1alpha1.DefaultMinReadyTime
	if ap != nil {
		d = ap.Spec.Rollout.MinReadyTimeOrDefault()
	}
	// Even when ctx is done: a stopping agent should not make the others wait longer.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := a.lease.ReleaseAfter(rctx, d); err != nil {
		logr.FromContextOrDiscard(ctx).Info("cannot hand the rollout lease on; it expires on its own", "err", err)
	}
	return true
}

func (a *Agent) resume(ctx context.Context, ap *v1alpha1.AuditPolicy, haveAP bool, timeout time.Duration) time.Duration {
	duration := LeaseDuration(timeout)
	// Best effort: the manifest may already have changed, so the rollout goes on regardless.
	if ok, holder, err := a.lease.TryAcquire(ctx, duration); err == nil && !ok {
		logr.FromContextOrDiscard(ctx).Info("finishing an interrupted rollout while another node holds the lease", "holder", holder)
	}
	stopRenew := a.renew(ctx, duration)
	a.auditLog.pause()
	res, err := a.rollout.Resume(ctx, timeout)
	stopRenew()
	if err != nil {
		// Interrupted (ctx done): keep the lease for the next start. Otherwise release it once
		// the failure is visible, so that no other node goes ahead unaware.
		if a.reportWithRetry(ctx, v1alpha1.NodeFailed, err.Error()) && ctx.Err() == nil {
			a.release(ctx)
		}
		return a.retry
	}
	reported, settled := true, false
	if res != nil {
		logr.FromContextOrDiscard(ctx).Info("recovered an interrupted rollout", "phase", res.Phase, "message", res.Message)
		if !haveAP {
			// Read before the restart failed (our own apiserver was down): read it again for
			// minReadyTime and the events.
			ap = &v1alpha1.AuditPolicy{}
			if err := a.client.Get(ctx, client.ObjectKey{Name: v1alpha1.SingletonName}, ap); err != nil {
				ap = nil // no events without the singleton; the default minReadyTime
			}
		}
		settled = res.Phase == v1alpha1.NodeApplied && a.settle(ctx, ap, *res)
		reported = a.finish(ctx, ap, res.Revision, *res)
		if reported && res.Phase == v1alpha1.NodeRolledBack {
			settled = a.settle(ctx, ap, *res)
		}
	}
	if !reported {
		logr.FromContextOrDiscard(ctx).Info("keeping the rollout lease until it expires: the failure could not be reported")
		return a.retry
	}
	if ctx.Err() == nil && !settled {
		a.release(ctx)
	}
	return 0
}

// finish reports how a rollout ended. It returns false when a failure (Failed, RolledBack)
// could not be reported even after a few retries: the caller then keeps the lease, so that no
// other node rolls out the same revision before the failure is visible.
func (a *Agent) finish(ctx context.Context, ap *v1alpha1.AuditPolicy, rev int64, res Result) bool {
	log := logr.FromContextOrDiscard(ctx).WithValues("revision", rev, "phase", res.Phase)
	log.Info("rollout finished", "message", res.Message, "seconds", res.Duration.Seconds(),
		"healthWaitSeconds", res.HealthWait.Seconds(), "overheadSeconds", (res.Duration - res.HealthWait).Seconds())
	reported := true
	if terminalFailure(res.Phase) {
		reported = a.reportWithRetry(ctx, res.Phase, res.Message)
	} else {
		_ = a.report(ctx, res.Phase, res.Message)
	}
	switch res.Phase {
	case v1alpha1.NodeApplied:
		a.event(ap, corev1.EventTypeNormal, v1alpha1.EventNodeUpdated, fmt.Sprintf("node %s: %s in %s", a.nodeName, res.Message, res.Duration.Round(time.Second)))
	case v1alpha1.NodeRolledBack:
		a.event(ap, corev1.EventTypeWarning, v1alpha1.EventRolledBack, fmt.Sprintf("node %s: %s", a.nodeName, res.Message))
	case v1alpha1.NodePending:
		a.event(ap, corev1.EventTypeNormal, v1alpha1.EventRolloutRecovered, fmt.Sprintf("node %s: %s", a.nodeName, res.Message))
	default:
		a.event(ap, corev1.EventTypeWarning, v1alpha1.EventRolloutFailed, fmt.Sprintf("node %s: %s", a.nodeName, res.Message))
	}
	return reported
}

func terminalFailure(p v1alpha1.NodePhase) bool {
	return p == v1alpha1.NodeFailed || p == v1alpha1.NodeRolledBack
}

// terminalReportAttempts bounds reportWithRetry: attempts are a.retry apart, well inside the
// lease's duration.
const terminalReportAttempts = 5

func (a *Agent) reportWithRetry(ctx context.Context, phase v1alpha1.NodePhase, msg string) bool {
	for i := 1; ; i++ {
		err := a.report(ctx, phase, msg)
		if err == nil {
			return true
		}
		if i == terminalReportAttempts || ctx.Err() != nil {
			logr.FromContextOrDiscard(ctx).Info("cannot report the rollout's failure", "attempts", i, "err", err)
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-a.clock.After(a.retry):
		}
	}
}

// badRevisionError is a revision the agent must never write: its ConfigMap is not one the
// manager made for the desired revision, or the apiserver's loader rejects its policy.
type badRevisionError struct{ msg string }

func (e *badRevisionError) Error() string { return e.msg }

func (a *Agent) fail(ctx context.Context, ap *v1alpha1.AuditPolicy, msg string) {
	_ = a.report(ctx, v1alpha1.NodeFailed, msg)
	a.event(ap, corev1.EventTypeWarning, v1alpha1.EventRolloutFailed, fmt.Sprintf("node %s: %s", a.nodeName, msg))
}

// readTarget reads the desired revision and the managed flags, and verifies the revision. The
// agent rolls out only what the manager recorded in the singleton's status, where only the
// manager may write: the number in status.desiredRevision and the hash in
// status.desiredPolicyHash. Anyone who can create ConfigMaps in the namespace could otherwise
// have a policy of their own written on every control-plane node. A ConfigMap that is not the
// revision the manager made (labelled with another number, mutable, or holding a policy of
// another hash) is refused as a badRevisionError; the manager not having written the hash yet
// is only a wait.
func (a *Agent) readTarget(ctx context.Context, ap *v1alpha1.AuditPolicy) (Target, error) {
	n := *ap.Status.DesiredRevision
	want := ap.Status.DesiredPolicyHash
	if want == "" {
		return Target{}, fmt.Errorf("revision %d: waiting for the manager to record its policy hash in status.desiredPolicyHash", n)
	}
	name := a.namespace + "/" + revision.Name(n)
	cm := &corev1.ConfigMap{}
	if err := a.client.Get(ctx, client.ObjectKey{Namespace: a.namespace, Name: revision.Name(n)}, cm); err != nil {
		return Target{}, fmt.Errorf("revision %d: reading ConfigMap %s: %w", n, name, err)
	}
	bad := func(format string, args ...any) error {
		return &badRevisionError{fmt.Sprintf("revision %d: ConfigMap %s: %s; not written", n, name, fmt.Sprintf(format, args...))}
	}
	if cm.Immutable == nil || !*cm.Immutable {
		return Target{}, bad("not immutable, while the manager makes every revision immutable")
	}
	rev, err := revision.FromConfigMap(cm)
	if err != nil {
		return Target{}, &badRevisionError{fmt.Sprintf("revision %d: %v; not written", n, err)}
	}
	if rev.Number != n {
		return Target{}, bad("label %s=%d, but revision %d's ConfigMap is named %s", revision.LabelRevision, rev.Number, rev.Number, revision.Name(rev.Number))
	}
	// The bytes must be what the manager hashed: never write a policy that differs from its
	// revision (a hand-edited, corrupted or forged ConfigMap).
	got, err := policy.HashOf(rev.Policy)
	if err != nil {
		return Target{}, bad("policy.yaml: %v", err)
	}
	if got != rev.Hash {
		return Target{}, bad("policy.yaml hashes to %s but annotation %s says %s", got, revision.AnnotationPolicySHA256, rev.Hash)
	}
	if got != want {
		return Target{}, bad("policy.yaml hashes to %s, but the manager recorded %s for revision %d in status.desiredPolicyHash", got, want, n)
	}
	if _, err := policy.Load(rev.Policy); err != nil {
		return Target{}, bad("policy rejected by the apiserver's loader: %v", err)
	}
	t := Target{Revision: rev.Number, Hash: rev.Hash, Policy: rev.Policy, Generation: ap.Generation}
	if ap.Spec.ManageAPIServerFlags {
		l := ap.Spec.AuditLog
		t.Flags = &staticpod.FlagSettings{PolicyFile: a.rollout.Files.Paths.PolicyFile, LogPath: l.PathOrDefault(),
			MaxAge: l.MaxAgeOrDefault(), MaxBackup: l.MaxBackupOrDefault(), MaxSize: l.MaxSizeOrDefault()}
		if d := ap.Spec.ShutdownDelayDuration; d != nil {
			t.Flags.ShutdownDelay = d.Duration.String()
		}
	}
	return t, nil
}

// haltedBy names another node whose rollout failed, with its message: the rollout waits for it
// (that node tries the next desired revision first, since its own failure record is for another
// revision).
func (a *Agent) haltedBy(ap *v1alpha1.AuditPolicy) (node, message string) {
	for _, n := range ap.Status.Nodes {
		if n.Name != a.nodeName && (n.Phase == v1alpha1.NodeFailed || n.Phase == v1alpha1.NodeRolledBack) {
			return n.Name, n.Message
		}
	}
	return "", ""
}

// reportThen reports and returns next, or Retry when the status could not be written: right
// after a restart the apiserver answers on localhost before its Service address works, and a
// node that waits a whole Resync to say it is done holds up the singleton's Available.
func (a *Agent) reportThen(ctx context.Context, phase v1alpha1.NodePhase, msg string, next time.Duration) time.Duration {
	if a.report(ctx, phase, msg) != nil {
		return a.retry
	}
	return next
}

// report writes this node's entry in the singleton's status unless the entry there already
// says the same. It compares with the singleton as it is now, not with the last write, so an
// entry that was dropped (by the manager, or with a recreated singleton) is written again.
func (a *Agent) report(ctx context.Context, phase v1alpha1.NodePhase, msg string) error {
	st, err := a.rollout.Files.LoadState()
	if err != nil {
		logr.FromContextOrDiscard(ctx).Info("cannot read the agent's state", "err", err)
	}
	e := v1alpha1.NodeStatus{Name: a.nodeName, Phase: phase, Message: msg, PolicyHash: st.Hash}
	if st.Revision > 0 {
		e.AppliedRevision = ptr.To(st.Revision)
	}
	if !st.LastRestartTime.IsZero() {
		e.LastRestartTime = &metav1.Time{Time: st.LastRestartTime.Truncate(time.Second)}
	}
	if st.LastRolloutSeconds > 0 {
		e.LastRolloutSeconds = ptr.To(st.LastRolloutSeconds)
	}
	cur := &v1alpha1.AuditPolicy{}
	if err := a.client.Get(ctx, client.ObjectKey{Name: v1alpha1.SingletonName}, cur); err == nil {
		if n := cur.Status.Node(a.nodeName); n != nil && equality.Semantic.DeepEqual(*n, e) {
			return nil
		}
	}
	if err := a.status.Apply(ctx, e); err != nil {
		logr.FromContextOrDiscard(ctx).Info("cannot write the node's status; retrying at the next pass", "err", err)
		return err
	}
	return nil
}

// repeatingEvents are the events that every pass would record again while their cause lasts,
// and that may alternate within one pass (drift whose restart waits behind a halted rollout),
// which the recorder's de-duplication of consecutive events cannot merge: each is recorded
// only when its own message changes, until its cause ends (forgetEvent).
var repeatingEvents = map[string]bool{v1alpha1.EventDriftDetected: true, v1alpha1.ReasonRolloutHalted: true}

func (a *Agent) event(ap *v1alpha1.AuditPolicy, eventType, reason, msg string) {
	if a.recorder == nil || ap == nil || ap.UID == "" || msg == a.lastEvent {
		return
	}
	if repeatingEvents[reason] {
		if a.lastRepeating[reason] == msg {
			return
		}
		a.lastRepeating[reason] = msg
	}
	a.lastEvent = msg
	a.recorder.Event(ap, eventType, reason, msg)
}

// forgetEvent ends the cause of one of repeatingEvents: the next one is recorded whatever its
// message.
func (a *Agent) forgetEvent(reason string) { delete(a.lastRepeating, reason) }

func (a *Agent) release(ctx context.Context) {
	// Release even when ctx is done: a stopping agent should not make the others wait.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := a.lease.Release(rctx); err != nil {
		logr.FromContextOrDiscard(ctx).Info("cannot release the rollout lease; it expires on its own", "err", err)
	}
}

// renew keeps the lease while a rollout runs; with a single control plane it fails while the
// apiserver restarts, which the lease's duration allows for.
func (a *Agent) renew(ctx context.Context, duration time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-a.clock.After(duration / 3):
				if err := a.lease.Renew(ctx, duration); err != nil && ctx.Err() == nil {
					logr.FromContextOrDiscard(ctx).V(1).Info("renewing the rollout lease failed", "err", err)
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}
