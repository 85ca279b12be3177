package lint

import (
	"slices"
	"testing"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/inforce"
	"github.com/kaudit/kaudit/internal/policy"
)

func TestTheCatalogueDeclaresEveryCheckOnce(t *testing.T) {
	seen := map[string]bool{}
	for id, c := range catalogue {
		if c.Name == "" || c.Summary == "" || !slices.Contains([]Severity{Error, Warning, Info}, c.Severity) {
			t.Errorf("check %d is not declared in full: %+v", id, c)
		}
		if seen[c.Name] {
			t.Errorf("check %q is declared twice", c.Name)
		}
		seen[c.Name] = true
	}
	if got := Checks(); len(got) != int(checkCount) {
		t.Errorf("Checks() lists %d checks, the catalogue has %d", len(got), checkCount)
	}
}

// A finding always names a check of the catalogue, at its severity or lower; and every check of
// the catalogue reports something on the problem cases, so none is declared but never reported.
func TestEveryFindingNamesACataloguedCheck(t *testing.T) {
	findings := FromError(policy.ValidateModule(policy.Module{Name: "bad", Spec: v1alpha1.AuditPolicyModuleSpec{Rules: []v1alpha1.PolicyRule{{Level: "Everything"}}}}))
	unknown, err := Modules(modules(t, `[{level: None, users: [x]}]`), inforce.Settings{Policy: quiet}, Options{UnknownFields: []UnknownField{{Module: "m0", Rule: 0, Problem: `unknown field "verb"`}}})
	if err != nil {
		t.Fatal(err)
	}
	findings = append(findings, unknown...)
	for _, tc := range problems {
		findings = append(findings, lintOf(t, merged(t, tc.settings, tc.modules...))...)
	}
	for _, tc := range rejections {
		findings = append(findings, modulesOf(t, tc.modules, tc.settings)...)
	}
	reported := map[string]bool{}
	for _, f := range findings {
		i := slices.IndexFunc(Checks(), func(c Check) bool { return c.Name == f.Check })
		if i < 0 {
			t.Errorf("finding of check %q, which the catalogue does not list: %+v", f.Check, f)
			continue
		}
		if f.Severity.rank() < Checks()[i].Severity.rank() {
			t.Errorf("finding more severe than its check (%s): %+v", Checks()[i].Severity, f)
		}
		reported[f.Check] = true
	}
	for _, c := range Checks() {
		if !reported[c.Name] {
			t.Errorf("check %q reported nothing on the problem cases: add a case for it", c.Name)
		}
	}
}
