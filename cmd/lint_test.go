package cmd

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kaudit/kaudit/internal/lint"
)

// kaudit lint --help lists every check of the catalogue, with its severity and summary.
func TestLintHelpListsEveryCheck(t *testing.T) {
	out, _, code := kaudit(t, "", "lint", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, c := range lint.Checks() {
		if !regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(c.Name) + ` +` + string(c.Severity) + ` +` + regexp.QuoteMeta(c.Summary) + `$`).MatchString(out) {
			t.Errorf("kaudit lint --help does not list %s (%s: %s):\n%s", c.Name, c.Severity, c.Summary, out)
		}
	}
}

// With --kubeconfig, the cluster's custom resources are known: no unchecked-group finding.
func TestLintReadsCustomResourcesFromDiscovery(t *testing.T) {
	docs := map[string]string{
		"/api":                     `{"kind":"APIVersions","versions":["v1"]}`,
		"/api/v1":                  `{"kind":"APIResourceList","groupVersion":"v1","resources":[{"name":"pods","namespaced":true,"kind":"Pod","verbs":["get"]}]}`,
		"/apis":                    `{"kind":"APIGroupList","apiVersion":"v1","groups":[{"name":"cert-manager.io","versions":[{"groupVersion":"cert-manager.io/v1","version":"v1"}],"preferredVersion":{"groupVersion":"cert-manager.io/v1","version":"v1"}}]}`,
		"/apis/cert-manager.io/v1": `{"kind":"APIResourceList","groupVersion":"cert-manager.io/v1","resources":[{"name":"certificates","namespaced":true,"kind":"Certificate","verbs":["get"]}]}`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		doc, ok := docs[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, doc)
	}))
	defer srv.Close()
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	cfg := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: %q}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\nusers: [{name: u, user: {}}]\n", srv.URL)
	if err := os.WriteFile(kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	module := `apiVersion: audit.kaudit.io/v1alpha1
kind: AuditPolicyModule
metadata: {name: certs}
spec:
  rules:
  - level: Metadata
    resources: [{group: cert-manager.io, resources: [certificates, certificatess]}]
`
	out, errOut, _ := kaudit(t, module, "lint", "-", "--kubeconfig", kubeconfig)
	if errOut != "" {
		t.Fatal(errOut)
	}
	if strings.Contains(out, "unchecked-group") || !strings.Contains(out, `resource "certificatess" is not in API group "cert-manager.io" (did you mean "certificates"?)`) {
		t.Errorf("output:\n%s", out)
	}
}
