package policy

import (
	"strings"
	"testing"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

func TestHashOfRenderedPolicyEqualsMergedHash(t *testing.T) {
	secrets, rbac, health := goldenModules()
	users := mod("users", 20, v1alpha1.PolicyRule{Level: v1alpha1.LevelNone, Users: []string{"system:kube-proxy"},
		UserGroups: []string{"system:nodes"}, Namespaces: []string{"kube-system", ""},
		Resources: []v1alpha1.GroupResources{{Group: "", Resources: []string{"pods/log"}, ResourceNames: []string{"a"}}}})
	keepFields := mod("keep", 30, v1alpha1.PolicyRule{Level: v1alpha1.LevelRequest, OmitManagedFields: ptr(false), Verbs: []string{"get"}})
	for name, tc := range map[string]struct {
		modules  []Module
		settings Settings
	}{
		"no-modules":      {nil, Settings{DefaultLevel: v1alpha1.LevelNone}},
		"defaults":        {nil, Settings{}},
		"three-modules":   {[]Module{rbac, secrets, health}, Settings{OmitStages: []v1alpha1.Stage{v1alpha1.StageRequestReceived}}},
		"all-rule-fields": {[]Module{users, keepFields, secrets}, Settings{OmitStages: []v1alpha1.Stage{v1alpha1.StagePanic, v1alpha1.StageRequestReceived}, DefaultLevel: v1alpha1.LevelRequest}},
		"many":            {benchModules(50), Settings{}},
	} {
		t.Run(name, func(t *testing.T) {
			m, err := Merge(tc.modules, tc.settings)
			if err != nil {
				t.Fatal(err)
			}
			got, err := HashOf(m.Render())
			if err != nil {
				t.Fatal(err)
			}
			if got != m.Hash() {
				t.Errorf("HashOf(Render()) = %s, Merged.Hash() = %s", got, m.Hash())
			}
		})
	}
}

func TestHashOfChangesWithTheRulesNotTheComments(t *testing.T) {
	m, err := Merge([]Module{mod("a", 1, v1alpha1.PolicyRule{Level: v1alpha1.LevelMetadata, Resources: res("", "secrets")})}, Settings{})
	if err != nil {
		t.Fatal(err)
	}
	rendered := string(m.Render())
	commented, err := HashOf([]byte("# another comment\n" + strings.ReplaceAll(rendered, "# module a, rule 0", "# module renamed, rule 0")))
	if err != nil || commented != m.Hash() {
		t.Errorf("comments changed the hash: %s, %v; want %s", commented, err, m.Hash())
	}
	changed, err := HashOf([]byte(strings.Replace(rendered, "level: Metadata", "level: RequestResponse", 1)))
	if err != nil || changed == m.Hash() {
		t.Errorf("a changed level kept the hash %s (err %v)", changed, err)
	}
}

func TestHashOfRejectsWhatIsNotAPolicy(t *testing.T) {
	for name, in := range map[string]string{
		"unknown field": "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  verbz: [get]\n",
		"wrong kind":    "apiVersion: v1\nkind: ConfigMap\n",
		"not yaml":      "rules: [",
	} {
		if h, err := HashOf([]byte(in)); err == nil {
			t.Errorf("%s: HashOf = %s, want an error", name, h)
		}
	}
}
