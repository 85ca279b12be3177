package lint

import (
	"fmt"
	"testing"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/policy"
)

// manyRules is a policy of n rules in modules of 100, shaped like a large generated policy: each
// rule names its own user and namespace, a few verbs and resources, at one of the four levels.
func manyRules(tb testing.TB, n int) *policy.Merged {
	tb.Helper()
	levels := []v1alpha1.Level{v1alpha1.LevelNone, v1alpha1.LevelMetadata, v1alpha1.LevelRequest, v1alpha1.LevelRequestResponse}
	var modules []policy.Module
	for i := range n {
		if i%100 == 0 {
			modules = append(modules, policy.Module{Name: fmt.Sprintf("m%04d", i/100), Spec: v1alpha1.AuditPolicyModuleSpec{Order: int32(i / 100)}})
		}
		m := &modules[len(modules)-1]
		m.Spec.Rules = append(m.Spec.Rules, v1alpha1.PolicyRule{
			Level:      levels[i%4],
			Users:      []string{fmt.Sprint("user-", i)},
			Verbs:      []string{"get", "list", "create"},
			Resources:  []v1alpha1.GroupResources{{Group: "", Resources: []string{"pods", "services"}}, {Group: "apps", Resources: []string{"deployments"}}},
			Namespaces: []string{fmt.Sprint("team-", i%50)},
		})
	}
	merged, err := policy.Merge(modules, policy.Settings{OmitStages: []v1alpha1.Stage{v1alpha1.StageRequestReceived}})
	if err != nil {
		tb.Fatal(err)
	}
	return merged
}

// Lint's cost grows about linearly with the number of rules.
func BenchmarkLintManyRules(b *testing.B) {
	for _, n := range []int{1000, 3000, 10000} {
		b.Run(fmt.Sprint("rules=", n), func(b *testing.B) {
			m := manyRules(b, n)
			b.ResetTimer()
			for range b.N {
				if _, err := Lint(m, Options{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(n), "µs/rule")
		})
	}
}
