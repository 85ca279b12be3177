package cmd

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kaudit/kaudit/internal/manifest"
	"github.com/kaudit/kaudit/internal/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// kaudit runs the command line and returns stdout, stderr and the exit code.
func kaudit(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	root := NewRootCommand()
	var out, errOut bytes.Buffer
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	code := 0
	if err := root.Execute(); err != nil {
		code = 1
		var exit *ExitError
		if errors.As(err, &exit) {
			code = exit.Code
		}
		if exit == nil || exit.Err != nil {
			errOut.WriteString(err.Error())
		}
	}
	return out.String(), errOut.String(), code
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the golden file (go test ./cmd -update after checking the change):\n--- want\n%s\n--- got\n%s", name, want, got)
	}
}

const (
	simPolicy = "../internal/simulate/testdata/policy.yaml"
	simNames  = "../internal/simulate/testdata/policy-names.yaml"
	simSample = "../internal/simulate/testdata/sample.jsonl"
	simEdge   = "../internal/simulate/testdata/edge.jsonl"
)

func TestGoldenOutputs(t *testing.T) {
	for _, tc := range []struct {
		golden string
		args   []string
		code   int
	}{
		{"render.yaml", []string{"render", "testdata/modules"}, 0},
		{"render.json", []string{"render", "testdata/modules", "-o", "json"}, 0},
		{"render-upstream.yaml", []string{"render", simPolicy}, 0},
		{"import.yaml", []string{"import", simPolicy}, 0},
		{"lint.txt", []string{"lint", "testdata/lint-problems.yaml"}, 1},
		{"lint.json", []string{"lint", "testdata/lint-problems.yaml", "--format", "json"}, 1},
		{"lint-clean.txt", []string{"lint", "testdata/modules"}, 0},
		{"lint-guardrails.txt", []string{"lint", "testdata/guardrails/accepted", "testdata/guardrails/rejected"}, 1},
		{"explain-secret.txt", []string{"explain", "testdata/modules", "--user", "admin", "--groups", "system:masters,system:authenticated", "--verb", "get", "--resource", "secrets", "-n", "kube-system", "--name", "db"}, 0},
		{"explain-rbac.json", []string{"explain", "testdata/modules", "--user", "admin", "--groups", "system:masters", "--verb", "create", "--api-group", "rbac.authorization.k8s.io", "--resource", "rolebindings", "-n", "team-a", "--format", "json"}, 0},
		{"explain-url.txt", []string{"explain", "testdata/modules", "--user", "system:anonymous", "--url", "/healthz/etcd"}, 0},
		{"explain-guardrails.txt", []string{"explain", "testdata/guardrails/accepted", "testdata/guardrails/rejected", "--user", "admin", "--groups", "system:masters", "--verb", "get", "--resource", "secrets", "-n", "shop", "--name", "db"}, 0},
		{"simulate.txt", []string{"simulate", "--policy", simPolicy, "--progress", "never", simSample, simEdge}, 0},
		{"simulate-against.json", []string{"simulate", "--policy", "testdata/modules", "--against", simNames, "--format", "json", "--cpus", "2", simSample, simEdge}, 0},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			out, errOut, code := kaudit(t, "", tc.args...)
			if code != tc.code || errOut != "" {
				t.Fatalf("exit code %d, want %d; stderr: %s", code, tc.code, errOut)
			}
			golden(t, tc.golden, out)
		})
	}
}

// The CLI renders byte for byte what the controller renders: policy.Merge of the same modules
// and settings, then Render.
func TestRenderIsWhatTheControllerRenders(t *testing.T) {
	set, err := manifest.Read(nil, "testdata/modules")
	if err != nil {
		t.Fatal(err)
	}
	var modules []policy.Module
	for _, m := range set.Modules {
		modules = append(modules, policy.Module{Name: m.Name, Spec: m.Spec})
	}
	m, err := policy.Merge(modules, policy.SettingsFrom(set.Policy.Spec))
	if err != nil {
		t.Fatal(err)
	}
	out, _, code := kaudit(t, "", "render", "testdata/modules")
	if code != 0 || out != string(m.Render()) {
		t.Errorf("render differs from Merge+Render:\n%s\n---\n%s", out, m.Render())
	}
	// From stdin too, and the input order does not matter.
	var all []byte
	for _, f := range []string{"rbac.yaml", "cluster.yaml", "secrets.yaml", "noise.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata/modules", f))
		if err != nil {
			t.Fatal(err)
		}
		all = append(append(all, b...), "\n---\n"...)
	}
	if out, _, _ := kaudit(t, string(all), "render", "-"); out != string(m.Render()) {
		t.Errorf("render from stdin differs")
	}
}

// An imported policy renders to the same file as the policy itself.
func TestImportRoundTrip(t *testing.T) {
	imported, _, code := kaudit(t, "", "import", simPolicy)
	if code != 0 {
		t.Fatal("import failed")
	}
	a, _, _ := kaudit(t, imported, "render", "-")
	b, _, _ := kaudit(t, "", "render", simPolicy)
	if a == "" || a != b {
		t.Errorf("render of the imported modules differs from render of the policy")
	}
	dir := t.TempDir()
	if _, errOut, code := kaudit(t, "", "import", simPolicy, "--output-dir", dir); code != 0 {
		t.Fatal(errOut)
	}
	if c, _, _ := kaudit(t, "", "render", dir); c != b {
		t.Errorf("render of the --output-dir kustomization differs")
	}
}

func TestBadPolicyFileGetsTheLoadersError(t *testing.T) {
	_, errOut, code := kaudit(t, "", "render", "testdata/bad-policy.yaml")
	if code == 0 || !strings.Contains(errOut, "bad-policy.yaml") || !strings.Contains(errOut, "rules[1].resources.group") {
		t.Errorf("exit %d, stderr %q: want the file and rules[1].resources.group", code, errOut)
	}
	_, errOut, code = kaudit(t, "", "simulate", "--policy", "testdata/bad-policy.yaml", simEdge)
	if code == 0 || !strings.Contains(errOut, "rules[1]") {
		t.Errorf("simulate: exit %d, stderr %q", code, errOut)
	}
}

func TestSimulateReadsStdinAndGzip(t *testing.T) {
	edge, err := os.ReadFile(simEdge)
	if err != nil {
		t.Fatal(err)
	}
	out, _, code := kaudit(t, string(edge), "simulate", "--policy", simPolicy, "--format", "json", "-")
	if code != 0 || !strings.Contains(out, `"events": 9`) {
		t.Errorf("stdin: exit %d, output %.300s", code, out)
	}
	out, _, code = kaudit(t, "", "simulate", "--policy", simPolicy, "--format", "json", "../internal/simulate/testdata/sample-rotated.jsonl.gz")
	var rep struct{ Events int }
	if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil || rep.Events != 138 {
		t.Errorf("gzip: exit %d, output %.300s", code, out)
	}
}

func TestEveryCommandHasExamples(t *testing.T) {
	root := NewRootCommand()
	if strings.TrimSpace(root.Example) == "" {
		t.Error("kaudit --help shows no example")
	}
	for _, c := range root.Commands() {
		if c.Name() == "help" || c.Hidden {
			continue
		}
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("kaudit %s --help shows no example", c.Name())
		}
	}
}

// Every command that writes more than one format takes it as --format, shorthand -o.
func TestOutputFormatIsOneFlagEverywhere(t *testing.T) {
	var withFormat []string
	for _, c := range NewRootCommand().Commands() {
		if c.Flags().Lookup("output") != nil {
			t.Errorf("kaudit %s has --output: the output format is --format", c.Name())
		}
		if f := c.Flags().Lookup("format"); f != nil {
			withFormat = append(withFormat, c.Name())
			if f.Shorthand != "o" {
				t.Errorf("kaudit %s --format has shorthand %q, want -o", c.Name(), f.Shorthand)
			}
		}
	}
	if want := []string{"advise", "explain", "lint", "render", "simulate", "top"}; !slices.Equal(withFormat, want) {
		t.Errorf("commands with --format: %v, want %v", withFormat, want)
	}
	for _, args := range [][]string{
		{"render", "testdata/modules", "--format", "json"},
		{"lint", "testdata/modules", "-o", "json"},
	} {
		out, errOut, code := kaudit(t, "", args...)
		if code != 0 || !json.Valid([]byte(out)) {
			t.Errorf("%v: exit %d, %s, output %.200s", args, code, errOut, out)
		}
	}
	if _, errOut, code := kaudit(t, "", "render", "testdata/modules", "-o", "xml"); code == 0 || errOut != `--format "xml": must be yaml or json` {
		t.Errorf("an unknown format: exit %d, stderr %q", code, errOut)
	}
}

func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		out, errOut, code := kaudit(t, "", "completion", shell)
		if code != 0 || !strings.Contains(out, "kaudit") {
			t.Errorf("%s: exit %d, %s", shell, code, errOut)
		}
	}
	out, _, _ := kaudit(t, "", "__complete", "simulate", "--format", "")
	if !strings.Contains(out, "json") {
		t.Errorf("--format values do not complete: %q", out)
	}
}

// Progress goes to stderr only when asked, or when stderr is a terminal (never in a pipe or a test).
func TestProgressOnlyOnATerminal(t *testing.T) {
	_, errOut, _ := kaudit(t, "", "simulate", "--policy", simPolicy, simEdge)
	if errOut != "" {
		t.Errorf("progress written to a non-terminal: %q", errOut)
	}
	_, errOut, _ = kaudit(t, "", "simulate", "--policy", simPolicy, "--progress", "always", simEdge)
	if !strings.Contains(errOut, "\r") {
		t.Errorf("--progress always wrote nothing: %q", errOut)
	}
}
