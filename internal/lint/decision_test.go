package lint

import (
	"slices"
	"strings"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"sigs.k8s.io/yaml"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/guardrail"
	"github.com/kaudit/kaudit/internal/inforce"
	"github.com/kaudit/kaudit/internal/policy"
)

// onCluster are the settings of an AuditPolicy that says nothing of guardrails and namespaced
// modules: the built-in guardrails hold, namespaced modules are on, capped at RequestResponse.
var onCluster = inforce.SettingsFrom(v1alpha1.AuditPolicySpec{OmitStages: []v1alpha1.Stage{v1alpha1.StageRequestReceived}})

func with(change func(*inforce.Settings)) inforce.Settings {
	s := onCluster
	change(&s)
	return s
}

// module builds a module from its rules in YAML; namespace "" makes an AuditPolicyModule.
func module(t *testing.T, namespace, name string, order int32, rules string) policy.Module {
	t.Helper()
	var parsed []v1alpha1.PolicyRule
	if err := yaml.UnmarshalStrict([]byte(rules), &parsed); err != nil {
		t.Fatalf("module %s: %v", name, err)
	}
	return policy.Module{Namespace: namespace, Name: name, Spec: v1alpha1.AuditPolicyModuleSpec{Order: order, Rules: parsed}}
}

func modulesOf(t *testing.T, build func(*testing.T) []policy.Module, settings inforce.Settings) []Finding {
	t.Helper()
	fs, err := Modules(build(t), settings, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// rejection is a set of modules of which the manager rejects one, and the finding that says so.
type rejection struct {
	name     string
	settings inforce.Settings
	modules  func(*testing.T) []policy.Module
	check    string
	module   string
	rule     int
	// says are parts of the message: the guardrail, the witness's level, the reason.
	says []string
}

// rejections has a case for every check that reports what the manager would reject.
var rejections = []rejection{
	{"a module logging Secret bodies", onCluster, func(t *testing.T) []policy.Module {
		return []policy.Module{module(t, "", "leak", 10, `[{level: RequestResponse, resources: [{group: "", resources: [secrets]}]}]`)}
	}, "guardrail-violation", "leak", 0, []string{`guardrail "no-credential-bodies"`, "secrets", "would be logged at RequestResponse by its rule 0"}},
	{"the rule that decides the witness, after one that does not", onCluster, func(t *testing.T) []policy.Module {
		return []policy.Module{module(t, "", "leak", 10, `[{level: Request, verbs: [create], resources: [{group: apps}]}, {level: RequestResponse, resources: [{group: ""}]}]`)}
	}, "guardrail-violation", "leak", 1, []string{`guardrail "no-credential-bodies"`, "by its rule 1"}},
	{"None for system:masters", onCluster, func(t *testing.T) []policy.Module {
		return []policy.Module{module(t, "", "quiet", 10, `[{level: None, verbs: [get]}]`)}
	}, "guardrail-violation", "quiet", 0, []string{`guardrail "system-masters-logged"`, "system:masters", "would be logged at None"}},
	{"a namespaced module logging Secret bodies", onCluster, func(t *testing.T) []policy.Module {
		return []policy.Module{module(t, "team-a", "leak", 10, `[{level: RequestResponse, resources: [{group: "", resources: [secrets]}]}]`)}
	}, "guardrail-violation", "team-a/leak", 0, []string{`guardrail "no-credential-bodies"`, `in namespace "team-a"`}},
	{"a namespaced module lowering what the cluster's modules log", onCluster, func(t *testing.T) []policy.Module {
		return []policy.Module{
			module(t, "", "pods", 10, `[{level: Request, resources: [{group: "", resources: [pods]}]}]`),
			module(t, "team-a", "quiet", 10, `[{level: None, resources: [{group: "", resources: [pods]}]}]`),
		}
	}, "lowers-logging", "team-a/quiet", -1, []string{"Rule 0 would log", `in namespace "team-a"`, "at None", "module pods", "only make logging stricter"}},
	{"a namespaced module above the cap", with(func(s *inforce.Settings) { s.NamespacedMaxLevel = v1alpha1.LevelMetadata }), func(t *testing.T) []policy.Module {
		return []policy.Module{module(t, "team-a", "bodies", 10, `[{level: Metadata, verbs: [get]}, {level: Request, resources: [{group: apps, resources: [deployments]}]}]`)}
	}, "above-cap", "team-a/bodies", -1, []string{"Rule 1 has level Request, above Metadata", "spec.namespacedModules.maxLevel"}},
	{"a namespaced module while they are switched off", with(func(s *inforce.Settings) { s.NamespacedEnabled = false }), func(t *testing.T) []policy.Module {
		return []policy.Module{module(t, "team-a", "bodies", 10, `[{level: Request, resources: [{group: apps, resources: [deployments]}]}]`)}
	}, "namespaced-modules-disabled", "team-a/bodies", -1, []string{"spec.namespacedModules.enabled", "Nothing of this module is in force"}},
	{"a default level that breaks guardrails itself", with(func(s *inforce.Settings) { s.Policy.DefaultLevel = v1alpha1.LevelNone }), func(t *testing.T) []policy.Module {
		return []policy.Module{module(t, "", "writes", 10, `[{level: Metadata, verbs: [create]}]`)}
	}, "guardrail-broken", "", -1, []string{`breaks guardrail "system-masters-logged"`, "logged at None", "the default level"}},
}

func TestWhatTheManagerRejectsIsFound(t *testing.T) {
	for _, tc := range rejections {
		t.Run(tc.name, func(t *testing.T) {
			fs := modulesOf(t, tc.modules, tc.settings)
			i := slices.IndexFunc(fs, func(f Finding) bool { return f.Check == tc.check && f.Module == tc.module && f.Rule == tc.rule })
			if i < 0 {
				t.Fatalf("want %s at module %q rule %d; got %+v", tc.check, tc.module, tc.rule, fs)
			}
			f := fs[i]
			if f.Severity != Error {
				t.Errorf("severity %s, want error: the manager rejects it", f.Severity)
			}
			for _, s := range tc.says {
				if !strings.Contains(f.Message, s) {
					t.Errorf("message %q does not say %q", f.Message, s)
				}
			}
			if tc.rule >= 0 && f.PolicyRule < 0 {
				t.Errorf("a finding at a rule points at no rule of the merged policy: %+v", f)
			}
		})
	}
}

// A finding's message is the module's Accepted condition's message, word for word.
func TestRejectionsSayWhatTheAcceptedConditionSays(t *testing.T) {
	for _, tc := range rejections {
		mods := tc.modules(t)
		in := inforce.Input{Settings: tc.settings}
		for _, m := range mods {
			in.Modules = append(in.Modules, inforce.Module{Module: m})
		}
		r, err := inforce.Decide(in, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range modulesOf(t, tc.modules, tc.settings) {
			if _, rejects := rejectedBy[reasonOf(f.Check)]; !rejects {
				continue
			}
			if o := r.Outcomes[f.Module]; o.Accepted || o.Message != f.Message {
				t.Errorf("%s: finding %q, Accepted condition %+v", tc.name, f.Message, o)
			}
		}
	}
}

// reasonOf is the condition reason a rejection check reports.
func reasonOf(check string) string {
	for reason, id := range rejectedBy {
		if catalogue[id].Name == check {
			return reason
		}
	}
	return ""
}

// The check is the manager's, first match included: the baseline's shape, system:masters at
// RequestResponse after Secrets at Metadata, and namespaced modules that only add, pass.
func TestCompliantModulesAreNotRejected(t *testing.T) {
	fs := modulesOf(t, func(t *testing.T) []policy.Module {
		return []policy.Module{
			module(t, "", "secrets-metadata-only", 100, `[{level: Metadata, resources: [{group: "", resources: [secrets, configmaps, serviceaccounts/token]}, {group: authentication.k8s.io, resources: [tokenreviews]}, {group: certificates.k8s.io, resources: [certificatesigningrequests/*, podcertificaterequests/*]}]}]`),
			module(t, "", "system-masters", 300, `[{level: RequestResponse, userGroups: ["system:masters"]}]`),
			module(t, "", "noise", 400, `[{level: None, users: ["system:apiserver"], verbs: [get, list, watch], resources: [{group: "", resources: [namespaces, endpoints]}]}]`),
			module(t, "team-a", "deployments", 10, `[{level: RequestResponse, verbs: [create, update, patch, delete], resources: [{group: apps, resources: [deployments]}]}]`),
			module(t, "team-b", "statefulsets", 10, `[{level: RequestResponse, verbs: [create], resources: [{group: apps, resources: [statefulsets]}]}]`),
		}
	}, onCluster)
	for _, f := range fs {
		if _, rejects := rejectedBy[reasonOf(f.Check)]; rejects || f.Check == "guardrail-broken" {
			t.Errorf("the manager accepts these modules, yet: %+v", f)
		}
	}
}

// Switching a built-in off is what the manager honours too.
func TestDisabledBuiltInsDoNotHold(t *testing.T) {
	settings := inforce.SettingsFrom(v1alpha1.AuditPolicySpec{Guardrails: v1alpha1.GuardrailsSpec{DisabledBuiltIns: []v1alpha1.BuiltInGuardrail{guardrail.NoCredentialBodies}}})
	fs := modulesOf(t, rejections[0].modules, settings)
	if slices.ContainsFunc(fs, func(f Finding) bool { return f.Check == "guardrail-violation" }) {
		t.Errorf("no-credential-bodies is switched off: %+v", fs)
	}
}

// An invalid custom guardrail is an invalid finding; the other guardrails still hold.
func TestAnInvalidGuardrailHidesNoOtherFinding(t *testing.T) {
	settings := with(func(s *inforce.Settings) {
		s.Guardrails = append(slices.Clone(s.Guardrails), guardrail.Guardrail{Name: "typo", MinLevel: auditv1.LevelMetadata,
			Scope: guardrail.Scope{Resources: []auditv1.GroupResources{{Group: "Apps/v1"}}}})
	})
	fs := modulesOf(t, rejections[0].modules, settings)
	if !slices.ContainsFunc(fs, func(f Finding) bool {
		return f.Check == "invalid" && f.Module == "" && strings.Contains(f.Message, `spec.guardrails: guardrail "typo"`)
	}) {
		t.Errorf("no invalid finding naming the guardrail: %+v", fs)
	}
	if !has(fs, "guardrail-violation", "leak", 0, Error) {
		t.Errorf("the built-in guardrails no longer hold: %+v", fs)
	}
}
