package cmd

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Flag values complete from what kaudit knows, never from file names (cobra's directive :4).
func TestFlagValuesCompleteWithoutFileNames(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"explain", "testdata/modules", "--resource", ""}, "pods"},
		{[]string{"explain", "testdata/modules", "--resource", "dep"}, "deployments.apps"},
		{[]string{"explain", "testdata/modules", "--api-group", "apps", "--resource", ""}, "deployments"},
		{[]string{"explain", "testdata/modules", "--api-group", ""}, "rbac.authorization.k8s.io"},
		{[]string{"explain", "testdata/modules", "--user", ""}, "system:anonymous"},
		{[]string{"explain", "testdata/modules", "--groups", ""}, "system:masters"},
		{[]string{"explain", "testdata/modules", "-n", ""}, "kube-system"},
		{[]string{"explain", "testdata/modules", "--verb", ""}, "deletecollection"},
		{[]string{"simulate", "--policy", "testdata/modules", "--cpus", ""}, "1"},
		{[]string{"advise", "--policy", "testdata/modules", "--max-rules", ""}, "30"},
		{[]string{"advise", "--policy", "testdata/modules", "--format", ""}, "yaml"},
	} {
		out, errOut, code := kaudit(t, "", append([]string{"__complete"}, tc.args...)...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || !strings.Contains(out, "\n"+tc.want+"\n") && !strings.HasPrefix(out, tc.want+"\n") || lines[len(lines)-1] != ":4" {
			t.Errorf("%v: exit %d, %s, completions:\n%s", tc.args, code, errOut, out)
		}
	}
}

func TestVersion(t *testing.T) {
	out, errOut, code := kaudit(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "kaudit ") || !strings.Contains(out, runtime.Version()) {
		t.Errorf("exit %d, %s, output %q", code, errOut, out)
	}
}

func TestNegativeCountsAreRefused(t *testing.T) {
	for _, flag := range []string{"--cpus", "--examples"} {
		_, errOut, code := kaudit(t, "", "simulate", "--policy", simPolicy, flag, "-1", simSample)
		if code == 0 || !strings.Contains(errOut, flag) {
			t.Errorf("%s -1: exit %d, stderr %q", flag, code, errOut)
		}
	}
}

// Log directories often hold symbolic links (to the current log, or to logs elsewhere).
func TestSimulateFollowsSymlinkedLogsInADirectory(t *testing.T) {
	dir := t.TempDir()
	abs, err := filepath.Abs(simSample)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(abs, filepath.Join(dir, "audit.log")); err != nil {
		t.Fatal(err)
	}
	direct, _, _ := kaudit(t, "", "simulate", "--policy", simPolicy, "-o", "json", simSample)
	linked, errOut, code := kaudit(t, "", "simulate", "--policy", simPolicy, "-o", "json", dir)
	if code != 0 || strings.ReplaceAll(linked, filepath.Join(dir, "audit.log"), simSample) != direct {
		t.Errorf("exit %d, %s, report:\n%.400s", code, errOut, linked)
	}
}

func TestCountsAreWrittenInGoodEnglish(t *testing.T) {
	dir := t.TempDir()
	one := filepath.Join(dir, "one.yaml")
	if err := os.WriteFile(one, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- {level: None, users: [x]}\n- {level: RequestResponse, resources: [{group: \"\", resources: [secrets]}]}\n- {level: Metadata}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, _ := kaudit(t, "", "import", one, "--output-dir", filepath.Join(dir, "out"))
	if !strings.Contains(errOut, "wrote 2 modules and") {
		t.Errorf("import: %q", errOut)
	}
	out, _, _ := kaudit(t, "", "lint", one)
	if !strings.Contains(out, "\n1 error, ") {
		t.Errorf("lint:\n%s", out)
	}
	single := filepath.Join(dir, "single.yaml")
	if err := os.WriteFile(single, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- {level: None, users: [x]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, errOut, _ = kaudit(t, "", "import", single, "--output-dir", filepath.Join(dir, "single"))
	if !strings.Contains(errOut, "wrote 1 module and") {
		t.Errorf("import: %q", errOut)
	}
}

// A rule over many API groups gets a finding a person can read in one line.
func TestLongListsInFindingsAreShortened(t *testing.T) {
	out, _, _ := kaudit(t, "", "lint", filepath.Join("..", "internal", "lint", "testdata", "gke-policy.yaml"))
	for _, line := range strings.Split(out, "\n") {
		if len(line) > 300 {
			t.Errorf("a line of %d characters:\n%s", len(line), line)
		}
	}
}

func TestBashCompletionHelpSaysBashCompletionIsNeeded(t *testing.T) {
	out, _, code := kaudit(t, "", "completion", "bash", "--help")
	if code != 0 || !strings.Contains(out, "bash-completion") {
		t.Errorf("exit %d:\n%s", code, out)
	}
}
