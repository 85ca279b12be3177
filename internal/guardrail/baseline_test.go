package guardrail

import (
	"path/filepath"
	"testing"

	"github.com/kaudit/kaudit/internal/manifest"
	"github.com/kaudit/kaudit/internal/policy"
)

// baselineModules reads the shipped baseline as `kaudit render` does.
func baselineModules(t testing.TB) ([]policy.Module, policy.Settings) {
	t.Helper()
	set, err := manifest.Read(nil, filepath.Join("..", "..", "config", "modules", "baseline"))
	if err != nil {
		t.Fatal(err)
	}
	var settings policy.Settings
	if set.Policy != nil {
		settings = policy.SettingsFrom(set.Policy.Spec)
	}
	modules := make([]policy.Module, 0, len(set.Modules))
	for _, m := range set.Modules {
		modules = append(modules, policy.Module{Name: m.Name, Spec: m.Spec})
	}
	return modules, settings
}

func checkBaseline(t *testing.T, modules []policy.Module, settings policy.Settings) ([]Violation, *policy.Merged) {
	t.Helper()
	merged, err := policy.Merge(modules, settings)
	if err != nil {
		t.Fatal(err)
	}
	violations, err := Check(merged.Policy, Builtins())
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range violations {
		t.Logf("%s: %+v is decided by module %s rule %d at %s", v.Guardrail, v.Request,
			merged.Sources[v.Decision.Rule].Module, merged.Sources[v.Decision.Rule].Rule, v.Decision.Level)
	}
	return violations, merged
}

// TestShippedBaselineKeepsEveryBuiltin checks the shipped baseline as it is: system-masters
// comes right after noise-kube-apiserver (300), before the component noise modules (310-340),
// whose None rules name users such as system:kube-scheduler that a certificate can carry with
// the group system:masters; secrets-metadata-only covers every subresource of
// CertificateSigningRequests and PodCertificateRequests.
func TestShippedBaselineKeepsEveryBuiltin(t *testing.T) {
	modules, settings := baselineModules(t)
	if violations, _ := checkBaseline(t, modules, settings); len(violations) > 0 {
		t.Errorf("the baseline breaks %d built-in guardrails", len(violations))
	}
}
