package lint

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/kaudit/kaudit/internal/policy"
)

// Severity of a finding.
type Severity string

// Severities, most severe first.
const (
	Error   Severity = "error"
	Warning Severity = "warning"
	Info    Severity = "info"
)

func (s Severity) rank() int {
	switch s {
	case Error:
		return 0
	case Warning:
		return 1
	}
	return 2
}

// Finding is one problem.
type Finding struct {
	Severity Severity `json:"severity"`
	// Check names the check, e.g. "shadowed-rule".
	Check string `json:"check"`
	// Module and Rule locate the problem; Module is empty and Rule -1 for the policy as a whole.
	Module string `json:"module,omitempty"`
	Rule   int    `json:"rule"`
	// PolicyRule is the index of the rule in the merged policy, -1 if none.
	PolicyRule int    `json:"policyRule"`
	Message    string `json:"message"`
	Fix        string `json:"fix"`
}

// Where names the finding's place for a person.
func (f Finding) Where() string {
	switch {
	case f.Module != "" && f.Rule >= 0:
		return fmt.Sprintf("module %s rule %d", f.Module, f.Rule)
	case f.Module != "":
		return "module " + f.Module
	case f.PolicyRule >= 0:
		return "default rule"
	}
	return "policy"
}

// sortFindings puts findings in policy order, then most severe first, then by check.
func sortFindings(fs []Finding) {
	slices.SortStableFunc(fs, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(order(a), order(b)), cmp.Compare(a.Severity.rank(), b.Severity.rank()), cmp.Compare(a.Check, b.Check))
	})
}

// order puts findings in policy order, those about the whole policy last.
func order(f Finding) int {
	if f.PolicyRule < 0 {
		return 1 << 30
	}
	return f.PolicyRule
}

// FromError turns a merge or validation error into findings, so a policy the apiserver would
// reject is reported like any other problem.
func FromError(err error) []Finding {
	check := catalogue[invalid]
	var me *policy.ModuleError
	if errors.As(err, &me) {
		var out []Finding
		for _, p := range me.Problems {
			msg := p.Detail
			if p.Field != "" {
				msg = p.Field + ": " + p.Detail
			}
			out = append(out, Finding{Severity: check.Severity, Check: check.Name, Module: me.Module, Rule: p.Rule, PolicyRule: -1,
				Message: "kube-apiserver would reject this: " + msg, Fix: fixInvalidModule})
		}
		return out
	}
	return []Finding{{Severity: check.Severity, Check: check.Name, Rule: -1, PolicyRule: -1, Message: err.Error(), Fix: fixInvalidInput}}
}
