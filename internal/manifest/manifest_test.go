package manifest

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

func TestReadKustomizationAppliesSchemaDefaults(t *testing.T) {
	set, err := Read(nil, "testdata/kustomized")
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Modules) != 2 || set.Modules[0].Name != "no-order" || set.Modules[1].Name != "early" {
		t.Fatalf("modules = %v, want no-order and early (ignored.yaml is not in the kustomization)", names(set))
	}
	if set.Modules[0].Spec.Order != 100 {
		t.Errorf("order = %d, want the CRD default 100", set.Modules[0].Spec.Order)
	}
	if set.Policy == nil || set.Policy.Spec.DefaultLevel != v1alpha1.LevelMetadata {
		t.Fatalf("the singleton should be read with defaultLevel defaulted to Metadata: %+v", set.Policy)
	}
	if d := set.Policy.Spec.Rollout.DebounceOrDefault(); d != 2*time.Second {
		t.Errorf("debounce = %s, want the nested default 2s", d)
	}
}

func TestReadDirectoryReadsEveryManifest(t *testing.T) {
	set, err := Read(nil, "testdata/kustomized/sub/early.yaml", "testdata/kustomized/sub/ignored.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(names(set), ","); got != "early,ignored" {
		t.Errorf("modules = %s", got)
	}
}

func TestReadStdinAndUpstreamPolicy(t *testing.T) {
	in := strings.NewReader("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n")
	set, err := Read(in, Stdin)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Upstream) != 1 || set.Upstream[0].Policy.Rules[0].Level != "Metadata" || set.Upstream[0].Source != "<stdin>: document 1" {
		t.Errorf("upstream = %+v", set.Upstream)
	}
}

// TestReadRejectsWhatKubectlApplyRejects: errors name the file, the document, the object and
// the field, and come from the same schema and CEL rules the apiserver runs.
func TestReadRejectsWhatKubectlApplyRejects(t *testing.T) {
	module := func(spec string) string {
		return "apiVersion: audit.kaudit.io/v1alpha1\nkind: AuditPolicyModule\nmetadata: {name: m}\nspec:\n" + spec
	}
	for name, tc := range map[string]struct{ doc, want string }{
		"unknown level":   {module("  rules: [{level: Loud}]"), `bad.yaml: document 1: AuditPolicyModule "m": spec.rules[0].level: Unsupported value: "Loud"`},
		"empty rules":     {module("  rules: []"), "spec.rules: Invalid value: 0: spec.rules in body should have at least 1 items"},
		"url + resources": {module("  rules: [{level: None, nonResourceURLs: [/x], resources: [{resources: [pods]}]}]"), "nonResourceURLs cannot be combined with resources or namespaces"},
		"unknown field":   {module("  rules: [{level: None, user: [bob]}]"), `unknown field "user"`},
		"no name":         {"apiVersion: audit.kaudit.io/v1alpha1\nkind: AuditPolicyModule\nspec: {rules: [{level: None}]}", "metadata.name: Required value"},
		"singleton name":  {"apiVersion: audit.kaudit.io/v1alpha1\nkind: AuditPolicy\nmetadata: {name: prod}", `AuditPolicy "prod": metadata.name: Invalid value`},
		"other kind":      {"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}", `unsupported kind "ConfigMap"`},
		"broken yaml":     {"apiVersion: [", "bad.yaml: document 1"},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bad.yaml")
			if err := os.WriteFile(path, []byte(tc.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Read(nil, path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestReadRefusesKustomizationsItCannotHonour(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte("resources: [m.yaml]\npatches: [{path: p.yaml}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Read(nil, dir)
	if err == nil || !strings.Contains(err.Error(), `field "patches" is not supported`) || !strings.Contains(err.Error(), "kustomize build") {
		t.Errorf("error = %v", err)
	}
}

func names(s *Set) []string {
	var out []string
	for _, m := range s.Modules {
		out = append(out, m.Name)
	}
	return out
}

func TestReadNamespacedModules(t *testing.T) {
	dir := t.TempDir()
	write := func(name, doc string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	module := func(name, namespace string) string {
		doc := "apiVersion: audit.kaudit.io/v1alpha1\nkind: NamespacedAuditPolicyModule\nmetadata: {name: " + name
		if namespace != "" {
			doc += ", namespace: " + namespace
		}
		return doc + "}\nspec:\n  rules: [{level: Request, resources: [{group: apps, resources: [deployments]}]}]\n"
	}
	write("named.yaml", module("named", "team-a"))
	write("team-b/kustomization.yaml", "namespace: team-b\nresources: [bodies.yaml, moved.yaml]\n")
	write("team-b/bodies.yaml", module("bodies", ""))
	write("team-b/moved.yaml", module("moved", "team-a"))
	set, err := Read(nil, filepath.Join(dir, "named.yaml"), filepath.Join(dir, "team-b"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range set.NamespacedModules {
		got = append(got, m.Namespace+"/"+m.Name)
		if m.Spec.Order != 100 {
			t.Errorf("%s: order %d, want the CRD default 100", m.Name, m.Spec.Order)
		}
	}
	if want := "team-a/named,team-b/bodies,team-b/moved"; strings.Join(got, ",") != want {
		t.Errorf("namespaced modules = %v, want %s (a kustomization's namespace replaces the manifest's)", got, want)
	}

	write("bare.yaml", module("bare", ""))
	if _, err := Read(nil, filepath.Join(dir, "bare.yaml")); err == nil || !strings.Contains(err.Error(), `NamespacedAuditPolicyModule "bare": metadata.namespace: Required value`) {
		t.Errorf("a namespaced module without a namespace: %v", err)
	}
	write("urls.yaml", strings.Replace(module("urls", "team-a"), "resources: [{group: apps, resources: [deployments]}]", "nonResourceURLs: [/healthz]", 1))
	if _, err := Read(nil, filepath.Join(dir, "urls.yaml")); err == nil || !strings.Contains(err.Error(), `unknown field "nonResourceURLs"`) {
		t.Errorf("a namespaced module with nonResourceURLs: %v", err)
	}
}

func TestReadGuardrailSettings(t *testing.T) {
	in := strings.NewReader(`apiVersion: audit.kaudit.io/v1alpha1
kind: AuditPolicy
metadata: {name: cluster}
spec:
  guardrails:
    disabledBuiltIns: [pod-interactive-access-logged]
    custom:
    - name: deployment-writes
      scope: {verbs: [create], resources: [{group: apps, resources: [deployments]}]}
      minLevel: Request
`)
	set, err := Read(in, Stdin)
	if err != nil {
		t.Fatal(err)
	}
	g := set.Policy.Spec.Guardrails
	if len(g.DisabledBuiltIns) != 1 || len(g.Custom) != 1 || g.Custom[0].MinLevel != v1alpha1.LevelRequest {
		t.Errorf("guardrails = %+v", g)
	}
	if !set.Policy.Spec.NamespacedModules.EnabledOrDefault() || set.Policy.Spec.NamespacedModules.MaxLevel != v1alpha1.LevelRequestResponse {
		t.Errorf("namespacedModules = %+v, want the schema defaults", set.Policy.Spec.NamespacedModules)
	}
	bad := strings.NewReader("apiVersion: audit.kaudit.io/v1alpha1\nkind: AuditPolicy\nmetadata: {name: cluster}\nspec:\n  guardrails:\n    custom: [{name: no-bound, scope: {}}]\n")
	if _, err := Read(bad, Stdin); err == nil || !strings.Contains(err.Error(), "a guardrail needs a bound") {
		t.Errorf("a custom guardrail without bounds: %v", err)
	}
}

// A kustomization that includes itself, directly or through others, is reported at once with the
// chain of directories, as is a file that the kustomizations include twice.
func TestReadReportsKustomizationCyclesAndFilesIncludedTwice(t *testing.T) {
	// A regression would recurse until the stack overflows; fail in milliseconds, not 35 s.
	defer debug.SetMaxStack(debug.SetMaxStack(16 << 20))
	module := "apiVersion: audit.kaudit.io/v1alpha1\nkind: AuditPolicyModule\nmetadata: {name: m}\nspec: {rules: [{level: None, users: [x]}]}\n"
	for name, tc := range map[string]struct {
		files map[string]string
		read  string
		want  []string
	}{
		"a kustomization listing its own directory": {
			files: map[string]string{"self/kustomization.yaml": "resources: [., m.yaml]\n", "self/m.yaml": module},
			read:  "self", want: []string{"kustomization cycle", "self -> self"},
		},
		"two directories including each other": {
			files: map[string]string{"a/kustomization.yaml": "resources: [../b]\n", "b/kustomization.yaml": "resources: [../a, m.yaml]\n", "b/m.yaml": module},
			read:  "a", want: []string{"kustomization cycle", "a -> b -> a"},
		},
		"a file listed twice through two paths": {
			files: map[string]string{"twice/kustomization.yaml": "resources: [m.yaml, ./sub/../m.yaml]\n", "twice/m.yaml": module, "twice/sub/.keep": ""},
			read:  "twice", want: []string{"as twice/m.yaml (resource of twice) and as twice/m.yaml (resource of twice)", "included twice"},
		},
		"two kustomizations including the same file": {
			files: map[string]string{
				"top/kustomization.yaml": "resources: [../left, ../right]\n", "left/kustomization.yaml": "resources: [../shared/m.yaml]\n",
				"right/kustomization.yaml": "resources: [../shared/m.yaml]\n", "shared/m.yaml": module,
			},
			read: "top", want: []string{"included twice", "shared/m.yaml (resource of left)", "shared/m.yaml (resource of right)"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			for path, data := range tc.files {
				path = filepath.Join(dir, path)
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			t.Chdir(dir)
			_, err := Read(nil, tc.read)
			for _, want := range tc.want {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("error = %v\nwant it to contain %q", err, want)
				}
			}
		})
	}
}

// ReadLenient reads as kube-apiserver does, dropping fields the types do not have and listing
// them with their rule; Read refuses them with the same words.
func TestUnknownFieldsAreDroppedAndListedWithTheirRule(t *testing.T) {
	docs := `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: None
  Verbs: [watch]
---
apiVersion: audit.kaudit.io/v1alpha1
kind: AuditPolicyModule
metadata: {name: m}
spec:
  omitStage: [RequestReceived]
  rules: [{level: None, users: [a]}, {level: Metadata, resources: [{group: "", resource: [pods]}]}]
`
	set, err := ReadLenient(strings.NewReader(docs), Stdin)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Upstream) != 1 || len(set.Upstream[0].Policy.Rules[0].Verbs) != 0 || len(set.Modules) != 1 || len(set.Modules[0].Spec.Rules) != 2 {
		t.Fatalf("read %+v", set)
	}
	want := []struct {
		module, path, problem string
		rule                  int
	}{
		{"", "rules[0].Verbs", `unknown field "Verbs" (did you mean "verbs"?): kube-apiserver ignores it, with only a warning in its log, so the rule matches every verb`, 0},
		{"m", "spec.omitStage", `unknown field "omitStage" (did you mean "omitStages"?)`, -1},
		{"m", "spec.rules[1].resources[0].resource", `unknown field "resources[0].resource" (did you mean "resources"?): kube-apiserver drops it`, 1},
	}
	if len(set.UnknownFields) != len(want) {
		t.Fatalf("unknown fields %+v", set.UnknownFields)
	}
	for i, w := range want {
		u := set.UnknownFields[i]
		if u.Module != w.module || u.Path != w.path || u.Rule != w.rule || !strings.HasPrefix(u.Problem, w.problem) {
			t.Errorf("unknown field %d: %+v, want %+v", i, u, w)
		}
	}
	_, err = Read(strings.NewReader(docs), Stdin)
	for _, u := range set.UnknownFields {
		if err == nil || !strings.Contains(err.Error(), u.Error()) {
			t.Errorf("Read: %v\nwant it to contain %q", err, u.Error())
		}
	}
	if err == nil || !strings.Contains(err.Error(), `<stdin>: document 1: audit.k8s.io/v1 Policy: rules[0]: unknown field "Verbs"`) {
		t.Errorf("Read: %v", err)
	}
}
