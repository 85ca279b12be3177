package inforce

import (
	"fmt"
	"slices"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/guardrail"
	"github.com/kaudit/kaudit/internal/policy"
)

// Settings are what the AuditPolicy singleton's spec says about the decision.
type Settings struct {
	// Policy are the policy-level settings of the merge.
	Policy policy.Settings
	// Guardrails are the guardrails that hold (see Guardrails).
	Guardrails []guardrail.Guardrail
	// NamespacedEnabled lets namespaced modules contribute rules.
	NamespacedEnabled bool
	// NamespacedMaxLevel is the highest level a namespaced module's rule may have.
	NamespacedMaxLevel v1alpha1.Level
}

// SettingsFrom takes the settings from the singleton's spec.
func SettingsFrom(spec v1alpha1.AuditPolicySpec) Settings {
	return Settings{
		Policy:             policy.SettingsFrom(spec),
		Guardrails:         Guardrails(spec.Guardrails),
		NamespacedEnabled:  spec.NamespacedModules.EnabledOrDefault(),
		NamespacedMaxLevel: spec.NamespacedModules.MaxLevelOrDefault(),
	}
}

// Guardrails are the guardrails a singleton's spec.guardrails makes hold: the built-in ones it
// does not disable, in their order, then its custom ones.
func Guardrails(spec v1alpha1.GuardrailsSpec) []guardrail.Guardrail {
	var out []guardrail.Guardrail
	for _, g := range guardrail.Builtins() {
		if !slices.Contains(spec.DisabledBuiltIns, v1alpha1.BuiltInGuardrail(g.Name)) {
			out = append(out, g)
		}
	}
	for _, c := range spec.Custom {
		g := guardrail.Guardrail{
			Name: c.Name, Description: c.Description, Scope: scope(c.Scope),
			MinLevel: auditv1.Level(c.MinLevel), MaxLevel: auditv1.Level(c.MaxLevel),
		}
		for _, e := range c.Except {
			g.Except = append(g.Except, scope(e))
		}
		for _, s := range c.RequiredStages {
			g.RequiredStages = append(g.RequiredStages, auditv1.Stage(s))
		}
		out = append(out, g)
	}
	return out
}

func scope(s v1alpha1.GuardrailScope) guardrail.Scope {
	// A scope means what a rule with the same matching fields matches.
	r := policy.ToUpstream(v1alpha1.PolicyRule{
		Users: s.Users, UserGroups: s.UserGroups, Verbs: s.Verbs,
		Resources: s.Resources, Namespaces: s.Namespaces, NonResourceURLs: s.NonResourceURLs,
	})
	return guardrail.Scope{Users: r.Users, UserGroups: r.UserGroups, Verbs: r.Verbs,
		Resources: r.Resources, Namespaces: r.Namespaces, NonResourceURLs: r.NonResourceURLs}
}

// Validate checks the policy-level settings with kube-apiserver's loader, and the guardrails'
// scopes and bounds.
func (s Settings) Validate() error {
	if err := policy.ValidateSettings(s.Policy); err != nil {
		return err
	}
	trivial := auditv1.Policy{Rules: []auditv1.PolicyRule{{Level: auditv1.LevelMetadata}}}
	if _, err := guardrail.Check(trivial, s.Guardrails); err != nil {
		return fmt.Errorf("AuditPolicy %q: spec.guardrails: %w", v1alpha1.SingletonName, err)
	}
	return nil
}
