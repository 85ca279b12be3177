package cmd

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kaudit/kaudit/internal/explain"
	"github.com/kaudit/kaudit/internal/inforce"
	"github.com/kaudit/kaudit/internal/lint"
	"github.com/kaudit/kaudit/internal/manifest"
	"github.com/kaudit/kaudit/internal/policy"
)

// Fixtures: accepted holds an AuditPolicy with a custom guardrail, cluster modules that keep
// every guardrail and a team module; rejected holds one module for each way the manager rejects
// one.
const (
	accepted = "testdata/guardrails/accepted"
	rejected = "testdata/guardrails/rejected"
)

// acceptedModules are the modules of accepted without its AuditPolicy, for settings of one's own.
var acceptedModules = []string{
	filepath.Join(accepted, "secrets-metadata-only.yaml"), filepath.Join(accepted, "system-masters.yaml"),
	filepath.Join(accepted, "workloads.yaml"), filepath.Join(accepted, "team-a-deployment-bodies.yaml"),
}

// settings is an AuditPolicy manifest with the given spec, in YAML flow style.
func settings(spec string) string {
	return "apiVersion: audit.kaudit.io/v1alpha1\nkind: AuditPolicy\nmetadata: {name: cluster}\nspec: " + spec + "\n"
}

// The output of render is the policy that the manager's decision puts in force, team modules
// first and confined to their namespace.
func TestRenderIsWhatTheManagerPutsInForce(t *testing.T) {
	set, err := manifest.Read(nil, accepted)
	if err != nil {
		t.Fatal(err)
	}
	var modules []inforce.Module
	for _, m := range set.Modules {
		modules = append(modules, inforce.Module{Module: policy.Module{Name: m.Name, Spec: m.Spec}})
	}
	for _, m := range set.NamespacedModules {
		modules = append(modules, inforce.Module{Module: policy.NamespacedModule(m.Namespace, m.Name, m.Spec)})
	}
	r, err := inforce.Decide(inforce.Input{Modules: modules, Settings: inforce.SettingsFrom(set.Policy.Spec)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Modules()) != len(modules) {
		t.Fatalf("the fixture's modules are not all accepted: %+v", r.Outcomes)
	}
	out, errOut, code := kaudit(t, "", "render", accepted)
	if code != 0 || errOut != "" || out != string(r.Merged.Render()) {
		t.Errorf("exit %d, stderr %q; render differs from the decision's policy:\n%s\n---\n%s", code, errOut, out, r.Merged.Render())
	}
	if !strings.HasPrefix(out[strings.Index(out, "rules:"):], "rules:\n# namespaced module team-a/deployment-bodies, rule 0\n- level: RequestResponse\n  namespaces:\n  - team-a\n") {
		t.Errorf("the team module does not come first, confined to team-a:\n%s", out)
	}
}

func TestRenderRefusesWhatTheManagerRejects(t *testing.T) {
	leak := filepath.Join(rejected, "leak.yaml")
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		// code is the exit code; stderr are parts of what it says.
		code   int
		stderr []string
	}{
		{"a module logging Secret bodies", "", []string{accepted, leak}, 1, []string{
			`AuditPolicyModule "leak" is rejected (GuardrailViolation): `, `guardrail "no-credential-bodies"`, `get secrets in namespace`, `at RequestResponse by its rule 1`}},
		{"a team module lowering what the cluster's modules log", "", []string{accepted, filepath.Join(rejected, "team-b-quiet.yaml")}, 1, []string{
			`NamespacedAuditPolicyModule "team-b/quiet" is rejected (LowersLogging): Rule 0 would log update deployments (API group apps) in namespace "team-b"`, "at None"}},
		{"a team module logging its Secrets' bodies", "", []string{accepted, filepath.Join(rejected, "team-c-secrets.yaml")}, 1, []string{
			`NamespacedAuditPolicyModule "team-c/secret-bodies" is rejected (GuardrailViolation)`, `create secrets in namespace "team-c"`}},
		{"every rejected module, one a line", "", []string{accepted, rejected}, 1, []string{
			"\nNamespacedAuditPolicyModule \"team-b/quiet\" is rejected", "\nNamespacedAuditPolicyModule \"team-c/secret-bodies\" is rejected"}},
		{"a custom guardrail of the AuditPolicy", `{apiVersion: audit.kaudit.io/v1alpha1, kind: AuditPolicyModule, metadata: {name: quiet-rollouts}, spec: {order: 1, rules: [{level: None, users: ["system:apiserver"], verbs: [patch], resources: [{group: apps, resources: [deployments]}]}]}}`,
			[]string{accepted, "-"}, 1, []string{`AuditPolicyModule "quiet-rollouts" is rejected (GuardrailViolation)`, `guardrail "workload-writes-logged" (Writes of Deployments are always logged)`, "patch deployments"}},
		{"a team module above the cap", settings("{namespacedModules: {maxLevel: Request}}"), append([]string{"-"}, acceptedModules...), 1, []string{
			`NamespacedAuditPolicyModule "team-a/deployment-bodies" is rejected (AboveCap): Rule 0 has level RequestResponse, above Request`}},
		{"team modules switched off", settings("{namespacedModules: {enabled: false}}"), append([]string{"-"}, acceptedModules...), 1, []string{
			`NamespacedAuditPolicyModule "team-a/deployment-bodies" is rejected (NamespacedModulesDisabled)`}},
		{"the built-in guardrails hold without an AuditPolicy", "", []string{leak}, 1, []string{`AuditPolicyModule "leak" is rejected (GuardrailViolation)`}},
		{"a plain policy with an AuditPolicy that keeps the built-ins on", settings("{}"), []string{simPolicy, "-"}, 1, []string{
			`AuditPolicyModule "policy-01-noise" is rejected (GuardrailViolation)`, `guardrail "system-masters-logged"`}},
		{"an invalid custom guardrail", settings(`{guardrails: {custom: [{name: typo, scope: {resources: [{group: "Apps/v1"}]}, minLevel: Metadata}]}}`), append([]string{"-"}, acceptedModules...), 1, []string{
			`AuditPolicy "cluster": spec.guardrails: guardrail "typo"`}},
		{"a built-in switched off holds no more", settings("{guardrails: {disabledBuiltIns: [no-credential-bodies]}}"), append([]string{"-", leak}, acceptedModules...), 0, nil},
		{"a default level that breaks guardrails: the policy, with a warning", settings("{defaultLevel: None}"), append([]string{"-"}, acceptedModules...), 0, []string{
			`warning: The policy breaks guardrail "rbac-writes-logged"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := kaudit(t, tc.stdin, append([]string{"render"}, tc.args...)...)
			if code != tc.code || (code != 0) != (out == "") {
				t.Fatalf("exit %d, want %d; stdout %d bytes; stderr:\n%s", code, tc.code, len(out), errOut)
			}
			for _, s := range tc.stderr {
				if !strings.Contains(errOut, s) {
					t.Errorf("stderr does not say %q:\n%s", s, errOut)
				}
			}
		})
	}
}

// lint reports, as findings, each module render refuses, with the message of its Accepted
// condition, and the rule that decides the witness.
func TestLintReportsWhatTheManagerRejects(t *testing.T) {
	out, _, code := kaudit(t, "", "lint", accepted, rejected, "-o", "json")
	var rep lint.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 {
		t.Fatalf("exit %d, %v:\n%s", code, err, out)
	}
	_, refused, _ := kaudit(t, "", "render", accepted, rejected)
	for _, want := range []struct {
		check, module string
		rule          int
	}{
		{"guardrail-violation", "leak", 1},
		{"lowers-logging", "team-b/quiet", -1},
		{"guardrail-violation", "team-c/secret-bodies", 0},
	} {
		i := slices.IndexFunc(rep.Findings, func(f lint.Finding) bool { return f.Check == want.check && f.Module == want.module })
		if i < 0 {
			t.Errorf("no %s finding for %s: %+v", want.check, want.module, rep.Findings)
			continue
		}
		f := rep.Findings[i]
		if f.Rule != want.rule || f.Severity != lint.Error || !strings.Contains(refused, f.Message) {
			t.Errorf("finding %+v: want rule %d, an error, and the message render gives:\n%s", f, want.rule, refused)
		}
	}
	// The accepted fixture: nothing the manager rejects.
	if out, _, code := kaudit(t, "", "lint", accepted); code != 0 {
		t.Errorf("lint of modules the manager accepts: exit %d:\n%s", code, out)
	}
	for _, tc := range []struct{ settings, check string }{
		{"{namespacedModules: {maxLevel: Request}}", "above-cap"},
		{"{namespacedModules: {enabled: false}}", "namespaced-modules-disabled"},
	} {
		out, _, _ := kaudit(t, settings(tc.settings), append([]string{"lint", "-"}, acceptedModules...)...)
		if !strings.Contains(out, "ERROR   module team-a/deployment-bodies: ") || !strings.Contains(out, "["+tc.check+"]") {
			t.Errorf("%s: no %s finding:\n%s", tc.settings, tc.check, out)
		}
	}
}

func TestExplainNamesTheGuardrailsThatBoundTheRequest(t *testing.T) {
	type bound struct {
		name   string
		within bool
	}
	for _, tc := range []struct {
		name     string
		args     []string
		decision string
		bounds   []bound
		// rejected is the module the manager would not put in force, and inForce the rule that
		// decides instead; "" when the deciding module is accepted.
		rejected, inForce string
	}{
		{"Secrets read by system:masters: within both bounds", []string{accepted, "--user", "admin", "--groups", "system:masters", "--verb", "get", "--resource", "secrets", "-n", "shop"},
			"module secrets-metadata-only, rule 0", []bound{{"no-credential-bodies", true}, {"system-masters-logged", true}}, "", ""},
		{"Secret bodies: outside, and the module rejected", []string{accepted, rejected, "--user", "alice", "--verb", "get", "--resource", "secrets", "-n", "shop"},
			"module leak, rule 1", []bound{{"no-credential-bodies", false}}, "leak", "module secrets-metadata-only, rule 0"},
		{"a team's Deployment write: its module decides, within the custom guardrail", []string{accepted, "--user", "alice", "--verb", "update", "--resource", "deployments.apps", "-n", "team-a", "--name", "web"},
			"namespaced module team-a/deployment-bodies, rule 0", []bound{{"workload-writes-logged", true}}, "", ""},
		{"a team module that lowers logging: rejected", []string{accepted, rejected, "--user", "alice", "--verb", "patch", "--resource", "deployments.apps", "-n", "team-b", "--name", "web"},
			"namespaced module team-b/quiet, rule 0", []bound{{"workload-writes-logged", false}}, "team-b/quiet", "module workloads, rule 1"},
		{"an exception of the custom guardrail: no guardrail", []string{accepted, "--user", "alice", "--verb", "update", "--resource", "deployments.apps", "-n", "sandbox", "--name", "web"},
			"module workloads, rule 0", nil, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := kaudit(t, "", append(append([]string{"explain"}, tc.args...), "-o", "json")...)
			var ex explain.Explanation
			if err := json.Unmarshal([]byte(out), &ex); err != nil || code != 0 {
				t.Fatalf("exit %d, %v, %s:\n%s", code, err, errOut, out)
			}
			var got []bound
			for _, b := range ex.Guardrails {
				got = append(got, bound{b.Name, b.Within})
			}
			if ex.Decision.Source != tc.decision || !slices.Equal(got, tc.bounds) || ex.Guardrails == nil {
				t.Errorf("decided by %q, guardrails %+v; want %q, %+v", ex.Decision.Source, ex.Guardrails, tc.decision, tc.bounds)
			}
			switch r := ex.Rejection; {
			case tc.rejected == "" && r != nil:
				t.Errorf("rejection %+v of an accepted module", r)
			case tc.rejected != "" && (r == nil || r.Module != tc.rejected || r.InForce.Source != tc.inForce || r.Message == ""):
				t.Errorf("rejection %+v; want module %s, in force %q", r, tc.rejected, tc.inForce)
			}
		})
	}
}
