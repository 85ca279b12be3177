package lint

import (
	"cmp"
	"fmt"
	"slices"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/guardrail"
	"github.com/kaudit/kaudit/internal/inforce"
	"github.com/kaudit/kaudit/internal/policy"
)

// rejectedBy maps the reasons of a module's Accepted=False condition to the checks that report
// them. Invalid modules are reported before the decision, by the invalid check.
var rejectedBy = map[string]checkID{
	v1alpha1.ReasonGuardrailViolation:        guardrailViolation,
	v1alpha1.ReasonLowersLogging:             lowersLogging,
	v1alpha1.ReasonAboveCap:                  aboveCap,
	v1alpha1.ReasonNamespacedModulesDisabled: namespacedModulesDisabled,
}

var rejectionFixes = map[checkID]string{
	guardrailViolation:        fixGuardrailViolation,
	lowersLogging:             fixLowersLogging,
	aboveCap:                  fixAboveCap,
	namespacedModulesDisabled: fixNamespacedModulesDisabled,
}

// decided reports what the manager would reject of valid modules on a cluster without a revision
// yet, with inforce.Decide, the manager's own decision: each module it would not put in force,
// with its Accepted condition's message, and each guardrail the policy breaks whatever the
// modules do. written is the merge of all the modules, which the other checks review: findings
// point at its rules.
func decided(modules []policy.Module, settings inforce.Settings, written *policy.Merged) ([]Finding, error) {
	in := inforce.Input{Settings: settings}
	for _, m := range modules {
		in.Modules = append(in.Modules, inforce.Module{Module: m})
	}
	r, err := inforce.Decide(in, nil)
	if err != nil {
		return nil, err
	}
	sorted := slices.Clone(modules)
	slices.SortFunc(sorted, func(a, b policy.Module) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	breaches := r.Breaches()
	var out []Finding
	for _, m := range sorted {
		o := r.Outcomes[m.ID()]
		if o.Accepted {
			continue
		}
		id, ok := rejectedBy[o.Reason]
		if !ok {
			return nil, fmt.Errorf("module %s: the manager's reason %q has no check in lint's catalogue", m.ID(), o.Reason)
		}
		f := Finding{Severity: catalogue[id].Severity, Check: catalogue[id].Name, Module: m.ID(), Rule: -1, PolicyRule: -1, Message: o.Message, Fix: rejectionFixes[id]}
		if b, ok := breaches[m.ID()]; ok && b.Decides {
			if f.Rule, err = decidingRule(m, b.Request); err != nil {
				return nil, err
			}
			f.PolicyRule = indexOf(written, policy.RuleSource{Namespace: m.Namespace, Module: m.Name, Rule: f.Rule})
		}
		out = append(out, f)
	}
	for _, s := range r.Standing {
		f := Finding{Severity: catalogue[guardrailBroken].Severity, Check: catalogue[guardrailBroken].Name, Rule: -1, PolicyRule: -1, Message: s.Message(), Fix: fixGuardrailBroken}
		if i := s.Decision.Rule; i >= 0 && i < len(r.Merged.Sources) {
			src := r.Merged.Sources[i]
			f.PolicyRule = indexOf(written, src)
			if !src.IsDefault() {
				f.Module, f.Rule = src.ModuleID(), src.Rule
			}
		}
		out = append(out, f)
	}
	return out, nil
}

// decidingRule is the rule of module m that decides req once m is merged: the first of its
// rules that matches it, since the module's rule decides it (inforce.Breach.Decides).
func decidingRule(m policy.Module, req policy.Request) (int, error) {
	eval, err := policy.NewEvaluator(auditv1.Policy{Rules: m.Rules()})
	if err != nil {
		return -1, fmt.Errorf("module %s: %w", m.ID(), err)
	}
	return eval.Decide(req).Rule, nil
}

// indexOf is the index of the rule from src in the merged policy; -1 when it has none.
func indexOf(m *policy.Merged, src policy.RuleSource) int {
	return slices.Index(m.Sources, src)
}

// validGuardrails returns the guardrails that are valid on their own, and an invalid finding
// for each other, so that one bad custom guardrail does not hide what the others find. The
// manager makes no revision while any is invalid.
func validGuardrails(all []guardrail.Guardrail) ([]guardrail.Guardrail, []Finding) {
	var valid []guardrail.Guardrail
	var findings []Finding
	for _, g := range all {
		if err := (inforce.Settings{Guardrails: []guardrail.Guardrail{g}}).Validate(); err != nil {
			findings = append(findings, FromError(err)...)
			continue
		}
		valid = append(valid, g)
	}
	return valid, findings
}
