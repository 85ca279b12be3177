package attribution

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/manifest"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/simulate"
)

// merged reads modules as `kaudit render` does.
func merged(t testing.TB, paths ...string) *policy.Merged {
	t.Helper()
	set, err := manifest.Read(nil, paths...)
	if err != nil {
		t.Fatal(err)
	}
	var mods []policy.Module
	for _, m := range set.Modules {
		mods = append(mods, policy.Module{Name: m.Name, Spec: m.Spec})
	}
	var settings policy.Settings
	if set.Policy != nil {
		settings = policy.SettingsFrom(set.Policy.Spec)
	}
	m, err := policy.Merge(mods, settings)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// recordedAt is m with every rule at RequestResponse and no stage omitted: a policy under which
// the recorded logs (written at RequestResponse) could have been written, with m's rules.
func recordedAt(m *policy.Merged) *policy.Merged {
	p := *m.Policy.DeepCopy()
	p.OmitStages = nil
	for i := range p.Rules {
		p.Rules[i].Level = auditv1.LevelRequestResponse
		p.Rules[i].OmitStages = nil
	}
	return &policy.Merged{Policy: p, Sources: m.Sources, Modules: m.Modules}
}

func readLog(t testing.TB, path string) []byte {
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
	b, err := io.ReadAll(z)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func splitLines(b []byte) [][]byte {
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

// perRule adds up a snapshot's counts of one revision per rule label, as simulate labels rules.
func perRule(c Counts, rev int64) map[string][2]int64 {
	out := map[string][2]int64{}
	for _, r := range c.Rules {
		if r.Revision != rev {
			continue
		}
		label := r.Module + "/" + r.Rule
		if r.Module == DefaultModule {
			label = "default"
		}
		v := out[label]
		out[label] = [2]int64{v[0] + r.Events, v[1] + r.Bytes}
	}
	return out
}

// TestCountsPerRuleEqualSimulate attributes a recorded log and compares every rule's events and
// bytes with `kaudit simulate`'s report of the same log and policy.
func TestCountsPerRuleEqualSimulate(t *testing.T) {
	const logPath = "../../test/presets/testdata/auditlogs/shop.jsonl.gz"
	log := readLog(t, logPath)
	baseline := merged(t, "../../config/modules/baseline")
	for _, tc := range []struct {
		name string
		m    *policy.Merged
	}{
		// The log could have been written under this one: every level and byte agrees.
		{"baseline recorded at RequestResponse", recordedAt(baseline)},
		// Not under this one: the rules still agree, the levels do not.
		{"baseline", baseline},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := New(Options{})
			if err := a.SetRevisions([]Revision{{Number: 7, Policy: tc.m.Render()}}); err != nil {
				t.Fatal(err)
			}
			a.Observe(splitLines(log))
			got := a.Snapshot()

			report, err := simulate.Run(context.Background(), []simulate.Input{{Name: "shop", Open: func() (io.ReadCloser, error) { return os.Open(logPath) }}},
				simulate.Options{Policy: simulate.Target{Name: tc.name, Policy: tc.m.Policy, Sources: tc.m.Sources}})
			if err != nil {
				t.Fatal(err)
			}
			if report.Events == 0 || got.Malformed != report.BadLines || got.NotEvents != report.OtherLines || got.NoTime+got.NoRevision+got.NoRule != 0 {
				t.Fatalf("counts %+v; simulate read %d events, %d bad lines, %d other", got, report.Events, report.BadLines, report.OtherLines)
			}
			rules := perRule(got, 7)
			var events, mismatches int64
			for _, r := range report.Policy.Rules {
				g := rules[r.Source]
				if g[0] != r.Events {
					t.Errorf("rule %s: %d events, simulate says %d", r.Source, g[0], r.Events)
				}
				if tc.m != baseline && g[1] != r.Bytes {
					t.Errorf("rule %s: %d bytes, simulate says %d", r.Source, g[1], r.Bytes)
				}
				events += g[0]
				if r.Level != string(auditv1.LevelRequestResponse) {
					mismatches += g[0]
				}
				delete(rules, r.Source)
			}
			if len(rules) > 0 {
				t.Errorf("rules simulate does not know: %v", rules)
			}
			if events != report.Events {
				t.Errorf("%d events attributed, simulate read %d", events, report.Events)
			}
			var gotMismatches int64
			for _, m := range got.LevelMismatches {
				gotMismatches += m.Events
			}
			if gotMismatches != mismatches {
				t.Errorf("%d level mismatches, want %d", gotMismatches, mismatches)
			}
		})
	}
}

// event is an audit event line of user "u".
func event(verb, resource string, at time.Time, level auditv1.Level, stage auditv1.Stage) []byte {
	return fmt.Appendf(nil, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":%q,"auditID":"x","stage":%q,"requestURI":"/api/v1/%s","verb":%q,"user":{"username":"u","groups":["system:authenticated"]},"objectRef":{"resource":%q,"namespace":"default","apiVersion":"v1"},"requestReceivedTimestamp":%q,"stageTimestamp":%q}`,
		level, stage, resource, verb, resource, at.Format(time.RFC3339Nano), at.Format(time.RFC3339Nano))
}

// twoModules renders a policy of modules "secrets" (one rule at level) and "reads" (get at
// Metadata) and the default.
func twoModules(t testing.TB, level string) []byte {
	t.Helper()
	dir := t.TempDir()
	mods := fmt.Sprintf(`apiVersion: audit.kaudit.io/v1alpha1
kind: AuditPolicyModule
metadata: {name: secrets}
spec:
  order: 10
  rules:
  - level: %s
    resources: [{group: "", resources: [secrets]}]
---
apiVersion: audit.kaudit.io/v1alpha1
kind: AuditPolicyModule
metadata: {name: reads}
spec:
  order: 20
  rules:
  - level: None
    verbs: [watch]
  - level: Metadata
    verbs: [get]
`, level)
	if err := os.WriteFile(dir+"/modules.yaml", []byte(mods), 0o600); err != nil {
		t.Fatal(err)
	}
	return merged(t, dir+"/modules.yaml").Render()
}

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func TestEventsBelongToTheRevisionWhoseApiserverWasRunning(t *testing.T) {
	a := New(Options{})
	restart := t0.Add(time.Hour)
	if err := a.SetRevisions([]Revision{
		{Number: 2, Policy: twoModules(t, "RequestResponse"), Started: restart},
		{Number: 1, Policy: twoModules(t, "Metadata"), Started: t0},
	}); err != nil {
		t.Fatal(err)
	}
	lines := [][]byte{
		event("get", "secrets", t0.Add(time.Minute), auditv1.LevelMetadata, auditv1.StageResponseComplete),
		// Written by the old apiserver while the new one was starting: still revision 1, though
		// it is read after events of revision 2.
		event("get", "secrets", restart.Add(time.Second), auditv1.LevelRequestResponse, auditv1.StageResponseComplete),
		event("get", "secrets", restart.Add(-time.Millisecond), auditv1.LevelMetadata, auditv1.StageResponseComplete),
		event("get", "secrets", restart, auditv1.LevelRequestResponse, auditv1.StageResponseStarted),
		event("get", "pods", restart.Add(time.Minute), auditv1.LevelMetadata, auditv1.StageResponseComplete),
		event("get", "pods", t0.Add(-time.Minute), auditv1.LevelMetadata, auditv1.StageResponseComplete),
	}
	a.Observe(lines)
	got := a.Snapshot()
	size := func(i int) int64 { return int64(len(lines[i]) + 1) }
	want := []RuleCount{
		{Revision: 1, Module: "secrets", Rule: "0", Level: "Metadata", Stage: "ResponseComplete", Events: 2, Bytes: size(0) + size(2)},
		{Revision: 2, Module: "secrets", Rule: "0", Level: "RequestResponse", Stage: "ResponseStarted", Events: 1, Bytes: size(3)},
		{Revision: 2, Module: "secrets", Rule: "0", Level: "RequestResponse", Stage: "ResponseComplete", Events: 1, Bytes: size(1)},
		{Revision: 2, Module: "reads", Rule: "1", Level: "Metadata", Stage: "ResponseComplete", Events: 1, Bytes: size(4)},
	}
	if !reflect.DeepEqual(got.Rules, want) {
		t.Fatalf("rules:\n got %+v\nwant %+v", got.Rules, want)
	}
	if got.NoRevision != 1 || len(got.LevelMismatches) != 0 || !got.Latest.Equal(restart.Add(time.Minute)) {
		t.Fatalf("counts: %+v", got)
	}
}

func TestLinesCreditedToNoRule(t *testing.T) {
	a := New(Options{})
	if err := a.SetRevisions([]Revision{{Number: 1, Policy: twoModules(t, "Metadata")}}); err != nil {
		t.Fatal(err)
	}
	a.Observe([][]byte{
		[]byte(`not json`),
		[]byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1beta1","stageTimestamp":"2026-11-25T10:00:00Z"}`),
		[]byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","verb":"get"}`),
		[]byte(""),
		// Decided by a None rule: that policy would not have written it.
		event("watch", "pods", t0, auditv1.LevelMetadata, auditv1.StageResponseStarted),
		// Written at another level than its rule's.
		event("get", "pods", t0, auditv1.LevelRequest, auditv1.StageResponseComplete),
	})
	got := a.Snapshot()
	if got.Malformed != 1 || got.NotEvents != 1 || got.NoTime != 1 || got.NoRule != 0 ||
		!reflect.DeepEqual(got.LevelMismatches, []RevisionCount{{Revision: 1, Events: 2}}) || len(got.Rules) != 2 {
		t.Fatalf("counts: %+v", got)
	}
}

func TestRulesAreLabelledFromTheRenderedComments(t *testing.T) {
	rendered := twoModules(t, "Metadata")
	p, err := policy.Load(rendered)
	if err != nil {
		t.Fatal(err)
	}
	mods, rules := ruleLabels(policy.RenderedSources(rendered, len(p.Rules)), len(p.Rules))
	if want := []string{"secrets", "reads", "reads", "default"}; !reflect.DeepEqual(mods, want) {
		t.Fatalf("modules %q, want %q", mods, want)
	}
	if want := []string{"0", "0", "1", "default"}; !reflect.DeepEqual(rules, want) {
		t.Fatalf("rules %q, want %q", rules, want)
	}
	// A namespaced module's rules are labelled namespace/name, as simulate and the manager name it.
	teams, err := policy.Merge([]policy.Module{
		{Name: "reads", Spec: v1alpha1.AuditPolicyModuleSpec{Order: 20, Rules: []v1alpha1.PolicyRule{{Level: "Metadata", Verbs: []string{"get"}}}}},
		{Namespace: "team-a", Name: "deployments", Spec: v1alpha1.AuditPolicyModuleSpec{Order: 10, Rules: []v1alpha1.PolicyRule{{Level: "RequestResponse", Resources: []v1alpha1.GroupResources{{Group: "apps", Resources: []string{"deployments"}}}}}}},
	}, policy.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	withTeams := teams.Render()
	mods, rules = ruleLabels(policy.RenderedSources(withTeams, len(teams.Policy.Rules)), len(teams.Policy.Rules))
	if want := []string{"team-a/deployments", "reads", "default"}; !reflect.DeepEqual(mods, want) {
		t.Fatalf("modules %q, want %q in\n%s", mods, want, withTeams)
	}
	if want := []string{"0", "0", "default"}; !reflect.DeepEqual(rules, want) {
		t.Fatalf("rules %q, want %q", rules, want)
	}
	// Without the comments, or with one missing (a hand edit), rules are labelled by index.
	for _, edited := range [][]byte{
		bytes.ReplaceAll(rendered, []byte("# module reads, rule 1\n"), nil),
		[]byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  verbs: [watch]\n- level: Metadata\n"),
	} {
		n := strings.Count(string(edited), "\n- ")
		mods, rules := ruleLabels(policy.RenderedSources(edited, n), n)
		if mods[0] != UnnamedModule || rules[n-1] != fmt.Sprint(n-1) {
			t.Fatalf("labels of an edited policy: %q %q", mods, rules)
		}
	}
}

func TestRevisionsBeyondTheLastOnesAreDroppedOnceTheLogIsPastThem(t *testing.T) {
	a := New(Options{KeepRevisions: 2})
	// Each revision number stands for its own policy.
	history := []Revision{
		{Number: 1, Policy: twoModules(t, "Metadata"), Started: t0},
		{Number: 2, Policy: twoModules(t, "Request"), Started: t0.Add(time.Hour)},
		{Number: 3, Policy: twoModules(t, "RequestResponse"), Started: t0.Add(time.Hour + 10*time.Second)},
	}
	if err := a.SetRevisions(history); err != nil {
		t.Fatal(err)
	}
	revisions := func() []int64 {
		var out []int64
		for _, r := range a.Snapshot().Rules {
			if len(out) == 0 || out[len(out)-1] != r.Revision {
				out = append(out, r.Revision)
			}
		}
		return out
	}
	a.Observe([][]byte{
		event("get", "pods", t0, auditv1.LevelMetadata, auditv1.StageResponseComplete),
		event("get", "pods", t0.Add(time.Hour), auditv1.LevelMetadata, auditv1.StageResponseComplete),
		event("get", "pods", t0.Add(time.Hour+10*time.Second), auditv1.LevelMetadata, auditv1.StageResponseComplete),
	})
	if got := revisions(); !reflect.DeepEqual(got, []int64{1, 2, 3}) {
		t.Fatalf("revisions %v: revision 1 ended less than a minute ago", got)
	}
	late := event("get", "pods", t0.Add(30*time.Minute), auditv1.LevelMetadata, auditv1.StageResponseComplete)
	a.Observe([][]byte{
		late,
		event("get", "pods", t0.Add(time.Hour+endGrace), auditv1.LevelMetadata, auditv1.StageResponseComplete),
	})
	if got := revisions(); !reflect.DeepEqual(got, []int64{2, 3}) {
		t.Fatalf("revisions %v, want 2 and 3", got)
	}
	// A later event of revision 1's time is credited to no revision, not to another one.
	a.Observe([][]byte{late})
	if c := a.Snapshot(); c.NoRevision != 1 {
		t.Fatalf("counts %+v", c)
	}
	// Giving the whole history again does not bring revision 1 back.
	if err := a.SetRevisions(history); err != nil {
		t.Fatal(err)
	}
	if got := revisions(); !reflect.DeepEqual(got, []int64{2, 3}) {
		t.Fatalf("revisions %v, want 2 and 3", got)
	}
}

func TestARevisionInForceTwiceCountsOnce(t *testing.T) {
	a := New(Options{})
	four, five := twoModules(t, "Metadata"), twoModules(t, "RequestResponse")
	history := []Revision{{Number: 4, Policy: four, Started: t0}, {Number: 5, Policy: five, Started: t0.Add(time.Hour)}, {Number: 4, Policy: four, Started: t0.Add(2 * time.Hour)}}
	if err := a.SetRevisions(history); err != nil {
		t.Fatal(err)
	}
	a.Observe([][]byte{
		event("get", "pods", t0, auditv1.LevelMetadata, auditv1.StageResponseComplete),
		event("get", "pods", t0.Add(3*time.Hour), auditv1.LevelMetadata, auditv1.StageResponseComplete),
	})
	if got := perRule(a.Snapshot(), 4)["reads/1"][0]; got != 2 {
		t.Fatalf("revision 4 counted %d events, want 2", got)
	}
	history[2].Policy = five
	if err := a.SetRevisions(history); err == nil || !strings.Contains(err.Error(), "revision 4") {
		t.Fatalf("two policies for one revision: error %v", err)
	}
}

func TestSnapshotRestoresAfterARestart(t *testing.T) {
	history := []Revision{{Number: 1, Policy: twoModules(t, "Metadata"), Started: t0}}
	a := New(Options{Categories: func(r policy.Request) []string {
		if r.Resource == "secrets" {
			return []string{"secrets"}
		}
		return nil
	}})
	if err := a.SetRevisions(history); err != nil {
		t.Fatal(err)
	}
	a.Observe([][]byte{
		event("get", "secrets", t0, auditv1.LevelMetadata, auditv1.StageResponseComplete),
		event("get", "pods", t0, auditv1.LevelRequest, auditv1.StageResponseComplete),
		[]byte("{"),
	})
	saved, err := json.Marshal(a.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var restored Counts
	if err := json.Unmarshal(saved, &restored); err != nil {
		t.Fatal(err)
	}
	b := New(Options{})
	if err := b.SetRevisions(history); err != nil {
		t.Fatal(err)
	}
	if dropped := b.Restore(restored); dropped != 0 {
		t.Fatalf("%d counts dropped", dropped)
	}
	if got, want := b.Snapshot(), a.Snapshot(); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored\n got %+v\nwant %+v", got, want)
	}
	if s := a.Snapshot().Security; !reflect.DeepEqual(s, []CategoryCount{{Category: "secrets", Events: 1}}) {
		t.Fatalf("security counts %+v", s)
	}
	// Counts of a revision no longer in the history are dropped.
	c := New(Options{})
	if err := c.SetRevisions([]Revision{{Number: 2, Policy: history[0].Policy, Started: t0}}); err != nil {
		t.Fatal(err)
	}
	if dropped := c.Restore(restored); dropped != 2 {
		t.Fatalf("%d counts dropped, want 2", dropped)
	}
}
