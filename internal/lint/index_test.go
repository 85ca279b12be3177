package lint

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"sigs.k8s.io/yaml"

	"github.com/kaudit/kaudit/internal/policy"
)

// The index decides exactly as kube-apiserver's evaluator of the whole policy: same deciding
// rule, level, stages and managedFields, and the same matching rules, on every witness lint
// builds for the test policies, the published ones and a large generated one.
func TestTheRuleIndexDecidesAsTheWholePolicy(t *testing.T) {
	var policies []*policy.Merged
	for _, tc := range problems {
		policies = append(policies, merged(t, tc.settings, tc.modules...))
	}
	for _, file := range []string{"gke-policy.yaml", "docs-example-policy.yaml"} {
		raw, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		var p auditv1.Policy
		if err := yaml.UnmarshalStrict(raw, &p); err != nil {
			t.Fatal(err)
		}
		imp := policy.Import(p, policy.ImportOptions{})
		m, err := policy.Merge(imp.Modules, imp.Settings)
		if err != nil {
			t.Fatal(err)
		}
		policies = append(policies, m)
	}
	policies = append(policies, manyRules(t, 300))
	for n, m := range policies {
		eval, err := policy.NewEvaluator(m.Policy)
		if err != nil {
			t.Fatal(err)
		}
		x, err := newRuleIndex(m.Policy)
		if err != nil {
			t.Fatal(err)
		}
		var requests []policy.Request
		for _, r := range m.Policy.Rules {
			requests = append(requests, witnesses(r, shape{})...)
			requests = append(requests, witnesses(r, shape{verbs: []string{"get", "create", "watch"}, groups: []string{"system:masters"}})...)
			requests = append(requests, witnesses(r, shape{targets: []target{{url: "/healthz"}, {resource: true, res: "secrets", ns: "kube-system"}}})...)
		}
		for _, w := range requests {
			want, got := eval.Decide(w), x.decide(w)
			slices.Sort(want.OmitStages)
			if want.Rule != got.Rule || want.Level != got.Level || !slices.Equal(want.OmitStages, got.OmitStages) || want.OmitManagedFields != got.OmitManagedFields {
				t.Fatalf("policy %d, %+v: the whole policy decides %+v, the index %+v", n, w, want, got)
			}
			if want, got := eval.Matching(w), x.matching(w); !slices.Equal(want, got) {
				t.Fatalf("policy %d, %+v: matching %v, the index %v", n, w, want, got)
			}
		}
	}
}
