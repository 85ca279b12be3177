package cmd

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// topOnce runs kaudit top --once --format json.
func topOnce(t *testing.T, args ...string) topSnapshot {
	t.Helper()
	out, errOut, code := kaudit(t, "", append([]string{"top", "--once", "--format", "json", "--top", "0"}, args...)...)
	if code != 0 {
		t.Fatalf("exit %d, %s", code, errOut)
	}
	var s topSnapshot
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("%v: %.300s", err, out)
	}
	return s
}

// simulated runs kaudit simulate and returns the events per module and per rule, as top
// labels them.
func simulated(t *testing.T, policy string, logs ...string) (modules, rules map[string]int64) {
	t.Helper()
	out, errOut, code := kaudit(t, "", append([]string{"simulate", "--policy", policy, "--format", "json"}, logs...)...)
	if code != 0 {
		t.Fatalf("simulate: exit %d, %s", code, errOut)
	}
	var r struct {
		Policy struct {
			Modules, Rules []struct {
				Source string
				Events int64
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	modules, rules = map[string]int64{}, map[string]int64{}
	for _, m := range r.Policy.Modules {
		if m.Events > 0 {
			modules[m.Source] = m.Events
		}
	}
	for _, rc := range r.Policy.Rules {
		if rc.Events > 0 {
			rules[rc.Source] = rc.Events
		}
	}
	return modules, rules
}

// gunzip writes a compressed log uncompressed into a temporary directory: top follows plain
// files only.
func gunzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), strings.TrimSuffix(filepath.Base(path), ".gz"))
	w, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := io.Copy(w, z); err != nil {
		t.Fatal(err)
	}
	return out
}

// renderedBaseline is the policy file a node gets from the baseline modules: its comments name
// the modules, as in the agent's metrics.
func renderedBaseline(t *testing.T) string {
	t.Helper()
	rendered, errOut, code := kaudit(t, "", "render", "../config/modules/baseline")
	if code != 0 {
		t.Fatalf("render: exit %d, %s", code, errOut)
	}
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte(rendered), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// top attributes with the same evaluator as simulate: the events of each module and rule of
// a recorded log are the ones simulate counts.
func TestTopOnceCountsWhatSimulateCounts(t *testing.T) {
	shop := gunzip(t, "../test/presets/testdata/auditlogs/shop.jsonl.gz")
	renderedFile := renderedBaseline(t)
	for _, tc := range []struct {
		name, policy string
		logs         []string
	}{
		{name: "a plain policy", policy: simPolicy, logs: []string{simSample}},
		{name: "the baseline modules, a recorded log", policy: "../config/modules/baseline", logs: []string{shop}},
		{name: "the policy file rendered from them", policy: renderedFile, logs: []string{shop}},
		{name: "two logs", policy: simPolicy, logs: []string{simSample, simSample}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantModules, wantRules := simulated(t, tc.policy, tc.logs...)
			s := topOnce(t, append([]string{"--policy", tc.policy}, tc.logs...)...)
			modules, rules := map[string]int64{}, map[string]int64{}
			var total int64
			for _, m := range s.Modules {
				modules[m.Module] = m.Events
				total += m.Events
			}
			for _, r := range s.Rules {
				label := r.Module + "/" + r.Rule
				if r.Module == "default" {
					label = "default"
				}
				rules[label] = r.Events
			}
			if !equalCounts(modules, wantModules) || !equalCounts(rules, wantRules) {
				t.Errorf("top counts per module %v and per rule %v, simulate %v and %v", modules, rules, wantModules, wantRules)
			}
			if total == 0 || s.Total.Events != total || s.Interval != 0 || s.Total.EventsPerSecond != 0 {
				t.Errorf("total %+v over %d module events, interval %v: want the modules' sum and no rates", s.Total, total, s.Interval)
			}
			if len(s.Files) != len(tc.logs) || s.Files[0].Unread != 0 {
				t.Errorf("files %+v: want each log, read to its end", s.Files)
			}
		})
	}
}

// simulate of a node's policy file names its rules after the modules its comments name, as the
// agent's metrics do, and counts as simulate of the modules it was rendered from.
func TestSimulateNamesTheModulesOfARenderedPolicy(t *testing.T) {
	shop := gunzip(t, "../test/presets/testdata/auditlogs/shop.jsonl.gz")
	modules, rules := simulated(t, renderedBaseline(t), shop)
	wantModules, wantRules := simulated(t, "../config/modules/baseline", shop)
	if !equalCounts(modules, wantModules) || !equalCounts(rules, wantRules) || modules["secrets-metadata-only"] == 0 {
		t.Errorf("simulate of the rendered file: per module %v and per rule %v; of the modules %v and %v", modules, rules, wantModules, wantRules)
	}
}

func equalCounts(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// syncBuffer is a bytes.Buffer that top writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// snapshots decodes the snapshots written so far.
func (s *syncBuffer) snapshots(t *testing.T) []topSnapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []topSnapshot
	dec := json.NewDecoder(bytes.NewReader(s.b.Bytes()))
	for {
		var snap topSnapshot
		if err := dec.Decode(&snap); err != nil {
			if err != io.EOF && err != io.ErrUnexpectedEOF && !strings.Contains(err.Error(), "unexpected end") {
				t.Fatal(err)
			}
			return out
		}
		out = append(out, snap)
	}
}

// A log appended while top runs shows in its next snapshots, with rates.
func TestTopFollowsWhatIsAppended(t *testing.T) {
	sample, err := os.ReadFile(simSample)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(sample), "\n")
	first, rest := strings.Join(lines[:100], ""), strings.Join(lines[100:], "")
	log := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(log, []byte(first), 0o600); err != nil {
		t.Fatal(err)
	}
	want := topOnce(t, "--policy", simPolicy, simSample).Total.Events
	wantFirst := topOnce(t, "--policy", simPolicy, log).Total.Events

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out syncBuffer
	root := NewRootCommand()
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetArgs([]string{"top", "--policy", simPolicy, "--format", "json", "--interval", "20ms", log})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	// waitFor waits for a snapshot with n events in total.
	waitFor := func(n int64) {
		for {
			snaps := out.snapshots(t)
			for _, s := range snaps {
				if s.Total.Events == n {
					return
				}
			}
			select {
			case err := <-done:
				t.Fatalf("top ended (%v) without a snapshot of %d events; last: %+v", err, n, snaps[len(snaps)-1:])
			case <-ctx.Done():
				t.Fatalf("no snapshot of %d events; last: %+v", n, snaps[len(snaps)-1:])
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	waitFor(wantFirst)
	f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(rest); err != nil {
		t.Fatal(err)
	}
	f.Close()
	waitFor(want)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("top ended with %v when its context was done, want nil", err)
	}
	// Snapshots after the first have rates; one of them saw the appended events arrive.
	var rated bool
	for _, s := range out.snapshots(t)[1:] {
		rated = rated || (s.Interval > 0 && s.Total.EventsPerSecond > 0)
	}
	if !rated {
		t.Error("no snapshot shows a rate of events for the appended ones")
	}
}

func TestTopRefusesWhatItCannotFollow(t *testing.T) {
	dir := t.TempDir()
	gz := filepath.Join(dir, "audit-2026-11-25T10-00-00.000.log.gz")
	if err := os.WriteFile(gz, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"top", "--policy", simPolicy, filepath.Join(dir, "missing.log")}, "no such file"},
		{[]string{"top", "--policy", simPolicy, dir}, "is a directory"},
		{[]string{"top", "--policy", simPolicy, gz}, "kaudit simulate reads it"},
		{[]string{"top", simSample}, "--policy is required"},
		{[]string{"top", "--policy", simPolicy}, "requires at least 1 arg"},
		{[]string{"top", "--policy", simPolicy, "--interval", "0s", simSample}, "--interval"},
	} {
		_, errOut, code := kaudit(t, "", tc.args...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want an error saying %q", tc.args, code, errOut, tc.want)
		}
	}
}
