package policy

import (
	"reflect"
	"testing"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

// Words the fuzzer picks from: valid and invalid values of every rule field.
var (
	fuzzLevels = []v1alpha1.Level{"None", "Metadata", "Request", "RequestResponse", "", "Verbose"}
	fuzzStages = []v1alpha1.Stage{"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic", "Later"}
	fuzzGroups = []string{"", "apps", "*", "rbac.authorization.k8s.io", "Apps/v1", "-bad"}
	fuzzRes    = []string{"pods", "pods/log", "*", "*/scale", "secrets", "deployments/*"}
	fuzzURLs   = []string{"/healthz", "/healthz*", "*", "/api/*/x", "metrics", ""}
	fuzzWords  = []string{"get", "list", "system:masters", "alice", "kube-system", ""}
)

// modulesFromBytes turns fuzzer bytes into modules, one decision per byte.
func modulesFromBytes(data []byte) []Module {
	next := func(n int) int {
		if len(data) == 0 {
			return 0
		}
		b := int(data[0])
		data = data[1:]
		return b % n
	}
	var modules []Module
	for m := 0; len(data) > 0 && m < 8; m++ {
		mod := Module{Name: string(rune('a' + m)), Spec: v1alpha1.AuditPolicyModuleSpec{Order: int32(next(4)), Disabled: next(8) == 0}}
		if next(3) == 0 {
			mod.Spec.OmitStages = []v1alpha1.Stage{fuzzStages[next(len(fuzzStages))]}
		}
		for r := next(4); r >= 0; r-- {
			rule := v1alpha1.PolicyRule{Level: fuzzLevels[next(len(fuzzLevels))]}
			switch next(4) {
			case 0:
				rule.NonResourceURLs = []string{fuzzURLs[next(len(fuzzURLs))]}
			case 1:
				rule.Resources = []v1alpha1.GroupResources{{Group: fuzzGroups[next(len(fuzzGroups))], Resources: []string{fuzzRes[next(len(fuzzRes))]}}}
			case 2:
				rule.Resources = []v1alpha1.GroupResources{{Group: fuzzGroups[next(len(fuzzGroups))], ResourceNames: []string{"x"}}}
				rule.NonResourceURLs = []string{fuzzURLs[next(len(fuzzURLs))]}
			}
			if next(2) == 0 {
				rule.Users = []string{fuzzWords[next(len(fuzzWords))]}
				rule.Verbs = []string{fuzzWords[next(len(fuzzWords))]}
			}
			if next(3) == 0 {
				rule.OmitStages = []v1alpha1.Stage{fuzzStages[next(len(fuzzStages))]}
			}
			mod.Spec.Rules = append(mod.Spec.Rules, rule)
		}
		modules = append(modules, mod)
	}
	return modules
}

// FuzzMergeNeverMakesAPolicyTheLoaderRejects follows the controller's path: only modules that
// ValidateModule accepts are merged, and their merge must always load in the apiserver, its
// rendering as the same policy as its canonical JSON.
func FuzzMergeNeverMakesAPolicyTheLoaderRejects(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{255, 3, 1, 1, 0, 2, 9, 9, 9, 4, 4, 1, 0, 2})
	f.Add([]byte("the quick brown fox jumps over the lazy dog"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var accepted []Module
		for _, m := range modulesFromBytes(data) {
			if ValidateModule(m) == nil {
				accepted = append(accepted, m)
			}
		}
		merged, err := Merge(accepted, Settings{})
		if err != nil {
			t.Fatalf("accepted modules failed to merge: %v", err)
		}
		rendered, err := Load(merged.Render())
		if err != nil {
			t.Fatalf("the loader rejected a merged policy: %v\n%s", err, merged.Render())
		}
		// Merge validates the canonical JSON; the rendered YAML must be the same policy.
		if canonical, err := Load(encode(merged.Policy)); err != nil || !reflect.DeepEqual(rendered, canonical) {
			t.Fatalf("the rendered YAML and the canonical JSON load differently (%v):\n%s", err, merged.Render())
		}
	})
}
