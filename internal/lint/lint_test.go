package lint

import (
	"fmt"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/inforce"
	"github.com/kaudit/kaudit/internal/policy"
)

// modules builds modules m0, m1, ... in that order from their rules in YAML.
func modules(t *testing.T, rules ...string) []policy.Module {
	t.Helper()
	var mods []policy.Module
	for i, m := range rules {
		var parsed []v1alpha1.PolicyRule
		if err := yaml.UnmarshalStrict([]byte(m), &parsed); err != nil {
			t.Fatalf("module %d: %v", i, err)
		}
		mods = append(mods, policy.Module{Name: fmt.Sprintf("m%d", i), Spec: v1alpha1.AuditPolicyModuleSpec{Order: int32(i), Rules: parsed}})
	}
	return mods
}

// merged builds a policy from modules given as their rules in YAML, in order.
func merged(t *testing.T, settings policy.Settings, rules ...string) *policy.Merged {
	t.Helper()
	out, err := policy.Merge(modules(t, rules...), settings)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var quiet = policy.Settings{OmitStages: []v1alpha1.Stage{v1alpha1.StageRequestReceived}}

func lintOf(t *testing.T, m *policy.Merged) []Finding {
	t.Helper()
	fs, err := Lint(m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func has(fs []Finding, check, module string, rule int, sev Severity) bool {
	for _, f := range fs {
		if f.Check == check && f.Module == module && f.Rule == rule && f.Severity == sev {
			return true
		}
	}
	return false
}

func TestACarefulPolicyHasNoFindings(t *testing.T) {
	m := merged(t, quiet,
		`[{level: None, users: ["system:kube-proxy"], verbs: [watch], resources: [{group: "", resources: [endpoints, services]}]},
		  {level: None, nonResourceURLs: ["/healthz*", "/readyz*"]}]`,
		`[{level: Metadata, resources: [{group: "", resources: [secrets, configmaps, serviceaccounts/token]}, {group: authentication.k8s.io, resources: [tokenreviews]}]}]`,
		`[{level: RequestResponse, verbs: [create, update, patch, delete], resources: [{group: rbac.authorization.k8s.io, resources: [roles, rolebindings, clusterroles, clusterrolebindings]}]},
		  {level: Request, verbs: [create, update, patch, delete], resources: [{group: apps, resources: [deployments, statefulsets]}]}]`,
	)
	if fs := lintOf(t, m); len(fs) != 0 {
		t.Errorf("findings on a careful policy: %+v", fs)
	}
}

// problem is a policy with one problem and the finding that reports it.
type problem struct {
	name     string
	settings policy.Settings
	modules  []string
	check    string
	module   string
	rule     int
	severity Severity
}

// problems has a case for every check of the catalogue that Lint runs (invalid comes from
// FromError).
var problems = []problem{
	{"a rule caught entirely by an earlier, broader one", quiet, []string{
		`[{level: Metadata, resources: [{group: ""}]}]`,
		`[{level: Request, verbs: [get], resources: [{group: "", resources: [pods]}]}]`,
	}, "shadowed-rule", "m1", 0, Warning},
	{"a rule caught by several earlier ones together", quiet, []string{
		`[{level: None, verbs: [get]}, {level: None, verbs: [list]}]`,
		`[{level: Request, verbs: [get, list], resources: [{group: "", resources: [pods]}]}]`,
	}, "shadowed-rule", "m1", 0, Warning},
	{"the same rule twice", quiet, []string{
		`[{level: Metadata, resources: [{group: "", resources: [secrets]}]}]`,
		`[{level: Request, resources: [{group: "", resources: [secrets]}]}]`,
	}, "duplicate-rule", "m1", 0, Warning},
	{"a module with its own catch-all", quiet, []string{`[{level: Metadata}]`}, "shadowed-default", "", -1, Warning},
	{"secrets with bodies", quiet, []string{`[{level: RequestResponse, resources: [{group: ""}]}]`}, "secrets-above-metadata", "m0", 0, Error},
	{"tokenreviews with bodies", quiet, []string{`[{level: Request, verbs: [create], resources: [{group: authentication.k8s.io}]}]`}, "secrets-above-metadata", "m0", 0, Error},
	{"configmaps with bodies", quiet, []string{
		`[{level: Metadata, resources: [{group: "", resources: [secrets]}]}]`,
		`[{level: Request, resources: [{group: "", resources: [configmaps]}]}]`,
	}, "secrets-above-metadata", "m1", 0, Warning},
	{"None for system:masters", quiet, []string{`[{level: None, userGroups: ["system:masters"], verbs: [get]}]`}, "blinds-audit", "m0", 0, Error},
	{"None for everyone's writes", quiet, []string{`[{level: None, verbs: [create, delete], resources: [{group: "*"}]}]`}, "blinds-audit", "m0", 0, Error},
	{"default level None", policy.Settings{DefaultLevel: v1alpha1.LevelNone, OmitStages: quiet.OmitStages}, []string{`[{level: Metadata, verbs: [create]}]`}, "no-catch-all", "", -1, Warning},
	{"RequestReceived logged", policy.Settings{}, []string{`[{level: Metadata, verbs: [create]}]`}, "request-received-not-omitted", "", -1, Warning},
	{"bodies of a whole API group", quiet, []string{`[{level: RequestResponse, verbs: [create], resources: [{group: apps}]}]`}, "wildcard-requestresponse", "m0", 0, Warning},
	{"list responses logged whole", quiet, []string{`[{level: RequestResponse, resources: [{group: apps, resources: [deployments]}]}]`}, "list-watch-requestresponse", "m0", 0, Warning},
	{"a typo in a resource", quiet, []string{`[{level: Request, resources: [{group: apps, resources: [deploymnets]}]}]`}, "unknown-resource", "m0", 0, Warning},
	{"a typo in a group", quiet, []string{`[{level: Request, resources: [{group: rbac.authorization.k8s.oi, resources: [roles]}]}]`}, "unknown-group", "m0", 0, Warning},
	{"a typo in a verb", quiet, []string{`[{level: Request, verbs: [gett]}]`}, "unknown-verb", "m0", 0, Warning},
	{"a rule restating a later, broader one", quiet, []string{
		`[{level: Request, verbs: [create], resources: [{group: apps, resources: [deployments]}]}]`,
		`[{level: Request, verbs: [create, update], resources: [{group: apps}]}]`,
	}, "redundant-rule", "m0", 0, Info},
	{"a custom API group", quiet, []string{`[{level: Request, verbs: [create], resources: [{group: example.com, resources: [widgets]}]}]`}, "unchecked-group", "m0", 0, Info},
	{"a typo in a subresource", quiet, []string{`[{level: Request, verbs: [create], resources: [{group: "", resources: [pods/exex]}]}]`}, "unknown-subresource", "m0", 0, Info},
}

func TestEachProblemIsFound(t *testing.T) {
	for _, tc := range problems {
		t.Run(tc.name, func(t *testing.T) {
			fs := lintOf(t, merged(t, tc.settings, tc.modules...))
			if !has(fs, tc.check, tc.module, tc.rule, tc.severity) {
				t.Errorf("want %s %s at module %q rule %d; got %+v", tc.severity, tc.check, tc.module, tc.rule, fs)
			}
		})
	}
}

func TestKnownResourcesCanBeExtended(t *testing.T) {
	m := merged(t, quiet, `[{level: Request, verbs: [create], resources: [{group: example.com, resources: [widgets]}, {group: "", resources: [widgets]}]}]`)
	fs, err := Lint(m, Options{Resources: []string{"/widgets"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if f.Check == "unknown-resource" {
			t.Errorf("widgets was made known: %+v", f)
		}
	}
	if !has(fs, "unchecked-group", "m0", 0, Info) {
		t.Errorf("a custom group is reported as unchecked: %+v", fs)
	}
}

func TestInvalidModulesBecomeFindings(t *testing.T) {
	err := policy.ValidateModule(policy.Module{Name: "bad", Spec: v1alpha1.AuditPolicyModuleSpec{Rules: []v1alpha1.PolicyRule{{Level: "Everything"}}}})
	fs := FromError(err)
	if len(fs) != 1 || fs[0].Check != "invalid" || fs[0].Module != "bad" || fs[0].Rule != 0 || fs[0].Severity != Error {
		t.Errorf("findings %+v", fs)
	}
}

func TestRedundantRules(t *testing.T) {
	m := merged(t, quiet,
		`[{level: Request, verbs: [create], resources: [{group: apps, resources: [deployments]}]}]`,
		`[{level: Request, verbs: [create, update], resources: [{group: apps}]}]`,
	)
	fs := lintOf(t, m)
	if !has(fs, "redundant-rule", "m0", 0, Info) {
		t.Errorf("a rule restating a later, broader rule is redundant: %+v", fs)
	}
	// Restating the default level pins it: not reported.
	m = merged(t, quiet, `[{level: Metadata, resources: [{group: "", resources: [secrets]}]}]`)
	if fs := lintOf(t, m); len(fs) != 0 {
		t.Errorf("findings %+v", fs)
	}
}

// A module's catch-all decides what no other rule matches: the default None is shadowed, not a
// hole in the audit log.
func TestNoCatchAllOnlyWhenTheDefaultNoneDecides(t *testing.T) {
	fs := lintOf(t, merged(t, policy.Settings{DefaultLevel: v1alpha1.LevelNone, OmitStages: quiet.OmitStages}, `[{level: Metadata}]`))
	if has(fs, "no-catch-all", "", -1, Warning) || !has(fs, "shadowed-default", "", -1, Warning) {
		t.Errorf("findings %+v: want shadowed-default and no no-catch-all", fs)
	}
}

func TestUnknownFieldsAreErrorsAtTheirRule(t *testing.T) {
	fs, err := Modules(modules(t, `[{level: None, users: [x]}, {level: None}]`), inforce.Settings{Policy: quiet}, Options{UnknownFields: []UnknownField{{Module: "m0", Rule: 1, Problem: `unknown field "verb" (did you mean "verbs"?)`}}})
	if err != nil {
		t.Fatal(err)
	}
	if !has(fs, "unknown-field", "m0", 1, Error) {
		t.Errorf("findings %+v", fs)
	}
}
