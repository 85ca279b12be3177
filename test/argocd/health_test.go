package argocd

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite config/argocd testdata, health_test.yaml and argocd-cm.yaml from the envtest run and the .lua files")

// Paths of the shipped Argo CD configuration, relative to this package.
var (
	argocdDir        = filepath.Join("..", "..", "config", "argocd")
	customizationDir = filepath.Join(argocdDir, "resource_customizations", "audit.kaudit.io")
	argocdCM         = filepath.Join(argocdDir, "argocd-cm.yaml")
)

// kinds are the kaudit kinds with a health check, in the order argocd-cm lists them.
var kinds = []string{"AuditPolicyModule", "NamespacedAuditPolicyModule", "AuditPolicy"}

func scriptPath(kind string) string { return filepath.Join(customizationDir, kind, "health.lua") }

// fataler is what readScript needs of testing.T and of GinkgoT().
type fataler interface {
	Helper()
	Fatal(args ...any)
}

func readScript(t fataler, kind string) string {
	t.Helper()
	data, err := os.ReadFile(scriptPath(kind))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// healthTests is Argo CD's health_test.yaml format (resource_customizations/<group>/<kind>/).
type healthTests struct {
	Tests []healthTest `json:"tests"`
}

type healthTest struct {
	HealthStatus Health `json:"healthStatus"`
	InputPath    string `json:"inputPath"`
}

func readObject(t testing.TB, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := yaml.Unmarshal(data, &obj); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return obj
}

// The committed test cases, captured from the envtest suite (go test -update), give the
// expected health and message, exactly as Argo CD's own resource_customizations tests do.
func TestHealthScriptsMatchTheirArgoCDTestCases(t *testing.T) {
	for _, kind := range kinds {
		dir := filepath.Join(customizationDir, kind)
		data, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var tests healthTests
		if err := yaml.UnmarshalStrict(data, &tests); err != nil {
			t.Fatalf("%s/health_test.yaml: %v", kind, err)
		}
		if len(tests.Tests) == 0 {
			t.Fatalf("%s/health_test.yaml has no tests", kind)
		}
		script := readScript(t, kind)
		for _, tc := range tests.Tests {
			t.Run(kind+"/"+strings.TrimSuffix(filepath.Base(tc.InputPath), ".yaml"), func(t *testing.T) {
				obj := readObject(t, filepath.Join(dir, tc.InputPath))
				got, err := Run(script, obj)
				if err != nil {
					t.Fatalf("Lua error: %v", err)
				}
				if got != tc.HealthStatus {
					t.Errorf("health = %+v, want %+v", got, tc.HealthStatus)
				}
			})
		}
	}
}

// Partial and malformed objects never raise a Lua error (Argo CD would show Unknown with a
// stack trace); a missing or broken status reads as Progressing, never as Healthy.
func TestHealthScriptsSurviveMalformedStatus(t *testing.T) {
	meta := map[string]any{"name": "cluster", "generation": int64(3)}
	cases := []struct {
		name string
		obj  map[string]any
		want map[string]string // kind -> expected status; empty means "any valid status"
	}{
		{"empty object", map[string]any{}, map[string]string{"AuditPolicyModule": Progressing, "NamespacedAuditPolicyModule": Progressing, "AuditPolicy": Progressing}},
		{"no status", map[string]any{"metadata": meta}, map[string]string{"AuditPolicyModule": Progressing, "NamespacedAuditPolicyModule": Progressing, "AuditPolicy": Progressing}},
		{"null status", map[string]any{"metadata": meta, "status": nil}, map[string]string{"AuditPolicyModule": Progressing, "NamespacedAuditPolicyModule": Progressing, "AuditPolicy": Progressing}},
		{"empty status", map[string]any{"metadata": meta, "status": map[string]any{}}, map[string]string{"AuditPolicyModule": Progressing, "NamespacedAuditPolicyModule": Progressing, "AuditPolicy": Progressing}},
		{"status is a string", map[string]any{"metadata": meta, "status": "broken"}, map[string]string{"AuditPolicyModule": Progressing, "NamespacedAuditPolicyModule": Progressing, "AuditPolicy": Progressing}},
		{"status is a list", map[string]any{"metadata": meta, "status": []any{"a", int64(1)}}, map[string]string{"AuditPolicyModule": Progressing, "NamespacedAuditPolicyModule": Progressing, "AuditPolicy": Progressing}},
		{"metadata is a string", map[string]any{"metadata": "x", "status": map[string]any{}}, map[string]string{"AuditPolicyModule": Progressing, "NamespacedAuditPolicyModule": Progressing, "AuditPolicy": Progressing}},
		{"generation is a string", map[string]any{"metadata": map[string]any{"generation": "three"}, "status": map[string]any{"observedGeneration": int64(3)}}, nil},
		{"observedGeneration is a map", map[string]any{"metadata": meta, "status": map[string]any{"observedGeneration": map[string]any{"a": "b"}}}, map[string]string{"AuditPolicyModule": Progressing, "NamespacedAuditPolicyModule": Progressing, "AuditPolicy": Progressing}},
		{"observed, no conditions", map[string]any{"metadata": meta, "status": map[string]any{"observedGeneration": int64(3)}}, map[string]string{"AuditPolicyModule": Progressing, "NamespacedAuditPolicyModule": Progressing, "AuditPolicy": Progressing}},
		{"conditions is a string", map[string]any{"metadata": meta, "status": map[string]any{"observedGeneration": int64(3), "conditions": "Accepted"}}, map[string]string{"AuditPolicyModule": Progressing, "NamespacedAuditPolicyModule": Progressing, "AuditPolicy": Progressing}},
		{"conditions is a map", map[string]any{"metadata": meta, "status": map[string]any{"observedGeneration": int64(3), "conditions": map[string]any{"type": "Accepted"}}}, map[string]string{"AuditPolicyModule": Progressing, "NamespacedAuditPolicyModule": Progressing, "AuditPolicy": Progressing}},
		{"conditions hold junk", map[string]any{"metadata": meta, "status": map[string]any{"observedGeneration": int64(3), "conditions": []any{nil, "x", int64(4), []any{}, map[string]any{}}}}, map[string]string{"AuditPolicyModule": Progressing, "NamespacedAuditPolicyModule": Progressing, "AuditPolicy": Progressing}},
		{"conditions without status or reason", map[string]any{"metadata": meta, "status": map[string]any{"observedGeneration": int64(3), "conditions": []any{
			map[string]any{"type": "Accepted"}, map[string]any{"type": "Available"}, map[string]any{"type": "Degraded"}, map[string]any{"type": "Progressing"},
		}}}, map[string]string{"AuditPolicyModule": Progressing, "NamespacedAuditPolicyModule": Progressing, "AuditPolicy": Progressing}},
		{"conditions with numbers for strings", map[string]any{"metadata": meta, "status": map[string]any{"observedGeneration": int64(3), "conditions": []any{
			map[string]any{"type": "Accepted", "status": "False", "reason": int64(7), "message": 1.5},
			map[string]any{"type": "Degraded", "status": "True", "reason": true, "message": []any{"x"}},
		}}}, map[string]string{"AuditPolicyModule": Degraded, "NamespacedAuditPolicyModule": Degraded, "AuditPolicy": Degraded}},
		{"conditions True with no message", map[string]any{"metadata": meta, "status": map[string]any{"observedGeneration": int64(3), "includedInRevision": "x", "conditions": []any{
			map[string]any{"type": "Accepted", "status": "True"}, map[string]any{"type": "Available", "status": "True"},
		}}}, map[string]string{"AuditPolicyModule": Healthy, "NamespacedAuditPolicyModule": Healthy, "AuditPolicy": Healthy}},
		{"nodes is a map", map[string]any{"metadata": meta, "status": map[string]any{"observedGeneration": int64(3), "nodes": map[string]any{"name": "cp-1", "phase": "Failed"}}}, nil},
		{"nodes hold junk", map[string]any{"metadata": meta, "status": map[string]any{"observedGeneration": int64(3), "updatedNodes": int64(1), "nodes": []any{
			nil, "cp-1", map[string]any{"phase": "Failed"}, map[string]any{"name": int64(2), "phase": "RolledBack", "message": map[string]any{}},
		}}}, map[string]string{"AuditPolicy": Degraded}},
		{"deeply nested junk", map[string]any{"metadata": meta, "status": map[string]any{"conditions": []any{[]any{[]any{[]any{map[string]any{"type": "Accepted"}}}}}}}, nil},
	}
	for _, kind := range kinds {
		script := readScript(t, kind)
		for _, tc := range cases {
			t.Run(kind+"/"+tc.name, func(t *testing.T) {
				got, err := Run(script, tc.obj)
				if err != nil {
					t.Fatalf("Lua error: %v", err)
				}
				if got.Message == "" {
					t.Errorf("empty message for status %s", got.Status)
				}
				if want := tc.want[kind]; want != "" && got.Status != want {
					t.Errorf("status = %s (%q), want %s", got.Status, got.Message, want)
				}
				if got.Status == Unknown {
					t.Errorf("status Unknown: %s", got.Message)
				}
			})
		}
	}
}

// A node's entry says it failed or drifted even before the manager's Degraded condition does (or
// while the manager is down), and a failure comes first, as in the manager's condition.
func TestAuditPolicyHealthReadsFailedAndDriftedNodes(t *testing.T) {
	script := readScript(t, "AuditPolicy")
	drifted := map[string]any{"name": "cp-2", "phase": "Drifted", "message": "revision 2: the node's files differ from it: /etc/kubernetes/audit/policy.yaml: rules differ"}
	failed := map[string]any{"name": "cp-1", "phase": "Failed", "message": "kube-apiserver not ready"}
	for _, tc := range []struct {
		name  string
		nodes []any
		want  string
	}{
		{"drifted", []any{drifted}, "NodeDrifted: node cp-2 Drifted: revision 2: the node's files differ from it: /etc/kubernetes/audit/policy.yaml: rules differ."},
		{"failed and drifted", []any{drifted, failed}, "NodeFailed: node cp-1 Failed: kube-apiserver not ready."},
	} {
		obj := map[string]any{"metadata": map[string]any{"name": "cluster", "generation": int64(1)},
			"status": map[string]any{"observedGeneration": int64(1), "nodes": tc.nodes, "conditions": []any{
				map[string]any{"type": "Available", "status": "True", "reason": "RolloutComplete"},
			}}}
		got, err := Run(script, obj)
		if err != nil {
			t.Fatalf("%s: Lua error: %v", tc.name, err)
		}
		if got.Status != Degraded || got.Message != tc.want {
			t.Errorf("%s: %s %q, want Degraded %q", tc.name, got.Status, got.Message, tc.want)
		}
	}
}

// Random values at every path the scripts read never raise a Lua error.
func TestHealthScriptsNeverRaiseOnRandomStatus(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 2026))
	junk := func(depth int) any { return randomValue(r, depth) }
	for _, kind := range kinds {
		script := readScript(t, kind)
		for i := range 500 {
			obj := randomObject(r, junk)
			got, err := Run(script, obj)
			if err != nil {
				t.Fatalf("%s, object %d %v: Lua error: %v", kind, i, obj, err)
			}
			if got.Status == Unknown || got.Message == "" {
				t.Fatalf("%s, object %d %v: %+v", kind, i, obj, got)
			}
		}
	}
}

// randomObject fills the fields the scripts read with values of random types, and sometimes
// with plausible ones, so both broken and half-right objects are covered.
func randomObject(r *rand.Rand, junk func(int) any) map[string]any {
	pick := func(plausible ...any) any {
		if r.IntN(3) == 0 {
			return junk(2)
		}
		return plausible[r.IntN(len(plausible))]
	}
	cond := func() any {
		if r.IntN(5) == 0 {
			return junk(2)
		}
		c := map[string]any{}
		for k, v := range map[string]any{
			"type":               pick("Accepted", "Available", "Progressing", "Degraded", "Other"),
			"status":             pick("True", "False", "Unknown"),
			"reason":             pick("Valid", "Disabled", "Invalid", "NoModules", "NoControlPlaneNodes", "RollingOut", "NodeFailed", ""),
			"message":            pick("some message", ""),
			"observedGeneration": pick(int64(1), int64(2), int64(3)),
		} {
			if r.IntN(4) != 0 {
				c[k] = v
			}
		}
		return c
	}
	node := func() any {
		if r.IntN(5) == 0 {
			return junk(2)
		}
		return map[string]any{
			"name":            pick("cp-1", "cp-2"),
			"phase":           pick("Pending", "RollingOut", "Applied", "Failed", "RolledBack", "Drifted"),
			"message":         pick("health check timed out", ""),
			"appliedRevision": pick(int64(1), int64(2)),
		}
	}
	list := func(item func() any) any {
		if r.IntN(6) == 0 {
			return junk(2)
		}
		out := []any{}
		for range r.IntN(5) {
			out = append(out, item())
		}
		return out
	}
	status := map[string]any{}
	for k, v := range map[string]any{
		"observedGeneration": pick(int64(1), int64(2), int64(3), "2"),
		"conditions":         list(cond),
		"nodes":              list(node),
		"includedInRevision": pick(int64(1), int64(4)),
		"updatedNodes":       pick("0/1", "1/1"),
		"ruleCount":          pick(int64(1)),
	} {
		if r.IntN(4) != 0 {
			status[k] = v
		}
	}
	obj := map[string]any{"metadata": pick(map[string]any{"name": "x", "generation": pick(int64(1), int64(2), int64(3))})}
	switch r.IntN(6) {
	case 0:
	case 1:
		obj["status"] = junk(3)
	default:
		obj["status"] = status
	}
	return obj
}

func randomValue(r *rand.Rand, depth int) any {
	n := 7
	if depth <= 0 {
		n = 5
	}
	switch r.IntN(n) {
	case 0:
		return nil
	case 1:
		return r.IntN(2) == 0
	case 2:
		return int64(r.IntN(10) - 3)
	case 3:
		return r.Float64() * 10
	case 4:
		return []string{"", "True", "Failed", "Accepted", "x"}[r.IntN(5)]
	case 5:
		out := []any{}
		for range r.IntN(4) {
			out = append(out, randomValue(r, depth-1))
		}
		return out
	default:
		out := map[string]any{}
		for range r.IntN(4) {
			out[[]string{"type", "status", "name", "phase", "message", "reason"}[r.IntN(6)]] = randomValue(r, depth-1)
		}
		return out
	}
}

// The runner behaves like Argo CD's: no string library for argocd-cm scripts, an error for a
// non-table result and Unknown for a status outside Argo CD's codes.
func TestRunnerIsAsStrictAsArgoCD(t *testing.T) {
	if _, err := Run(`return {status = string.format("%s", "Healthy")}`, nil); err == nil {
		t.Error("string library available: Argo CD does not open it for argocd-cm health checks")
	}
	if _, err := Run(`return {status = math.floor(1)}`, nil); err == nil {
		t.Error("math library available: Argo CD does not open it for argocd-cm health checks")
	}
	if _, err := Run(`return "Healthy"`, nil); err == nil {
		t.Error("a non-table result must be an error")
	}
	if _, err := Run(`return {status = "Healthy", message = 3}`, nil); err == nil {
		t.Error("a numeric message must fail to decode, as in Argo CD")
	}
	got, err := Run(`return {status = "Fine"}`, nil)
	if err != nil || got.Status != Unknown {
		t.Errorf("invalid status: got %+v, %v; want Unknown", got, err)
	}
	if _, err := Run(`while true do end`, nil); err == nil {
		t.Error("an endless script must be stopped by the time limit")
	}
	got, err = Run(`return {status = "Healthy", message = obj.metadata.name .. " " .. tostring(obj.metadata.generation) .. " " .. tostring(#obj.items)}`,
		map[string]any{"metadata": map[string]any{"name": "x", "generation": int64(2)}, "items": []any{int64(1), "a"}})
	if err != nil || got != (Health{Status: Healthy, Message: "x 2 2"}) {
		t.Errorf("decoding obj: got %+v, %v", got, err)
	}
}

// configMap is the part of argocd-cm that the snippet sets.
type configMap struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   map[string]any    `json:"metadata"`
	Data       map[string]string `json:"data"`
}

// healthKey is the argocd-cm key of a health check: resource.customizations.health.<group>_<kind>.
func healthKey(kind string) string {
	return "resource.customizations.health.audit.kaudit.io_" + kind
}

// The argocd-cm snippet installs exactly the tested scripts (go test -update rewrites it).
func TestArgoCDConfigMapSnippetHoldsTheTestedScripts(t *testing.T) {
	if *update {
		writeConfigMapSnippet(t)
	}
	data, err := os.ReadFile(argocdCM)
	if err != nil {
		t.Fatal(err)
	}
	var cm configMap
	if err := yaml.UnmarshalStrict(data, &cm); err != nil {
		t.Fatalf("%s: %v", argocdCM, err)
	}
	if cm.APIVersion != "v1" || cm.Kind != "ConfigMap" || cm.Metadata["name"] != "argocd-cm" || cm.Metadata["namespace"] != "argocd" {
		t.Errorf("%s is not the ConfigMap argocd/argocd-cm: %s %s %v", argocdCM, cm.APIVersion, cm.Kind, cm.Metadata)
	}
	if len(cm.Data) != len(kinds) {
		t.Errorf("%s holds %d keys, want %d (one per kind)", argocdCM, len(cm.Data), len(kinds))
	}
	for _, kind := range kinds {
		got, ok := cm.Data[healthKey(kind)]
		if !ok {
			t.Errorf("%s: no key %s", argocdCM, healthKey(kind))
			continue
		}
		if got != readScript(t, kind) {
			t.Errorf("%s: %s differs from %s: run go test ./test/argocd -run Snippet -update", argocdCM, healthKey(kind), scriptPath(kind))
		}
	}
}

func writeConfigMapSnippet(t *testing.T) {
	t.Helper()
	var b strings.Builder
	b.WriteString(`# kaudit's Argo CD health checks, as argocd-cm keys. Merge them into Argo CD's ConfigMap:
#   kubectl apply --server-side --field-manager=kaudit -f config/argocd/argocd-cm.yaml
# or add this file to the patches of the kustomization that installs Argo CD, or copy the keys
# under configs.cm of the argo-cd Helm chart. Generated from resource_customizations/*/*/health.lua
# by 'go test ./test/argocd -run Snippet -update'; do not edit by hand.
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
`)
	for _, kind := range kinds {
		fmt.Fprintf(&b, "  %s: |\n", healthKey(kind))
		for _, line := range strings.SplitAfter(readScript(t, kind), "\n") {
			if line == "" {
				continue
			}
			if line == "\n" {
				b.WriteString(line)
				continue
			}
			b.WriteString("    " + line)
		}
	}
	if err := os.WriteFile(argocdCM, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}
