package staticpod

import (
	"bytes"
	"strings"
	"testing"
)

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
