package explain

import (
	"slices"
	"strings"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"sigs.k8s.io/yaml"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/guardrail"
	"github.com/kaudit/kaudit/internal/policy"
)

// mergedOf merges modules given by name and rules in YAML, ordered as listed.
func mergedOf(t *testing.T, settings policy.Settings, modules ...[2]string) *policy.Merged {
	t.Helper()
	var mods []policy.Module
	for i, m := range modules {
		var rules []v1alpha1.PolicyRule
		if err := yaml.UnmarshalStrict([]byte(m[1]), &rules); err != nil {
			t.Fatalf("module %s: %v", m[0], err)
		}
		mods = append(mods, policy.Module{Name: m[0], Spec: v1alpha1.AuditPolicyModuleSpec{Order: int32(10 * (i + 1)), Rules: rules}})
	}
	out, err := policy.Merge(mods, settings)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestExplainNamesTheDecidingRuleAndTheShadowedOnes(t *testing.T) {
	m := mergedOf(t, policy.Settings{OmitStages: []v1alpha1.Stage{v1alpha1.StageRequestReceived}},
		[2]string{"secrets", `[{level: Metadata, resources: [{group: "", resources: [secrets]}]}]`},
		[2]string{"admins", `[{level: RequestResponse, userGroups: ["system:masters"], omitStages: [Panic], omitManagedFields: true}]`},
	)
	secretsGet := policy.Request{User: "admin", Groups: []string{"system:masters"}, Verb: "get", ResourceRequest: true, Resource: "secrets", Namespace: "kube-system", Name: "db"}
	podsGet := policy.Request{User: "admin", Groups: []string{"system:masters"}, Verb: "get", ResourceRequest: true, Resource: "pods", Namespace: "shop"}
	healthz := policy.Request{User: "system:anonymous", Verb: "get", Path: "/healthz"}
	for _, tc := range []struct {
		name              string
		req               policy.Request
		index             int
		module            string
		rule              int
		source            string
		level             auditv1.Level
		omitStages        []auditv1.Stage
		omitManagedFields bool
		shadowed          []int
	}{
		{"the first matching module rule decides", secretsGet, 0, "secrets", 0, "module secrets, rule 0", auditv1.LevelMetadata,
			[]auditv1.Stage{auditv1.StageRequestReceived}, false, []int{1, 2}},
		{"its stages and managedFields come with the decision", podsGet, 1, "admins", 0, "module admins, rule 0", auditv1.LevelRequestResponse,
			[]auditv1.Stage{auditv1.StageRequestReceived, auditv1.StagePanic}, true, []int{2}},
		{"the default rule decides what no module matches", healthz, 2, "", -1, "default: no module matches (AuditPolicy cluster spec.defaultLevel)", auditv1.LevelMetadata,
			[]auditv1.Stage{auditv1.StageRequestReceived}, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex, err := Explain(m, tc.req, nil)
			if err != nil {
				t.Fatal(err)
			}
			d := ex.Decision
			if d.Index != tc.index || d.Module != tc.module || d.Rule != tc.rule || d.Source != tc.source || d.Level != tc.level {
				t.Errorf("decision %+v", d)
			}
			if d.Spec == nil || d.Spec.Level != tc.level {
				t.Errorf("the deciding rule's spec is missing: %+v", d.Spec)
			}
			if !slices.Equal(ex.OmitStages, tc.omitStages) || ex.OmitManagedFields != tc.omitManagedFields {
				t.Errorf("omitStages %v, omitManagedFields %v", ex.OmitStages, ex.OmitManagedFields)
			}
			var shadowed []int
			for _, s := range ex.Shadowed {
				shadowed = append(shadowed, s.Index)
				if s.Spec != nil {
					t.Errorf("shadowed rule %d carries its spec", s.Index)
				}
			}
			if ex.Shadowed == nil || !slices.Equal(shadowed, tc.shadowed) {
				t.Errorf("shadowed %v, want %v", shadowed, tc.shadowed)
			}
		})
	}
}

// A policy without a catch-all (a plain audit.k8s.io/v1 Policy can be one) drops the request.
func TestExplainWithoutAMatchingRule(t *testing.T) {
	m := &policy.Merged{
		Policy:  auditv1.Policy{Rules: []auditv1.PolicyRule{{Level: auditv1.LevelMetadata, Verbs: []string{"create"}}}},
		Sources: []policy.RuleSource{{Module: "writes"}},
	}
	ex, err := Explain(m, policy.Request{User: "alice", Verb: "get", ResourceRequest: true, Resource: "pods"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Decision.Index != -1 || ex.Decision.Level != auditv1.LevelNone || ex.Decision.Spec != nil || len(ex.Shadowed) != 0 || ex.OmitStages == nil {
		t.Errorf("explanation %+v", ex)
	}
	var b strings.Builder
	if err := ex.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	want := "Request:     get pods by alice\nDecided by:  no rule matches: kube-apiserver does not log the request\nLevel:       None\n"
	if b.String() != want {
		t.Errorf("text:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestExplanationTextDescribesTheRequest(t *testing.T) {
	for _, tc := range []struct {
		req  policy.Request
		want string
	}{
		{policy.Request{Verb: "get", Path: "/healthz"}, "get /healthz by (no user)"},
		{policy.Request{User: "alice", Groups: []string{"dev", "ops"}, Verb: "list", ResourceRequest: true, Resource: "pods", Namespace: "shop"}, "list pods, namespace shop by alice (groups dev, ops)"},
		{policy.Request{User: "bob", Verb: "get", ResourceRequest: true, Resource: "nodes", Name: "n1"}, "get nodes, name n1 by bob"},
		{policy.Request{User: "bob", Verb: "update", ResourceRequest: true, APIGroup: "apps", Resource: "deployments", Subresource: "scale", Namespace: "shop", Name: "web"}, "update deployments/scale in API group apps, shop/web by bob"},
	} {
		ex := &Explanation{Request: tc.req, Decision: Rule{Index: -1, Level: auditv1.LevelNone}}
		var b strings.Builder
		if err := ex.WriteText(&b); err != nil {
			t.Fatal(err)
		}
		if first, _, _ := strings.Cut(b.String(), "\n"); first != "Request:     "+tc.want {
			t.Errorf("got %q, want %q", first, "Request:     "+tc.want)
		}
	}
}

// Each guardrail whose scope holds the request is named with its bounds, and whether the
// decision is within them; the others are not.
func TestExplainNamesTheGuardrailsThatHoldTheRequest(t *testing.T) {
	m := mergedOf(t, policy.Settings{},
		[2]string{"leak", `[{level: RequestResponse, resources: [{group: "", resources: [secrets]}]}]`},
		[2]string{"quiet", `[{level: None, verbs: [watch]}]`},
	)
	builtins := guardrail.Builtins()
	for _, tc := range []struct {
		name string
		req  policy.Request
		want []Bound
	}{
		{"Secret bodies", policy.Request{User: "alice", Verb: "get", ResourceRequest: true, Resource: "secrets", Namespace: "shop"},
			[]Bound{{Name: guardrail.NoCredentialBodies, MaxLevel: auditv1.LevelMetadata, Within: false}}},
		{"a watch by system:masters, dropped", policy.Request{User: "admin", Groups: []string{"system:masters"}, Verb: "watch", ResourceRequest: true, Resource: "pods"},
			[]Bound{{Name: guardrail.SystemMastersLogged, MinLevel: auditv1.LevelMetadata, Within: false}}},
		{"a read by system:masters, logged", policy.Request{User: "admin", Groups: []string{"system:masters"}, Verb: "get", ResourceRequest: true, Resource: "pods"},
			[]Bound{{Name: guardrail.SystemMastersLogged, MinLevel: auditv1.LevelMetadata, Within: true}}},
		{"no guardrail", policy.Request{User: "alice", Verb: "get", ResourceRequest: true, Resource: "pods"}, []Bound{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex, err := Explain(m, tc.req, builtins)
			if err != nil {
				t.Fatal(err)
			}
			for i := range ex.Guardrails {
				ex.Guardrails[i].Description = ""
			}
			if ex.Guardrails == nil || !slices.EqualFunc(ex.Guardrails, tc.want, func(a, b Bound) bool {
				return a.Name == b.Name && a.MinLevel == b.MinLevel && a.MaxLevel == b.MaxLevel && a.Within == b.Within
			}) {
				t.Errorf("guardrails %+v, want %+v", ex.Guardrails, tc.want)
			}
		})
	}
}

func TestGuardrailsAndRejectionInText(t *testing.T) {
	ex := &Explanation{
		Request:  policy.Request{User: "alice", Verb: "get", ResourceRequest: true, Resource: "secrets", Namespace: "shop"},
		Decision: Rule{Index: 0, Module: "leak", Rule: 0, Source: "module leak, rule 0", Level: auditv1.LevelRequestResponse},
		Guardrails: []Bound{
			{Name: "no-credential-bodies", MaxLevel: auditv1.LevelMetadata},
			{Name: "staged", MinLevel: auditv1.LevelMetadata, RequiredStages: []auditv1.Stage{auditv1.StageResponseComplete}, Within: true},
		},
		Rejection: &Rejection{Module: "leak", Reason: "GuardrailViolation", Message: "Not put in force.",
			InForce: Rule{Index: 1, Source: "module secrets, rule 0", Level: auditv1.LevelMetadata}},
	}
	var b strings.Builder
	if err := ex.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"\nGuardrails:  no-credential-bodies (at most Metadata): OUTSIDE\n             staged (at least Metadata, stages ResponseComplete written): within\n",
		"\nRejected:    the manager would not put module leak in force (GuardrailViolation): Not put in force.\nIn force:    module secrets, rule 0 (rule 1 of the policy in force): Metadata\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text does not say %q:\n%s", want, b.String())
		}
	}
}

// A namespaced module's rule is named with its namespace.
func TestNamespacedModulesAreNamedWithTheirNamespace(t *testing.T) {
	m, err := policy.Merge([]policy.Module{{Namespace: "team-a", Name: "bodies", Spec: v1alpha1.AuditPolicyModuleSpec{Rules: []v1alpha1.PolicyRule{{Level: v1alpha1.LevelRequest}}}}}, policy.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	ex, err := Explain(m, policy.Request{User: "alice", Verb: "get", ResourceRequest: true, Resource: "pods", Namespace: "team-a"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ex.Decision.Module != "team-a/bodies" || ex.Decision.Source != "namespaced module team-a/bodies, rule 0" {
		t.Errorf("decision %+v", ex.Decision)
	}
}
