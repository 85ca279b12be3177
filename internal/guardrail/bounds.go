package guardrail

import (
	"strconv"

	"github.com/kaudit/kaudit/internal/policy"
)

// Matcher compiles the guardrail's scope, once for many requests: the function it returns
// tells, with kube-apiserver's evaluator, whether a request is in the scope and in none of its
// exceptions. It fails when the scope or an exception is not a rule kube-apiserver's loader
// accepts.
func (g *Guardrail) Matcher() (func(policy.Request) bool, error) {
	s, err := newScopeSet([]Scope{g.Scope}, [][]Scope{g.Except}, func(int) string { return "guardrail " + strconv.Quote(g.Name) })
	if err != nil {
		return nil, err
	}
	return func(r policy.Request) bool { return s.contains(0, r) }, nil
}

// Allows tells whether a request of the guardrail's scope, decided d, is within its bounds.
func (g *Guardrail) Allows(d policy.Decision) bool { return !g.violatedBy(resultOf(d)) }
