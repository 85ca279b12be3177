// Package attribution tells, for every event of a node's audit log, which revision of the policy
// was in force when the event was written and which module and rule of that policy decided it,
// and counts events and bytes per revision, module, rule, level and stage.
//
// It decides exactly as the offline simulation does: the request of each event is recovered by
// simulate's fast scanner (simulate.Line) and decided by kube-apiserver's own evaluator
// (policy.Evaluator), once per distinct request and revision. It does no I/O: package logfollow
// hands it the lines, package auditwatch saves and exports its counts.
package attribution

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"sigs.k8s.io/yaml"

	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/simulate"
)

// Defaults of Options.
const (
	DefaultKeepRevisions = 3
	DefaultCacheSize     = 1 << 12
)

// endGrace is how far past the next revision's start the log must be before a revision's events
// are taken to have stopped. kube-apiserver writes events as requests go (or in batches of a few
// seconds with --audit-log-mode=batch), so they are out of order by much less.
const endGrace = time.Minute

// Revision is a policy in force on the node from a given time.
type Revision struct {
	// Number is the revision's number, its label in the counts. A number stands for one policy:
	// when a node goes back to an earlier revision, the history holds it twice, with the same
	// policy.
	Number int64
	// Policy is the policy file kube-apiserver loaded. kaudit renders a comment above each rule
	// naming its module and rule; without them the rules are labelled by index.
	Policy []byte
	// Started is when the kube-apiserver that loaded the policy started: the revision is in force
	// from then until the next revision's Started. The zero time means since ever.
	Started time.Time
}

// Options tunes an Attributor.
type Options struct {
	// KeepRevisions is how many of the latest revisions keep their counts once the log has gone
	// past them; older ones are dropped, which keeps the number of counters bounded. 0 means
	// DefaultKeepRevisions.
	KeepRevisions int
	// CacheSize bounds the distinct requests whose decision is remembered per revision; 0 means
	// DefaultCacheSize.
	CacheSize int
	// Categories, when set, names the security-relevant categories of a request (see
	// docs/modules.md, "What "security-relevant" means here"), counted per category. It must
	// return a small fixed set of names, and depend only on what a policy matches on (user,
	// groups, verb, API group, resource, subresource, namespace, or path): requests that differ
	// only in the object's name share one answer.
	Categories func(policy.Request) []string
}

// Stage indexes of the counts; an event of another stage is counted under stageUnknown.
const (
	stageRequestReceived = iota
	stageResponseStarted
	stageResponseComplete
	stagePanic
	stageUnknown
	numStages
)

var stageNames = [numStages]string{
	string(auditv1.StageRequestReceived), string(auditv1.StageResponseStarted),
	string(auditv1.StageResponseComplete), string(auditv1.StagePanic), "Unknown",
}

func stageIndex(s auditv1.Stage) int {
	switch s {
	case auditv1.StageRequestReceived:
		return stageRequestReceived
	case auditv1.StageResponseStarted:
		return stageResponseStarted
	case auditv1.StageResponseComplete:
		return stageResponseComplete
	case auditv1.StagePanic:
		return stagePanic
	}
	return stageUnknown
}

// tally is events and their bytes.
type tally struct{ events, bytes int64 }

// decision is what a revision decides for a distinct request.
type decision struct {
	rule       int
	categories []string
}

// revision is a Revision ready to decide, with its counts.
type revision struct {
	number   int64
	policy   []byte
	eval     *policy.Evaluator
	modules  []string
	rules    []string
	levels   []auditv1.Level
	useNames bool
	cache    map[string]decision
	// counts[rule][stage]
	counts     [][numStages]tally
	mismatches int64
}

// period is a time from which a revision was in force.
type period struct {
	rev     *revision
	started time.Time
}

// totals count the lines that no rule was credited with.
type totals struct {
	malformed, notEvent, noTime, noRevision, noRule int64
}

// Attributor attributes audit log lines and counts them. It is safe for concurrent use.
type Attributor struct {
	opts Options

	mu       sync.Mutex
	periods  []period // by start time
	revs     map[int64]*revision
	line     simulate.Line
	key      []byte
	totals   totals
	security map[string]int64
	// latest is the latest time of an event read.
	latest time.Time
}

// New returns an Attributor with no revision: until SetRevisions, every event is counted as
// written under no known revision.
func New(opts Options) *Attributor {
	if opts.KeepRevisions <= 0 {
		opts.KeepRevisions = DefaultKeepRevisions
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = DefaultCacheSize
	}
	return &Attributor{opts: opts, revs: map[int64]*revision{}, security: map[string]int64{}}
}

// SetRevisions replaces the history of revisions in force on the node. Counts of revisions
// that stay are kept; those of revisions no longer in the history are dropped, as are the oldest
// beyond Options.KeepRevisions once the log has gone past them.
func (a *Attributor) SetRevisions(history []Revision) error {
	history = slices.Clone(history)
	slices.SortStableFunc(history, func(x, y Revision) int { return x.Started.Compare(y.Started) })
	a.mu.Lock()
	defer a.mu.Unlock()
	revs := map[int64]*revision{}
	periods := make([]period, 0, len(history))
	for _, h := range history {
		r := revs[h.Number]
		if r == nil {
			r = a.revs[h.Number]
		}
		if r == nil {
			var err error
			if r, err = compile(h); err != nil {
				return err
			}
		}
		if !bytes.Equal(r.policy, h.Policy) {
			return fmt.Errorf("revision %d: the history holds two different policies for it", h.Number)
		}
		revs[h.Number] = r
		periods = append(periods, period{rev: r, started: h.Started})
	}
	a.revs, a.periods = revs, periods
	a.prune()
	return nil
}

// compile parses a revision's policy and prepares its evaluator.
func compile(h Revision) (*revision, error) {
	// kube-apiserver's own loader first: what it refuses, no apiserver ran.
	if _, err := policy.Load(h.Policy); err != nil {
		return nil, fmt.Errorf("revision %d: policy: %w", h.Number, err)
	}
	var p auditv1.Policy
	if err := yaml.Unmarshal(h.Policy, &p); err != nil {
		return nil, fmt.Errorf("revision %d: policy: %w", h.Number, err)
	}
	eval, err := policy.NewEvaluator(p)
	if err != nil {
		return nil, fmt.Errorf("revision %d: policy: %w", h.Number, err)
	}
	r := &revision{number: h.Number, policy: h.Policy, eval: eval, cache: map[string]decision{}}
	r.modules, r.rules = ruleLabels(policy.RenderedSources(h.Policy, len(p.Rules)), len(p.Rules))
	r.counts = make([][numStages]tally, len(p.Rules))
	for _, rule := range p.Rules {
		r.levels = append(r.levels, rule.Level)
		for _, gr := range rule.Resources {
			r.useNames = r.useNames || len(gr.ResourceNames) > 0
		}
	}
	return r, nil
}

// Observe attributes and counts lines of the audit log, without their newlines.
func (a *Attributor) Observe(lines [][]byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, l := range lines {
		a.observe(l)
	}
	a.prune()
}

func (a *Attributor) observe(line []byte) {
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	l := &a.line
	if err := l.Scan(line); err != nil {
		a.totals.malformed++
		return
	}
	if !l.IsEvent() {
		a.totals.notEvent++
		return
	}
	t, ok := l.Time()
	if !ok {
		a.totals.noTime++
		return
	}
	if t.After(a.latest) {
		a.latest = t
	}
	r := a.revisionAt(t)
	if r == nil {
		a.totals.noRevision++
		return
	}
	d := a.decide(r)
	if d.rule < 0 {
		a.totals.noRule++
		return
	}
	c := &r.counts[d.rule][stageIndex(l.Stage())]
	c.events++
	c.bytes += int64(len(line) + 1)
	if l.Level() != r.levels[d.rule] {
		r.mismatches++
	}
	for _, cat := range d.categories {
		a.security[cat]++
	}
}

// revisionAt is the revision in force at t: the last one started at or before t.
func (a *Attributor) revisionAt(t time.Time) *revision {
	i, _ := slices.BinarySearchFunc(a.periods, t, func(p period, t time.Time) int {
		if p.started.After(t) {
			return 1
		}
		return -1
	})
	if i == 0 {
		return nil
	}
	return a.periods[i-1].rev
}

// decide decides the scanned line's request under r, once per distinct request.
func (a *Attributor) decide(r *revision) decision {
	a.key = a.line.AppendKey(a.key[:0], r.useNames)
	if d, ok := r.cache[string(a.key)]; ok {
		return d
	}
	if len(r.cache) >= a.opts.CacheSize {
		clear(r.cache)
	}
	req := a.line.Request()
	d := decision{rule: r.eval.Decide(req).Rule}
	if a.opts.Categories != nil {
		d.categories = a.opts.Categories(req)
	}
	r.cache[string(a.key)] = d
	return d
}

// prune drops the revisions beyond the latest KeepRevisions once the log is past them, with
// their counts. A dropped revision's periods stay, without a revision, so that a late event of
// such a period is not credited to the revision before it.
func (a *Attributor) prune() {
	if len(a.revs) <= a.opts.KeepRevisions {
		return
	}
	keep := map[int64]bool{}
	for i := len(a.periods) - 1; i >= 0 && len(keep) < a.opts.KeepRevisions; i-- {
		if r := a.periods[i].rev; r != nil {
			keep[r.number] = true
		}
	}
	// A revision of several periods stays while one of them does.
	inUse := map[int64]bool{}
	for i, p := range a.periods {
		ended := i+1 < len(a.periods) && !a.latest.Before(a.periods[i+1].started.Add(endGrace))
		if p.rev != nil && (keep[p.rev.number] || !ended) {
			inUse[p.rev.number] = true
		}
	}
	for i := range a.periods {
		if p := &a.periods[i]; p.rev != nil && !inUse[p.rev.number] {
			p.rev = nil
		}
	}
	for n := range a.revs {
		if !inUse[n] {
			delete(a.revs, n)
		}
	}
	// Periods before every remaining revision's are of no use.
	first := slices.IndexFunc(a.periods, func(p period) bool { return p.rev != nil })
	if first > 0 {
		a.periods = slices.Delete(a.periods, 0, first)
	}
}

// sortedRevisions returns the revisions by number.
func (a *Attributor) sortedRevisions() []*revision {
	out := make([]*revision, 0, len(a.revs))
	for _, r := range a.revs {
		out = append(out, r)
	}
	slices.SortFunc(out, func(x, y *revision) int { return cmp.Compare(x.number, y.number) })
	return out
}
