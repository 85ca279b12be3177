package cmd

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// import --output-dir never writes over an existing kustomization unless told to: applying the
// new one (or an Argo CD prune) would delete the modules that only the old one lists.
func TestImportRefusesANonEmptyOutputDirectoryWithoutForce(t *testing.T) {
	dir := t.TempDir()
	old := map[string]string{
		"kustomization.yaml": "resources: [mine.yaml]\n",
		"mine.yaml":          "# a module someone wrote by hand\n",
	}
	for name, data := range old {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, errOut, code := kaudit(t, "", "import", simPolicy, "--output-dir", dir)
	if code == 0 || !strings.Contains(errOut, "not empty") || !strings.Contains(errOut, "kustomization.yaml") || !strings.Contains(errOut, "mine.yaml") || !strings.Contains(errOut, "--force") {
		t.Errorf("exit %d, stderr %q: want a refusal naming what is there and --force", code, errOut)
	}
	for name, data := range old {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(b) != data {
			t.Errorf("%s was changed: %q, %v", name, b, err)
		}
	}

	_, errOut, code = kaudit(t, "", "import", simPolicy, "--output-dir", dir, "--force")
	if code != 0 {
		t.Fatalf("--force: exit %d, %s", code, errOut)
	}
	if !strings.Contains(errOut, "mine.yaml") {
		t.Errorf("--force: stderr %q does not name the file left in place, which the new kustomization does not list", errOut)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "kustomization.yaml")); strings.Contains(string(b), "mine.yaml") {
		t.Errorf("--force: the kustomization was not replaced:\n%s", b)
	}

	// A directory that does not exist yet is created.
	fresh := filepath.Join(t.TempDir(), "new", "modules")
	if _, errOut, code := kaudit(t, "", "import", simPolicy, "--output-dir", fresh); code != 0 {
		t.Errorf("a new directory: exit %d, %s", code, errOut)
	}
}

func TestImportReadsStdin(t *testing.T) {
	policy, err := os.ReadFile(simPolicy)
	if err != nil {
		t.Fatal(err)
	}
	fromStdin, errOut, code := kaudit(t, string(policy), "import", "-")
	if code != 0 {
		t.Fatalf("exit %d, %s", code, errOut)
	}
	fromFile, _, _ := kaudit(t, "", "import", simPolicy, "--prefix", "imported")
	a, _, _ := kaudit(t, fromStdin, "render", "-")
	b, _, _ := kaudit(t, fromFile, "render", "-")
	if a == "" || a != b {
		t.Errorf("the modules of import - differ from those of the file:\n%s\n---\n%s", fromStdin, fromFile)
	}
}

// A module holds at most 200 rules (the CRD's limit): import splits larger groups, and the
// modules still apply and merge back to the same policy.
func TestImportSplitsModulesOverTheCRDRuleLimit(t *testing.T) {
	var b strings.Builder
	b.WriteString("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n")
	for i := range 450 {
		fmt.Fprintf(&b, "- {level: Metadata, users: [user-%d], verbs: [create]}\n", i)
	}
	b.WriteString("- {level: None}\n")
	path := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	want, errOut, code := kaudit(t, "", "render", path, "-o", "json")
	if code != 0 {
		t.Fatal(errOut)
	}
	for _, single := range []bool{false, true} {
		args := []string{"import", path}
		if single {
			args = append(args, "--single")
		}
		modules, errOut, code := kaudit(t, "", args...)
		if code != 0 {
			t.Fatalf("single=%v: %s", single, errOut)
		}
		// render - reads the modules as kubectl apply would, CRD schema included.
		got, errOut, code := kaudit(t, modules, "render", "-", "-o", "json")
		if code != 0 || got != want {
			t.Errorf("single=%v: exit %d, %s; the modules render differently from the policy", single, code, errOut)
		}
	}
}

// kube-apiserver no longer serves audit.k8s.io/v1beta1 and fails to start on such a policy; its
// fields are those of v1, so import and render read it, and say that the file must change.
func TestImportAndRenderAcceptV1beta1WithAWarning(t *testing.T) {
	v1, err := os.ReadFile(simPolicy)
	if err != nil {
		t.Fatal(err)
	}
	beta := strings.Replace(string(v1), "apiVersion: audit.k8s.io/v1\n", "apiVersion: audit.k8s.io/v1beta1\n", 1)
	if beta == string(v1) {
		t.Fatal("the test policy has no apiVersion line to change")
	}
	for _, cmd := range []string{"render", "import"} {
		want, _, _ := kaudit(t, string(v1), cmd, "-")
		got, errOut, code := kaudit(t, beta, cmd, "-")
		if code != 0 || got != want || !strings.Contains(errOut, "audit.k8s.io/v1beta1") || !strings.Contains(errOut, "audit.k8s.io/v1") {
			t.Errorf("%s: exit %d, stderr %q; output equal to v1's: %v", cmd, code, errOut, got == want)
		}
	}
}

// Published policies end with a catch-all that has its own omitStages; once imported, lint must
// not call the result a policy without a catch-all, nor one whose default is shadowed.
func TestImportedPublishedPoliciesLintWithoutCatchAllFindings(t *testing.T) {
	for _, file := range []string{"docs-example-policy.yaml", "gke-policy.yaml"} {
		dir := t.TempDir()
		if _, errOut, code := kaudit(t, "", "import", filepath.Join("..", "internal", "lint", "testdata", file), "--output-dir", dir); code != 0 {
			t.Fatalf("%s: %s", file, errOut)
		}
		out, errOut, _ := kaudit(t, "", "lint", dir)
		if errOut != "" || strings.Contains(out, "[no-catch-all]") || strings.Contains(out, "[shadowed-default]") {
			t.Errorf("%s: lint of the imported modules:\n%s%s", file, out, errOut)
		}
	}
}

// import switches off the built-in guardrails the policy breaks, and only those: otherwise the
// manager would reject the modules that break them, and the policy in force would not be the
// original. Render and lint read the plain policy with the same settings.
func TestImportSwitchesOffTheBuiltInsThePolicyBreaks(t *testing.T) {
	breaking := "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- {level: None, users: [x], nonResourceURLs: [/healthz]}\n- {level: RequestResponse, resources: [{group: \"\", resources: [secrets]}]}\n- {level: Metadata}\n"
	out, errOut, code := kaudit(t, breaking, "import", "-")
	if code != 0 {
		t.Fatalf("exit %d, %s", code, errOut)
	}
	for _, want := range []string{
		"  guardrails:\n    disabledBuiltIns:\n    - no-credential-bodies\n    - system-masters-logged\n",
		"#   no-credential-bodies: e.g. rule 0 of module imported-02-secrets logs a request of its scope at RequestResponse\n",
		"#   system-masters-logged: e.g. rule 0 of module imported-01-nonresource logs a request of its scope at None\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the import does not say %q:\n%s", want, out)
		}
	}
	rendered, _, code := kaudit(t, out, "render", "-")
	if direct, _, _ := kaudit(t, breaking, "render", "-"); code != 0 || rendered != direct {
		t.Errorf("render of the import (exit %d) differs from render of the policy:\n%s\n---\n%s", code, rendered, direct)
	}
	if lintOut, _, _ := kaudit(t, breaking, "lint", "-"); strings.Contains(lintOut, "[guardrail-") {
		t.Errorf("lint of the plain policy reports guardrails its import switches off:\n%s", lintOut)
	}

	keeping := "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- {level: Metadata, resources: [{group: \"\", resources: [secrets]}]}\n- {level: Request}\n"
	out, _, _ = kaudit(t, keeping, "import", "-")
	if strings.Contains(out, "guardrails") {
		t.Errorf("a policy that keeps the built-ins gets guardrail settings:\n%s", out)
	}
}
