package cmd

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// A CI gate cannot trust a report of zeros: simulate exits non-zero when an input cannot be read
// or when no event was read at all, says why on stderr, and still prints the report of what it
// could read.
func TestSimulateFailsWhenAnInputCannotBeRead(t *testing.T) {
	dir := t.TempDir()
	gz, err := os.ReadFile("../internal/simulate/testdata/sample-rotated.jsonl.gz")
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.jsonl.gz")
	empty := filepath.Join(dir, "empty.jsonl")
	garbage := filepath.Join(dir, "garbage.jsonl")
	for path, data := range map[string]string{truncated: string(gz[:len(gz)/2]), empty: "", garbage: "not json\n{\n"} {
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	typo := filepath.Join(dir, "sampel.jsonl")
	cases := []struct {
		name   string
		logs   []string
		stderr []string
	}{
		{"a missing file", []string{typo}, []string{typo, "no such file"}},
		{"one typo among several paths", []string{simSample, typo, simEdge}, []string{"1 of 3 inputs", typo}},
		{"a missing directory", []string{filepath.Join(dir, "var", "log", "kubernetes", "audit") + "/"}, []string{"audit/", "no such file"}},
		{"a truncated gzip file", []string{simSample, truncated}, []string{truncated, "truncated"}},
		{"an empty file", []string{empty}, []string{"no audit event was read"}},
		{"nothing but malformed lines", []string{garbage}, []string{"no audit event was read", "2 malformed lines"}},
	}
	if runtime.GOOS == "linux" {
		// Reading the start of /proc/self/mem fails with EIO: a real I/O error.
		cases = append(cases, struct {
			name   string
			logs   []string
			stderr []string
		}{"an I/O error", []string{simEdge, "/proc/self/mem"}, []string{"/proc/self/mem", "input/output error"}})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, format := range []string{"text", "json"} {
				out, errOut, code := kaudit(t, "", append([]string{"simulate", "--policy", simPolicy, "--format", format}, tc.logs...)...)
				if code == 0 {
					t.Errorf("%s: exit code 0; stderr %q", format, errOut)
				}
				for _, want := range tc.stderr {
					if !strings.Contains(errOut, want) {
						t.Errorf("%s: stderr %q does not say %q", format, errOut, want)
					}
				}
				if format == "json" && !json.Valid([]byte(out)) {
					t.Errorf("json: no report on stdout: %.300s", out)
				}
				if format == "text" && !strings.HasPrefix(out, "Input: ") {
					t.Errorf("text: no report on stdout: %.300s", out)
				}
			}
		})
	}
}

// Malformed lines among good events are counted in the report, never fatal.
func TestSimulateCountsMalformedLinesWithoutFailing(t *testing.T) {
	out, errOut, code := kaudit(t, "", "simulate", "--policy", simPolicy, "--format", "json", simEdge)
	var rep struct{ Events, BadLines int }
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || errOut != "" || rep.BadLines == 0 || rep.Events == 0 {
		t.Errorf("exit %d, stderr %q, %d events and %d malformed lines", code, errOut, rep.Events, rep.BadLines)
	}
}

// With no log argument, simulate reads stdin; on a terminal it says so, or a user would wait
// for a report that never comes.
func TestSimulateSaysItReadsStdinFromATerminal(t *testing.T) {
	tty, hangUp := openTerminal(t)
	root := NewRootCommand()
	var out, errOut strings.Builder
	root.SetIn(tty)
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs([]string{"simulate", "--policy", simPolicy})
	// A simulate that keeps reading after the end of input would hang the test: hang up instead.
	stuck := time.AfterFunc(time.Minute, hangUp)
	_ = root.Execute()
	if !stuck.Stop() {
		t.Error("simulate kept reading the terminal after the end of input (Ctrl-D)")
	}
	if !strings.Contains(errOut.String(), "reading audit events from stdin") {
		t.Errorf("stderr %q does not say that simulate reads stdin", errOut.String())
	}
	// Not on a pipe or a file.
	if _, errOut, _ := kaudit(t, "", "simulate", "--policy", simPolicy); strings.Contains(errOut, "reading audit events from stdin") {
		t.Errorf("stderr %q: stdin is not a terminal", errOut)
	}
}
