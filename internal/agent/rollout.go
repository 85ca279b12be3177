package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/utils/clock"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/staticpod"
)

// Rollout brings one node to a target revision: the file steps of NodeFiles, the health wait, and
// the rollback when the apiserver does not come back.
type Rollout struct {
	Files  *NodeFiles
	Health Health
	Clock  clock.Clock
	// Progress is told each phase change as it happens (status, events); may be nil.
	Progress func(ctx context.Context, phase v1alpha1.NodePhase, message string)
}

// Result is how a rollout ended.
type Result struct {
	Phase v1alpha1.NodePhase
	// Revision and Hash are what the node runs now: the target's after success, the previous
	// ones after a rollback.
	Revision int64
	Hash     string
	Message  string
	// Restarted says whether the manifest was changed (kubelet restarted the apiserver).
	Restarted bool
	// RestartTime is when the manifest was last changed.
	RestartTime time.Time
	// Duration is the whole rollout; HealthWait the part spent waiting for the apiserver.
	Duration   time.Duration
	HealthWait time.Duration
}

func (r *Rollout) progress(ctx context.Context, phase v1alpha1.NodePhase, msg string) {
	if r.Progress != nil {
		r.Progress(ctx, phase, msg)
	}
}

// Apply rolls the node to t. It returns an error only when it was interrupted (ctx done) with
// the rollout unfinished; the journal then lets Resume finish it. Every other outcome, failures
// included, is a Result.
func (r *Rollout) Apply(ctx context.Context, t Target, timeout time.Duration) (Result, error) {
	start := r.Clock.Now()
	if t.HealthTimeout <= 0 {
		t.HealthTimeout = timeout
	}
	j, err := r.Files.Begin(t)
	if err != nil {
		return r.done(start, Result{Phase: v1alpha1.NodeFailed, Message: err.Error()}), nil
	}
	r.progress(ctx, v1alpha1.NodeRollingOut, fmt.Sprintf("revision %d: writing the policy to %s", t.Revision, j.PolicyFile))
	if err := r.Files.WritePolicy(j, t); err != nil {
		return r.done(start, r.abort(j, fmt.Errorf("revision %d: %w", t.Revision, err))), nil
	}
	if err := r.Files.BumpManifest(j); err != nil {
		if ann, aerr := r.currentAnnotation(); aerr != nil || ann != j.Annotation {
			return r.done(start, r.abort(j, fmt.Errorf("revision %d: %w", t.Revision, err))), nil
		}
		// The manifest was written; only the journal update failed. Go on.
	}
	r.progress(ctx, v1alpha1.NodeRollingOut, fmt.Sprintf("revision %d: waiting for kube-apiserver to restart with policy %s", t.Revision, j.Annotation))
	res, err := r.waitNew(ctx, j, timeout)
	if err != nil {
		return res, err
	}
	return r.done(start, res), nil
}

// Resume finishes a rollout that a killed agent left (see NodeFiles.Recover). It returns nil when
// there was none. It waits for the health timeout recorded in the journal, or timeout for a
// journal that has none: the whole timeout, from now. What was left of it when the agent
// stopped means nothing after a downtime longer than the timeout (a node reboot, an eviction),
// and a wait of a single check would roll a healthy node back on one refused connection.
func (r *Rollout) Resume(ctx context.Context, timeout time.Duration) (*Result, error) {
	start := r.Clock.Now()
	j, rec, err := r.Files.Recover()
	var changed *ManifestChangedError
	if errors.As(err, &changed) {
		res, err := r.stop(j, changed)
		res = r.done(start, res)
		return &res, err
	}
	if err != nil {
		return nil, fmt.Errorf("recovering the unfinished rollout: %w", err)
	}
	if j != nil && j.HealthTimeout > 0 {
		timeout = j.HealthTimeout
	}
	var res Result
	switch rec {
	case RecoveredNothing:
		return nil, nil
	case RecoveredUndone:
		res = Result{Phase: v1alpha1.NodePending, Revision: j.PreviousRevision, Hash: j.PreviousHash,
			Message: fmt.Sprintf("revision %d: the agent stopped before the manifest changed; the previous policy is back in place", j.Revision)}
	case RecoveredWaitNew:
		res, err = r.waitNew(ctx, j, timeout)
	case RecoveredWaitRollback:
		res, err = r.waitRollback(ctx, j, timeout)
	}
	if err != nil {
		return nil, err
	}
	res = r.done(start, res)
	return &res, nil
}

func (r *Rollout) waitNew(ctx context.Context, j *Journal, timeout time.Duration) (Result, error) {
	waitStart := r.Clock.Now()
	err := r.Health.Wait(ctx, j.Annotation, j.ChangedAt, timeout)
	wait := r.Clock.Since(waitStart)
	if ctx.Err() != nil {
		return Result{}, fmt.Errorf("interrupted while waiting for revision %d: %w", j.Revision, ctx.Err())
	}
	if err == nil {
		if err := r.Files.Commit(j); err != nil {
			return Result{}, fmt.Errorf("recording revision %d as applied: %w", j.Revision, err)
		}
		return Result{Phase: v1alpha1.NodeApplied, Revision: j.Revision, Hash: j.Hash, Restarted: true, RestartTime: j.ChangedAt, HealthWait: wait,
			Message: fmt.Sprintf("revision %d applied", j.Revision)}, nil
	}
	reason := fmt.Sprintf("revision %d: %v", j.Revision, err)
	// Files first, report after: the report may wait for an unreachable API.
	err = r.Files.Restore(j, reason)
	var changed *ManifestChangedError
	if errors.As(err, &changed) {
		res, err := r.stop(j, changed)
		res.HealthWait = wait
		return res, err
	}
	if err != nil {
		return Result{Phase: v1alpha1.NodeFailed, Revision: j.Revision, Hash: j.Hash, Restarted: true, RestartTime: j.ChangedAt, HealthWait: wait,
			Message: fmt.Sprintf("%s; restoring the previous policy and manifest failed: %v", reason, err)}, nil
	}
	r.progress(ctx, v1alpha1.NodeRollingOut, reason+"; rolling back: the previous policy and manifest are restored, waiting for kube-apiserver to restart on them")
	res, err := r.waitRollback(ctx, j, timeout)
	res.HealthWait += wait
	return res, err
}

func (r *Rollout) waitRollback(ctx context.Context, j *Journal, timeout time.Duration) (Result, error) {
	waitStart := r.Clock.Now()
	err := r.Health.Wait(ctx, j.RollbackAnnotation, j.RollbackAt, timeout)
	wait := r.Clock.Since(waitStart)
	if ctx.Err() != nil {
		return Result{}, fmt.Errorf("interrupted while rolling back revision %d: %w", j.Revision, ctx.Err())
	}
	res := Result{Phase: v1alpha1.NodeRolledBack, Revision: j.PreviousRevision, Hash: j.PreviousHash, Restarted: true, RestartTime: j.RollbackAt, HealthWait: wait,
		Message: fmt.Sprintf("%s; rolled back to the previous policy", j.Reason)}
	if j.PreviousRevision > 0 {
		res.Message = fmt.Sprintf("%s; rolled back to revision %d", j.Reason, j.PreviousRevision)
	}
	if err != nil {
		res.Phase = v1alpha1.NodeFailed
		res.Message = fmt.Sprintf("%s; after the rollback: %v", j.Reason, err)
	}
	if ferr := r.Files.FinishRollback(j, res.Message, err == nil); ferr != nil {
		return res, fmt.Errorf("recording the rollback: %w", ferr)
	}
	return res, nil
}

// stop ends a rollout whose rollback had to leave the manifest alone, as Failed.
func (r *Rollout) stop(j *Journal, changed *ManifestChangedError) (Result, error) {
	res := Result{Phase: v1alpha1.NodeFailed, Revision: j.PreviousRevision, Hash: j.PreviousHash, Restarted: true, RestartTime: j.ChangedAt,
		Message: fmt.Sprintf("%s; %v; the previous policy is back in %s and takes effect when kube-apiserver restarts next", j.Reason, changed, j.PolicyFile)}
	if err := r.Files.FinishStopped(j, res.Message); err != nil {
		return res, fmt.Errorf("recording the failure: %w", err)
	}
	return res, nil
}

// abort undoes a rollout that failed before the manifest changed.
func (r *Rollout) abort(j *Journal, cause error) Result {
	res := Result{Phase: v1alpha1.NodeFailed, Revision: j.PreviousRevision, Hash: j.PreviousHash, Message: cause.Error() + "; nothing was restarted"}
	if err := r.Files.Abort(j); err != nil {
		res.Message = fmt.Sprintf("%v; restoring the previous policy failed too (the agent retries at start): %v", cause, err)
	}
	return res
}

func (r *Rollout) currentAnnotation() (string, error) {
	b, err := r.Files.ReadManifest()
	if err != nil {
		return "", err
	}
	return staticpod.Annotation(b, staticpod.AnnotationPolicyHash)
}

func (r *Rollout) done(start time.Time, res Result) Result {
	res.Duration = r.Clock.Since(start)
	return res
}
