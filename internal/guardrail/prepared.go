package guardrail

import (
	"fmt"
	"strconv"
	"sync"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/internal/policy"
)

// Prepared is an audit policy made ready for many checks: compiled and indexed for the search
// once, and loaded into kube-apiserver's evaluator only when a request the search found needs
// confirming. Check holds it to guardrails; FindWeakening finds what rules placed before it log
// less than it does, so that one Prepared of the cluster's policy serves every namespaced
// module. Each call numbers the literals of its own guardrails or rules after the policy's, as
// if it were the first call, so that its answer does not depend on the calls before it. It is
// safe for concurrent use; calls run one at a time.
type Prepared struct {
	mu     sync.Mutex
	policy auditv1.Policy
	u      *universe
	c      *compiled
	// results are c's results without repeats, for weakerThanAny.
	results []result
	// eval is the policy in kube-apiserver's evaluator, loaded when first needed.
	eval *policy.Evaluator
}

// Prepare compiles a policy for Check and FindWeakening. The policy must be one that
// kube-apiserver's loader accepts, as policy.Merge's results are: it is loaded only to confirm
// a request that the search found, and a policy the loader refuses is then an error.
func Prepare(p auditv1.Policy) *Prepared { return prepare(p, nil) }

// prepare compiles p in a universe that also holds the literals of extra, right after p's.
func prepare(p auditv1.Policy, extra []matchFields) *Prepared {
	u := newUniverse()
	collectPolicy(u, p)
	for _, f := range extra {
		u.collect(f)
	}
	u.freeze()
	c := compilePolicy(u, p)
	return &Prepared{policy: p, u: u, c: c, results: distinctResults(c.results)}
}

// overlay returns the universe for one call that mentions fields, and the Prepared whose
// compiled policy it goes with: p itself, or, when the fields bring URL patterns the policy
// does not have (new path representatives), a Prepared compiled again with them, which shares
// p's evaluator. The caller holds p.mu and calls done with the Prepared it got.
func (p *Prepared) overlay(fields []matchFields) (*universe, *Prepared) {
	if p.u.knowsPatterns(fields) {
		return p.u.overlay(), p
	}
	fresh := prepare(p.policy, fields)
	fresh.eval = p.eval
	return fresh.u.overlay(), fresh
}

// done keeps the evaluator that a call on q (p, or the Prepared overlay made) loaded.
func (p *Prepared) done(q *Prepared) { p.eval = q.eval }

// evaluator loads the policy into kube-apiserver's evaluator once.
func (p *Prepared) evaluator() (*policy.Evaluator, error) {
	if p.eval == nil {
		eval, err := policy.NewEvaluator(p.policy)
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		p.eval = eval
	}
	return p.eval, nil
}

// Check is Check of the prepared policy.
func (p *Prepared) Check(guardrails []Guardrail) ([]Violation, error) {
	scopes, excepts := make([]Scope, len(guardrails)), make([][]Scope, len(guardrails))
	var fields []matchFields
	for i, g := range guardrails {
		if err := g.validate(); err != nil {
			return nil, err
		}
		scopes[i], excepts[i] = g.Scope, g.Except
		fields = append(fields, g.fields()...)
	}
	inScope, err := newScopeSet(scopes, excepts, func(i int) string { return "guardrail " + strconv.Quote(guardrails[i].Name) })
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	u, q := p.overlay(fields)
	defer p.done(q)
	for _, f := range fields {
		u.collect(f)
	}
	var out []Violation
	for i := range guardrails {
		g := &guardrails[i]
		scope := u.matcher(g.Scope.fields())
		excepts := make([]matcher, len(g.Except))
		for j, e := range g.Except {
			excepts[j] = u.matcher(e.fields())
		}
		found, ok := firstReachable(q.c, areaOf(&scope), []subtrahend{{rules: newRuleIndex(excepts), before: len(excepts)}}, g.violatedBy)
		if !ok {
			continue
		}
		req := u.request(found)
		eval, err := q.evaluator()
		if err != nil {
			return nil, err
		}
		d := eval.Decide(req)
		if err := confirm(q.c, found, d, req); err != nil {
			return nil, fmt.Errorf("guardrail %q: %w", g.Name, err)
		}
		if !inScope.contains(i, req) || !g.violatedBy(resultOf(d)) {
			return nil, fmt.Errorf("guardrail %q: %s: kube-apiserver's evaluator says %+v is not a violation (decision %+v)", g.Name, searchBug, req, d)
		}
		out = append(out, Violation{Guardrail: g.Name, Request: req, Decision: d})
	}
	return out, nil
}

// FindWeakening returns a request of region that rules placed before the prepared policy log
// less than the policy alone does, or nil when there is none: FindWeakening(combined, base,
// region) with base the policy and combined the rules followed by the policy's, under the
// policy's omitStages and omitManagedFields. Only the rules and the region are compiled; the
// policy's index serves every call. The rules and the region must be ones kube-apiserver's
// loader accepts: like the policy, they are loaded only to confirm a request found.
func (p *Prepared) FindWeakening(rules []auditv1.PolicyRule, region Scope) (*Weakening, error) {
	prefix := auditv1.Policy{OmitStages: p.policy.OmitStages, OmitManagedFields: p.policy.OmitManagedFields, Rules: rules}
	fields := []matchFields{region.fields()}
	for _, r := range rules {
		fields = append(fields, fieldsOf(r))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	u, q := p.overlay(fields)
	defer p.done(q)
	for _, f := range fields[1:] {
		u.collect(f)
	}
	u.collect(region.fields())
	cc := compilePolicy(u, prefix)
	regionMatcher := u.matcher(region.fields())
	i, found, ok := firstWeakening(cc, q.c, areaOf(&regionMatcher), len(rules), q.results)
	if !ok {
		return nil, nil
	}
	req := u.request(found)
	evalPrefix, err := policy.NewEvaluator(prefix)
	if err != nil {
		return nil, fmt.Errorf("rules before the policy: %w", err)
	}
	evalBase, err := q.evaluator()
	if err != nil {
		return nil, err
	}
	inRegion, err := newScopeSet([]Scope{region}, [][]Scope{nil}, func(int) string { return "region" })
	if err != nil {
		return nil, err
	}
	w := &Weakening{Request: req, Combined: evalPrefix.Decide(req), Base: evalBase.Decide(req)}
	if w.Combined.Rule < 0 {
		// no rule before the policy matches: the policy's rule decides, after them
		w.Combined = w.Base
		if w.Combined.Rule >= 0 {
			w.Combined.Rule += len(rules)
		}
	}
	if err := confirm(cc, reached{rule: i}, w.Combined, req); err != nil {
		return nil, fmt.Errorf("combined policy: %w", err)
	}
	if err := confirm(q.c, found, w.Base, req); err != nil {
		return nil, fmt.Errorf("base policy: %w", err)
	}
	if !inRegion.contains(0, req) || !weaker(resultOf(w.Combined), resultOf(w.Base)) {
		return nil, fmt.Errorf("%s: kube-apiserver's evaluator says %+v is not logged less (combined %+v, base %+v)", searchBug, req, w.Combined, w.Base)
	}
	return w, nil
}

// distinctResults is results without repeats: there are at most a few dozen different ones.
func distinctResults(results []result) []result {
	seen := map[result]bool{}
	var out []result
	for _, r := range results {
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out
}
