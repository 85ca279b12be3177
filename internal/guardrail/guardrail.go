package guardrail

import (
	"fmt"
	"slices"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/internal/policy"
)

// Scope is a set of requests, given as the matching fields of an audit policy rule, with the
// same meaning: an empty field means any, userGroups matches a user in any of the groups,
// namespaces or resources make it a set of resource requests, nonResourceURLs a set of
// non-resource requests.
type Scope struct {
	Users      []string                 `json:"users,omitempty"`
	UserGroups []string                 `json:"userGroups,omitempty"`
	Verbs      []string                 `json:"verbs,omitempty"`
	Resources  []auditv1.GroupResources `json:"resources,omitempty"`
	// Namespaces: "" is the cluster scope (requests for cluster-scoped resources).
	Namespaces      []string `json:"namespaces,omitempty"`
	NonResourceURLs []string `json:"nonResourceURLs,omitempty"`
}

func (s Scope) fields() matchFields {
	return matchFields(s)
}

// rule is the scope as a policy rule, so that kube-apiserver's evaluator can tell whether a
// request is in it.
func (s Scope) rule() auditv1.PolicyRule {
	return auditv1.PolicyRule{
		Level: auditv1.LevelMetadata, Users: s.Users, UserGroups: s.UserGroups, Verbs: s.Verbs,
		Resources: s.Resources, Namespaces: s.Namespaces, NonResourceURLs: s.NonResourceURLs,
	}
}

// Guardrail bounds what a policy may decide for the requests in a scope.
type Guardrail struct {
	// Name is stable and kebab-case; it names the guardrail in reports and settings.
	Name string `json:"name"`
	// Description says in one line what the guardrail keeps.
	Description string `json:"description"`
	// Scope is the requests the guardrail is about.
	Scope Scope `json:"scope"`
	// Except lists requests of the scope that the guardrail is not about.
	Except []Scope `json:"except,omitempty"`
	// MinLevel, if set, is the lowest level a request of the scope may get.
	MinLevel auditv1.Level `json:"minLevel,omitempty"`
	// MaxLevel, if set, is the highest level a request of the scope may get.
	MaxLevel auditv1.Level `json:"maxLevel,omitempty"`
	// RequiredStages are stages whose events must be written for every request of the scope:
	// the deciding rule must not omit them (the policy's omitStages count as omitted), and its
	// level must not be None, which writes no event at all.
	RequiredStages []auditv1.Stage `json:"requiredStages,omitempty"`
}

// violatedBy tells whether a request decided with r breaks the guardrail.
func (g *Guardrail) violatedBy(r result) bool {
	switch {
	case g.MinLevel != "" && policy.LevelRank(r.level) < policy.LevelRank(g.MinLevel):
		return true
	case g.MaxLevel != "" && policy.LevelRank(r.level) > policy.LevelRank(g.MaxLevel):
		return true
	case len(g.RequiredStages) > 0 && (r.level == auditv1.LevelNone || r.omits&stageMask(g.RequiredStages) != 0):
		return true
	}
	return false
}

func (g *Guardrail) validate() error {
	for _, l := range []struct {
		field string
		level auditv1.Level
	}{{"minLevel", g.MinLevel}, {"maxLevel", g.MaxLevel}} {
		if l.level != "" && !slices.Contains(levels, l.level) {
			return fmt.Errorf("guardrail %q: %s: unknown level %q", g.Name, l.field, l.level)
		}
	}
	for i, s := range g.RequiredStages {
		if stageMask([]auditv1.Stage{s}) == 0 {
			return fmt.Errorf("guardrail %q: requiredStages[%d]: unknown stage %q", g.Name, i, s)
		}
	}
	return nil
}

var levels = []auditv1.Level{auditv1.LevelNone, auditv1.LevelMetadata, auditv1.LevelRequest, auditv1.LevelRequestResponse}

// Violation is a request of a guardrail's scope that the policy decides outside its bounds.
type Violation struct {
	// Guardrail is the guardrail's name.
	Guardrail string `json:"guardrail"`
	// Request is one such request: of the rule that decides it, the earliest in the policy.
	Request policy.Request `json:"request"`
	// Decision is kube-apiserver's evaluator's decision for Request; Decision.Rule is the
	// deciding rule, -1 when no rule matches.
	Decision policy.Decision `json:"decision"`
}

// Check returns, for each guardrail that the policy breaks for at least one request, one such
// request, in the order of guardrails. The answer is exact: see the package documentation.
// It fails when the policy or a guardrail is invalid, and when kube-apiserver's evaluator
// disagrees with the search about a request it found (a bug in this package).
func Check(p auditv1.Policy, guardrails []Guardrail) ([]Violation, error) {
	eval, err := policy.NewEvaluator(p)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	var fields []matchFields
	for _, g := range guardrails {
		fields = append(fields, g.fields()...)
	}
	prepared := prepare(p, fields)
	prepared.eval = eval
	return prepared.Check(guardrails)
}

// fields are the matching fields of the guardrail's scope and exceptions.
func (g *Guardrail) fields() []matchFields {
	out := []matchFields{g.Scope.fields()}
	for _, e := range g.Except {
		out = append(out, e.fields())
	}
	return out
}

func areaOf(m *matcher) area {
	a := area{boxes: m.boxes}
	if m.groups != nil {
		a.must = [][]int32{m.groups}
	}
	return a
}

// searchBug opens the error for a disagreement between the search and kube-apiserver's
// evaluator: the search is wrong, and its answer must not be used.
const searchBug = "bug in internal/guardrail: the search disagrees with kube-apiserver's evaluator"

// confirm checks the search's prediction for a request against kube-apiserver's evaluator.
func confirm(c *compiled, found reached, d policy.Decision, req policy.Request) error {
	rule := found.rule
	if rule == len(c.rules) {
		rule = -1
	}
	if d.Rule != rule || resultOf(d) != c.results[found.rule] {
		return fmt.Errorf("%s: for %+v it predicted rule %d deciding %+v, kube-apiserver's evaluator decides %+v", searchBug, req, rule, c.results[found.rule], d)
	}
	return nil
}

// scopeSet tells with kube-apiserver's evaluator whether a request is in a scope and in none
// of its exceptions. All scopes are loaded as the rules of one policy, which also validates them.
type scopeSet struct {
	eval *policy.Evaluator
	// rules[i] are the indexes of scope i's rule and of its exceptions' rules.
	rules [][]int
}

// newScopeSet loads scopes, each with its exceptions; name(i) names scope i in errors.
func newScopeSet(scopes []Scope, excepts [][]Scope, name func(int) string) (*scopeSet, error) {
	s := &scopeSet{rules: make([][]int, len(scopes))}
	var p auditv1.Policy
	for i := range scopes {
		for _, r := range scopeRules(scopes[i], excepts[i]) {
			s.rules[i] = append(s.rules[i], len(p.Rules))
			p.Rules = append(p.Rules, r)
		}
	}
	if len(p.Rules) == 0 {
		return s, nil // the loader refuses a policy without rules
	}
	var err error
	if s.eval, err = policy.NewEvaluator(p); err != nil {
		// name the first scope that the loader refuses on its own
		for i := range scopes {
			if _, own := policy.NewEvaluator(auditv1.Policy{Rules: scopeRules(scopes[i], excepts[i])}); own != nil {
				return nil, fmt.Errorf("%s: %w", name(i), own)
			}
		}
		return nil, err
	}
	return s, nil
}

// scopeRules is a scope and its exceptions as policy rules, the scope first.
func scopeRules(scope Scope, excepts []Scope) []auditv1.PolicyRule {
	rules := []auditv1.PolicyRule{scope.rule()}
	for _, e := range excepts {
		rules = append(rules, e.rule())
	}
	return rules
}

func (s *scopeSet) contains(i int, r policy.Request) bool {
	matching := s.eval.Matching(r)
	if !slices.Contains(matching, s.rules[i][0]) {
		return false
	}
	for _, e := range s.rules[i][1:] {
		if slices.Contains(matching, e) {
			return false
		}
	}
	return true
}
