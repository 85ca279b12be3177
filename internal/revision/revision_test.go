package revision

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
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
			cm, err := configMapOf("kaudit-system", in)
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
			if _, err := Verify(cm, Digest(in)); err != nil {
				t.Errorf("the stored revision does not verify against its own digest: %v", err)
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
	cm, err := configMapOf("ns", Revision{Number: 1, Hash: merged.Hash(), Policy: merged.Render(), Modules: recs})
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
	_, err := configMapOf("ns", Revision{Number: 3, Hash: "h", Policy: []byte(b.String())})
	if err == nil || !strings.Contains(err.Error(), "revision 3") || !strings.Contains(err.Error(), "object limit") {
		t.Errorf("error = %v", err)
	}
}

func TestFromConfigMapRejectsBrokenRevisions(t *testing.T) {
	mods, recs := modules(1)
	merged, _ := policy.Merge(mods, policy.Settings{})
	good, err := configMapOf("ns", Revision{Number: 2, Hash: merged.Hash(), Policy: merged.Render(), Modules: recs})
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

// revisionOf is a small valid revision n holding the given module records.
func revisionOf(t *testing.T, n int64, recs []ModuleRecord) Revision {
	t.Helper()
	mods, _ := modules(1)
	merged, err := policy.Merge(mods, policy.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	return Revision{Number: n, Hash: merged.Hash(), Policy: merged.Render(), Modules: recs}
}

func TestDigestCoversEveryPartOfTheContent(t *testing.T) {
	_, recs := modules(2)
	base := revisionOf(t, 4, recs)
	changed := map[string]func(*Revision){
		"number":         func(r *Revision) { r.Number = 5 },
		"policy hash":    func(r *Revision) { r.Hash = strings.Repeat("0", 64) },
		"policy":         func(r *Revision) { r.Policy = append(bytes.Clone(r.Policy), '\n') },
		"module records": func(r *Revision) { r.Modules = r.Modules[:1] },
		"a module's spec": func(r *Revision) {
			r.Modules = slices.Clone(r.Modules)
			r.Modules[0].Spec.Rules = []v1alpha1.PolicyRule{{Level: v1alpha1.LevelNone}}
		},
	}
	for name, change := range changed {
		r := base
		change(&r)
		if Digest(r) == Digest(base) {
			t.Errorf("changing the %s keeps the digest", name)
		}
	}
	// Length prefixes: bytes moved from one part to the next give another digest.
	if Digest(Revision{Hash: "ab", Policy: []byte("c")}) == Digest(Revision{Hash: "a", Policy: []byte("bc")}) {
		t.Error("moving a byte from the hash to the policy keeps the digest")
	}
}

func TestVerifyAcceptsOnlyWhatTheManagerWrote(t *testing.T) {
	_, recs := modules(2)
	rev := revisionOf(t, 2, recs)
	good, err := configMapOf("ns", rev)
	if err != nil {
		t.Fatal(err)
	}
	digest := Digest(rev)
	if got, err := Verify(good, digest); err != nil || got.Number != 2 {
		t.Fatalf("Verify(good) = %v, %v", got, err)
	}
	empty := revisionOf(t, 3, nil)
	if cm, err := configMapOf("ns", empty); err != nil {
		t.Fatal(err)
	} else if _, err := Verify(cm, Digest(empty)); err != nil {
		t.Errorf("a revision without module records does not verify: %v", err)
	}

	forged := func(level v1alpha1.Level) []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		r := slices.Clone(recs)
		r[0].Spec.Rules = []v1alpha1.PolicyRule{{Level: level}}
		_, _ = w.Write(mustJSON(r))
		_ = w.Close()
		return b.Bytes()
	}
	for name, tc := range map[string]struct {
		change func(*corev1.ConfigMap)
		want   string
	}{
		"another name":        {func(cm *corev1.ConfigMap) { cm.Name = "kaudit-policy-7" }, "is named kaudit-policy-2"},
		"mutable":             {func(cm *corev1.ConfigMap) { cm.Immutable = nil }, "not immutable"},
		"mutable, explicitly": {func(cm *corev1.ConfigMap) { f := false; cm.Immutable = &f }, "not immutable"},
		"a wrong hash label":  {func(cm *corev1.ConfigMap) { cm.Labels[LabelPolicyHash] = "0000000000000000" }, "do not match its content"},
		"another policy hash": {func(cm *corev1.ConfigMap) { cm.Annotations[AnnotationPolicySHA256] = strings.Repeat("0", 64) }, "do not match its content"},
		"forged module records": {func(cm *corev1.ConfigMap) { cm.BinaryData[KeyModules] = forged(v1alpha1.LevelNone) },
			"content does not match the sha256 recorded for revision 2"},
		"another policy": {func(cm *corev1.ConfigMap) { cm.Data[KeyPolicy] += "# edited\n" }, "content does not match"},
		"a bad number":   {func(cm *corev1.ConfigMap) { cm.Labels[LabelRevision] = "9223372036854775808" }, "is not a revision number"},
	} {
		t.Run(name, func(t *testing.T) {
			cm := good.DeepCopy()
			tc.change(cm)
			_, err := Verify(cm, digest)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "ConfigMap ns/") {
				t.Errorf("error = %v, want one naming the ConfigMap and saying %q", err, tc.want)
			}
		})
	}
	if _, err := Verify(good, Digest(revisionOf(t, 2, recs[:1]))); err == nil {
		t.Error("a ConfigMap verifies against another revision's digest")
	}
}

// A gzip bomb: a few kilobytes that decompress to more than the cap.
func bomb(t *testing.T, size int) []byte {
	t.Helper()
	var b bytes.Buffer
	w, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	chunk := make([]byte, 1<<20)
	for size > 0 {
		n := min(size, len(chunk))
		if _, err := w.Write(chunk[:n]); err != nil {
			t.Fatal(err)
		}
		size -= n
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestDecompressionIsCapped(t *testing.T) {
	_, recs := modules(1)
	good, err := configMapOf("ns", revisionOf(t, 2, recs))
	if err != nil {
		t.Fatal(err)
	}
	for key, limit := range map[string]int{KeyPolicyGzip: MaxPolicyBytes, KeyModules: MaxModulesBytes} {
		t.Run(key, func(t *testing.T) {
			cm := good.DeepCopy()
			if key == KeyPolicyGzip {
				delete(cm.Data, KeyPolicy)
			}
			cm.BinaryData[key] = bomb(t, limit+1)
			_, err := FromConfigMap(cm)
			want := fmt.Sprintf("ConfigMap ns/kaudit-policy-2: binaryData %s: decompresses to more than %d MiB, the cap", key, limit>>20)
			if err == nil || err.Error() != want {
				t.Errorf("error = %v, want %q", err, want)
			}
			cm.BinaryData[key] = bomb(t, 1<<20)
			if key == KeyPolicyGzip {
				if _, err := FromConfigMap(cm); err != nil {
					t.Errorf("a policy under the cap: %v", err)
				}
			}
		})
	}
	if _, err := configMapOf("ns", Revision{Number: 3, Hash: "h", Policy: make([]byte, MaxPolicyBytes+1)}); err == nil || !strings.Contains(err.Error(), "over the caps") {
		t.Errorf("Encode of a policy over the cap: error = %v", err)
	}
}

// A namespaced module's record keeps its namespace through the ConfigMap; a cluster-scoped
// module's record encodes as before namespaces existed, so older revisions keep their digest.
func TestRecordsOfNamespacedModulesKeepTheirNamespace(t *testing.T) {
	spec := v1alpha1.AuditPolicyModuleSpec{Order: 1, Rules: []v1alpha1.PolicyRule{{Level: v1alpha1.LevelRequest}}}
	recs := []ModuleRecord{
		{Name: "cluster-wide", Generation: 1, FirstRevision: 1, Spec: spec},
		{Name: "bodies", Namespace: "team-a", Generation: 2, FirstRevision: 1, Spec: spec},
	}
	cm, err := configMapOf("kaudit-system", Revision{Number: 1, Hash: strings.Repeat("a", 64), Policy: []byte("rules: []\n"), Modules: recs})
	if err != nil {
		t.Fatal(err)
	}
	back, err := FromConfigMap(cm)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Modules, recs) {
		t.Errorf("records = %+v, want %+v", back.Modules, recs)
	}
	if got := back.Modules[1].Module(); got.ID() != "team-a/bodies" {
		t.Errorf("the namespaced record is module %s, want team-a/bodies", got.ID())
	}
	if b := mustJSON(recs[0]); bytes.Contains(b, []byte("namespace")) {
		t.Errorf("a cluster-scoped record encodes a namespace: %s", b)
	}
}

// Encode's digest is Digest's, and it refuses a policy over the cap.
func TestEncodeReturnsTheDigest(t *testing.T) {
	mods, recs := modules(100)
	merged, err := policy.Merge(mods, policy.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	in := Revision{Number: 3, Hash: merged.Hash(), Policy: merged.Render(), Modules: recs}
	cm, digest, err := Encode("kaudit-system", in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(cm, digest); err != nil {
		t.Errorf("the ConfigMap does not verify against the digest returned with it: %v", err)
	}
	if digest != Digest(in) {
		t.Errorf("Encode's digest %s, want Digest's %s", digest, Digest(in))
	}
	in.Policy = bytes.Repeat([]byte("x"), MaxPolicyBytes+1)
	if _, _, err := Encode("kaudit-system", in); err == nil {
		t.Error("Encode accepted a policy over the cap")
	}
}

// The records are written as json.Marshal writes the list, byte for byte: the digests recorded
// in status.revisions of revisions written before depend on it.
func TestRecordsAreEncodedAsJSONMarshal(t *testing.T) {
	_, recs := modules(50)
	recs[3].Namespace = "team-a"
	for _, list := range [][]ModuleRecord{nil, {}, recs[:1], recs} {
		want, err := json.Marshal(list)
		if err != nil {
			t.Fatal(err)
		}
		if got := encodeRecords(list); !bytes.Equal(got, want) {
			t.Errorf("%d records: encoded\n%s\nwant\n%s", len(list), got, want)
		}
	}
}

// configMapOf is the ConfigMap Encode writes for r.
func configMapOf(namespace string, r Revision) (*corev1.ConfigMap, error) {
	cm, _, err := Encode(namespace, r)
	return cm, err
}
