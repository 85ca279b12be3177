package inforce

import (
	"slices"
	"strings"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/guardrail"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/revision"
)

// Rules the cases are made of.
var (
	// secretsMetadata keeps what no-credential-bodies bounds at Metadata.
	secretsMetadata = v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata, Resources: []v1alpha1.GroupResources{
		{Group: "", Resources: []string{"secrets", "configmaps", "serviceaccounts/token"}},
		{Group: "authentication.k8s.io", Resources: []string{"tokenreviews"}},
		{Group: "certificates.k8s.io", Resources: []string{"certificatesigningrequests/*", "podcertificaterequests/*"}},
	}}
	secretsBodies = v1alpha1.PolicyRule{Level: v1alpha1.LevelRequestResponse, Resources: core("secrets")}
	mastersBodies = v1alpha1.PolicyRule{Level: v1alpha1.LevelRequestResponse, UserGroups: []string{"system:masters"}}
	eventsNone    = v1alpha1.PolicyRule{Level: v1alpha1.LevelNone, Resources: core("events")}
	podsMetadata  = v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata, Resources: core("pods")}
	deployWrites  = func(level v1alpha1.Level) v1alpha1.PolicyRule {
		return v1alpha1.PolicyRule{Level: level, Verbs: []string{"create", "update", "patch"},
			Resources: []v1alpha1.GroupResources{{Group: "apps", Resources: []string{"deployments"}}}}
	}
)

func core(resources ...string) []v1alpha1.GroupResources {
	return []v1alpha1.GroupResources{{Group: "", Resources: resources}}
}

func spec(order int32, rules ...v1alpha1.PolicyRule) v1alpha1.AuditPolicyModuleSpec {
	return v1alpha1.AuditPolicyModuleSpec{Order: order, Rules: rules}
}

func disabled(s v1alpha1.AuditPolicyModuleSpec) v1alpha1.AuditPolicyModuleSpec {
	s.Disabled = true
	return s
}

// live is a module at generation 2 as the manager sees it: validated by the loader.
func live(namespace, name string, s v1alpha1.AuditPolicyModuleSpec) Module {
	m := policy.Module{Namespace: namespace, Name: name, Spec: s}
	return Module{Module: m, Generation: 2, Invalid: policy.ValidateModule(m)}
}

// accepted is a record of generation 1, in force since revision 1.
func accepted(namespace, name string, s v1alpha1.AuditPolicyModuleSpec) revision.ModuleRecord {
	return revision.ModuleRecord{Namespace: namespace, Name: name, Generation: 1, FirstRevision: 1, Spec: s}
}

func builtins(disabled ...v1alpha1.BuiltInGuardrail) Settings {
	return Settings{Guardrails: Guardrails(v1alpha1.GuardrailsSpec{DisabledBuiltIns: disabled}),
		NamespacedEnabled: true, NamespacedMaxLevel: v1alpha1.LevelRequestResponse}
}

// want is what a case expects of one module: the reason of its Accepted condition (empty for a
// deleted module) and which spec is in force.
type want struct {
	reason string
	use    use
}

func TestDecide(t *testing.T) {
	custom := builtins()
	custom.Guardrails = append(custom.Guardrails, guardrail.Guardrail{Name: "deployment-writes-with-bodies",
		Scope:    guardrail.Scope{Verbs: []string{"create"}, Resources: upstream(deployWrites(v1alpha1.LevelRequest).Resources)},
		MinLevel: "Request"})
	switchedOff := builtins()
	switchedOff.NamespacedEnabled = false
	capped := builtins()
	capped.NamespacedMaxLevel = v1alpha1.LevelRequest
	defaultNone := builtins()
	defaultNone.Policy.DefaultLevel = v1alpha1.LevelNone

	tests := []struct {
		name     string
		modules  []Module
		inForce  []revision.ModuleRecord
		settings Settings
		want     map[string]want
		// kept are deleted modules kept in force, standing the guardrails broken already.
		kept, standing []string
		// message, if set, must be part of the first rejected module's message.
		message []string
	}{
		{
			name:    "a valid module is in force",
			modules: []Module{live("", "secrets", spec(100, secretsMetadata))},
			want:    map[string]want{"secrets": {v1alpha1.ReasonValid, useCurrent}},
		},
		{
			name:     "an invalid edit keeps the last accepted spec",
			modules:  []Module{live("", "secrets", spec(100, v1alpha1.PolicyRule{Level: "Bogus"}))},
			inForce:  []revision.ModuleRecord{accepted("", "secrets", spec(100, secretsMetadata))},
			settings: builtins(),
			want:     map[string]want{"secrets": {v1alpha1.ReasonInvalid, useRecord}},
		},
		{
			name:     "an invalid edit that also disables keeps the last accepted spec",
			modules:  []Module{live("", "secrets", disabled(spec(100, v1alpha1.PolicyRule{Level: "Bogus"})))},
			inForce:  []revision.ModuleRecord{accepted("", "secrets", spec(100, secretsMetadata))},
			settings: builtins(),
			want:     map[string]want{"secrets": {v1alpha1.ReasonInvalid, useRecord}},
		},
		{
			name:     "a valid disable drops the module",
			modules:  []Module{live("", "pods", disabled(spec(100, podsMetadata)))},
			inForce:  []revision.ModuleRecord{accepted("", "pods", spec(100, podsMetadata))},
			settings: builtins(),
			want:     map[string]want{"pods": {v1alpha1.ReasonDisabled, useNothing}},
		},
		{
			name:     "a never accepted module contributes nothing",
			modules:  []Module{live("", "bad", spec(100, v1alpha1.PolicyRule{Level: "Bogus"}))},
			settings: builtins(),
			want:     map[string]want{"bad": {v1alpha1.ReasonInvalid, useNothing}},
		},
		{
			name:     "a new module logging Secret bodies first is rejected and contributes nothing",
			modules:  []Module{live("", "secrets", spec(100, secretsMetadata)), live("", "leak", spec(10, secretsBodies))},
			inForce:  []revision.ModuleRecord{accepted("", "secrets", spec(100, secretsMetadata))},
			settings: builtins(),
			want:     map[string]want{"secrets": {v1alpha1.ReasonValid, useCurrent}, "leak": {v1alpha1.ReasonGuardrailViolation, useNothing}},
			message:  []string{`guardrail "no-credential-bodies"`, "get secrets", "would be logged at RequestResponse by its rule 0", "Nothing of this module is in force"},
		},
		{
			name:     "an edit that logs Secret bodies keeps the last accepted spec",
			modules:  []Module{live("", "secrets", spec(100, secretsBodies))},
			inForce:  []revision.ModuleRecord{accepted("", "secrets", spec(100, secretsMetadata))},
			settings: builtins(),
			want:     map[string]want{"secrets": {v1alpha1.ReasonGuardrailViolation, useRecord}},
			message:  []string{`guardrail "no-credential-bodies"`, "The last accepted version stays in force"},
		},
		{
			name: "a rule shadowed in the guardrail's scope by an earlier compliant rule is accepted",
			modules: []Module{live("", "secrets", spec(100, secretsMetadata)), live("", "masters", spec(400, mastersBodies)),
				live("", "noise", spec(500, eventsNone))},
			settings: builtins(),
			want: map[string]want{"secrets": {v1alpha1.ReasonValid, useCurrent}, "masters": {v1alpha1.ReasonValid, useCurrent},
				"noise": {v1alpha1.ReasonValid, useCurrent}},
		},
		{
			name:     "deleting the module that keeps Secrets at Metadata keeps its rules in force",
			modules:  []Module{live("", "masters", spec(400, mastersBodies))},
			inForce:  []revision.ModuleRecord{accepted("", "secrets", spec(100, secretsMetadata)), accepted("", "masters", spec(400, mastersBodies))},
			settings: builtins(),
			want:     map[string]want{"masters": {v1alpha1.ReasonValid, useCurrent}, "secrets": {"", useRecord}},
			kept:     []string{"secrets"},
		},
		{
			name:     "disabling the module that keeps Secrets at Metadata is taken back",
			modules:  []Module{live("", "secrets", disabled(spec(100, secretsMetadata))), live("", "masters", spec(400, mastersBodies))},
			inForce:  []revision.ModuleRecord{accepted("", "secrets", spec(100, secretsMetadata)), accepted("", "masters", spec(400, mastersBodies))},
			settings: builtins(),
			want:     map[string]want{"secrets": {v1alpha1.ReasonGuardrailViolation, useRecord}, "masters": {v1alpha1.ReasonValid, useCurrent}},
			message:  []string{"Disabling this module would break", "logged at Metadata by its last accepted rule 0", "would be logged at RequestResponse (rule 0 of module masters)"},
		},
		{
			name:    "deleting the module that logs system:masters is kept: its noise would drop their requests",
			modules: []Module{live("", "secrets", spec(100, secretsMetadata)), live("", "noise", spec(500, eventsNone))},
			inForce: []revision.ModuleRecord{accepted("", "secrets", spec(100, secretsMetadata)), accepted("", "masters", spec(400, mastersBodies)),
				accepted("", "noise", spec(500, eventsNone))},
			settings: builtins(),
			want: map[string]want{"secrets": {v1alpha1.ReasonValid, useCurrent}, "noise": {v1alpha1.ReasonValid, useCurrent},
				"masters": {"", useRecord}},
			kept: []string{"masters"},
		},
		{
			name:     "of two new modules only the one that breaks a guardrail is rejected",
			modules:  []Module{live("", "leak", spec(50, secretsBodies)), live("", "deploy", spec(60, deployWrites(v1alpha1.LevelRequest)))},
			settings: builtins(),
			want:     map[string]want{"leak": {v1alpha1.ReasonGuardrailViolation, useNothing}, "deploy": {v1alpha1.ReasonValid, useCurrent}},
		},
		{
			name: "a guardrail the policy in force breaks already blocks nothing and is reported",
			modules: []Module{live("", "secrets", spec(100, secretsMetadata)), live("", "pods", spec(200, podsMetadata)),
				live("", "noise", spec(300, eventsNone))},
			inForce:  []revision.ModuleRecord{accepted("", "secrets", spec(100, secretsMetadata))},
			settings: defaultNone,
			want: map[string]want{"secrets": {v1alpha1.ReasonValid, useCurrent}, "pods": {v1alpha1.ReasonValid, useCurrent},
				"noise": {v1alpha1.ReasonValid, useCurrent}},
			standing: []string{guardrail.SystemMastersLogged, guardrail.RBACWritesLogged, guardrail.AdmissionWritesLogged, guardrail.PodInteractiveAccessLogged},
		},
		{
			name:     "a disabled built-in guardrail holds nothing back",
			modules:  []Module{live("", "leak", spec(50, secretsBodies))},
			settings: builtins(v1alpha1.BuiltInGuardrail(guardrail.NoCredentialBodies)),
			want:     map[string]want{"leak": {v1alpha1.ReasonValid, useCurrent}},
		},
		{
			name:     "a custom guardrail rejects a module that logs less than it asks",
			modules:  []Module{live("", "deploy", spec(60, deployWrites(v1alpha1.LevelRequest))), live("", "quiet", spec(10, deployWrites(v1alpha1.LevelMetadata)))},
			inForce:  []revision.ModuleRecord{accepted("", "deploy", spec(60, deployWrites(v1alpha1.LevelRequest)))},
			settings: custom,
			want:     map[string]want{"deploy": {v1alpha1.ReasonValid, useCurrent}, "quiet": {v1alpha1.ReasonGuardrailViolation, useNothing}},
			message:  []string{`guardrail "deployment-writes-with-bodies"`, "create deployments (API group apps)", "at Metadata"},
		},
		{
			name:     "a namespaced module that logs more in its namespace is in force",
			modules:  []Module{live("", "deploy", spec(600, deployWrites(v1alpha1.LevelRequest))), live("team-a", "bodies", spec(10, deployWrites(v1alpha1.LevelRequestResponse)))},
			settings: builtins(),
			want:     map[string]want{"deploy": {v1alpha1.ReasonValid, useCurrent}, "team-a/bodies": {v1alpha1.ReasonValid, useCurrent}},
		},
		{
			name:     "a namespaced module that logs less than the cluster's modules is rejected",
			modules:  []Module{live("", "deploy", spec(600, deployWrites(v1alpha1.LevelRequest))), live("team-a", "quiet", spec(10, deployWrites(v1alpha1.LevelNone)))},
			settings: builtins(),
			want:     map[string]want{"deploy": {v1alpha1.ReasonValid, useCurrent}, "team-a/quiet": {v1alpha1.ReasonLowersLogging, useNothing}},
			message:  []string{"Rule 0 would log create deployments (API group apps)", `in namespace "team-a"`, "at None; the cluster's modules log it at Request (rule 0 of module deploy)"},
		},
		{
			name:     "a namespaced module naming another namespace is invalid",
			modules:  []Module{live("team-a", "escape", spec(10, v1alpha1.PolicyRule{Level: v1alpha1.LevelRequest, Namespaces: []string{"team-b"}}))},
			settings: builtins(),
			want:     map[string]want{"team-a/escape": {v1alpha1.ReasonInvalid, useNothing}},
			message:  []string{`"team-b": a NamespacedAuditPolicyModule applies only to its own namespace "team-a"`},
		},
		{
			name:     "a namespaced module above the cap is rejected; its last accepted version stays",
			modules:  []Module{live("team-a", "bodies", spec(10, deployWrites(v1alpha1.LevelRequestResponse)))},
			inForce:  []revision.ModuleRecord{accepted("team-a", "bodies", spec(10, deployWrites(v1alpha1.LevelRequest)))},
			settings: capped,
			want:     map[string]want{"team-a/bodies": {v1alpha1.ReasonAboveCap, useRecord}},
			message:  []string{"Rule 0 has level RequestResponse, above Request"},
		},
		{
			name:     "a namespaced module logging Secret bodies breaks a guardrail",
			modules:  []Module{live("team-a", "leak", spec(10, secretsBodies))},
			settings: builtins(),
			want:     map[string]want{"team-a/leak": {v1alpha1.ReasonGuardrailViolation, useNothing}},
			message:  []string{`guardrail "no-credential-bodies"`, `in namespace "team-a"`},
		},
		{
			name:     "switched off, namespaced modules contribute nothing",
			modules:  []Module{live("team-a", "bodies", spec(10, deployWrites(v1alpha1.LevelRequest))), live("team-b", "off", disabled(spec(10, podsMetadata)))},
			inForce:  []revision.ModuleRecord{accepted("team-a", "bodies", spec(10, deployWrites(v1alpha1.LevelRequest)))},
			settings: switchedOff,
			want:     map[string]want{"team-a/bodies": {v1alpha1.ReasonNamespacedModulesDisabled, useNothing}, "team-b/off": {v1alpha1.ReasonNamespacedModulesDisabled, useNothing}},
		},
		{
			name: "switched off, a namespaced module that keeps a guardrail in its namespace stays",
			modules: []Module{live("", "secrets", spec(100, secretsMetadata)),
				live("", "team-a-noise", spec(500, v1alpha1.PolicyRule{Level: v1alpha1.LevelNone, Namespaces: []string{"team-a"}, Resources: core("events")})),
				live("team-a", "masters", spec(10, v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata, UserGroups: []string{"system:masters"}}))},
			inForce: []revision.ModuleRecord{accepted("", "secrets", spec(100, secretsMetadata)),
				accepted("", "team-a-noise", spec(500, v1alpha1.PolicyRule{Level: v1alpha1.LevelNone, Namespaces: []string{"team-a"}, Resources: core("events")})),
				accepted("team-a", "masters", spec(10, v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata, UserGroups: []string{"system:masters"}}))},
			settings: switchedOff,
			want: map[string]want{"secrets": {v1alpha1.ReasonValid, useCurrent}, "team-a-noise": {v1alpha1.ReasonValid, useCurrent},
				"team-a/masters": {v1alpha1.ReasonGuardrailViolation, useRecord}},
			message: []string{"Namespaced modules are switched off", "Yet taking its last accepted rules out of the policy would break guardrail \"system-masters-logged\"",
				"would be logged at None (rule 0 of module team-a-noise)"},
		},
		{
			name: "a cluster change that a namespaced module now weakens takes it out",
			modules: []Module{live("", "deploy", spec(600, deployWrites(v1alpha1.LevelRequestResponse))),
				live("team-a", "bodies", spec(10, deployWrites(v1alpha1.LevelRequest)))},
			inForce: []revision.ModuleRecord{accepted("", "deploy", spec(600, deployWrites(v1alpha1.LevelMetadata))),
				accepted("team-a", "bodies", spec(10, deployWrites(v1alpha1.LevelRequest)))},
			settings: builtins(),
			want:     map[string]want{"deploy": {v1alpha1.ReasonValid, useCurrent}, "team-a/bodies": {v1alpha1.ReasonLowersLogging, useNothing}},
			message:  []string{"Its last accepted version does not pass either", "nothing of this module is in force"},
		},
		{
			name:     "an edit that takes away the rule keeping Secrets at Metadata is taken back",
			modules:  []Module{live("", "secrets", spec(100, podsMetadata)), live("", "masters", spec(400, mastersBodies))},
			inForce:  []revision.ModuleRecord{accepted("", "secrets", spec(100, secretsMetadata)), accepted("", "masters", spec(400, mastersBodies))},
			settings: builtins(),
			want:     map[string]want{"secrets": {v1alpha1.ReasonGuardrailViolation, useRecord}, "masters": {v1alpha1.ReasonValid, useCurrent}},
			message:  []string{"This change would break", "logged at Metadata by its last accepted rule 0"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Decide(Input{Modules: tt.modules, InForce: tt.inForce, Settings: tt.settings}, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]want{}
			for _, e := range r.entries {
				w := want{use: e.use}
				if o, ok := r.Outcomes[e.id]; ok {
					w.reason = o.Reason
				}
				if w != (want{}) {
					got[e.id] = w
				}
			}
			for id, w := range tt.want {
				if got[id] != w {
					t.Errorf("%s: reason %q, in force %v; want %q, %v (%s)", id, got[id].reason, got[id].use, w.reason, w.use, r.Outcomes[id].Message)
				}
			}
			for id := range got {
				if _, ok := tt.want[id]; !ok {
					t.Errorf("unexpected module %s: %+v", id, got[id])
				}
			}
			var kept, standing []string
			for _, k := range r.Kept {
				kept = append(kept, k.Module.ID())
			}
			for _, s := range r.Standing {
				standing = append(standing, s.Guardrail.Name)
			}
			if !slices.Equal(kept, tt.kept) || !slices.Equal(standing, tt.standing) {
				t.Errorf("kept %v, standing %v; want %v, %v", kept, standing, tt.kept, tt.standing)
			}
			if len(tt.message) > 0 {
				msg := firstRejection(r)
				for _, part := range tt.message {
					if !strings.Contains(msg, part) {
						t.Errorf("message %q does not contain %q", msg, part)
					}
				}
			}
			checkMerged(t, r, tt.settings)
		})
	}
}

func upstream(grs []v1alpha1.GroupResources) []auditv1.GroupResources {
	return policy.ToUpstream(v1alpha1.PolicyRule{Resources: grs}).Resources
}

func firstRejection(r *Result) string {
	for _, e := range r.entries {
		if o, ok := r.Outcomes[e.id]; ok && !o.Accepted {
			return o.Message
		}
	}
	return ""
}

// checkMerged checks that the result's merged policy is the merge of its modules in force and
// keeps every guardrail it does not report as standing, and that AnyInForce agrees with Modules.
func checkMerged(t *testing.T, r *Result, s Settings) {
	t.Helper()
	again, err := policy.Merge(r.Modules(), s.Policy)
	if err != nil {
		t.Fatal(err)
	}
	if again.Hash() != r.Merged.Hash() {
		t.Error("Merged is not the merge of Modules")
	}
	if r.AnyInForce() != (len(r.Modules()) > 0) {
		t.Errorf("AnyInForce is %v with %d modules in force", r.AnyInForce(), len(r.Modules()))
	}
	violations, err := guardrail.Check(r.Merged.Policy, s.Guardrails)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range violations {
		if !slices.ContainsFunc(r.Standing, func(st Standing) bool { return st.Guardrail.Name == v.Guardrail }) {
			t.Errorf("the merged policy breaks %s for %+v, and it is not reported as standing", v.Guardrail, v.Request)
		}
	}
}

func TestRecordsKeepTheFirstRevisionOfUnchangedContent(t *testing.T) {
	described := spec(100, secretsMetadata)
	described.Description = "edited"
	r, err := Decide(Input{
		Modules:  []Module{live("", "kept", described), live("", "changed", spec(100, podsMetadata)), live("", "invalid", spec(1, v1alpha1.PolicyRule{Level: "Bogus"}))},
		InForce:  []revision.ModuleRecord{accepted("", "kept", spec(100, secretsMetadata)), accepted("", "changed", spec(100, eventsNone)), accepted("", "invalid", spec(1, podsMetadata))},
		Settings: builtins(),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]revision.ModuleRecord{}
	for _, rec := range r.Records(5) {
		got[rec.Name] = rec
	}
	for name, w := range map[string]struct{ generation, first int64 }{"kept": {2, 1}, "changed": {2, 5}, "invalid": {1, 1}} {
		if got[name].Generation != w.generation || got[name].FirstRevision != w.first {
			t.Errorf("%s: generation %d, first revision %d; want %d, %d", name, got[name].Generation, got[name].FirstRevision, w.generation, w.first)
		}
	}
}

func TestInvalidGuardrailIsAnError(t *testing.T) {
	s := builtins()
	s.Guardrails = append(s.Guardrails, guardrail.Guardrail{Name: "typo", MinLevel: "Metadata",
		Scope: guardrail.Scope{Resources: upstream([]v1alpha1.GroupResources{{Group: "Apps/v1"}})}})
	_, err := Decide(Input{Modules: []Module{live("", "pods", spec(1, podsMetadata))}, Settings: s}, nil)
	if err == nil || !strings.Contains(err.Error(), `guardrail "typo"`) {
		t.Errorf("Decide = %v, want an error naming the guardrail", err)
	}
}

func TestMemoChangesNothing(t *testing.T) {
	in := Input{
		Modules: []Module{live("", "masters", spec(400, mastersBodies)), live("team-a", "bodies", spec(10, deployWrites(v1alpha1.LevelRequest))),
			live("", "leak", spec(50, secretsBodies))},
		InForce:  []revision.ModuleRecord{accepted("", "secrets", spec(100, secretsMetadata)), accepted("", "masters", spec(400, mastersBodies))},
		Settings: builtins(),
	}
	memo := NewMemo()
	first, err := Decide(in, memo)
	if err != nil {
		t.Fatal(err)
	}
	if len(memo.checks) == 0 || len(memo.teams) == 0 {
		t.Fatalf("the memo holds %d checks and %d namespaced module checks after a decision", len(memo.checks), len(memo.teams))
	}
	again, err := Decide(in, memo)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := Decide(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*Result{again, fresh} {
		if r.Merged.Hash() != first.Merged.Hash() || len(r.Kept) != len(first.Kept) {
			t.Fatal("the same input decided differently")
		}
		for id, o := range first.Outcomes {
			if r.Outcomes[id] != o {
				t.Errorf("%s: %+v, then %+v", id, o, r.Outcomes[id])
			}
		}
	}
}
