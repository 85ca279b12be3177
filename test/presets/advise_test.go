package presets

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/internal/advise"
	"github.com/kaudit/kaudit/internal/guardrail"
	"github.com/kaudit/kaudit/internal/manifest"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/relevance"
	"github.com/kaudit/kaudit/internal/simulate"
)

// kaudit advise on each recorded log, starting from the Kubernetes docs example imported as
// render imports it: the suggestions cut the bytes, and no security-relevant request of the log
// is recorded lower than the docs example records it. The last is checked here on its own,
// event by event with kube-apiserver's evaluator, and with the measure of recorded_test.go.
func TestAdviseCutsTheDocsExampleWithoutLosingSecurityRelevantRequests(t *testing.T) {
	start := docsExampleModules(t)
	targets := recordedTargets(t)[:1]
	for _, log := range recordedLogs {
		if !log.until.IsZero() {
			continue
		}
		t.Run(log.name, func(t *testing.T) {
			open := log.open(t)
			advice, err := advise.Run(context.Background(), []simulate.Input{{Name: log.name, Open: open}},
				advise.Options{Start: start, Guardrails: guardrail.Builtins()})
			if err != nil {
				t.Fatal(err)
			}
			merged := withAdvice(t, start, advice)
			results, _ := measureLog(t, log.name, open, append(targets, simulate.Target{Name: "docs example + advice", Policy: merged.Policy, Sources: merged.Sources}))
			docs, advised := results[0], results[1]
			rules := 0
			for _, m := range advice.Modules {
				rules += len(m.Rules)
			}
			t.Logf("| %s | %d | %d | %.2f | %d / %d | %d / %d | %d rules in %d modules", log.name, docs.bytes, advised.bytes,
				float64(advised.bytes)/float64(docs.bytes), docs.kept, docs.relevant, advised.kept, advised.relevant, rules, len(advice.Modules))

			if advised.bytes >= docs.bytes || advice.Summary.BytesAfter != advised.bytes || advice.Summary.BytesBefore != docs.bytes {
				t.Errorf("bytes: the docs example %d, with the advice %d; the advice's summary says %d and %d", docs.bytes, advised.bytes, advice.Summary.BytesBefore, advice.Summary.BytesAfter)
			}
			if advised.kept != docs.kept || advised.secretBodies > docs.secretBodies {
				t.Errorf("with the advice %d security-relevant requests kept and %d events with secret data; the docs example %d and %d",
					advised.kept, advised.secretBodies, docs.kept, docs.secretBodies)
			}
			lowered := lowerDecisions(t, open, targets[0].Policy, merged.Policy)
			if len(lowered) > 0 {
				t.Errorf("%d security-relevant requests recorded lower than by the docs example, for example %s", len(lowered), lowered[0])
			}
		})
	}
}

// Suggestions made from one log and applied to the others, which they were not made from: they
// still cut the bytes, and every security-relevant request is still recorded at the required
// level where the docs example records it.
func TestAdviceFromOneLogHoldsOnTheOthers(t *testing.T) {
	start := docsExampleModules(t)
	targets := recordedTargets(t)[:1]
	var whole []recordedLog
	for _, log := range recordedLogs {
		if log.until.IsZero() {
			whole = append(whole, log)
		}
	}
	opens := map[string]func() (io.ReadCloser, error){}
	for _, log := range whole {
		opens[log.name] = log.open(t)
	}
	for _, from := range whole {
		advice, err := advise.Run(context.Background(), []simulate.Input{{Name: from.name, Open: opens[from.name]}},
			advise.Options{Start: start, Guardrails: guardrail.Builtins()})
		if err != nil {
			t.Fatal(err)
		}
		merged := withAdvice(t, start, advice)
		for _, on := range whole {
			if on.name == from.name {
				continue
			}
			results, _ := measureLog(t, on.name, opens[on.name], append(targets, simulate.Target{Name: "docs example + advice", Policy: merged.Policy, Sources: merged.Sources}))
			docs, advised := results[0], results[1]
			t.Logf("| from %s | on %s | %d | %d | %.2f | %d / %d | %d / %d |", from.name, on.name, docs.bytes, advised.bytes,
				float64(advised.bytes)/float64(docs.bytes), docs.kept, docs.relevant, advised.kept, advised.relevant)
			if advised.bytes >= docs.bytes || advised.kept < docs.kept || advised.secretBodies > docs.secretBodies {
				t.Errorf("advice from %s on %s: %d bytes, %d security-relevant requests kept, %d events with secret data; the docs example %d, %d, %d",
					from.name, on.name, advised.bytes, advised.kept, advised.secretBodies, docs.bytes, docs.kept, docs.secretBodies)
			}
		}
	}
}

// docsExampleModules is the docs example as `kaudit render` and `kaudit advise` read it.
func docsExampleModules(t *testing.T) advise.Start {
	t.Helper()
	path := filepath.Join("testdata", "docs-example-policy.yaml")
	set, err := manifest.Read(nil, path)
	if err != nil {
		t.Fatal(err)
	}
	imp := policy.Import(set.Upstream[0].Policy, policy.ImportOptions{Prefix: "docs-example-policy", Source: path})
	return advise.Start{Name: path, Modules: imp.Modules, Settings: imp.Settings}
}

// withAdvice merges the start with the suggested manifests as written, read as render reads them.
func withAdvice(t *testing.T, start advise.Start, advice *advise.Advice) *policy.Merged {
	t.Helper()
	var b bytes.Buffer
	if err := advice.WriteYAML(&b); err != nil {
		t.Fatal(err)
	}
	set, err := manifest.Read(bytes.NewReader(b.Bytes()), manifest.Stdin)
	if err != nil {
		t.Fatal(err)
	}
	modules := slices.Clone(start.Modules)
	for _, m := range set.Modules {
		modules = append(modules, policy.Module{Name: m.Name, Spec: m.Spec})
	}
	merged, err := policy.Merge(modules, start.Settings)
	if err != nil {
		t.Fatal(err)
	}
	return merged
}

// lowerDecisions lists the security-relevant requests of the log that after decides at a lower
// level than before, or with more stages omitted.
func lowerDecisions(t *testing.T, open func() (io.ReadCloser, error), before, after auditv1.Policy) []string {
	t.Helper()
	evalBefore, err := policy.NewEvaluator(before)
	if err != nil {
		t.Fatal(err)
	}
	evalAfter, err := policy.NewEvaluator(after)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := open()
	if err != nil {
		t.Fatal(err)
	}
	defer lines.Close()
	seen := map[string]bool{}
	var out []string
	sc := bufio.NewScanner(lines)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var ev auditv1.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatal(err)
		}
		if seen[string(ev.AuditID)] {
			continue
		}
		seen[string(ev.AuditID)] = true
		req := policy.RequestFromEvent(&ev)
		if !relevance.Classify(req).Relevant() {
			continue
		}
		b, a := evalBefore.Decide(req), evalAfter.Decide(req)
		if policy.LevelRank(a.Level) < policy.LevelRank(b.Level) || len(a.OmitStages) > len(b.OmitStages) {
			out = append(out, fmt.Sprintf("%s %s %s/%s in %q: %s omitting %v, before %s omitting %v",
				req.User, req.Verb, req.Resource, req.Subresource, req.Namespace, a.Level, a.OmitStages, b.Level, b.OmitStages))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
