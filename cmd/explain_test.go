package cmd

import (
	"encoding/json"
	"strings"
	"testing"
)

// explain decides the request kube-apiserver would evaluate, not the one typed: the user's
// system:authenticated group, a create's empty name, and kubectl's ways of writing resources,
// verbs and paths.
func TestExplainAgreesWithTheAPIServer(t *testing.T) {
	modules := `apiVersion: audit.kaudit.io/v1alpha1
kind: AuditPolicyModule
metadata: {name: named}
spec:
  order: 10
  rules:
  - level: None
    verbs: [create]
    resources: [{group: "", resources: [configmaps], resourceNames: [cfg]}]
---
apiVersion: audit.kaudit.io/v1alpha1
kind: AuditPolicyModule
metadata: {name: apps}
spec:
  order: 20
  rules:
  - level: RequestResponse
    resources: [{group: apps, resources: [deployments]}]
---
apiVersion: audit.kaudit.io/v1alpha1
kind: AuditPolicyModule
metadata: {name: people}
spec:
  order: 30
  rules:
  - level: Request
    userGroups: [system:authenticated]
    verbs: [get, create]
    resources: [{group: ""}]
  - level: None
    nonResourceURLs: [/healthz]
`
	for _, tc := range []struct {
		name   string
		args   []string
		module string
		rule   int
		notes  []string
	}{
		{"an authenticated user is in system:authenticated", []string{"--user", "alice", "--verb", "get", "--resource", "pods"}, "people", 0, nil},
		{"a create is evaluated without the name", []string{"--user", "alice", "--verb", "create", "--resource", "configmaps", "-n", "shop", "--name", "cfg"}, "people", 0, []string{"empty name"}},
		{"resource.group", []string{"--user", "alice", "--verb", "get", "--resource", "deployments.apps"}, "apps", 0, nil},
		{"an upper-case verb", []string{"--user", "alice", "--verb", "GET", "--resource", "pods"}, "people", 0, []string{`"get"`}},
		{"a path without its slash", []string{"--user", "alice", "--url", "healthz"}, "people", 1, []string{"/healthz"}},
		{"a resource of another group", []string{"--user", "alice", "--groups", "system:authenticated", "--verb", "get", "--resource", "deployments"}, "people", 0, []string{"--api-group apps"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := kaudit(t, modules, append([]string{"explain", "-", "-o", "json"}, tc.args...)...)
			var ex struct {
				Decision struct {
					Module string
					Rule   int
				}
			}
			if err := json.Unmarshal([]byte(out), &ex); code != 0 || err != nil {
				t.Fatalf("exit %d, %v, stderr %q", code, err, errOut)
			}
			if ex.Decision.Module != tc.module || ex.Decision.Rule != tc.rule {
				t.Errorf("decided by module %q rule %d, want module %q rule %d", ex.Decision.Module, ex.Decision.Rule, tc.module, tc.rule)
			}
			for _, n := range tc.notes {
				if !strings.Contains(errOut, n) {
					t.Errorf("stderr %q does not say %q", errOut, n)
				}
			}
			if len(tc.notes) == 0 && errOut != "" {
				t.Errorf("stderr %q", errOut)
			}
		})
	}
}
