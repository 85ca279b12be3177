package policy

import (
	"bytes"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	auditpolicy "k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func ptr[T any](v T) *T { return &v }

func mod(name string, order int32, rules ...v1alpha1.PolicyRule) Module {
	return Module{Name: name, Spec: v1alpha1.AuditPolicyModuleSpec{Order: order, Rules: rules}}
}

// goldenModules are the modules of the "three-modules" golden file: module-level omitStages and
// omitManagedFields, several groups, verbs, and non-resource URLs.
func goldenModules() (secrets, rbac, health Module) {
	secrets = mod("secrets-metadata-only", 100, v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata,
		Resources: []v1alpha1.GroupResources{{Group: "", Resources: []string{"secrets", "configmaps"}}, {Group: "authentication.k8s.io", Resources: []string{"tokenreviews"}}}})
	secrets.Spec.OmitStages = []v1alpha1.Stage{v1alpha1.StageRequestReceived}
	secrets.Spec.OmitManagedFields = ptr(true)
	rbac = mod("rbac", 200, v1alpha1.PolicyRule{Level: v1alpha1.LevelRequestResponse,
		Resources: res("rbac.authorization.k8s.io", "roles", "rolebindings", "clusterroles", "clusterrolebindings"),
		Verbs:     []string{"create", "update", "patch", "delete", "escalate", "bind"}})
	health = mod("health", 10, v1alpha1.PolicyRule{Level: v1alpha1.LevelNone, NonResourceURLs: []string{"/healthz*", "/readyz*", "/livez*"}})
	return secrets, rbac, health
}

func res(group string, resources ...string) []v1alpha1.GroupResources {
	return []v1alpha1.GroupResources{{Group: group, Resources: resources}}
}

func TestMergeOrdersByOrderThenNameAndSkipsDisabled(t *testing.T) {
	disabled := mod("disabled", 0, v1alpha1.PolicyRule{Level: v1alpha1.LevelNone})
	disabled.Spec.Disabled = true
	m, err := Merge([]Module{
		mod("zeta", 10, v1alpha1.PolicyRule{Level: v1alpha1.LevelRequest}),
		mod("alpha", 10, v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata}, v1alpha1.PolicyRule{Level: v1alpha1.LevelNone, Verbs: []string{"watch"}}),
		mod("first", 1, v1alpha1.PolicyRule{Level: v1alpha1.LevelRequestResponse, Users: []string{"admin"}}),
		disabled,
	}, Settings{})
	if err != nil {
		t.Fatal(err)
	}
	want := []RuleSource{{"first", 0}, {"alpha", 0}, {"alpha", 1}, {"zeta", 0}, {}}
	if !reflect.DeepEqual(m.Sources, want) {
		t.Errorf("sources = %v, want %v", m.Sources, want)
	}
	if !slices.Equal(m.Modules, []string{"first", "alpha", "zeta"}) {
		t.Errorf("modules = %v", m.Modules)
	}
	if last := m.Policy.Rules[len(m.Policy.Rules)-1]; last.Level != auditv1.LevelMetadata || !reflect.DeepEqual(last, auditv1.PolicyRule{Level: auditv1.LevelMetadata}) {
		t.Errorf("catch-all = %+v, want a bare Metadata rule", last)
	}
}

func TestMergePushesModuleSettingsIntoRules(t *testing.T) {
	m := mod("noisy", 1,
		v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata, OmitStages: []v1alpha1.Stage{v1alpha1.StagePanic, v1alpha1.StageRequestReceived}},
		v1alpha1.PolicyRule{Level: v1alpha1.LevelRequest, OmitManagedFields: ptr(false)},
	)
	m.Spec.OmitStages = []v1alpha1.Stage{v1alpha1.StageRequestReceived, v1alpha1.StageResponseStarted}
	m.Spec.OmitManagedFields = ptr(true)
	merged, err := Merge([]Module{m}, Settings{OmitStages: []v1alpha1.Stage{v1alpha1.StagePanic}, DefaultLevel: v1alpha1.LevelNone})
	if err != nil {
		t.Fatal(err)
	}
	r0, r1 := merged.Policy.Rules[0], merged.Policy.Rules[1]
	if want := []auditv1.Stage{"RequestReceived", "ResponseStarted", "Panic"}; !slices.Equal(r0.OmitStages, want) {
		t.Errorf("rule 0 omitStages = %v, want the union in stage order %v", r0.OmitStages, want)
	}
	if want := []auditv1.Stage{"RequestReceived", "ResponseStarted"}; !slices.Equal(r1.OmitStages, want) {
		t.Errorf("rule 1 omitStages = %v, want %v", r1.OmitStages, want)
	}
	if r0.OmitManagedFields == nil || !*r0.OmitManagedFields {
		t.Errorf("rule 0 should inherit omitManagedFields=true from the module")
	}
	if r1.OmitManagedFields == nil || *r1.OmitManagedFields {
		t.Errorf("rule 1 keeps its own omitManagedFields=false")
	}
	if !slices.Equal(merged.Policy.OmitStages, []auditv1.Stage{"Panic"}) {
		t.Errorf("policy omitStages = %v", merged.Policy.OmitStages)
	}
	if last := merged.Policy.Rules[2]; last.Level != auditv1.LevelNone {
		t.Errorf("catch-all level = %s, want the default level None", last.Level)
	}
}

func TestMergeIsDeterministic(t *testing.T) {
	var modules []Module
	for i := range 40 {
		modules = append(modules, mod(string(rune('a'+i%26))+strings.Repeat("x", i/26), int32(i%3),
			v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata, Resources: res("", "pods"), Verbs: []string{"get"}}))
	}
	first, err := Merge(modules, Settings{})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		shuffled := slices.Clone(modules)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		again, err := Merge(shuffled, Settings{})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first.Render(), again.Render()) || first.Hash() != again.Hash() {
			t.Fatal("the same modules in another order rendered differently")
		}
	}
}

func TestHashIgnoresNamesAndComments(t *testing.T) {
	r := v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata, Resources: res("", "secrets")}
	a, _ := Merge([]Module{mod("secrets", 1, r)}, Settings{})
	b, _ := Merge([]Module{mod("renamed", 1, r)}, Settings{})
	if a.Hash() != b.Hash() {
		t.Error("renaming a module changed the policy hash")
	}
	if bytes.Equal(a.Render(), b.Render()) {
		t.Error("the rendered comments should name the module")
	}
	c, _ := Merge([]Module{mod("secrets", 1, v1alpha1.PolicyRule{Level: v1alpha1.LevelRequest, Resources: res("", "secrets")})}, Settings{})
	if a.Hash() == c.Hash() {
		t.Error("a different level must change the hash")
	}
}

func TestValidationNamesModuleRuleAndField(t *testing.T) {
	tests := []struct {
		name string
		rule v1alpha1.PolicyRule
		want string
	}{
		{"unknown level", v1alpha1.PolicyRule{Level: "Everything"}, `module "m" rule 1: level: Unsupported value: "Everything"`},
		{"missing level", v1alpha1.PolicyRule{}, `module "m" rule 1: level: Required value`},
		{"bad stage", v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata, OmitStages: []v1alpha1.Stage{"Sometimes"}}, `module "m" rule 1: omitStages[0]: Invalid value: "Sometimes"`},
		{"group with version", v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata, Resources: res("apps/v1", "deployments")}, `module "m" rule 1: resources.group: Invalid value: "apps/v1"`},
		{"urls with resources", v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata, NonResourceURLs: []string{"/healthz"}, Resources: res("", "pods")}, `module "m" rule 1: nonResourceURLs: Invalid value`},
		{"url wildcard in the middle", v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata, NonResourceURLs: []string{"/api/*/x"}}, `module "m" rule 1: nonResourceURLs[0]: Invalid value: "/api/*/x": non-resource URL wildcards`},
		{"resourceNames without resources", v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata, Resources: []v1alpha1.GroupResources{{ResourceNames: []string{"x"}}}}, `module "m" rule 1: resources.resourceNames: Invalid value`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mod("m", 1, v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata}, tt.rule)
			err := ValidateModule(m)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ValidateModule error = %v, want it to contain %q", err, tt.want)
			}
			if _, err := Merge([]Module{m}, Settings{}); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Merge error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestValidationOfModuleAndPolicySettings(t *testing.T) {
	m := mod("m", 1, v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata})
	m.Spec.OmitStages = []v1alpha1.Stage{"Never"}
	if err := ValidateModule(m); err == nil || !strings.Contains(err.Error(), `module "m" spec.omitStages[0]: Invalid value: "Never"`) {
		t.Errorf("module omitStages error = %v", err)
	}
	empty := mod("empty", 1)
	if err := ValidateModule(empty); err == nil || !strings.Contains(err.Error(), `module "empty" spec.rules: Required value`) {
		t.Errorf("empty module error = %v", err)
	}
	err := ValidateSettings(Settings{DefaultLevel: "Loud", OmitStages: []v1alpha1.Stage{"Later"}})
	if err == nil || !strings.Contains(err.Error(), `spec.defaultLevel: Unsupported value: "Loud"`) || !strings.Contains(err.Error(), `spec.omitStages[0]`) {
		t.Errorf("settings error = %v", err)
	}
	if _, err := Merge([]Module{mod("a", 1, v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata}), mod("a", 2, v1alpha1.PolicyRule{Level: v1alpha1.LevelNone})}, Settings{}); err == nil {
		t.Error("two modules with one name must not merge")
	}
}

// TestRenderedPolicyDecidesLikeTheApiserver loads the rendered YAML with the apiserver's loader
// and evaluates requests with its evaluator: the first matching module wins.
func TestRenderedPolicyDecidesLikeTheApiserver(t *testing.T) {
	merged, err := Merge([]Module{
		mod("secrets", 10, v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata, Resources: res("", "secrets")}),
		mod("admins", 20, v1alpha1.PolicyRule{Level: v1alpha1.LevelRequestResponse, UserGroups: []string{"system:masters"}}),
		mod("health", 5, v1alpha1.PolicyRule{Level: v1alpha1.LevelNone, NonResourceURLs: []string{"/healthz*"}}),
	}, Settings{DefaultLevel: v1alpha1.LevelRequest})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Load(merged.Render())
	if err != nil {
		t.Fatal(err)
	}
	eval := auditpolicy.NewPolicyRuleEvaluator(p)
	admin := &user.DefaultInfo{Name: "kubernetes-admin", Groups: []string{"system:masters"}}
	for _, tc := range []struct {
		attrs authorizer.AttributesRecord
		want  string
	}{
		{authorizer.AttributesRecord{User: admin, Verb: "get", Resource: "secrets", Namespace: "x", ResourceRequest: true}, "Metadata"},
		{authorizer.AttributesRecord{User: admin, Verb: "create", Resource: "pods", Namespace: "x", ResourceRequest: true}, "RequestResponse"},
		{authorizer.AttributesRecord{User: &user.DefaultInfo{Name: "bob"}, Verb: "get", Path: "/healthz/etcd"}, "None"},
		{authorizer.AttributesRecord{User: &user.DefaultInfo{Name: "bob"}, Verb: "list", Resource: "pods", ResourceRequest: true}, "Request"},
	} {
		if got := eval.EvaluatePolicyRule(tc.attrs).Level; string(got) != tc.want {
			t.Errorf("%s %s%s by %s: level %s, want %s", tc.attrs.Verb, tc.attrs.Resource, tc.attrs.Path, tc.attrs.User.GetName(), got, tc.want)
		}
	}
}

func TestRenderGolden(t *testing.T) {
	secrets, rbac, health := goldenModules()
	for name, tc := range map[string]struct {
		modules  []Module
		settings Settings
	}{
		"three-modules": {[]Module{rbac, secrets, health}, Settings{OmitStages: []v1alpha1.Stage{v1alpha1.StageRequestReceived}}},
		"no-modules":    {nil, Settings{DefaultLevel: v1alpha1.LevelNone}},
	} {
		t.Run(name, func(t *testing.T) {
			merged, err := Merge(tc.modules, tc.settings)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", name+".yaml")
			got := merged.Render()
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("rendered policy differs from %s (run go test -update if the change is intended):\n%s", golden, got)
			}
		})
	}
}

// TestPolicyRuleParity fails when upstream adds, renames or retypes a PolicyRule field that our
// mirrored type does not have, so modules never silently lose a rule's meaning.
func TestPolicyRuleParity(t *testing.T) {
	compare := func(ours, theirs reflect.Type) {
		t.Helper()
		if ours.NumField() != theirs.NumField() {
			t.Errorf("%s has %d fields, upstream %s has %d", ours, ours.NumField(), theirs, theirs.NumField())
		}
		for i := range theirs.NumField() {
			up := theirs.Field(i)
			f, ok := ours.FieldByName(up.Name)
			if !ok {
				t.Errorf("%s lacks upstream field %s", ours, up.Name)
				continue
			}
			if f.Tag.Get("json") != up.Tag.Get("json") {
				t.Errorf("%s.%s json tag %q, upstream %q", ours, up.Name, f.Tag.Get("json"), up.Tag.Get("json"))
			}
			if f.Type.Kind() != up.Type.Kind() {
				t.Errorf("%s.%s is a %s, upstream a %s", ours, up.Name, f.Type.Kind(), up.Type.Kind())
			}
		}
	}
	compare(reflect.TypeFor[v1alpha1.PolicyRule](), reflect.TypeFor[auditv1.PolicyRule]())
	compare(reflect.TypeFor[v1alpha1.GroupResources](), reflect.TypeFor[auditv1.GroupResources]())

	// A full rule survives the round trip through the upstream type unchanged.
	full := v1alpha1.PolicyRule{Level: v1alpha1.LevelRequest, Users: []string{"u"}, UserGroups: []string{"g"}, Verbs: []string{"get"},
		Resources:  []v1alpha1.GroupResources{{Group: "apps", Resources: []string{"deployments"}, ResourceNames: []string{"d"}}},
		Namespaces: []string{"ns"}, OmitStages: []v1alpha1.Stage{v1alpha1.StagePanic}, OmitManagedFields: ptr(true)}
	if back := FromUpstream(ToUpstream(full)); !reflect.DeepEqual(back, full) {
		t.Errorf("round trip changed the rule:\n got %+v\nwant %+v", back, full)
	}
}
