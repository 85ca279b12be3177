package guardrail

import (
	"fmt"
	"slices"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/policy"
)

// teamModules are modules shaped like the ones teams write, three rules each: drop their
// service accounts' reads in their namespace, keep their writes of a few resources with bodies,
// everything else in the namespace at Metadata. One module in wildcardEvery logs everything in
// its namespace with bodies, after keeping credentials at Metadata: every one of those is a
// rule the credentials guardrail must prove shadowed.
func teamModules(n, wildcardEvery int, order int32) []policy.Module {
	mods := make([]policy.Module, n)
	for i := range mods {
		ns := fmt.Sprintf("team-%d", i)
		sa := fmt.Sprintf("system:serviceaccount:%s:deployer", ns)
		noise := v1alpha1.PolicyRule{Level: v1alpha1.LevelNone, Users: []string{sa}, Verbs: []string{"get", "list", "watch"}, Namespaces: []string{ns}}
		rules := []v1alpha1.PolicyRule{
			noise,
			{Level: v1alpha1.LevelRequest, Verbs: []string{"create", "update", "patch", "delete"}, Namespaces: []string{ns}, Resources: []v1alpha1.GroupResources{
				{Group: "apps", Resources: []string{"deployments", "statefulsets", "deployments/scale"}},
				{Group: "", Resources: []string{"services", "pods"}},
			}},
			{Level: v1alpha1.LevelMetadata, Namespaces: []string{ns}},
		}
		if i%wildcardEvery == wildcardEvery-1 {
			rules = []v1alpha1.PolicyRule{
				{Level: v1alpha1.LevelMetadata, Namespaces: []string{ns}, Resources: []v1alpha1.GroupResources{
					{Group: "", Resources: []string{"secrets", "configmaps", "serviceaccounts/token"}},
					{Group: "authentication.k8s.io", Resources: []string{"tokenreviews"}},
					{Group: "certificates.k8s.io", Resources: []string{"certificatesigningrequests/*", "podcertificaterequests/*"}},
				}},
				{Level: v1alpha1.LevelRequestResponse, Namespaces: []string{ns}, Resources: []v1alpha1.GroupResources{{Group: "*", Resources: []string{"*"}}}},
				noise,
			}
		}
		mods[i] = policy.Module{Name: fmt.Sprintf("team-%05d", i), Spec: v1alpha1.AuditPolicyModuleSpec{Order: order, Rules: rules}}
	}
	return mods
}

// benchPolicies are the shapes measured, each with about rules rules:
//   - baseline-then-teams: the usual shape; the baseline settles every guardrail early.
//   - teams-then-baseline: team modules before the baseline, one in ten with a wildcard.
//   - wildcard-teams-then-baseline: every team module has the wildcard: the credentials
//     guardrail holds, but only because each wildcard is shadowed by the rule before it, which
//     the search proves one by one before the baseline settles the rest.
func benchPolicies(b testing.TB, rules int) map[string]auditv1.Policy {
	baseline, settings := baselineModules(b)
	out := map[string]auditv1.Policy{}
	for _, shape := range []struct {
		name          string
		wildcardEvery int
		order         int32
	}{{"baseline-then-teams", 10, 1000}, {"teams-then-baseline", 10, 50}, {"wildcard-teams-then-baseline", 1, 50}} {
		merged, err := policy.Merge(append(teamModules(rules/3, shape.wildcardEvery, shape.order), baseline...), settings)
		if err != nil {
			b.Fatal(err)
		}
		out[shape.name] = merged.Policy
	}
	return out
}

// BenchmarkCheckBuiltins measures Check of every built-in guardrail, including loading the policy
// into kube-apiserver's evaluator to confirm witnesses. BenchmarkLoadEvaluator is that loading
// alone, for comparison.
func BenchmarkCheckBuiltins(b *testing.B) {
	for _, n := range []int{1000, 15000} {
		for name, p := range benchPolicies(b, n) {
			b.Run(fmt.Sprintf("rules=%d/%s", n, name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := Check(p, Builtins()); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkLoadEvaluator(b *testing.B) {
	for _, n := range []int{1000, 15000} {
		p := benchPolicies(b, n)["baseline-then-teams"]
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := policy.NewEvaluator(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// compiledBuiltins prepares a policy and the built-ins for the search alone.
func compiledBuiltins(p auditv1.Policy) (*compiled, []Guardrail, []matcher, [][]subtrahend) {
	guardrails := Builtins()
	u := newUniverse()
	collectPolicy(u, p)
	for _, g := range guardrails {
		u.collect(g.Scope.fields())
		for _, e := range g.Except {
			u.collect(e.fields())
		}
	}
	u.freeze()
	scopes, excepts := make([]matcher, len(guardrails)), make([][]subtrahend, len(guardrails))
	for i, g := range guardrails {
		scopes[i] = u.matcher(g.Scope.fields())
		var ms []matcher
		for _, e := range g.Except {
			ms = append(ms, u.matcher(e.fields()))
		}
		excepts[i] = []subtrahend{{rules: newRuleIndex(ms), before: len(ms)}}
	}
	return compilePolicy(u, p), guardrails, scopes, excepts
}

// naiveFirstReachable is the search without what makes it fast, for comparison: every rule
// whose result is bad is searched against every earlier rule (no index, no skipping of rules
// that miss the area, no stopping once the area is covered).
func naiveFirstReachable(c *compiled, a area, excepts []subtrahend, bad func(result) bool) (reached, bool) {
	type groupBox struct {
		groups []int32
		box    *box
	}
	var all []groupBox
	for _, s := range excepts {
		for _, m := range s.rules.rules[:s.before] {
			for i := range m.boxes {
				all = append(all, groupBox{groups: m.groups, box: &m.boxes[i]})
			}
		}
	}
	search := func(rule int, ruleGroups []int32, targets []box) (reached, bool) {
		must := a.must
		if ruleGroups != nil {
			must = append(slices.Clone(must), ruleGroups)
		}
		for _, groups := range minimalGroupSets(must) {
			var subs []*box
			for _, s := range all {
				if s.groups == nil || sharesID(s.groups, groups) {
					subs = append(subs, s.box)
				}
			}
			for _, t := range targets {
				if p, ok := find(t, subs); ok {
					return reached{rule: rule, groups: groups, point: p}, true
				}
			}
		}
		return reached{}, false
	}
	for i := range c.rules {
		r := &c.rules[i]
		if bad(c.results[i]) {
			var targets []box
			for j := range r.boxes {
				for k := range a.boxes {
					if t := r.boxes[j].intersect(&a.boxes[k]); !t.empty() {
						targets = append(targets, t)
					}
				}
			}
			if found, ok := search(i, r.groups, targets); ok {
				return found, true
			}
		}
		for j := range r.boxes {
			all = append(all, groupBox{groups: r.groups, box: &r.boxes[j]})
		}
	}
	if bad(c.defaultResult()) {
		return search(len(c.rules), nil, a.boxes)
	}
	return reached{}, false
}

// BenchmarkSearchBuiltins compares the search of Check (engine) with naiveFirstReachable
// (naive) on the same compiled policies, without loading or compiling.
func BenchmarkSearchBuiltins(b *testing.B) {
	for _, n := range []int{1000, 15000} {
		for name, p := range benchPolicies(b, n) {
			c, guardrails, scopes, excepts := compiledBuiltins(p)
			for _, search := range []struct {
				name string
				run  func(*compiled, area, []subtrahend, func(result) bool) (reached, bool)
			}{{"engine", firstReachable}, {"naive", naiveFirstReachable}} {
				if search.name == "naive" && n > 1000 && name != "baseline-then-teams" {
					continue // minutes per run
				}
				b.Run(fmt.Sprintf("rules=%d/%s/%s", n, name, search.name), func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						c.idx = nil // built once per Check
						for i := range guardrails {
							search.run(c, areaOf(&scopes[i]), excepts[i], guardrails[i].violatedBy)
						}
					}
				})
			}
		}
	}
}
