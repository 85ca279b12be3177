package monitoring

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// alertTests are promtool's unit tests of the alerts and recording rules: series in, alerts
// (with their rendered annotations) and recorded values out.
const alertTests = "testdata/alerts.test.yaml"

// promtool is Prometheus's own rule checker and evaluator. .ci/run installs it and sets
// KAUDIT_REQUIRE_PROMTOOL, so CI cannot skip these tests; elsewhere they run where it is
// installed (Debian: apt-get install prometheus).
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("KAUDIT_REQUIRE_PROMTOOL") != "" {
			t.Fatalf("KAUDIT_REQUIRE_PROMTOOL is set but promtool is not on PATH: %v", err)
		}
		t.Skip("promtool is not installed (Debian: apt-get install prometheus); .ci/run installs it")
	}
	return path
}

func runPromtool(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command(promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// writeRuleFile writes groups as a Prometheus rule file, the form the Prometheus Operator
// hands a PrometheusRule's spec to Prometheus in.
func writeRuleFile(t *testing.T, path string, groups any) {
	t.Helper()
	data, err := yaml.Marshal(map[string]any{"groups": groups})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// The alerts fire when, and only when, docs/monitoring.md says they do, with the annotations
// Prometheus renders from their templates.
func TestAlertsFireAsDocumentedUnderPromtool(t *testing.T) {
	dir := t.TempDir()
	writeRuleFile(t, filepath.Join(dir, "rules.yaml"), rules(t).Spec.Groups)
	tests, err := os.ReadFile(alertTests)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "alerts.test.yaml"), tests, 0o600); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, dir, "check", "rules", "rules.yaml")
	runPromtool(t, dir, "test", "rules", "alerts.test.yaml")
}

// Every alert has a test of it firing in testdata/alerts.test.yaml.
func TestEveryAlertIsTestedUnderPromtool(t *testing.T) {
	data, err := os.ReadFile(alertTests)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	fired := map[string]bool{}
	for _, tc := range file.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fired[a.Alertname] = true
			}
		}
	}
	for _, g := range rules(t).Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" && !fired[r.Alert] {
				t.Errorf("%s: no test in %s expects it to fire", r.Alert, alertTests)
			}
		}
	}
}

// dashboardVariables are what Grafana puts in place of the dashboard's variables before it
// sends a query: every node and module, and typical ranges.
var dashboardVariables = strings.NewReplacer(`"$node"`, `".*"`, `"$module"`, `".*"`, "$__rate_interval", "5m", "$__range", "1h")

// Every panel's query is PromQL that Prometheus parses: each becomes a recording rule of a file
// that promtool checks.
func TestDashboardQueriesParseUnderPromtool(t *testing.T) {
	type record struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var records []record
	var names []string
	queries := dashboardQueries(t)
	for where := range queries {
		if strings.HasPrefix(where, "panel ") {
			names = append(names, where)
		}
	}
	sort.Strings(names)
	for i, where := range names {
		expr := dashboardVariables.Replace(queries[where])
		if strings.Contains(expr, "$") {
			t.Errorf("%s: a variable this test does not replace: %s", where, expr)
		}
		records = append(records, record{Record: fmt.Sprintf("dashboard:panel_%d:query", i), Expr: expr})
	}
	if len(records) == 0 {
		t.Fatal("no panel query")
	}
	dir := t.TempDir()
	writeRuleFile(t, filepath.Join(dir, "dashboard.yaml"), []map[string]any{{"name": "dashboard", "rules": records}})
	runPromtool(t, dir, "check", "rules", "dashboard.yaml")
}
