// Package auditwatch is the node agent's live view of its kube-apiserver's audit log: it follows
// the log (package logfollow), attributes every event to the revision, module and rule that
// decided it (package attribution), commits the counts together with the follower's position,
// and exports them as Prometheus metrics.
//
// Counts are saved in the follower's checkpoint at every commit and exported only once saved:
// after a restart, or a crash between a read and its commit, the exported counters continue
// from where they were and no event is counted twice (see docs/design.md, "Node paths and
// files", for the state directory the checkpoint lives in).
package auditwatch

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/kaudit/kaudit/internal/attribution"
	"github.com/kaudit/kaudit/internal/logfollow"
)

// Defaults of Options.
const (
	// DefaultPollInterval is how long the watcher waits when the log had nothing new.
	DefaultPollInterval = 250 * time.Millisecond
	// DefaultCommitInterval is how often counts are committed: the delay before an event shows
	// in the metrics, and what a crash makes the agent read again.
	DefaultCommitInterval = 5 * time.Second
)

// Options says what to watch and how.
type Options struct {
	// Follow says which log to follow and where its checkpoint is. Its Clock and Log, when
	// unset, are the watcher's.
	Follow logfollow.Options
	// Attribution tunes the attribution, and holds the hook for security-relevant categories.
	Attribution attribution.Options
	// PollInterval is how long to wait when the log had nothing new; 0 means
	// DefaultPollInterval.
	PollInterval time.Duration
	// CommitInterval is how often what was read is committed: saved and exported. 0 means
	// DefaultCommitInterval.
	CommitInterval time.Duration
	// Clock gives the time; nil means the real clock.
	Clock clock.Clock
	// Log receives errors reading the log or saving the checkpoint.
	Log logr.Logger
}

// Watcher follows the audit log and keeps the counts of its events. Run runs it; SetRevisions,
// Pause and Resume may be called from other goroutines while it runs, and it is a
// prometheus.Collector.
type Watcher struct {
	opts     Options
	clock    clock.Clock
	log      logr.Logger
	follower *logfollow.Follower
	attr     *attribution.Attributor

	// published is the counts of the last commit: what is exported.
	published atomic.Pointer[attribution.Counts]
	dirty     bool
	lastSaved time.Time

	// step is held while a batch is read and counted, so that Pause can wait for it.
	step   sync.Mutex
	paused atomic.Bool
	wake   chan struct{}

	readErrors, checkpointErrors atomic.Int64
	lastError                    string
}

// New opens the log from its checkpoint, with history, the revisions in force on the node so
// far (see SetRevisions), and restores the counts saved with the checkpoint.
func New(opts Options, history []attribution.Revision) (*Watcher, error) {
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.CommitInterval <= 0 {
		opts.CommitInterval = DefaultCommitInterval
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Follow.Clock == nil {
		opts.Follow.Clock = opts.Clock
	}
	if opts.Follow.Log.GetSink() == nil {
		opts.Follow.Log = opts.Log
	}
	w := &Watcher{opts: opts, clock: opts.Clock, log: opts.Log, attr: attribution.New(opts.Attribution), wake: make(chan struct{}, 1)}
	if err := w.attr.SetRevisions(history); err != nil {
		return nil, err
	}
	f, err := logfollow.Open(opts.Follow)
	if err != nil {
		return nil, err
	}
	w.follower = f
	if state := f.State(); state != nil {
		var saved attribution.Counts
		if err := json.Unmarshal(state, &saved); err != nil {
			f.Close()
			return nil, fmt.Errorf("counts saved in the checkpoint in %s: %w", opts.Follow.CheckpointDir, err)
		}
		if dropped := w.attr.Restore(saved); dropped > 0 {
			w.log.Info("counts of revisions no longer in the history were dropped", "counts", dropped)
		}
	}
	counts := w.attr.Snapshot()
	w.published.Store(&counts)
	w.lastSaved = w.clock.Now()
	return w, nil
}

// SetRevisions replaces the history of the revisions in force on the node: for each, its number,
// the policy file the apiserver loaded and when that apiserver started. Events are credited to
// the revision whose apiserver was running when they were written.
func (w *Watcher) SetRevisions(history []attribution.Revision) error {
	return w.attr.SetRevisions(history)
}

// Pause stops reading the log until Resume; it returns once a batch being read is counted. The
// agent pauses before it changes the apiserver's policy and resumes once SetRevisions knows when
// the new apiserver started: events read meanwhile would be credited to the old revision.
func (w *Watcher) Pause() {
	w.paused.Store(true)
	w.step.Lock()
	defer w.step.Unlock()
}

// Resume reads the log again after Pause.
func (w *Watcher) Resume() {
	w.paused.Store(false)
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run follows the log until ctx is done, then commits what it read.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.follower.Close()
	for {
		if ctx.Err() != nil {
			w.step.Lock()
			defer w.step.Unlock()
			if w.dirty {
				return w.commit()
			}
			return nil
		}
		if w.readOnce() {
			continue
		}
		select {
		case <-ctx.Done():
		case <-w.clock.After(w.opts.PollInterval):
		case <-w.wake:
		}
	}
}

// readOnce reads and counts one batch, and commits when it is time; more tells that the log
// may hold more right away.
func (w *Watcher) readOnce() (more bool) {
	w.step.Lock()
	defer w.step.Unlock()
	if !w.paused.Load() {
		b, err := w.follower.Poll()
		switch {
		case err != nil:
			w.readErrors.Add(1)
			w.logError("reading the audit log failed; trying again", err)
		case len(b.Lines) > 0:
			w.attr.Observe(b.Lines)
			w.dirty = true
			more = true
		}
	}
	// While paused, what was read before is committed at once, to be exported.
	if w.dirty && (w.paused.Load() || w.clock.Since(w.lastSaved) >= w.opts.CommitInterval) {
		_ = w.commit()
	}
	return more
}

// commit saves the counts with the follower's position, then exports them.
func (w *Watcher) commit() error {
	counts := w.attr.Snapshot()
	state, err := json.Marshal(counts)
	if err == nil {
		err = w.follower.Commit(state)
	}
	if err != nil {
		// Not exported: after a restart the counts would go back to the last saved ones, which
		// Prometheus would take for a counter reset.
		w.checkpointErrors.Add(1)
		w.logError("saving the audit log checkpoint failed; the metrics stay as of the last one saved", err)
		return err
	}
	w.published.Store(&counts)
	w.dirty = false
	w.lastSaved = w.clock.Now()
	return nil
}

// logError logs an error when it differs from the last one, so that a lasting failure is logged
// once rather than at every poll.
func (w *Watcher) logError(msg string, err error) {
	if err.Error() == w.lastError {
		return
	}
	w.lastError = err.Error()
	w.log.Error(err, msg)
}
