package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/manifest"
	"github.com/kaudit/kaudit/internal/policy"
)

// target reads a policy file of testdata as simulate's command does (import, then merge).
func target(t testing.TB, file string) Target {
	t.Helper()
	set, err := manifest.Read(nil, filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Upstream) != 1 {
		t.Fatalf("%s: want one audit.k8s.io/v1 Policy", file)
	}
	imp := policy.Import(set.Upstream[0].Policy, policy.ImportOptions{Prefix: strings.TrimSuffix(file, ".yaml")})
	m, err := policy.Merge(imp.Modules, imp.Settings)
	if err != nil {
		t.Fatal(err)
	}
	return Target{Name: file, Policy: m.Policy, Sources: m.Sources}
}

func fileInput(path string) Input {
	return Input{Name: filepath.Base(path), Open: func() (io.ReadCloser, error) { return os.Open(path) }}
}

func bytesInput(name string, data []byte) Input {
	return Input{Name: name, Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }}
}

var samples = []string{"testdata/sample.jsonl", "testdata/sample-rotated.jsonl.gz", "testdata/edge.jsonl"}

func run(t testing.TB, inputs []Input, opts Options) *Report {
	t.Helper()
	r, err := Run(context.Background(), inputs, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// engineNeutral drops what legitimately differs between the engines: the wording of JSON errors.
func engineNeutral(r *Report) *Report {
	c := *r
	c.BadLineExamples = nil
	for _, p := range r.BadLineExamples {
		c.BadLineExamples = append(c.BadLineExamples, LineProblem{File: p.File, Line: p.Line})
	}
	return &c
}

func diffReports(t *testing.T, what string, want, got *Report) {
	t.Helper()
	if reflect.DeepEqual(engineNeutral(want), engineNeutral(got)) {
		return
	}
	w, _ := json.MarshalIndent(engineNeutral(want), "", " ")
	g, _ := json.MarshalIndent(engineNeutral(got), "", " ")
	wl, gl := strings.Split(string(w), "\n"), strings.Split(string(g), "\n")
	for i := range min(len(wl), len(gl)) {
		if wl[i] != gl[i] {
			t.Fatalf("%s: reports differ at line %d:\nwant %s\ngot  %s", what, i+1, wl[i], gl[i])
		}
	}
	t.Fatalf("%s: reports differ in length", what)
}

// The fast path decides and counts exactly like the naive reference (encoding/json into
// audit.k8s.io/v1 Events, the upstream evaluator on every event, no cache), on real-world-shaped
// logs, with and without --against, whatever the number of workers and the chunk size.
func TestFastPathMatchesNaiveReference(t *testing.T) {
	policies := []string{"policy.yaml", "policy-names.yaml"}
	var inputs []Input
	for _, s := range samples {
		inputs = append(inputs, fileInput(s))
	}
	for _, p := range policies {
		for _, against := range append([]string{""}, policies...) {
			opts := Options{Policy: target(t, p), Examples: 3}
			if against != "" {
				a := target(t, against)
				opts.Against = &a
			}
			naive := opts
			naive.Engine, naive.Workers = EngineNaive, 1
			want := run(t, inputs, naive)
			if want.Events == 0 || want.BadLines == 0 || want.OtherLines == 0 {
				t.Fatalf("samples should hold events, bad lines and other versions: %d %d %d", want.Events, want.BadLines, want.OtherLines)
			}
			for _, variant := range []struct {
				workers, chunk, cache int
			}{{1, 0, 0}, {3, 4096, 0}, {2, 64, 1}} {
				fast := opts
				fast.Workers, fast.ChunkSize, fast.CacheSize = variant.workers, variant.chunk, variant.cache
				diffReports(t, p+" against "+against, want, run(t, inputs, fast))
			}
		}
	}
}

// Bad input is counted with line numbers and never stops the run.
func TestBadLinesAreCountedWithLineNumbers(t *testing.T) {
	r := run(t, []Input{fileInput("testdata/edge.jsonl")}, Options{Policy: target(t, "policy-names.yaml")})
	if r.Events != 9 || r.BadLines != 3 || r.OtherLines != 1 {
		t.Fatalf("events %d, bad %d, other %d; want 9, 3, 1", r.Events, r.BadLines, r.OtherLines)
	}
	var lines []int64
	for _, p := range r.BadLineExamples {
		lines = append(lines, p.Line)
	}
	if !slices.Equal(lines, []int64{7, 10, 13}) {
		t.Errorf("bad lines %v, want [7 10 13]", lines)
	}
	if len(r.OtherExamples) != 1 || r.OtherExamples[0].Line != 6 || !strings.Contains(r.OtherExamples[0].Problem, "v1beta1") {
		t.Errorf("other lines %+v, want line 6 (audit.k8s.io/v1beta1)", r.OtherExamples)
	}
}

// What the apiserver decided on is what counts: a create is evaluated before the object's name is
// known, so resourceNames never match it; an update of the same object does.
func TestCreateIsDecidedWithoutTheObjectName(t *testing.T) {
	r := run(t, []Input{fileInput("testdata/edge.jsonl")}, Options{Policy: target(t, "policy-names.yaml")})
	if got := r.Policy.Rules[1].Events; got != 1 {
		t.Errorf("rule 1 (configmap coredns by name) decided %d events, want 1 (the update, not the create)", got)
	}
}

// A truncated gzip file (a log rotated while copied) is reported, and what was read is counted.
func TestTruncatedGzipIsReportedNotFatal(t *testing.T) {
	data, err := os.ReadFile("testdata/sample-rotated.jsonl.gz")
	if err != nil {
		t.Fatal(err)
	}
	full := run(t, []Input{bytesInput("full.gz", data)}, Options{Policy: target(t, "policy.yaml")})
	r := run(t, []Input{bytesInput("cut.gz", data[:len(data)/2]), fileInput("testdata/edge.jsonl")}, Options{Policy: target(t, "policy.yaml")})
	if !strings.Contains(r.Inputs[0].Error, "truncated") {
		t.Errorf("input error %q, want it to say truncated", r.Inputs[0].Error)
	}
	if r.Events <= 9 || r.Events >= full.Events+9 {
		t.Errorf("events %d: want part of the %d events of the full file plus the 9 of edge.jsonl", r.Events, full.Events)
	}
}

// Lines longer than a read chunk are reassembled.
func TestLinesLongerThanAChunk(t *testing.T) {
	data, err := os.ReadFile("testdata/sample.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Policy: target(t, "policy.yaml")}
	want := run(t, []Input{bytesInput("s", data)}, opts)
	opts.ChunkSize = 7
	got := run(t, []Input{bytesInput("s", data)}, opts)
	diffReports(t, "chunk size 7", want, got)
	// No final newline.
	got = run(t, []Input{bytesInput("s", bytes.TrimSuffix(data, []byte("\n")))}, opts)
	got.Inputs[0].Bytes++ // the newline
	diffReports(t, "no final newline", want, got)
}

// The text report shows every section.
func TestTextReport(t *testing.T) {
	a := target(t, "policy-names.yaml")
	r := run(t, []Input{fileInput("testdata/sample.jsonl")}, Options{Policy: target(t, "policy.yaml"), Against: &a})
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"LEVEL", "RULE", "BASELINE RULE", "Security-relevant", "TOP USER", "TOP VERB", "TOP RESOURCE", "malformed lines"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, b.String())
		}
	}
}

func BenchmarkSimulate(b *testing.B) {
	data, err := os.ReadFile("testdata/sample.jsonl")
	if err != nil {
		b.Fatal(err)
	}
	data = bytes.Repeat(data, 20)
	opts := Options{Policy: target(b, "policy.yaml"), Workers: 1}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		run(b, []Input{bytesInput("b", data)}, opts)
	}
}

func BenchmarkNaive(b *testing.B) {
	data, err := os.ReadFile("testdata/sample.jsonl")
	if err != nil {
		b.Fatal(err)
	}
	opts := Options{Policy: target(b, "policy.yaml"), Workers: 1, Engine: EngineNaive}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		run(b, []Input{bytesInput("b", data)}, opts)
	}
}

// Empty inputs and inputs that end exactly at a chunk boundary end cleanly.
func TestInputsEndingAtAChunkBoundary(t *testing.T) {
	opts := Options{Policy: target(t, "policy.yaml"), ChunkSize: 64}
	r := run(t, []Input{bytesInput("empty", nil)}, opts)
	if r.Inputs[0].Lines != 0 || r.BadLines != 0 || r.Events != 0 {
		t.Errorf("empty input: %+v, %d bad lines", r.Inputs[0], r.BadLines)
	}
	line := []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","verb":"get","requestURI":"/x"}` + "\n")
	for _, n := range []int{len(line), 64, 128} {
		data := bytes.Repeat([]byte(" "), n)
		data = append(data[:n-len(line)%n], line...) // leading blanks belong to the line
		opts.ChunkSize = len(data)
		r = run(t, []Input{bytesInput("exact", data)}, opts)
		if r.Events != 1 || r.BadLines != 0 {
			t.Errorf("chunk %d: %d events, %d bad lines, want 1 and 0", len(data), r.Events, r.BadLines)
		}
	}
}

// A namespaced module is named namespace/name in the per-module and per-rule report, as the
// manager and the agent's metrics name it: two teams' modules of one name stay apart.
func TestNamespacedModulesAreReportedByNamespaceAndName(t *testing.T) {
	deployments := v1alpha1.AuditPolicyModuleSpec{Order: 10, Rules: []v1alpha1.PolicyRule{{Level: "RequestResponse", Resources: []v1alpha1.GroupResources{{Group: "apps", Resources: []string{"deployments"}}}}}}
	m, err := policy.Merge([]policy.Module{
		{Namespace: "team-a", Name: "deployments", Spec: deployments},
		{Namespace: "team-b", Name: "deployments", Spec: deployments},
		{Name: "everything", Spec: v1alpha1.AuditPolicyModuleSpec{Order: 20, Rules: []v1alpha1.PolicyRule{{Level: "Metadata"}}}},
	}, policy.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	r := run(t, []Input{fileInput("testdata/sample.jsonl")}, Options{Policy: Target{Name: "teams", Policy: m.Policy, Sources: m.Sources}})
	var modules, rules []string
	for _, rc := range r.Policy.Modules {
		modules = append(modules, rc.Source)
	}
	for _, rc := range r.Policy.Rules {
		rules = append(rules, rc.Source)
	}
	if want := []string{"team-a/deployments", "team-b/deployments", "everything"}; !reflect.DeepEqual(modules[:3], want) {
		t.Fatalf("modules %q, want %q first", modules, want)
	}
	if want := []string{"team-a/deployments/0", "team-b/deployments/0", "everything/0"}; !reflect.DeepEqual(rules[:3], want) {
		t.Fatalf("rules %q, want %q first", rules, want)
	}
}
