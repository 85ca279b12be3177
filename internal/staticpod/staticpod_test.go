package staticpod

import (
	"bytes"
	"flag"
	corev1 "k8s.io/api/core/v1"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

var manifests = []string{"kubeadm-v1.33.yaml", "kind-v1.30.yaml", "hand-edited-audit.yaml"}

var managed = FlagSettings{
	PolicyFile: "/etc/kubernetes/audit/policy.yaml",
	LogPath:    "/var/log/kubernetes/audit/audit.log",
	MaxAge:     7, MaxBackup: 10, MaxSize: 100,
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run go test -update and review the diff):\n%s", name, got)
	}
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// changedLines returns the lines of b that are not in a, in order.
func changedLines(a, b []byte) []string {
	old := map[string]int{}
	for _, l := range strings.Split(string(a), "\n") {
		old[l]++
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if old[l] > 0 {
			old[l]--
			continue
		}
		out = append(out, l)
	}
	return out
}

func TestSetAnnotationChangesOnlyThatAnnotation(t *testing.T) {
	for _, name := range manifests {
		t.Run(name, func(t *testing.T) {
			in := readTestdata(t, name)
			out, err := SetAnnotation(in, AnnotationPolicyHash, "0123456789abcdef")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, strings.TrimSuffix(name, ".yaml")+".annotated.golden", out)
			if got := changedLines(in, out); len(got) > 2 {
				t.Errorf("expected at most the annotations key and the annotation line to be new, got %q", got)
			}
			// Every original line is still there, in the same order.
			if !isSubsequence(in, out) {
				t.Error("original lines were changed or reordered")
			}
			again, err := SetAnnotation(out, AnnotationPolicyHash, "fedcba9876543210-rollback-1")
			if err != nil {
				t.Fatal(err)
			}
			if got := changedLines(out, again); len(got) != 1 || !strings.Contains(got[0], "fedcba9876543210-rollback-1") {
				t.Errorf("bumping an existing annotation must change exactly its line, changed %q", got)
			}
			v, err := Annotation(again, AnnotationPolicyHash)
			if err != nil || v != "fedcba9876543210-rollback-1" {
				t.Errorf("Annotation() = %q, %v", v, err)
			}
		})
	}
}

func isSubsequence(a, b []byte) bool {
	bl := strings.Split(string(b), "\n")
	j := 0
	for _, l := range strings.Split(string(a), "\n") {
		for j < len(bl) && bl[j] != l {
			j++
		}
		if j == len(bl) {
			return false
		}
		j++
	}
	return true
}

func TestSetAnnotationQuotesValuesThatWouldReadAsNumbers(t *testing.T) {
	in := readTestdata(t, "kind-v1.30.yaml")
	out, err := SetAnnotation(in, AnnotationPolicyHash, "1234567890123456")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte(`audit.kaudit.io/policy-hash: "1234567890123456"`)) {
		t.Errorf("a hash of digits only must be quoted:\n%s", out)
	}
}

func TestSetAnnotationAddsAnnotationsWhenMissing(t *testing.T) {
	in := []byte("apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver # the apiserver\n  namespace: kube-system\nspec:\n  containers:\n  - name: kube-apiserver\n    image: x\n")
	out, err := SetAnnotation(in, AnnotationPolicyHash, "abc")
	if err != nil {
		t.Fatal(err)
	}
	want := "apiVersion: v1\nkind: Pod\nmetadata:\n  annotations:\n    audit.kaudit.io/policy-hash: abc\n  name: kube-apiserver # the apiserver\n  namespace: kube-system\nspec:\n  containers:\n  - name: kube-apiserver\n    image: x\n"
	if string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
	for _, empty := range []string{"  annotations: {}\n", "  annotations:\n", "  annotations: null\n"} {
		in := []byte("apiVersion: v1\nkind: Pod\nmetadata:\n" + empty + "  name: kube-apiserver\nspec:\n  containers:\n  - name: kube-apiserver\n    image: x\n")
		out, err := SetAnnotation(in, AnnotationPolicyHash, "abc")
		if err != nil {
			t.Fatalf("%q: %v", empty, err)
		}
		if v, _ := Annotation(out, AnnotationPolicyHash); v != "abc" {
			t.Errorf("%q: annotation not set:\n%s", empty, out)
		}
	}
}

func TestSetAnnotationRefusesLayoutsItCannotEditSafely(t *testing.T) {
	for name, in := range map[string]string{
		"flow metadata":  "apiVersion: v1\nkind: Pod\nmetadata: {name: x, annotations: {a: b}}\nspec:\n  containers:\n  - name: kube-apiserver\n    image: x\n",
		"not a pod":      "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
		"not yaml":       "apiVersion: v1\nkind: Pod\nmetadata:\n  name: [\n",
		"no apiserver":   "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containers:\n  - name: etcd\n    image: x\n",
		"unknown fields": "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\nspec:\n  containerz: []\n",
	} {
		if _, err := SetAnnotation([]byte(in), AnnotationPolicyHash, "abc"); err == nil {
			t.Errorf("%s: expected an error", name)
		}
	}
}

func TestEnsureFlagsAddsOnlyAuditFlagsAndMounts(t *testing.T) {
	for _, name := range manifests {
		t.Run(name, func(t *testing.T) {
			in := readTestdata(t, name)
			out, err := EnsureFlags(in, managed)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, strings.TrimSuffix(name, ".yaml")+".flags.golden", out)
			if !isSubsequence(removeReplaced(in, out), out) {
				t.Error("original lines were reordered")
			}
			for _, l := range changedLines(in, out) {
				if strings.Contains(l, "- --") && !strings.Contains(l, "--audit-") {
					t.Errorf("a non-audit flag changed: %q", l)
				}
			}
			again, err := EnsureFlags(out, managed)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, out) {
				t.Errorf("EnsureFlags is not idempotent; second run changed:\n%q", changedLines(out, again))
			}
			c, host, err := PolicyFileInManifest(out)
			if err != nil || c != managed.PolicyFile || host != managed.PolicyFile {
				t.Errorf("PolicyFileInManifest() = %q, %q, %v", c, host, err)
			}
		})
	}
}

// removeReplaced drops the lines of a that are not in b (values edited in place).
func removeReplaced(a, b []byte) []byte {
	inB := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		inB[l] = true
	}
	var keep []string
	for _, l := range strings.Split(string(a), "\n") {
		if inB[l] {
			keep = append(keep, l)
		}
	}
	return []byte(strings.Join(keep, "\n"))
}

func TestEnsureFlagsChangesAValueInPlaceKeepingItsComment(t *testing.T) {
	in := readTestdata(t, "hand-edited-audit.yaml")
	s := managed
	s.PolicyFile = "/etc/kubernetes/policies/audit-policy.yaml"
	out, err := EnsureFlags(in, s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte("    - --audit-log-maxage=7\n")) || bytes.Contains(out, []byte("maxage=30")) {
		t.Errorf("maxage not replaced in place:\n%s", out)
	}
	if !bytes.Contains(out, []byte("    - --secure-port=6443 # keep in sync with the load balancer\n")) {
		t.Error("an untouched flag's comment was lost")
	}
	if bytes.Contains(out, []byte(VolumePolicy)) || bytes.Contains(out, []byte(VolumeLog)) {
		t.Errorf("existing mounts of the same directories must be reused:\n%s", out)
	}
}

func TestPolicyFileInManifestMapsThroughTheVolumeMount(t *testing.T) {
	c, host, err := PolicyFileInManifest(readTestdata(t, "hand-edited-audit.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if c != "/etc/kubernetes/policies/audit-policy.yaml" || host != "/etc/kubernetes/policies/audit-policy.yaml" {
		t.Errorf("got %q, %q", c, host)
	}
	_, _, err = PolicyFileInManifest(readTestdata(t, "kubeadm-v1.33.yaml"))
	if err == nil || !strings.Contains(err.Error(), "manageAPIServerFlags") {
		t.Errorf("a manifest without --audit-policy-file must say how to fix it, got %v", err)
	}
	moved := bytes.Replace(readTestdata(t, "hand-edited-audit.yaml"), []byte("      path: /etc/kubernetes/policies\n"), []byte("      path: /srv/audit\n"), 1)
	if _, host, err := PolicyFileInManifest(moved); err != nil || host != "/srv/audit/audit-policy.yaml" {
		t.Errorf("host path through a volume at another path: got %q, %v", host, err)
	}
	unmounted := bytes.Replace(readTestdata(t, "hand-edited-audit.yaml"), []byte("policies/audit-policy.yaml"), []byte("elsewhere/p.yaml"), 1)
	if _, _, err := PolicyFileInManifest(unmounted); err == nil || !strings.Contains(err.Error(), "not under any volume mount") {
		t.Errorf("unmounted policy: got %v", err)
	}
}

func TestSetAnnotationAfterAMultiLineAnnotation(t *testing.T) {
	in := []byte(`apiVersion: v1
kind: Pod
metadata:
  annotations:
    example.com/notes: |
      line one
        indented line

      after a blank line
    example.com/last: "x" # trailing comment
  name: kube-apiserver
spec:
  containers:
  - name: kube-apiserver
    image: x
`)
	out, err := SetAnnotation(in, AnnotationPolicyHash, "abc")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte("    example.com/last: \"x\" # trailing comment\n    audit.kaudit.io/policy-hash: abc\n")) {
		t.Errorf("got\n%s", out)
	}
	in2 := bytes.Replace(in, []byte(`    example.com/last: "x" # trailing comment
`), nil, 1)
	out, err = SetAnnotation(in2, AnnotationPolicyHash, "abc")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte("      after a blank line\n    audit.kaudit.io/policy-hash: abc\n")) {
		t.Errorf("got\n%s", out)
	}
	out, err = SetAnnotation(out, AnnotationPolicyHash, "def")
	if err != nil || !bytes.Contains(out, []byte("policy-hash: def\n")) {
		t.Errorf("replace: %v\n%s", err, out)
	}
}

// A hostPath volume of the log directory that is mounted elsewhere, or not at all, is mounted
// under its own name: a mount naming a volume the pod lacks makes kubelet reject the pod.
func TestEnsureFlagsMountsAnExistingLogVolumeUnderItsOwnName(t *testing.T) {
	in := readTestdata(t, "kubeadm-v1.33.yaml")
	withVolume, err := appendItem(in, "volumes", false, "hostPath:\n  path: /var/log/kubernetes/audit\n  type: DirectoryOrCreate\nname: audit-logs\n")
	if err != nil {
		t.Fatal(err)
	}
	elsewhere, err := appendItem(withVolume, "volumeMounts", true, "mountPath: /logs\nname: audit-logs\n")
	if err != nil {
		t.Fatal(err)
	}
	for name, manifest := range map[string][]byte{"not mounted": withVolume, "mounted elsewhere": elsewhere} {
		t.Run(name, func(t *testing.T) {
			out, err := EnsureFlags(manifest, managed)
			if err != nil {
				t.Fatal(err)
			}
			pod, err := ParsePod(out)
			if err != nil {
				t.Fatal(err)
			}
			if err := mountsResolve(pod); err != nil {
				t.Fatal(err)
			}
			m := mountFor(apiserverContainer(pod), "/var/log/kubernetes/audit")
			if m == nil || m.Name != "audit-logs" {
				t.Errorf("log directory mount = %+v, want the existing volume audit-logs", m)
			}
			for _, v := range pod.Spec.Volumes {
				if v.Name == VolumeLog {
					t.Errorf("a second volume %s was added for the same directory", VolumeLog)
				}
			}
		})
	}
}

func TestVerifyEditRejectsAMountWithoutAVolume(t *testing.T) {
	in := readTestdata(t, "kubeadm-v1.33.yaml")
	out, err := appendItem(in, "volumeMounts", true, "mountPath: /x\nname: nowhere\n")
	if err != nil {
		t.Fatal(err)
	}
	err = verifyEdit(in, out, func(p *corev1.Pod) error {
		c := apiserverContainer(p)
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "nowhere", MountPath: "/x"})
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), `"nowhere"`) {
		t.Errorf("verifyEdit() = %v, want an error naming the volume", err)
	}
}
