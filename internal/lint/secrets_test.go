package lint

import (
	"os"
	"path/filepath"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"sigs.k8s.io/yaml"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/inforce"
	"github.com/kaudit/kaudit/internal/policy"
)

// lintPolicyFile lints a plain audit.k8s.io/v1 Policy file as `kaudit lint FILE` does.
func lintPolicyFile(t *testing.T, path string) []Finding {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var p auditv1.Policy
	if err := yaml.UnmarshalStrict(raw, &p); err != nil {
		t.Fatal(err)
	}
	imp := policy.Import(p, policy.ImportOptions{Prefix: filepath.Base(path)})
	settings := inforce.SettingsFrom(v1alpha1.AuditPolicySpec{})
	settings.Policy = imp.Settings
	fs, err := Modules(imp.Modules, settings, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// secrets-above-metadata reports what the audit log would really hold: at Request only request
// bodies are written, and the request bodies of reads and deletes carry no secret.
func TestPublishedPoliciesGetNoFalseSecretFindings(t *testing.T) {
	for _, tc := range []struct {
		file string
		// want are the secrets-above-metadata findings, by module.
		want map[string]Severity
	}{
		// GKE's policy logs the namespace controller's deletecollection at Request (the body is
		// DeleteOptions) and reads at Request (no body).
		{"gke-policy.yaml", map[string]Severity{}},
		// The docs example logs the core group at Request: serviceaccounts/token's request body is a
		// TokenRequest (the token is in the response). Its kube-system ConfigMaps at Request do
		// log their contents on create and update.
		{"docs-example-policy.yaml", map[string]Severity{"docs-example-policy-yaml-05-secrets": Warning}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			got := map[string]Severity{}
			for _, f := range lintPolicyFile(t, filepath.Join("testdata", tc.file)) {
				if f.Check == "secrets-above-metadata" {
					got[f.Module] = f.Severity
					t.Log(f.Message)
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("secrets-above-metadata findings %v, want %v", got, tc.want)
			}
			for m, sev := range tc.want {
				if got[m] != sev {
					t.Errorf("module %s: %q, want %q", m, got[m], sev)
				}
			}
		})
	}
}

// Which verbs and levels write a secret's contents into the audit log.
func TestSecretsAboveMetadataFollowsWhatEachVerbAndLevelWrites(t *testing.T) {
	for _, tc := range []struct {
		rule string
		want bool
	}{
		{`{level: Request, verbs: [get, list, watch, delete, deletecollection], resources: [{group: "", resources: [secrets]}]}`, false},
		{`{level: Request, verbs: [create], resources: [{group: "", resources: [secrets]}]}`, true},
		{`{level: Request, verbs: [patch], resources: [{group: "", resources: [secrets]}]}`, true},
		{`{level: RequestResponse, verbs: [watch], resources: [{group: "", resources: [secrets]}]}`, false},
		{`{level: RequestResponse, verbs: [get], resources: [{group: "", resources: [secrets]}]}`, true},
		{`{level: RequestResponse, verbs: [delete], resources: [{group: "", resources: [secrets]}]}`, true},
		{`{level: Request, resources: [{group: "", resources: [serviceaccounts/token]}]}`, false},
		{`{level: RequestResponse, verbs: [create], resources: [{group: "", resources: [serviceaccounts/token]}]}`, true},
		{`{level: Request, verbs: [create], resources: [{group: authentication.k8s.io, resources: [tokenreviews]}]}`, true},
		{`{level: Request, verbs: [get, list], resources: [{group: "", resources: [configmaps]}]}`, false},
		{`{level: Request, verbs: [update], resources: [{group: "", resources: [configmaps]}]}`, true},
	} {
		fs := lintOf(t, merged(t, quiet, "["+tc.rule+"]"))
		found := false
		for _, f := range fs {
			found = found || f.Check == "secrets-above-metadata"
		}
		if found != tc.want {
			t.Errorf("%s: secrets-above-metadata reported: %v, want %v (%+v)", tc.rule, found, tc.want, fs)
		}
	}
}
