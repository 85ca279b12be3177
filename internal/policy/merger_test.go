package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

// randomModule draws a module, now and then one the loader or the merge refuses: an API group
// with a version, an unknown level or stage, a namespaced rule naming another namespace.
func randomModule(r *rand.Rand, i int) Module {
	pick := func(vs ...string) []string {
		if r.IntN(3) == 0 {
			return nil
		}
		return []string{vs[r.IntN(len(vs))]}
	}
	spec := v1alpha1.AuditPolicyModuleSpec{Order: int32(r.IntN(4)), Disabled: r.IntN(8) == 0}
	if r.IntN(4) == 0 {
		spec.OmitStages = []v1alpha1.Stage{v1alpha1.StageRequestReceived}
	}
	if r.IntN(4) == 0 {
		spec.OmitManagedFields = ptr(r.IntN(2) == 0)
	}
	for range 1 + r.IntN(3) {
		rule := v1alpha1.PolicyRule{
			Level: []v1alpha1.Level{v1alpha1.LevelNone, v1alpha1.LevelMetadata, v1alpha1.LevelRequest, v1alpha1.LevelRequestResponse}[r.IntN(4)],
			Users: pick("alice", "bob", "*"), Verbs: pick("get", "create"), Namespaces: pick("team-a", "team-b", ""),
		}
		if r.IntN(2) == 0 {
			rule.Resources = []v1alpha1.GroupResources{{Group: []string{"apps", ""}[r.IntN(2)], Resources: pick("deployments", "pods/exec", "*")}}
		}
		switch r.IntN(300) {
		case 0:
			rule.Resources = []v1alpha1.GroupResources{{Group: "Apps/v1"}}
		case 1:
			rule.Level = "Everything"
		case 2:
			rule.OmitStages = []v1alpha1.Stage{"Later"}
		}
		spec.Rules = append(spec.Rules, rule)
	}
	m := Module{Name: fmt.Sprintf("m%d", i), Spec: spec}
	if r.IntN(3) == 0 {
		m.Namespace = []string{"team-a", "team-b"}[r.IntN(2)]
		for j := range m.Spec.Rules {
			if ns := m.Spec.Rules[j].Namespaces; len(ns) > 0 && ns[0] != m.Namespace && r.IntN(60) != 0 {
				m.Spec.Rules[j].Namespaces = nil
			}
		}
	}
	return m
}

// TestMergerMergesAsMerge holds a Merger, merging again and again as modules change, to
// Merge's answer on the same input: the same policy, sources and rendering, or the same error.
func TestMergerMergesAsMerge(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	mg := NewMerger()
	modules := make([]Module, 12)
	for i := range modules {
		modules[i] = randomModule(r, i)
	}
	failed := 0
	for step := range 400 {
		// change a few modules, sometimes the settings, then merge both ways
		for range 1 + r.IntN(3) {
			i := r.IntN(len(modules))
			modules[i] = randomModule(r, i)
		}
		settings := Settings{}
		if r.IntN(5) == 0 {
			settings.OmitStages = []v1alpha1.Stage{v1alpha1.StageRequestReceived}
		}
		if r.IntN(5) == 0 {
			settings.DefaultLevel = v1alpha1.LevelNone
		}
		want, wantErr := Merge(modules, settings)
		got, gotErr := mg.Merge(modules, settings)
		switch {
		case wantErr != nil || gotErr != nil:
			failed++
			if fmt.Sprint(wantErr) != fmt.Sprint(gotErr) || (got == nil) != (want == nil) {
				t.Fatalf("step %d: Merger: %v (%v), Merge: %v (%v)", step, got, gotErr, want, wantErr)
			}
		case !bytes.Equal(got.Render(), want.Render()) || got.Hash() != want.Hash() || got.Hash() != hashOfEncoding(want.Policy) ||
			!reflect.DeepEqual(got.Sources, want.Sources) || !reflect.DeepEqual(got.Modules, want.Modules):
			t.Fatalf("step %d: the Merger's merge differs from Merge's:\n%s\nwant\n%s", step, got.Render(), want.Render())
		}
		if step%3 == 0 {
			mg.Forget()
		}
	}
	t.Logf("%d of 400 merges failed", failed)
	if failed == 0 || failed == 400 {
		t.Fatalf("%d of 400 merges failed: the cases do not cover both outcomes", failed)
	}
}

// hashOfEncoding is what Hash stands for: the sha256 of the canonical JSON, encoded whole.
func hashOfEncoding(p auditv1.Policy) string {
	sum := sha256.Sum256(encode(p))
	return hex.EncodeToString(sum[:])
}

func TestHashIsTheSHA256OfTheCanonicalForm(t *testing.T) {
	for _, p := range []auditv1.Policy{
		{},
		{Rules: []auditv1.PolicyRule{}},
		{OmitStages: []auditv1.Stage{auditv1.StageRequestReceived}, OmitManagedFields: true,
			Rules: []auditv1.PolicyRule{{Level: auditv1.LevelMetadata, Users: []string{"<alice & bob>"}}, {Level: auditv1.LevelNone}}},
	} {
		if got, want := (&Merged{Policy: p}).Hash(), hashOfEncoding(p); got != want {
			t.Errorf("Hash of %+v is %s, the sha256 of its encoding %s", p, got, want)
		}
	}
}

// TestContentKey: modules that differ in anything Module.Rules or the rendered comments depend
// on have different keys; a nil list and an empty one are the same content.
func TestContentKey(t *testing.T) {
	base := func() Module {
		return Module{Namespace: "team-a", Name: "m", Spec: v1alpha1.AuditPolicyModuleSpec{Rules: []v1alpha1.PolicyRule{{
			Level: v1alpha1.LevelMetadata, Users: []string{"alice"},
			Resources: []v1alpha1.GroupResources{{Group: "apps", Resources: []string{"deployments"}}},
		}}}}
	}
	variants := map[string]func(*Module){
		"base":              func(*Module) {},
		"namespace":         func(m *Module) { m.Namespace = "team-b" },
		"name":              func(m *Module) { m.Name = "n" },
		"split name":        func(m *Module) { m.Namespace, m.Name = "team-", "am" },
		"module omitStages": func(m *Module) { m.Spec.OmitStages = []v1alpha1.Stage{v1alpha1.StageRequestReceived} },
		"module omit false": func(m *Module) { m.Spec.OmitManagedFields = ptr(false) },
		"module omit true":  func(m *Module) { m.Spec.OmitManagedFields = ptr(true) },
		"level":             func(m *Module) { m.Spec.Rules[0].Level = v1alpha1.LevelRequest },
		"users":             func(m *Module) { m.Spec.Rules[0].Users = []string{"bob"} },
		"users to groups":   func(m *Module) { m.Spec.Rules[0].Users, m.Spec.Rules[0].UserGroups = nil, []string{"alice"} },
		"two users":         func(m *Module) { m.Spec.Rules[0].Users = []string{"al", "ice"} },
		"verbs":             func(m *Module) { m.Spec.Rules[0].Verbs = []string{"get"} },
		"group":             func(m *Module) { m.Spec.Rules[0].Resources[0].Group = "" },
		"resources":         func(m *Module) { m.Spec.Rules[0].Resources[0].Resources = []string{"pods"} },
		"resourceNames":     func(m *Module) { m.Spec.Rules[0].Resources[0].ResourceNames = []string{"x"} },
		"two group resources": func(m *Module) {
			m.Spec.Rules[0].Resources = append(m.Spec.Rules[0].Resources, v1alpha1.GroupResources{})
		},
		"namespaces":             func(m *Module) { m.Spec.Rules[0].Namespaces = []string{"team-a"} },
		"nonResourceURLs":        func(m *Module) { m.Spec.Rules[0].NonResourceURLs = []string{"/healthz"} },
		"rule omitStages":        func(m *Module) { m.Spec.Rules[0].OmitStages = []v1alpha1.Stage{v1alpha1.StagePanic} },
		"rule omit false":        func(m *Module) { m.Spec.Rules[0].OmitManagedFields = ptr(false) },
		"rule omit true":         func(m *Module) { m.Spec.Rules[0].OmitManagedFields = ptr(true) },
		"two rules":              func(m *Module) { m.Spec.Rules = append(m.Spec.Rules, v1alpha1.PolicyRule{}) },
		"no rules":               func(m *Module) { m.Spec.Rules = nil },
		"user moved to the verb": func(m *Module) { m.Spec.Rules[0].Users, m.Spec.Rules[0].Verbs = nil, []string{"alice"} },
	}
	seen := map[[sha256.Size]byte]string{}
	for name, change := range variants {
		m := base()
		change(&m)
		k := ContentKey(m)
		if other, ok := seen[k]; ok {
			t.Errorf("variants %q and %q have the same key", name, other)
		}
		seen[k] = name
	}
	same := base()
	same.Spec.Description = "descriptions are not rules"
	same.Spec.Order, same.Spec.Disabled = 7, true // compose reads them from the module, not the key
	same.Spec.OmitStages, same.Spec.Rules[0].Verbs, same.Spec.Rules[0].Resources[0].ResourceNames = []v1alpha1.Stage{}, []string{}, []string{}
	if ContentKey(same) != ContentKey(base()) {
		t.Error("empty lists, a description, order or disabled changed the key")
	}
}

// TestContentKeyCoversEveryField fails when a field is added to the rules or the module spec:
// ContentKey must then write it, and this list grow.
func TestContentKeyCoversEveryField(t *testing.T) {
	for typ, want := range map[reflect.Type][]string{
		reflect.TypeFor[v1alpha1.PolicyRule]():     {"Level", "Users", "UserGroups", "Verbs", "Resources", "Namespaces", "NonResourceURLs", "OmitStages", "OmitManagedFields"},
		reflect.TypeFor[v1alpha1.GroupResources](): {"Group", "Resources", "ResourceNames"},
		// Description, Order and Disabled are not content: Rules and the comments ignore them
		reflect.TypeFor[v1alpha1.AuditPolicyModuleSpec](): {"Order", "Description", "Disabled", "OmitStages", "OmitManagedFields", "Rules"},
	} {
		var got []string
		for i := range typ.NumField() {
			got = append(got, typ.Field(i).Name)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s has fields %v, ContentKey writes %v: write the new ones", typ, got, want)
		}
	}
}
