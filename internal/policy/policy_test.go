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
	want := []RuleSource{{Module: "first"}, {Module: "alpha"}, {Module: "alpha", Rule: 1}, {Module: "zeta"}, {}}
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
// mirrored types do not have, so modules of either kind never silently lose a rule's meaning.
// The namespaced modules' rule type has every field but nonResourceURLs.
func TestPolicyRuleParity(t *testing.T) {
	compare := func(ours, theirs reflect.Type, without ...string) {
		t.Helper()
		if ours.NumField() != theirs.NumField()-len(without) {
			t.Errorf("%s has %d fields, upstream %s has %d, %d of them left out on purpose", ours, ours.NumField(), theirs, theirs.NumField(), len(without))
		}
		for i := range theirs.NumField() {
			up := theirs.Field(i)
			if slices.Contains(without, up.Name) {
				if _, ok := ours.FieldByName(up.Name); ok {
					t.Errorf("%s has field %s, which it must leave out", ours, up.Name)
				}
				continue
			}
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
	compare(reflect.TypeFor[v1alpha1.NamespacedPolicyRule](), reflect.TypeFor[auditv1.PolicyRule](), "NonResourceURLs")

	// A full rule survives the round trip through the upstream type unchanged.
	full := v1alpha1.PolicyRule{Level: v1alpha1.LevelRequest, Users: []string{"u"}, UserGroups: []string{"g"}, Verbs: []string{"get"},
		Resources:  []v1alpha1.GroupResources{{Group: "apps", Resources: []string{"deployments"}, ResourceNames: []string{"d"}}},
		Namespaces: []string{"ns"}, OmitStages: []v1alpha1.Stage{v1alpha1.StagePanic}, OmitManagedFields: ptr(true)}
	if back := FromUpstream(ToUpstream(full)); !reflect.DeepEqual(back, full) {
		t.Errorf("round trip changed the rule:\n got %+v\nwant %+v", back, full)
	}
	// A namespaced module's rule converts to the same rule, every field kept.
	namespaced := v1alpha1.NamespacedPolicyRule{Level: full.Level, Users: full.Users, UserGroups: full.UserGroups, Verbs: full.Verbs,
		Resources: full.Resources, Namespaces: full.Namespaces, OmitStages: full.OmitStages, OmitManagedFields: full.OmitManagedFields}
	if got := FromNamespacedRule(namespaced); !reflect.DeepEqual(got, full) {
		t.Errorf("a namespaced rule converted to\n%+v\nwant %+v", got, full)
	}
}

func namespacedMod(namespace, name string, order int32, rules ...v1alpha1.PolicyRule) Module {
	m := mod(name, order, rules...)
	m.Namespace = namespace
	return m
}

func TestMergePutsNamespacedModulesFirstConfinedToTheirNamespace(t *testing.T) {
	merged, err := Merge([]Module{
		mod("cluster-early", 0, v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata, Resources: res("", "pods")}),
		namespacedMod("team-b", "bodies", 10, v1alpha1.PolicyRule{Level: v1alpha1.LevelRequest, Resources: res("apps", "deployments")}),
		namespacedMod("team-a", "bodies", 10, v1alpha1.PolicyRule{Level: v1alpha1.LevelRequest, Resources: res("apps", "deployments"), Namespaces: []string{"team-a"}}),
		namespacedMod("team-a", "first", 5, v1alpha1.PolicyRule{Level: v1alpha1.LevelRequestResponse, Verbs: []string{"create"}}),
	}, Settings{})
	if err != nil {
		t.Fatal(err)
	}
	want := []RuleSource{{Module: "first", Namespace: "team-a"}, {Module: "bodies", Namespace: "team-a"}, {Module: "bodies", Namespace: "team-b"}, {Module: "cluster-early"}, {}}
	if !reflect.DeepEqual(merged.Sources, want) {
		t.Errorf("sources = %v, want %v: namespaced modules first, by order, namespace and name", merged.Sources, want)
	}
	if !slices.Equal(merged.Modules, []string{"team-a/first", "team-a/bodies", "team-b/bodies", "cluster-early"}) {
		t.Errorf("modules = %v", merged.Modules)
	}
	for i, ns := range []string{"team-a", "team-a", "team-b"} {
		if got := merged.Policy.Rules[i].Namespaces; !slices.Equal(got, []string{ns}) {
			t.Errorf("rule %d namespaces = %v, want [%s]", i, got, ns)
		}
	}
	if !strings.Contains(string(merged.Render()), "# namespaced module team-a/first, rule 0\n") {
		t.Errorf("the rendered comment does not name the namespaced module:\n%s", merged.Render())
	}
	// A namespaced and a cluster-scoped module may share a name; two in one namespace may not.
	if _, err := Merge([]Module{mod("bodies", 1, v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata}), namespacedMod("team-a", "bodies", 1, v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata})}, Settings{}); err != nil {
		t.Errorf("a namespaced module named like a cluster-scoped one: %v", err)
	}
	if _, err := Merge([]Module{namespacedMod("team-a", "bodies", 1, v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata}), namespacedMod("team-a", "bodies", 2, v1alpha1.PolicyRule{Level: v1alpha1.LevelNone})}, Settings{}); err == nil || !strings.Contains(err.Error(), `module "team-a/bodies"`) {
		t.Errorf("two namespaced modules with one name and namespace: %v", err)
	}
}

func TestNamespacedModuleNamingAnotherNamespaceIsInvalid(t *testing.T) {
	m := namespacedMod("team-a", "escape", 1,
		v1alpha1.PolicyRule{Level: v1alpha1.LevelRequest, Namespaces: []string{"team-a"}},
		v1alpha1.PolicyRule{Level: v1alpha1.LevelNone, Namespaces: []string{"kube-system"}})
	want := `module "team-a/escape" rule 1: namespaces[0]: Invalid value: "kube-system": a NamespacedAuditPolicyModule applies only to its own namespace "team-a"`
	if err := ValidateModule(m); err == nil || err.Error() != want {
		t.Errorf("ValidateModule = %v, want %s", err, want)
	}
	if _, err := Merge([]Module{m}, Settings{}); err == nil || err.Error() != want {
		t.Errorf("Merge = %v, want %s", err, want)
	}
	m.Spec.Rules[1] = v1alpha1.PolicyRule{Level: v1alpha1.LevelNone, NonResourceURLs: []string{"/healthz"}}
	if err := ValidateModule(m); err == nil || !strings.Contains(err.Error(), "rule 1: nonResourceURLs: Forbidden") {
		t.Errorf("ValidateModule = %v, want nonResourceURLs forbidden", err)
	}
}

func TestNamespacedModuleKeepsItsSettings(t *testing.T) {
	spec := v1alpha1.NamespacedAuditPolicyModuleSpec{Order: 7, Description: "d", Disabled: true,
		OmitStages: []v1alpha1.Stage{v1alpha1.StagePanic}, OmitManagedFields: ptr(true),
		Rules: []v1alpha1.NamespacedPolicyRule{{Level: v1alpha1.LevelRequest, Verbs: []string{"create"}}}}
	got := NamespacedModule("team-a", "m", spec)
	want := Module{Namespace: "team-a", Name: "m", Spec: v1alpha1.AuditPolicyModuleSpec{Order: 7, Description: "d", Disabled: true,
		OmitStages: []v1alpha1.Stage{v1alpha1.StagePanic}, OmitManagedFields: ptr(true),
		Rules: []v1alpha1.PolicyRule{{Level: v1alpha1.LevelRequest, Verbs: []string{"create"}}}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("NamespacedModule =\n%+v\nwant\n%+v", got, want)
	}
}
