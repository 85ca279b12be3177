package cmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// kube-apiserver reads a policy with a misspelt field (verb: for verbs:) with only a warning in
// its log, and the rule then matches every verb. render and import refuse it, lint reports it as
// an error, all three with the same words: the rule, the field and what the apiserver will do.
func TestUnknownFieldsAreNamedWithTheirRuleAndTheirEffect(t *testing.T) {
	dir := t.TempDir()
	policyFile := filepath.Join(dir, "policy.yaml")
	moduleFile := filepath.Join(dir, "module.yaml")
	for path, data := range map[string]string{
		policyFile: `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: [system:kube-proxy]
- level: None
  verb: [watch]
  resources: [{group: "", resources: [endpoints]}]
- level: Metadata
`,
		moduleFile: `apiVersion: audit.kaudit.io/v1alpha1
kind: AuditPolicyModule
metadata: {name: team}
spec:
  rules:
  - level: Metadata
    resources: [{group: "", resources: [pods]}]
  - level: None
    user: [robot]
`,
	} {
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		file, rule, field, hint, effect string
		// lintAt is where lint reports it.
		lintAt string
	}{
		{policyFile, "rules[1]", "verb", "verbs", "the rule matches every verb", "module policy-01-noise rule 1"},
		{moduleFile, "spec.rules[1]", "user", "users", "the rule matches every user", "module team rule 1"},
	} {
		sentence := `unknown field "` + tc.field + `" (did you mean "` + tc.hint + `"?)`
		for _, args := range [][]string{{"render", tc.file}, {"import", tc.file}} {
			if args[0] == "import" && tc.file == moduleFile {
				continue
			}
			out, errOut, code := kaudit(t, "", args...)
			if code == 0 || out != "" || !strings.Contains(errOut, tc.rule+": "+sentence) || !strings.Contains(errOut, tc.effect) {
				t.Errorf("%v: exit %d, stdout %q, stderr %q\nwant %q and %q", args, code, out, errOut, tc.rule+": "+sentence, tc.effect)
			}
		}
		out, errOut, code := kaudit(t, "", "lint", tc.file)
		if code != 1 || errOut != "" || !strings.Contains(out, "ERROR   "+tc.lintAt+": ") || !strings.Contains(out, sentence) || !strings.Contains(out, tc.effect) || !strings.Contains(out, "[unknown-field]") {
			t.Errorf("lint %s: exit %d, stderr %q, findings:\n%s", tc.file, code, errOut, out)
		}
	}
}
