package guardrail

import (
	"strconv"

	"github.com/kaudit/kaudit/internal/policy"
)

// Contains tells, with kube-apiserver's evaluator, whether a request is in the guardrail's
// scope and in none of its exceptions. It fails when the scope or an exception is not a rule
// kube-apiserver's loader accepts.
func (g *Guardrail) Contains(r policy.Request) (bool, error) {
	s, err := newScopeSet([]Scope{g.Scope}, [][]Scope{g.Except}, func(int) string { return "guardrail " + strconv.Quote(g.Name) })
	if err != nil {
		return false, err
	}
	return s.contains(0, r), nil
}

// Allows tells whether a request of the guardrail's scope, decided d, is within its bounds.
func (g *Guardrail) Allows(d policy.Decision) bool { return !g.violatedBy(resultOf(d)) }
