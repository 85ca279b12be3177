package guardrail

import (
	"fmt"
	"reflect"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/internal/policy"
)

// Weakening is a request that one policy logs less than another.
type Weakening struct {
	Request policy.Request `json:"request"`
	// Combined and Base are kube-apiserver's evaluator's decisions for Request.
	Combined policy.Decision `json:"combined"`
	Base     policy.Decision `json:"base"`
}

// weaker tells whether a request decided with c is logged less than with b in some respect: a
// lower level, an event of a stage that b writes and c omits, or managedFields that b keeps in
// a body and c drops. Stages only count where b writes events (level above None), managedFields
// only where b writes bodies (Request or RequestResponse).
func weaker(c, b result) bool {
	switch {
	case policy.LevelRank(c.level) < policy.LevelRank(b.level):
		return true
	case b.level == auditv1.LevelNone:
		return false
	case c.omits&^b.omits != 0:
		return true
	}
	return policy.LevelRank(b.level) >= policy.LevelRank(auditv1.LevelRequest) && c.omitsManaged && !b.omitsManaged
}

// FindWeakening returns a request of region that combined logs less than base (see weaker), or
// nil when there is none. It is how a module placed before others is held to making logging
// only stricter where it applies: combined is the policy with the module, base without it.
// The request is one decided by the earliest such rule of combined. The answer is exact in the
// same sense as Check's. Prepared.FindWeakening answers the same for many modules placed
// before one base.
func FindWeakening(combined, base auditv1.Policy, region Scope) (*Weakening, error) {
	evalCombined, err := policy.NewEvaluator(combined)
	if err != nil {
		return nil, fmt.Errorf("combined policy: %w", err)
	}
	evalBase, err := policy.NewEvaluator(base)
	if err != nil {
		return nil, fmt.Errorf("base policy: %w", err)
	}
	inRegion, err := newScopeSet([]Scope{region}, [][]Scope{nil}, func(int) string { return "region" })
	if err != nil {
		return nil, err
	}
	u := newUniverse()
	collectPolicy(u, combined)
	collectPolicy(u, base)
	u.collect(region.fields())
	u.freeze()
	cc, cb := compilePolicy(u, combined), compilePolicy(u, base)
	regionMatcher := u.matcher(region.fields())
	regionArea := areaOf(&regionMatcher)

	// When base is the tail of combined, with the same policy-level settings, a request that
	// no rule before the tail matches is decided alike by both: only those rules can weaken.
	candidates := len(cc.rules) + 1 // every rule, then "no rule matches"
	if n := len(cc.rules) - len(cb.rules); n >= 0 && cc.defaultResult() == cb.defaultResult() &&
		reflect.DeepEqual(combined.Rules[n:], base.Rules) {
		candidates = n
	}
	i, found, ok := firstWeakening(cc, cb, regionArea, candidates, distinctResults(cb.results))
	if !ok {
		return nil, nil
	}
	req := u.request(found)
	w := &Weakening{Request: req, Combined: evalCombined.Decide(req), Base: evalBase.Decide(req)}
	if err := confirm(cc, reached{rule: i}, w.Combined, req); err != nil {
		return nil, fmt.Errorf("combined policy: %w", err)
	}
	if err := confirm(cb, found, w.Base, req); err != nil {
		return nil, fmt.Errorf("base policy: %w", err)
	}
	if !inRegion.contains(0, req) || !weaker(resultOf(w.Combined), resultOf(w.Base)) {
		return nil, fmt.Errorf("%s: kube-apiserver's evaluator says %+v is not logged less (combined %+v, base %+v)", searchBug, req, w.Combined, w.Base)
	}
	return w, nil
}

// firstWeakening finds the first of the first candidates rules of cc (len(cc.rules) standing
// for "no rule matches") that decides a request of region that cb logs more, and one such
// request, decided in cb by the earliest rule that logs it more. baseResults are cb's results,
// repeats allowed.
func firstWeakening(cc, cb *compiled, region area, candidates int, baseResults []result) (int, reached, bool) {
	for i := range candidates {
		rc := cc.results[i]
		if !weakerThanAny(rc, baseResults) {
			continue
		}
		a := region
		// requests that an earlier rule of cc matches are not decided by rule i
		excepts := []subtrahend{{rules: cc.index(), before: i}}
		if i < len(cc.rules) {
			if a = restrict(region, &cc.rules[i]); len(a.boxes) == 0 {
				continue
			}
		}
		if found, ok := firstReachable(cb, a, excepts, func(rb result) bool { return weaker(rc, rb) }); ok {
			return i, found, true
		}
	}
	return 0, reached{}, false
}

func weakerThanAny(c result, bs []result) bool {
	for _, b := range bs {
		if weaker(c, b) {
			return true
		}
	}
	return false
}

// restrict is the part of an area that a rule matches.
func restrict(a area, m *matcher) area {
	out := area{must: a.must}
	if m.groups != nil {
		out.must = append(append([][]int32{}, a.must...), m.groups)
	}
	for i := range a.boxes {
		for j := range m.boxes {
			if b := a.boxes[i].intersect(&m.boxes[j]); !b.empty() {
				out.boxes = append(out.boxes, b)
			}
		}
	}
	return out
}
