package policy

import (
	"fmt"
	"slices"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

// probes builds requests from every value a policy mentions, plus values it does not mention.
func probes(p auditv1.Policy) []Request {
	users := []string{"someone"}
	groups := [][]string{nil, {"system:masters"}}
	verbs := []string{"get", "list", "create", "custom"}
	namespaces := []string{"", "elsewhere"}
	type res struct{ group, resource, sub, name string }
	resources := []res{{"", "pods", "", "x"}, {"other.io", "widgets", "status", "y"}}
	paths := []string{"/somewhere", "/healthz"}
	for _, r := range p.Rules {
		users = append(users, r.Users...)
		for _, g := range r.UserGroups {
			groups = append(groups, []string{g})
		}
		verbs = append(verbs, r.Verbs...)
		namespaces = append(namespaces, r.Namespaces...)
		for _, u := range r.NonResourceURLs {
			paths = append(paths, u, u+"x")
		}
		for _, gr := range r.Resources {
			names := append([]string{"x"}, gr.ResourceNames...)
			for _, spec := range gr.Resources {
				for _, n := range names {
					resources = append(resources, res{gr.Group, spec, "", n}, res{gr.Group, spec, "status", n})
				}
			}
		}
	}
	var out []Request
	for _, u := range users {
		for _, g := range groups {
			for _, v := range verbs {
				for _, pth := range paths {
					out = append(out, Request{User: u, Groups: g, Verb: v, Path: pth})
				}
				for _, ns := range namespaces {
					for _, r := range resources {
						out = append(out, Request{User: u, Groups: g, Verb: v, ResourceRequest: true, APIGroup: r.group, Resource: r.resource, Subresource: r.sub, Name: r.name, Namespace: ns})
					}
				}
			}
		}
	}
	return out
}

var f = false // addressable

// Importing a policy and merging the modules back decides every request as the original does.
func TestImportMergesBackToTheSameDecisions(t *testing.T) {
	ptr := func(b bool) *bool { return &b }
	for i, p := range []auditv1.Policy{
		{
			OmitStages: []auditv1.Stage{auditv1.StageRequestReceived},
			Rules: []auditv1.PolicyRule{
				{Level: auditv1.LevelNone, Users: []string{"system:kube-proxy"}, Verbs: []string{"watch"}, Resources: []auditv1.GroupResources{{Resources: []string{"endpoints"}}}},
				{Level: auditv1.LevelNone, NonResourceURLs: []string{"/healthz*"}},
				{Level: auditv1.LevelMetadata, Resources: []auditv1.GroupResources{{Resources: []string{"secrets"}, ResourceNames: []string{"db"}}}, OmitStages: []auditv1.Stage{auditv1.StagePanic}},
				{Level: auditv1.LevelMetadata, Resources: []auditv1.GroupResources{{Resources: []string{"configmaps"}}}, OmitStages: []auditv1.Stage{auditv1.StagePanic}},
				{Level: auditv1.LevelRequestResponse, UserGroups: []string{"system:masters"}, OmitManagedFields: &f},
				{Level: auditv1.LevelRequest, Namespaces: []string{"team-a"}},
				{Level: auditv1.LevelRequestResponse},
			},
		},
		{ // no catch-all: unmatched requests stay unlogged
			OmitManagedFields: true,
			Rules: []auditv1.PolicyRule{
				{Level: auditv1.LevelRequestResponse, Resources: []auditv1.GroupResources{{Group: "rbac.authorization.k8s.io"}}},
				{Level: auditv1.LevelRequest, Verbs: []string{"create"}, OmitManagedFields: ptr(false)},
			},
		},
		{ // catch-all with bodies and omitManagedFields at policy level: kept as a rule
			OmitManagedFields: true,
			Rules:             []auditv1.PolicyRule{{Level: auditv1.LevelRequest}},
		},
		catchAllRestatingPolicyStages, catchAllWithStagesEveryRuleOmits, catchAllWithStagesOnlyItOmits,
		{Rules: []auditv1.PolicyRule{{Level: auditv1.LevelRequest}, {Level: auditv1.LevelNone, OmitStages: []auditv1.Stage{auditv1.StagePanic}}}},
	} {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			for _, single := range []bool{false, true} {
				imp := Import(p, ImportOptions{Prefix: "Legacy Policy", Single: single})
				m, err := Merge(imp.Modules, imp.Settings)
				if err != nil {
					t.Fatal(err)
				}
				orig, err := NewEvaluator(p)
				if err != nil {
					t.Fatal(err)
				}
				merged, err := NewEvaluator(m.Policy)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range probes(p) {
					a, b := orig.Decide(r), merged.Decide(r)
					bodies := LevelRank(a.Level) >= 2
					if a.Level != b.Level || (a.Level != auditv1.LevelNone && !slices.Equal(a.OmitStages, b.OmitStages)) || (bodies && a.OmitManagedFields != b.OmitManagedFields) {
						t.Fatalf("single=%v %+v: original %+v, imported %+v", single, r, a, b)
					}
				}
				for _, mod := range imp.Modules {
					if err := ValidateModule(mod); err != nil {
						t.Errorf("module %s: %v", mod.Name, err)
					}
				}
				// Sources name where each rule went.
				for j, src := range imp.Sources {
					if src.IsDefault() {
						if j != len(p.Rules)-1 || !MatchesEverything(p.Rules[j]) {
							t.Errorf("single=%v: rule %d became the default", single, j)
						}
						continue
					}
					k := slices.IndexFunc(imp.Modules, func(m Module) bool { return m.Name == src.Module })
					if k < 0 || src.Rule >= len(imp.Modules[k].Spec.Rules) || fmt.Sprint(ToUpstream(imp.Modules[k].Spec.Rules[src.Rule]).Resources) != fmt.Sprint(p.Rules[j].Resources) {
						t.Errorf("single=%v: rule %d: source %+v does not hold it", single, j, src)
					}
				}
			}
		})
	}
}

func TestImportNamesModulesAfterTheirRules(t *testing.T) {
	p := auditv1.Policy{Rules: []auditv1.PolicyRule{
		{Level: auditv1.LevelNone, Users: []string{"a"}},
		{Level: auditv1.LevelNone, Users: []string{"b"}},
		{Level: auditv1.LevelMetadata, Resources: []auditv1.GroupResources{{Resources: []string{"secrets"}}}},
		{Level: auditv1.LevelMetadata},
	}}
	imp := Import(p, ImportOptions{Prefix: "Legacy_Policy"})
	var names []string
	for _, m := range imp.Modules {
		names = append(names, m.Name)
	}
	if !slices.Equal(names, []string{"legacy-policy-01-noise", "legacy-policy-02-secrets"}) {
		t.Errorf("modules %v", names)
	}
	if imp.Settings.DefaultLevel != "Metadata" {
		t.Errorf("default level %q, want Metadata (from the final catch-all)", imp.Settings.DefaultLevel)
	}
}

// No module gets more rules than the CRD allows, and the split modules merge back to the same
// policy.
func TestImportSplitsGroupsOverTheRuleLimit(t *testing.T) {
	var p auditv1.Policy
	for i := range 2*MaxModuleRules + 50 {
		p.Rules = append(p.Rules, auditv1.PolicyRule{Level: auditv1.LevelMetadata, Users: []string{fmt.Sprint("user-", i)}})
	}
	want, err := Merge(Import(p, ImportOptions{}).Modules, Settings{DefaultLevel: "None"})
	if err != nil {
		t.Fatal(err)
	}
	for _, single := range []bool{false, true} {
		imp := Import(p, ImportOptions{Single: single})
		if len(imp.Modules) != 3 {
			t.Errorf("single=%v: %d modules, want 3", single, len(imp.Modules))
		}
		for _, m := range imp.Modules {
			if len(m.Spec.Rules) > MaxModuleRules {
				t.Errorf("single=%v: module %s has %d rules", single, m.Name, len(m.Spec.Rules))
			}
		}
		got, err := Merge(imp.Modules, imp.Settings)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(got.Policy.Rules, want.Policy.Rules, func(a, b auditv1.PolicyRule) bool { return fmt.Sprint(a) == fmt.Sprint(b) }) {
			t.Errorf("single=%v: the split modules merge to other rules", single)
		}
	}
}

var (
	rr = []auditv1.Stage{auditv1.StageRequestReceived}
	// As the Kubernetes docs example: the catch-all repeats the policy's omitStages.
	catchAllRestatingPolicyStages = auditv1.Policy{OmitStages: rr, Rules: []auditv1.PolicyRule{
		{Level: auditv1.LevelRequest, Resources: []auditv1.GroupResources{{Group: ""}}},
		{Level: auditv1.LevelMetadata, OmitStages: rr},
	}}
	// As GKE's policy: no policy-level omitStages, but every rule that logs omits RequestReceived.
	catchAllWithStagesEveryRuleOmits = auditv1.Policy{Rules: []auditv1.PolicyRule{
		{Level: auditv1.LevelNone, Resources: []auditv1.GroupResources{{Resources: []string{"events"}}}},
		{Level: auditv1.LevelRequest, Verbs: []string{"get"}, OmitStages: rr},
		{Level: auditv1.LevelRequestResponse, Resources: []auditv1.GroupResources{{Group: "apps"}}, OmitStages: []auditv1.Stage{auditv1.StagePanic, auditv1.StageRequestReceived}},
		{Level: auditv1.LevelMetadata, OmitStages: rr},
	}}
	// A rule that logs RequestReceived: the catch-all's stages cannot move to the policy.
	catchAllWithStagesOnlyItOmits = auditv1.Policy{Rules: []auditv1.PolicyRule{
		{Level: auditv1.LevelRequest, Verbs: []string{"create"}},
		{Level: auditv1.LevelMetadata, OmitStages: rr},
	}}
)

// A final catch-all with its own omitStages becomes the default level whenever its stages can be
// the policy's without changing another rule's; import's help promises it, and lint then has
// no catch-all module to report.
func TestImportMakesACatchAllWithItsOwnStagesTheDefault(t *testing.T) {
	for name, tc := range map[string]struct {
		policy     auditv1.Policy
		omitStages []v1alpha1.Stage
		kept       bool
	}{
		"its stages are the policy's":           {catchAllRestatingPolicyStages, []v1alpha1.Stage{v1alpha1.StageRequestReceived}, false},
		"every rule that logs omits its stages": {catchAllWithStagesEveryRuleOmits, []v1alpha1.Stage{v1alpha1.StageRequestReceived}, false},
		"another rule logs its stages":          {catchAllWithStagesOnlyItOmits, nil, true},
	} {
		t.Run(name, func(t *testing.T) {
			imp := Import(tc.policy, ImportOptions{})
			if imp.Settings.DefaultLevel != v1alpha1.LevelMetadata || !slices.Equal(imp.Settings.OmitStages, tc.omitStages) {
				t.Errorf("settings %+v, want defaultLevel Metadata and omitStages %v", imp.Settings, tc.omitStages)
			}
			catchAll := false
			for _, m := range imp.Modules {
				for _, r := range m.Spec.Rules {
					catchAll = catchAll || MatchesEverything(ToUpstream(r))
				}
			}
			if catchAll != tc.kept {
				t.Errorf("a module keeps the catch-all: %v, want %v (%+v)", catchAll, tc.kept, imp.Modules)
			}
			if tc.kept && len(imp.Notes) == 0 {
				t.Error("no note says why the catch-all stays a module rule")
			}
		})
	}
}
