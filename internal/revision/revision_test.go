package revision

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/policy"
)

// modules builds n modules of a realistic size: a few rules each, with users and resources.
func modules(n int) ([]policy.Module, []ModuleRecord) {
	var mods []policy.Module
	var recs []ModuleRecord
	for i := range n {
		spec := v1alpha1.AuditPolicyModuleSpec{Order: int32(i), Description: fmt.Sprintf("team %d's rules", i)}
		for j := range 3 {
			spec.Rules = append(spec.Rules, v1alpha1.PolicyRule{
				Level:      v1alpha1.LevelRequest,
				Users:      []string{fmt.Sprintf("system:serviceaccount:team-%d:deployer-%d", i, j)},
				Verbs:      []string{"create", "update", "patch", "delete"},
				Namespaces: []string{fmt.Sprintf("team-%d", i)},
				Resources:  []v1alpha1.GroupResources{{Group: "apps", Resources: []string{"deployments", "statefulsets", "daemonsets"}}},
			})
		}
		name := fmt.Sprintf("team-%04d", i)
		mods = append(mods, policy.Module{Name: name, Spec: spec})
		recs = append(recs, ModuleRecord{Name: name, Generation: 1, FirstRevision: 1, Spec: spec})
	}
	return mods, recs
}

func TestRoundTrip(t *testing.T) {
	for _, n := range []int{1, 1000} {
		t.Run(fmt.Sprintf("%d modules", n), func(t *testing.T) {
			mods, recs := modules(n)
			merged, err := policy.Merge(mods, policy.Settings{})
			if err != nil {
				t.Fatal(err)
			}
			in := Revision{Number: 7, Hash: merged.Hash(), Policy: merged.Render(), Modules: recs}
			cm, err := ToConfigMap("kaudit-system", in)
			if err != nil {
				t.Fatal(err)
			}
			if cm.Name != "kaudit-policy-7" || cm.Labels[LabelRevision] != "7" || cm.Labels[LabelPolicyHash] != in.Hash[:16] || cm.Annotations[AnnotationPolicySHA256] != in.Hash {
				t.Errorf("name/labels/annotations wrong: %s %v %v", cm.Name, cm.Labels, cm.Annotations)
			}
			if cm.Immutable == nil || !*cm.Immutable {
				t.Error("revisions must be immutable")
			}
			size := len(cm.Data[KeyPolicy]) + len(cm.BinaryData[KeyPolicyGzip]) + len(cm.BinaryData[KeyModules])
			if size > objectLimit {
				t.Errorf("stored size %d over the limit", size)
			}
			t.Logf("%d modules: policy %d bytes, stored %d bytes (policy inline: %v)", n, len(in.Policy), size, cm.Data[KeyPolicy] != "")
			out, err := FromConfigMap(cm)
			if err != nil {
				t.Fatal(err)
			}
			if out.Number != in.Number || out.Hash != in.Hash || !bytes.Equal(out.Policy, in.Policy) || !reflect.DeepEqual(out.Modules, in.Modules) {
				t.Error("the revision changed in the round trip")
			}
			if _, err := policy.Load(out.Policy); err != nil {
				t.Errorf("stored policy no longer loads: %v", err)
			}
		})
	}
}

func TestLargePoliciesAreGzipped(t *testing.T) {
	mods, recs := modules(1000)
	merged, _ := policy.Merge(mods, policy.Settings{})
	cm, err := ToConfigMap("ns", Revision{Number: 1, Hash: merged.Hash(), Policy: merged.Render(), Modules: recs})
	if err != nil {
		t.Fatal(err)
	}
	if _, inline := cm.Data[KeyPolicy]; inline || len(cm.BinaryData[KeyPolicyGzip]) == 0 {
		t.Errorf("a %d byte policy should be stored gzipped", len(merged.Render()))
	}
}

func TestTooLargeRevisionIsRefusedWithAClearError(t *testing.T) {
	// Random-looking text does not compress: 2 MiB of it cannot fit in one object.
	var b strings.Builder
	for i := range 200000 {
		fmt.Fprintf(&b, "%x", uint64(i)*0x9E3779B97F4A7C15)
	}
	_, err := ToConfigMap("ns", Revision{Number: 3, Hash: "h", Policy: []byte(b.String())})
	if err == nil || !strings.Contains(err.Error(), "revision 3") || !strings.Contains(err.Error(), "object limit") {
		t.Errorf("error = %v", err)
	}
}

func TestFromConfigMapRejectsBrokenRevisions(t *testing.T) {
	mods, recs := modules(1)
	merged, _ := policy.Merge(mods, policy.Settings{})
	good, err := ToConfigMap("ns", Revision{Number: 2, Hash: merged.Hash(), Policy: merged.Render(), Modules: recs})
	if err != nil {
		t.Fatal(err)
	}
	for name, breakIt := range map[string]func(*corev1.ConfigMap){
		"bad number":   func(cm *corev1.ConfigMap) { cm.Labels[LabelRevision] = "two" },
		"no hash":      func(cm *corev1.ConfigMap) { delete(cm.Annotations, AnnotationPolicySHA256) },
		"no policy":    func(cm *corev1.ConfigMap) { delete(cm.Data, KeyPolicy) },
		"corrupt gzip": func(cm *corev1.ConfigMap) { cm.BinaryData[KeyModules] = []byte("not gzip") },
	} {
		t.Run(name, func(t *testing.T) {
			cm := good.DeepCopy()
			breakIt(cm)
			if _, err := FromConfigMap(cm); err == nil || !strings.Contains(err.Error(), "ConfigMap ns/kaudit-policy-2") {
				t.Errorf("error = %v, want one naming the ConfigMap", err)
			}
		})
	}
}
