package cmd

import (
	"cmp"
	"maps"
	"slices"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/guardrail"
	"github.com/kaudit/kaudit/internal/inforce"
	"github.com/kaudit/kaudit/internal/policy"
)

// importedSpec is the AuditPolicy spec that "kaudit import" writes for an imported policy: the
// policy's own settings, and the built-in guardrails that it breaks switched off. With them the
// manager puts every imported module in force, so the policy in force decides every request as
// the original does, which is what import promises. The other offline tools read a plain policy
// with the same spec. breaches are, in the order of the built-ins, why each is switched off.
func importedSpec(imp policy.Imported) (spec v1alpha1.AuditPolicySpec, breaches []inforce.Breach, err error) {
	spec = v1alpha1.AuditPolicySpec{OmitStages: imp.Settings.OmitStages, DefaultLevel: imp.Settings.DefaultLevel}
	modules := make([]inforce.Module, len(imp.Modules))
	for i, m := range imp.Modules {
		modules[i] = inforce.Module{Module: m}
	}
	memo := inforce.NewMemo()
	// The manager rejects a module for one guardrail at a time: decide again until it rejects
	// none. Each round switches one more guardrail off, so there are at most as many rounds as
	// built-ins, plus one.
	for {
		r, err := inforce.Decide(inforce.Input{Modules: modules, Settings: inforce.SettingsFrom(spec)}, memo)
		if err != nil {
			return spec, nil, err
		}
		found := r.Breaches()
		if len(found) == 0 {
			break
		}
		for _, id := range slices.Sorted(maps.Keys(found)) {
			b := found[id]
			name := v1alpha1.BuiltInGuardrail(b.Guardrail.Name)
			if !slices.Contains(spec.Guardrails.DisabledBuiltIns, name) {
				spec.Guardrails.DisabledBuiltIns = append(spec.Guardrails.DisabledBuiltIns, name)
				breaches = append(breaches, b)
			}
		}
	}
	order := func(name string) int {
		return slices.IndexFunc(guardrail.Builtins(), func(g guardrail.Guardrail) bool { return g.Name == name })
	}
	slices.SortFunc(spec.Guardrails.DisabledBuiltIns, func(a, b v1alpha1.BuiltInGuardrail) int { return cmp.Compare(order(string(a)), order(string(b))) })
	slices.SortFunc(breaches, func(a, b inforce.Breach) int { return cmp.Compare(order(a.Guardrail.Name), order(b.Guardrail.Name)) })
	return spec, breaches, nil
}
