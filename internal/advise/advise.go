package advise

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/guardrail"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/relevance"
	"github.com/kaudit/kaudit/internal/simulate"
)

// Start is the policy the suggestions are for, as `kaudit render` reads it: modules (a plain
// policy file imported into modules) and the singleton's policy-level settings.
type Start struct {
	// Name says where the policy came from, for the output.
	Name     string
	Modules  []policy.Module
	Settings policy.Settings
}

// Options controls a run.
type Options struct {
	Start Start
	// Guardrails must hold on the merged result as far as they hold on the starting policy: the
	// built-in ones, less those the singleton disables, plus its custom ones.
	Guardrails []guardrail.Guardrail
	// DropWrites lets writes that are not security-relevant be dropped; otherwise they are
	// lowered to Metadata at most, so the timeline keeps them.
	DropWrites bool
	// MaxRules is the most rules suggested, those that save the most; 0 means 30, at most 200
	// (a module's limit).
	MaxRules int
	// Workers reading the logs; 0 means GOMAXPROCS.
	Workers int
	// MaxRequests bounds the distinct requests remembered (and so memory); 0 means 1<<19.
	MaxRequests int
}

// Advice is the result: the suggested modules and what they change on the logs.
type Advice struct {
	// Start names the starting policy.
	Start  string                  `json:"start"`
	Inputs []simulate.InputSummary `json:"inputs"`
	// Events is the number of audit events read.
	Events int64 `json:"events"`
	// Modules are the suggestions, most bytes saved first.
	Modules []Module `json:"modules"`
	// Summary compares the starting policy with the starting policy plus the suggestions.
	Summary Summary `json:"summary"`
	// BrokenByStart names the guardrails the starting policy already breaks; the suggestions
	// lower no request of the logs in their scope.
	BrokenByStart []string `json:"guardrailsBrokenByStart,omitempty"`
}

// Module is one suggested module.
type Module struct {
	Manifest v1alpha1.AuditPolicyModule `json:"manifest"`
	// Identity is who its rules are about.
	Identity string `json:"identity"`
	// Rules[i] says what Manifest.Spec.Rules[i] does to the logs.
	Rules []Suggestion `json:"rules"`
}

// Suggestion is what one suggested rule decides of the logs, against the starting policy.
type Suggestion struct {
	// Events are the events of the logs the rule decides.
	Events        int64 `json:"events"`
	WrittenBefore int64 `json:"writtenBefore"`
	WrittenAfter  int64 `json:"writtenAfter"`
	BytesBefore   int64 `json:"bytesBefore"`
	BytesAfter    int64 `json:"bytesAfter"`
	BytesSaved    int64 `json:"bytesSaved"`
	// Stops says what is no longer recorded.
	Stops string `json:"stops"`
}

// Summary is simulate's comparison of the starting policy ("before") with the starting policy
// plus the suggestions ("after") on the logs.
type Summary struct {
	WrittenBefore int64 `json:"writtenBefore"`
	BytesBefore   int64 `json:"bytesBefore"`
	WrittenAfter  int64 `json:"writtenAfter"`
	BytesAfter    int64 `json:"bytesAfter"`
	// Security counts the security-relevant requests per rule of internal/relevance, and how
	// many each policy records at the required level.
	Security []SecurityCount `json:"security"`
}

// SecurityCount is one rule of the definition of security-relevant.
type SecurityCount struct {
	Rule     string `json:"rule"`
	What     string `json:"what"`
	Requests int64  `json:"requests"`
	Before   int64  `json:"keptBefore"`
	After    int64  `json:"keptAfter"`
}

const (
	defaultMaxRules    = 30
	defaultMaxRequests = 1 << 19
	modulePrefix       = "advise-"
	maxOrder           = 100000 // the CRD's maximum spec.order
)

// Run reads the logs and makes the suggestions.
func Run(ctx context.Context, inputs []simulate.Input, opts Options) (*Advice, error) {
	if opts.MaxRules <= 0 {
		opts.MaxRules = defaultMaxRules
	}
	if opts.MaxRules > policy.MaxModuleRules {
		// One identity could then need more rules than a module holds.
		return nil, fmt.Errorf("at most %d rules can be suggested, not %d", policy.MaxModuleRules, opts.MaxRules)
	}
	if opts.MaxRequests <= 0 {
		opts.MaxRequests = defaultMaxRequests
	}
	a, err := newAdvisor(opts)
	if err != nil {
		return nil, err
	}
	entries, read, err := collect(ctx, inputs, opts.Workers, opts.MaxRequests, namesOf(a.start.Policy))
	if err != nil {
		return nil, err
	}
	a.index(entries)
	mods, merged, err := a.verify(a.generate())
	if err != nil {
		return nil, err
	}
	advice := &Advice{Start: opts.Start.Name, Inputs: read.Inputs, Events: read.Events, Modules: a.describe(mods)}
	for _, g := range opts.Guardrails {
		if a.broken[g.Name] {
			advice.BrokenByStart = append(advice.BrokenByStart, g.Name)
		}
	}
	if err := a.checkManifests(advice, merged); err != nil {
		return nil, err
	}
	if advice.Summary, err = a.summary(ctx, inputs, merged); err != nil {
		return nil, err
	}
	return advice, nil
}

// advisor holds what the suggestions are made from.
type advisor struct {
	opts      Options
	start     *policy.Merged
	startEval *policy.Evaluator
	// broken are the guardrails the starting policy breaks, to be checked request by request.
	broken       map[string]bool
	brokenScopes []*scopeTest
	// orders of the starting cluster-scoped modules, and the highest.
	orders   map[string]int32
	maxOrder int32

	entries []*entry
	byUser  map[string][]int
	byGroup map[string][]int
}

func newAdvisor(opts Options) (*advisor, error) {
	start, err := policy.Merge(opts.Start.Modules, opts.Start.Settings)
	if err != nil {
		return nil, fmt.Errorf("the starting policy: %w", err)
	}
	a := &advisor{opts: opts, start: start, broken: map[string]bool{}, orders: map[string]int32{}, maxOrder: 99}
	if a.startEval, err = policy.NewEvaluator(start.Policy); err != nil {
		return nil, err
	}
	violations, err := guardrail.Check(start.Policy, opts.Guardrails)
	if err != nil {
		return nil, fmt.Errorf("guardrails: %w", err)
	}
	for _, v := range violations {
		a.broken[v.Guardrail] = true
	}
	for _, g := range opts.Guardrails {
		if a.broken[g.Name] {
			s, err := newScopeTest(g)
			if err != nil {
				return nil, err
			}
			a.brokenScopes = append(a.brokenScopes, s)
		}
	}
	for _, m := range opts.Start.Modules {
		if m.Namespace == "" {
			a.orders[m.Name] = m.Spec.Order
			a.maxOrder = max(a.maxOrder, m.Spec.Order)
		}
	}
	return a, nil
}

// index decides every entry with the starting policy and indexes entries by user and by the
// group rules may name.
func (a *advisor) index(entries []*entry) {
	a.entries, a.byUser, a.byGroup = entries, map[string][]int{}, map[string][]int{}
	for i, e := range entries {
		e.start = a.startEval.Decide(e.req)
		e.need = relevance.Classify(e.req)
		a.byUser[e.req.User] = append(a.byUser[e.req.User], i)
		if slices.Contains(e.req.Groups, nodesGroup) {
			a.byGroup[nodesGroup] = append(a.byGroup[nodesGroup], i)
		}
	}
}

func (a *advisor) entriesOf(id identity) []int {
	if id.group != "" {
		return a.byGroup[id.group]
	}
	return a.byUser[id.user]
}

// allows tells whether a suggestion may decide the entry at level: it never lowers a
// security-relevant request, never takes a request of a guardrail the starting policy breaks
// elsewhere out of its bounds, and drops a write only when asked to.
func (a *advisor) allows(e *entry, level auditv1.Level) bool {
	lower := policy.LevelRank(level) < policy.LevelRank(e.start.Level)
	if lower && (e.need.Relevant() || level == auditv1.LevelNone && !isRead(e.req) && !a.opts.DropWrites) {
		return false
	}
	d := a.decision(level)
	for _, g := range a.brokenScopes {
		if g.violatedBy(d) && !g.violatedBy(e.start) && g.contains(e.req) {
			return false
		}
	}
	return true
}

// decision is what a suggested rule at level decides: its level, with the policy's omitted
// stages.
func (a *advisor) decision(level auditv1.Level) policy.Decision {
	return policy.Decision{Level: level, OmitStages: a.start.Policy.OmitStages}
}

// evaluate finds the entries the candidate matches (with kube-apiserver's evaluator), whether it
// may decide all of them, what it saves, and where it would go.
func (a *advisor) evaluate(c *candidate) {
	c.matched, c.valid, c.saved, c.slot = nil, true, 0, len(a.start.Policy.Rules)
	eval, err := policy.NewEvaluator(auditv1.Policy{Rules: []auditv1.PolicyRule{policy.ToUpstream(c.rule())}})
	if err != nil {
		c.valid = false
		return
	}
	d := a.decision(c.level)
	for _, i := range a.entriesOf(c.id) {
		e := a.entries[i]
		if eval.Decide(e.req).Rule != 0 {
			continue
		}
		c.matched = append(c.matched, i)
		if !a.allows(e, c.level) {
			c.valid = false
		}
		_, before := e.written(e.start)
		_, after := e.written(d)
		c.saved += before - after
		c.slot = min(c.slot, e.start.Rule)
	}
	if _, ok := a.orderBefore(c.slot); !ok || len(c.matched) == 0 {
		c.valid = false
	}
}

// orderBefore is the order that puts a module right before rule slot of the starting policy:
// after the starting modules that come first, so that they still decide first. A namespaced
// module's rule cannot be preceded: namespaced modules are merged before all others.
func (a *advisor) orderBefore(slot int) (int32, bool) {
	if slot < 0 || slot >= len(a.start.Sources) {
		return 0, false
	}
	src := a.start.Sources[slot]
	switch {
	case src.IsDefault():
		return min(a.maxOrder+1, maxOrder), true
	case src.Namespace != "":
		return 0, false
	}
	return max(a.orders[src.Module]-1, 0), true
}

// generate makes the candidates: for each atom the level that saves the most, for every read
// verb when the atom is reads (the next list is as harmless as the gets that were seen), else
// for the verbs seen, else verb by verb; then the candidates of one shape joined into one rule
// wherever that saves as much.
func (a *advisor) generate() []*candidate {
	var out []*candidate
	for _, at := range atoms(a.entries) {
		if at.read {
			reads := []string{"get", "list", "watch"}
			if at.path != "" {
				reads = []string{"get", "head"}
			}
			if best := a.best(at, reads); best != nil {
				out = append(out, best)
				continue
			}
		}
		if best := a.best(at, at.verbs); best != nil {
			out = append(out, best)
			continue
		}
		if len(at.verbs) == 1 {
			continue
		}
		for _, v := range at.verbs {
			if best := a.best(at, []string{v}); best != nil {
				out = append(out, best)
			}
		}
	}
	return a.join(out)
}

func (a *advisor) best(at atom, verbs []string) *candidate {
	var best *candidate
	for _, level := range []auditv1.Level{auditv1.LevelNone, auditv1.LevelMetadata} {
		if level == auditv1.LevelNone && !at.read && !a.opts.DropWrites {
			continue
		}
		c := at.candidate(level, slices.Clone(verbs))
		a.evaluate(c)
		if c.valid && c.saved > 0 && (best == nil || c.saved > best.saved) {
			best = c
		}
	}
	return best
}

// join merges candidates of one shape, largest first, as long as the joined rule is still
// allowed everywhere and saves what the parts save together.
func (a *advisor) join(cands []*candidate) []*candidate {
	slices.SortStableFunc(cands, func(x, y *candidate) int { return cmp.Compare(y.saved, x.saved) })
	var out []*candidate
	for _, c := range cands {
		joined := false
		for i, have := range out {
			if !sameShape(have, c) {
				continue
			}
			u := union(have, c)
			a.evaluate(u)
			if u.valid && u.saved >= have.saved+c.saved {
				out[i], joined = u, true
				break
			}
		}
		if !joined {
			out = append(out, c)
		}
	}
	return out
}

// proposal is one suggested module while it is being checked.
type proposal struct {
	name  string
	id    identity
	rules []*candidate
}

// modules groups candidates into one module per identity, most bytes saved first.
func (a *advisor) modules(cands []*candidate) []*proposal {
	byID := map[identity]*proposal{}
	var out []*proposal
	for _, c := range cands {
		p := byID[c.id]
		if p == nil {
			p = &proposal{id: c.id}
			byID[c.id] = p
			out = append(out, p)
		}
		p.rules = append(p.rules, c)
	}
	taken := map[string]bool{}
	for _, m := range a.opts.Start.Modules {
		taken[m.Name] = true
	}
	for _, p := range out {
		slices.SortStableFunc(p.rules, func(x, y *candidate) int { return cmp.Compare(y.saved, x.saved) })
		base := modulePrefix + p.id.name()
		if len(base) > 240 {
			base = strings.TrimRight(base[:240], "-")
		}
		p.name = base
		for n := 2; taken[p.name]; n++ {
			p.name = base + "-" + strconv.Itoa(n)
		}
		taken[p.name] = true
	}
	return out
}

// spec is the module's spec: right before the earliest starting rule its rules take over from.
func (a *advisor) spec(p *proposal) v1alpha1.AuditPolicyModuleSpec {
	order := int32(maxOrder)
	spec := v1alpha1.AuditPolicyModuleSpec{
		Description: fmt.Sprintf("Suggested by kaudit advise from recorded audit logs for %s: drops, or keeps at Metadata "+
			"only, requests of %s that are not security-relevant (docs/modules.md, R1-R6). The comment above each rule says "+
			"what it saved on the logs and what it stops recording; review them before applying.", a.opts.Start.Name, p.id),
	}
	for _, c := range p.rules {
		o, _ := a.orderBefore(c.slot)
		order = min(order, o)
		spec.Rules = append(spec.Rules, c.rule())
	}
	spec.Order = order
	return spec
}

// merge merges the starting modules with the proposals, as the controller would.
func (a *advisor) merge(props []*proposal) (*policy.Merged, map[int]*candidate, error) {
	modules := slices.Clone(a.opts.Start.Modules)
	for _, p := range props {
		modules = append(modules, policy.Module{Name: p.name, Spec: a.spec(p)})
	}
	merged, err := policy.Merge(modules, a.opts.Start.Settings)
	if err != nil {
		return nil, nil, fmt.Errorf("merging the suggestions: %w", err)
	}
	byName := map[string]*proposal{}
	for _, p := range props {
		byName[p.name] = p
	}
	rules := map[int]*candidate{}
	for i, src := range merged.Sources {
		if p := byName[src.Module]; p != nil && src.Namespace == "" {
			rules[i] = p.rules[src.Rule]
		}
	}
	return merged, rules, nil
}

// verify checks the suggestions as they would be applied, and takes out every rule that lowers
// a request it may not, adds a guardrail violation or saves nothing, until none does; then keeps
// the MaxRules rules that save the most, and checks again.
func (a *advisor) verify(cands []*candidate) ([]*proposal, *policy.Merged, error) {
	props := a.modules(cands)
	for {
		merged, rules, err := a.merge(props)
		if err != nil {
			return nil, nil, err
		}
		eval, err := policy.NewEvaluator(merged.Policy)
		if err != nil {
			return nil, nil, err
		}
		for _, c := range rules {
			c.effect = effect{}
		}
		bad := map[*candidate]bool{}
		for _, e := range a.entries {
			d := eval.Decide(e.req)
			c := rules[d.Rule]
			if c == nil {
				continue // a starting rule decides it, as before
			}
			if !a.allows(e, d.Level) {
				bad[c] = true
			}
			wb, bb := e.written(e.start)
			wa, ba := e.written(d)
			c.effect.events += e.total()
			c.effect.writtenBefore, c.effect.bytesBefore = c.effect.writtenBefore+wb, c.effect.bytesBefore+bb
			c.effect.writtenAfter, c.effect.bytesAfter = c.effect.writtenAfter+wa, c.effect.bytesAfter+ba
		}
		violations, err := guardrail.Check(merged.Policy, a.opts.Guardrails)
		if err != nil {
			return nil, nil, fmt.Errorf("guardrails: %w", err)
		}
		// A None rule that breaks a guardrail may still keep the events without bodies.
		lowered := map[*candidate]*candidate{}
		for _, v := range violations {
			if a.broken[v.Guardrail] {
				continue
			}
			c := rules[v.Decision.Rule]
			if c == nil {
				return nil, nil, fmt.Errorf("guardrail %q: broken by a starting rule that does not break it alone (a bug)", v.Guardrail)
			}
			bad[c] = true
			if c.level == auditv1.LevelNone {
				m := *c
				m.level = auditv1.LevelMetadata
				if a.evaluate(&m); m.valid && m.saved > 0 {
					lowered[c] = &m
				}
			}
		}
		var kept []*candidate
		for i := range merged.Policy.Rules {
			c := rules[i]
			if c == nil {
				continue
			}
			if c.effect.saved() <= 0 {
				bad[c] = true
			}
			if !bad[c] {
				kept = append(kept, c)
			}
		}
		if len(bad) == 0 && len(kept) <= a.opts.MaxRules {
			return props, merged, nil
		}
		if len(bad) == 0 {
			slices.SortStableFunc(kept, func(x, y *candidate) int { return cmp.Compare(y.effect.saved(), x.effect.saved()) })
			kept = kept[:a.opts.MaxRules]
		}
		props = a.keep(props, kept, lowered)
	}
}

func (e effect) saved() int64 { return e.bytesBefore - e.bytesAfter }

// keep leaves the proposals only the kept rules, or their replacements, and drops proposals
// left empty.
func (a *advisor) keep(props []*proposal, kept []*candidate, replaced map[*candidate]*candidate) []*proposal {
	var out []*proposal
	for _, p := range props {
		var rules []*candidate
		for _, c := range p.rules {
			switch {
			case slices.Contains(kept, c):
				rules = append(rules, c)
			case replaced[c] != nil:
				rules = append(rules, replaced[c])
			}
		}
		if len(rules) > 0 {
			p.rules = rules
			out = append(out, p)
		}
	}
	return out
}

// describe turns the checked proposals into modules, most bytes saved first. The rules keep
// the order they were checked in: where two rules of a module overlap, the first decides.
func (a *advisor) describe(props []*proposal) []Module {
	slices.SortStableFunc(props, func(x, y *proposal) int {
		return cmp.Or(cmp.Compare(effectOf(y), effectOf(x)), cmp.Compare(x.name, y.name))
	})
	var out []Module
	for _, p := range props {
		m := Module{Identity: p.id.String()}
		m.Manifest.APIVersion = v1alpha1.GroupVersion.String()
		m.Manifest.Kind = "AuditPolicyModule"
		m.Manifest.Name = p.name
		m.Manifest.Spec = a.spec(p)
		for _, c := range p.rules {
			m.Rules = append(m.Rules, Suggestion{
				Events: c.effect.events, WrittenBefore: c.effect.writtenBefore, WrittenAfter: c.effect.writtenAfter,
				BytesBefore: c.effect.bytesBefore, BytesAfter: c.effect.bytesAfter, BytesSaved: c.effect.saved(), Stops: c.stops(),
			})
		}
		out = append(out, m)
	}
	return out
}

func effectOf(p *proposal) int64 {
	var n int64
	for _, c := range p.rules {
		n += c.effect.saved()
	}
	return n
}

// summary replays the logs through the starting policy and the result with simulate.
func (a *advisor) summary(ctx context.Context, inputs []simulate.Input, merged *policy.Merged) (Summary, error) {
	report, err := simulate.Run(ctx, inputs, simulate.Options{
		Policy:  simulate.Target{Name: "with the suggestions", Policy: merged.Policy, Sources: merged.Sources},
		Against: &simulate.Target{Name: a.opts.Start.Name, Policy: a.start.Policy, Sources: a.start.Sources},
		Workers: a.opts.Workers,
	})
	if err != nil {
		return Summary{}, err
	}
	s := Summary{WrittenBefore: report.Diff.BaselineWritten, BytesBefore: report.Diff.BaselineBytes, WrittenAfter: report.Policy.Written, BytesAfter: report.Policy.Bytes}
	var lost []string
	for _, r := range report.Security {
		s.Security = append(s.Security, SecurityCount{Rule: r.Rule, What: r.What, Requests: r.Requests, Before: r.BaselineKept, After: r.Kept})
		if r.Kept < r.BaselineKept {
			lost = append(lost, fmt.Sprintf("%s: %d of %d kept, %d before", r.Rule, r.Kept, r.Requests, r.BaselineKept))
		}
	}
	if len(lost) > 0 {
		// allows() forbids this on every request of the logs: simulate disagrees, a bug.
		return s, errors.New("the suggestions would record fewer security-relevant requests at the required level (a bug): " + strings.Join(lost, "; "))
	}
	return s, nil
}

// scopeTest is a guardrail checked request by request: whether a request is in its scope and
// in none of its exceptions (with kube-apiserver's evaluator: rule 0 is the scope, the others
// the exceptions), and whether a decision is out of its bounds.
type scopeTest struct {
	g    guardrail.Guardrail
	eval *policy.Evaluator
}

// violatedBy tells whether a decision for a request of the scope is out of the bounds.
func (s *scopeTest) violatedBy(d policy.Decision) bool {
	rank := policy.LevelRank(d.Level)
	switch {
	case s.g.MinLevel != "" && rank < policy.LevelRank(s.g.MinLevel):
		return true
	case s.g.MaxLevel != "" && rank > policy.LevelRank(s.g.MaxLevel):
		return true
	}
	for _, st := range s.g.RequiredStages {
		if d.Level == auditv1.LevelNone || slices.Contains(d.OmitStages, st) {
			return true
		}
	}
	return false
}

func newScopeTest(g guardrail.Guardrail) (*scopeTest, error) {
	rules := []auditv1.PolicyRule{scopeRule(g.Scope)}
	for _, e := range g.Except {
		rules = append(rules, scopeRule(e))
	}
	eval, err := policy.NewEvaluator(auditv1.Policy{Rules: rules})
	if err != nil {
		return nil, fmt.Errorf("guardrail %q: %w", g.Name, err)
	}
	return &scopeTest{g: g, eval: eval}, nil
}

func scopeRule(s guardrail.Scope) auditv1.PolicyRule {
	return auditv1.PolicyRule{Level: auditv1.LevelMetadata, Users: s.Users, UserGroups: s.UserGroups, Verbs: s.Verbs,
		Resources: s.Resources, Namespaces: s.Namespaces, NonResourceURLs: s.NonResourceURLs}
}

func (s *scopeTest) contains(r policy.Request) bool {
	m := s.eval.Matching(r)
	return len(m) == 1 && m[0] == 0
}
