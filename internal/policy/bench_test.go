package policy

import (
	"fmt"
	"testing"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

func benchModules(n int) []Module {
	mods := make([]Module, n)
	for i := range mods {
		spec := v1alpha1.AuditPolicyModuleSpec{Order: int32(i % 10)}
		for j := range 3 {
			spec.Rules = append(spec.Rules, v1alpha1.PolicyRule{
				Level:      v1alpha1.LevelRequest,
				Users:      []string{fmt.Sprintf("system:serviceaccount:team-%d:deployer-%d", i, j)},
				Verbs:      []string{"create", "update", "patch", "delete"},
				Namespaces: []string{fmt.Sprintf("team-%d", i)},
				Resources:  []v1alpha1.GroupResources{{Group: "apps", Resources: []string{"deployments", "statefulsets"}}},
			})
		}
		mods[i] = Module{Name: fmt.Sprintf("team-%04d", i), Spec: spec}
	}
	return mods
}

// BenchmarkMerge measures what the controller does for every change: validate each module,
// merge, render, hash.
func BenchmarkMerge(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		mods := benchModules(n)
		b.Run(fmt.Sprintf("modules=%d", n), func(b *testing.B) {
			for b.Loop() {
				for _, m := range mods {
					if err := ValidateModule(m); err != nil {
						b.Fatal(err)
					}
				}
				merged, err := Merge(mods, Settings{})
				if err != nil {
					b.Fatal(err)
				}
				_ = merged.Hash()
			}
		})
	}
}

// BenchmarkMergerAfterOneChange measures what the manager's merges cost once the modules are
// known: one module changed, then merged with a Merger that saw the others (compare with
// BenchmarkMerge, which renders and loads every module each time).
func BenchmarkMergerAfterOneChange(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		mods := benchModules(n)
		b.Run(fmt.Sprintf("modules=%d", n), func(b *testing.B) {
			mg := NewMerger()
			if _, err := mg.Merge(mods, Settings{}); err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				i++
				mods[0].Spec.Rules[0].Verbs = []string{"create", fmt.Sprintf("verb-%d", i)}
				merged, err := mg.Merge(mods, Settings{})
				if err != nil {
					b.Fatal(err)
				}
				_ = merged.Hash()
				mg.Forget()
			}
		})
	}
}
