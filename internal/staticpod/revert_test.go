package staticpod

import (
	"bytes"
	"strings"
	"testing"
)

// kauditEdit is the manifest kaudit writes from before: the managed flags and mounts, and the
// policy-hash annotation.
func kauditEdit(t *testing.T, before []byte) []byte {
	t.Helper()
	out, err := EnsureFlags(before, managed)
	if err != nil {
		t.Fatal(err)
	}
	if out, err = SetAnnotation(out, AnnotationPolicyHash, "0123456789abcdef"); err != nil {
		t.Fatal(err)
	}
	return out
}

// upgradeImage is what kubeadm upgrade does to the manifest meanwhile, as far as kaudit can
// tell: another image.
func upgradeImage(t *testing.T, manifest []byte) []byte {
	t.Helper()
	pod, err := ParsePod(manifest)
	if err != nil {
		t.Fatal(err)
	}
	old := apiserverContainer(pod).Image
	out := bytes.Replace(manifest, []byte("image: "+old), []byte("image: registry.k8s.io/kube-apiserver:v1.99.0"), 1)
	if bytes.Equal(out, manifest) {
		t.Fatal("no image line to change")
	}
	return out
}

// withRollbackAnnotation compares manifests up to the policy-hash annotation, which the agent
// sets after RevertFlags.
func withRollbackAnnotation(t *testing.T, manifest []byte) []byte {
	t.Helper()
	out, err := SetAnnotation(manifest, AnnotationPolicyHash, "none-rollback-1")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRevertFlagsKeepsWhatOthersChangedAndUndoesOnlyKauditsEdit(t *testing.T) {
	for _, name := range manifests {
		t.Run(name, func(t *testing.T) {
			before := readTestdata(t, name)
			after := kauditEdit(t, before)
			for what, tc := range map[string]struct{ current, want []byte }{
				"unchanged since":  {after, before},
				"image upgraded":   {upgradeImage(t, after), upgradeImage(t, before)},
				"already reverted": {withRollbackAnnotation(t, before), before},
			} {
				got, err := RevertFlags(tc.current, before, after)
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				if !bytes.Equal(withRollbackAnnotation(t, got), withRollbackAnnotation(t, tc.want)) {
					t.Errorf("%s: got\n%s\nwant, up to the annotation,\n%s", what, got, tc.want)
				}
			}
		})
	}
}

func TestRevertFlagsRefusesWhatSomeoneElseChangedToo(t *testing.T) {
	before := readTestdata(t, "kubeadm-v1.33.yaml")
	after := kauditEdit(t, before)
	for name, tc := range map[string]struct {
		current []byte
		want    string
	}{
		"a flag kaudit added": {
			bytes.Replace(after, []byte("--audit-log-maxage=7"), []byte("--audit-log-maxage=30"), 1),
			`flag --audit-log-maxage is "30" in the manifest, neither what kaudit wrote ("7") nor what was there before (absent)`,
		},
		"a volume kaudit added": {
			bytes.Replace(after, []byte("path: /var/log/kubernetes/audit\n"), []byte("path: /var/log/elsewhere\n"), 1),
			`volume "kaudit-audit-log" is no longer the one kaudit added`,
		},
		"a mount kaudit added": {
			bytes.Replace(after, []byte("      name: kaudit-audit-policy\n      readOnly: true\n"), []byte("      name: kaudit-audit-policy\n"), 1),
			"the volume mount at /etc/kubernetes/audit is no longer the one kaudit added",
		},
	} {
		t.Run(name, func(t *testing.T) {
			if bytes.Equal(tc.current, after) {
				t.Fatal("the test's change did not apply")
			}
			if _, err := RevertFlags(tc.current, before, after); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("RevertFlags() = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

func TestRevertFlagsRefusesAnEditThatIsNotKaudits(t *testing.T) {
	before := readTestdata(t, "kubeadm-v1.33.yaml")
	after := upgradeImage(t, kauditEdit(t, before))
	if _, err := RevertFlags(after, before, after); err == nil || !strings.Contains(err.Error(), "changed more than") {
		t.Errorf("RevertFlags() = %v, want an error", err)
	}
}

func TestRevertFlagsRemovesAListKeyItAdded(t *testing.T) {
	before := []byte("apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\nspec:\n  containers:\n  - command:\n    - kube-apiserver\n    image: x\n    name: kube-apiserver\n")
	after := kauditEdit(t, before)
	if !bytes.Contains(after, []byte("volumeMounts:")) || !bytes.Contains(after, []byte("volumes:")) {
		t.Fatalf("EnsureFlags did not add the lists:\n%s", after)
	}
	got, err := RevertFlags(upgradeImage(t, after), before, after)
	if err != nil {
		t.Fatal(err)
	}
	if want := upgradeImage(t, before); !bytes.Equal(withRollbackAnnotation(t, got), withRollbackAnnotation(t, want)) {
		t.Errorf("got\n%s\nwant, up to the annotation,\n%s", got, want)
	}
}

func TestRevertFlagsUndoesTheShutdownDelayKauditSet(t *testing.T) {
	s := managed
	s.ShutdownDelay = "15s"
	plain := readTestdata(t, "kubeadm-v1.33.yaml")
	withDelay := bytes.Replace(plain, []byte("    - --secure-port=6443\n"), []byte("    - --secure-port=6443\n    - --shutdown-delay-duration=3s\n"), 1)
	if bytes.Equal(withDelay, plain) {
		t.Fatal("the test's change did not apply")
	}
	for name, before := range map[string][]byte{"added": plain, "changed": withDelay} {
		t.Run(name, func(t *testing.T) {
			after, err := EnsureFlags(before, s)
			if err != nil {
				t.Fatal(err)
			}
			got, err := RevertFlags(upgradeImage(t, after), before, after)
			if err != nil {
				t.Fatal(err)
			}
			if want := upgradeImage(t, before); !bytes.Equal(got, want) {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}
