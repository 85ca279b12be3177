package guardrail

import (
	"path/filepath"
	"slices"
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

// fixBaseline returns a copy of the baseline modules with the two changes the built-in
// guardrails call for (each is a no-op once the shipped files have it):
//   - system-masters ordered at 305, after noise-kube-apiserver (300, the apiserver's loopback
//     user is in system:masters) and before the other noise modules (310-340): their None rules
//     name users such as system:kube-scheduler, and a request by such a user who also carries
//     system:masters (anyone with the cluster CA key can mint one) was dropped;
//   - secrets-metadata-only matching every subresource of CertificateSigningRequests and
//     PodCertificateRequests ("certificatesigningrequests/*"), not only approval and status:
//     any other subresource fell through to system-masters at RequestResponse.
func fixBaseline(t testing.TB, modules []policy.Module) []policy.Module {
	t.Helper()
	out := make([]policy.Module, len(modules))
	fixed := 0
	for i, m := range modules {
		m.Spec = *m.Spec.DeepCopy()
		switch m.Name {
		case "system-masters":
			m.Spec.Order = 305
			fixed++
		case "secrets-metadata-only":
			for j, gr := range m.Spec.Rules[0].Resources {
				if gr.Group != "certificates.k8s.io" {
					continue
				}
				for _, all := range []string{"certificatesigningrequests/*", "podcertificaterequests/*"} {
					if !slices.Contains(gr.Resources, all) {
						m.Spec.Rules[0].Resources[j].Resources = append(m.Spec.Rules[0].Resources[j].Resources, all)
					}
				}
				fixed++
			}
		}
		out[i] = m
	}
	if fixed != 2 {
		t.Fatalf("the baseline changed shape: fixed %d of 2 places", fixed)
	}
	return out
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

// TestShippedBaselineBreaksOnlyKnownGuardrails records what the built-ins find in the shipped
// baseline: both are the gaps fixBaseline closes.
func TestShippedBaselineBreaksOnlyKnownGuardrails(t *testing.T) {
	modules, settings := baselineModules(t)
	violations, _ := checkBaseline(t, modules, settings)
	for _, v := range violations {
		if v.Guardrail != NoCredentialBodies && v.Guardrail != SystemMastersLogged {
			t.Errorf("the baseline breaks %s", v.Guardrail)
		}
	}
}

func TestBaselineKeepsEveryBuiltinWithSystemMastersBeforeTheNoise(t *testing.T) {
	modules, settings := baselineModules(t)
	if violations, _ := checkBaseline(t, fixBaseline(t, modules), settings); len(violations) > 0 {
		t.Errorf("the fixed baseline breaks %d built-in guardrails", len(violations))
	}
}
