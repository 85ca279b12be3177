package advise

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/guardrail"
	"github.com/kaudit/kaudit/internal/manifest"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/simulate"
)

// startModules: Secrets, ConfigMaps and the other credentials at Metadata first, system:masters at RequestResponse,
// the core and apps groups at RequestResponse, everything else at Metadata.
const startModules = `
apiVersion: audit.kaudit.io/v1alpha1
kind: AuditPolicyModule
metadata: {name: secrets}
spec:
  order: 100
  rules:
  - level: Metadata
    resources:
    - {group: "", resources: [secrets, configmaps, serviceaccounts/token]}
    - {group: authentication.k8s.io, resources: [tokenreviews]}
    - {group: certificates.k8s.io, resources: [certificatesigningrequests/*, podcertificaterequests/*]}
---
apiVersion: audit.kaudit.io/v1alpha1
kind: AuditPolicyModule
metadata: {name: masters}
spec:
  order: 300
  rules:
  - level: RequestResponse
    userGroups: [system:masters]
---
apiVersion: audit.kaudit.io/v1alpha1
kind: AuditPolicyModule
metadata: {name: bodies}
spec:
  order: 500
  rules:
  - level: RequestResponse
    resources: [{group: ""}, {group: apps}]
---
apiVersion: audit.kaudit.io/v1alpha1
kind: AuditPolicy
metadata: {name: cluster}
spec:
  defaultLevel: Metadata
  omitStages: [RequestReceived]
`

var (
	people  = []string{"dev", "system:authenticated"}
	masters = []string{"system:masters", "system:authenticated"}
	nodes   = []string{"system:nodes", "system:authenticated"}
)

// request is one request of a generated log: it is written as a RequestReceived and a
// ResponseComplete event at RequestResponse.
type request struct {
	user        string
	groups      []string
	verb        string
	group       string
	resource    string
	subresource string
	namespace   string
	// requestBody and responseBody are the sizes of the bodies (0: none).
	requestBody, responseBody int
}

func (r request) times(n int) []request {
	out := make([]request, n)
	for i := range out {
		out[i] = r
	}
	return out
}

// shopLog: alice lists pods and creates deployments, an admin lists pods, a kubelet reads a
// Secret and patches its node's status, the scheduler reads pods.
func shopLog() []request {
	return slices.Concat(
		request{user: "alice", groups: people, verb: "list", resource: "pods", namespace: "shop", responseBody: 3000}.times(20),
		request{user: "alice", groups: people, verb: "create", group: "apps", resource: "deployments", namespace: "shop", requestBody: 800, responseBody: 1200}.times(2),
		request{user: "admin", groups: masters, verb: "list", resource: "pods", namespace: "shop", responseBody: 3000}.times(5),
		request{user: "system:node:n1", groups: nodes, verb: "get", resource: "secrets", namespace: "shop", responseBody: 500}.times(5),
		request{user: "system:node:n1", groups: nodes, verb: "patch", resource: "nodes", subresource: "status", requestBody: 2000, responseBody: 4000}.times(20),
		request{user: "system:kube-scheduler", groups: []string{"system:authenticated"}, verb: "watch", resource: "pods"}.times(3),
	)
}

// logOf writes the requests as an audit log, two events each.
func logOf(t *testing.T, reqs []request) simulate.Input {
	t.Helper()
	var b bytes.Buffer
	at := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for i, r := range reqs {
		uri := "/api/v1/"
		if r.group != "" {
			uri = "/apis/" + r.group + "/v1/"
		}
		if r.namespace != "" {
			uri += "namespaces/" + r.namespace + "/"
		}
		uri += r.resource
		ev := auditv1.Event{
			TypeMeta: metav1.TypeMeta{Kind: "Event", APIVersion: "audit.k8s.io/v1"},
			Level:    auditv1.LevelRequestResponse, AuditID: types.UID(fmt.Sprint("id-", i)), RequestURI: uri, Verb: r.verb,
			ObjectRef: &auditv1.ObjectReference{APIGroup: r.group, APIVersion: "v1", Resource: r.resource, Subresource: r.subresource, Namespace: r.namespace},
		}
		ev.User.Username, ev.User.Groups = r.user, r.groups
		for _, stage := range []auditv1.Stage{auditv1.StageRequestReceived, auditv1.StageResponseComplete} {
			e := ev
			e.Stage = stage
			e.StageTimestamp = metav1.NewMicroTime(at.Add(time.Duration(i) * time.Second))
			e.RequestReceivedTimestamp = e.StageTimestamp
			if r.requestBody > 0 {
				e.RequestObject = body(r.requestBody)
			}
			if stage == auditv1.StageResponseComplete && r.responseBody > 0 {
				e.ResponseObject = body(r.responseBody)
			}
			line, err := json.Marshal(e)
			if err != nil {
				t.Fatal(err)
			}
			b.Write(line)
			b.WriteByte('\n')
		}
	}
	data := b.Bytes()
	return simulate.Input{Name: "generated", Open: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil }}
}

func body(n int) *runtime.Unknown {
	return &runtime.Unknown{Raw: []byte(`{"pad":"` + strings.Repeat("x", n) + `"}`)}
}

// start reads modules as render does.
func start(t *testing.T, yaml string) Start {
	t.Helper()
	set, err := manifest.Read(strings.NewReader(yaml), manifest.Stdin)
	if err != nil {
		t.Fatal(err)
	}
	s := Start{Name: "start"}
	for _, m := range set.Modules {
		s.Modules = append(s.Modules, policy.Module{Name: m.Name, Spec: m.Spec})
	}
	if set.Policy != nil {
		s.Settings = policy.SettingsFrom(set.Policy.Spec)
	}
	return s
}

func run(t *testing.T, opts Options, reqs []request) *Advice {
	t.Helper()
	if opts.Guardrails == nil {
		opts.Guardrails = guardrail.Builtins()
	}
	advice, err := Run(context.Background(), []simulate.Input{logOf(t, reqs)}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return advice
}

// decider merges the start with the advice's manifests as written, read back as render reads them.
func decider(t *testing.T, s Start, advice *Advice) *policy.Evaluator {
	t.Helper()
	var b bytes.Buffer
	if err := advice.WriteYAML(&b); err != nil {
		t.Fatal(err)
	}
	set, err := manifest.Read(bytes.NewReader(b.Bytes()), manifest.Stdin)
	if err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	modules := slices.Clone(s.Modules)
	for _, m := range set.Modules {
		modules = append(modules, policy.Module{Name: m.Name, Spec: m.Spec})
	}
	merged, err := policy.Merge(modules, s.Settings)
	if err != nil {
		t.Fatal(err)
	}
	eval, err := policy.NewEvaluator(merged.Policy)
	if err != nil {
		t.Fatal(err)
	}
	return eval
}

func (r request) policyRequest() policy.Request {
	return policy.Request{User: r.user, Groups: r.groups, Verb: r.verb, ResourceRequest: true, APIGroup: r.group,
		APIVersion: "v1", Resource: r.resource, Subresource: r.subresource, Namespace: r.namespace}
}

// rules lists the suggested rules.
func rules(a *Advice) []v1alpha1.PolicyRule {
	var out []v1alpha1.PolicyRule
	for _, m := range a.Modules {
		out = append(out, m.Manifest.Spec.Rules...)
	}
	return out
}

func TestDropsReadsKeepsWritesAtMetadataAndLeavesSecurityRelevantRequestsAlone(t *testing.T) {
	s := start(t, startModules)
	log := shopLog()
	advice := run(t, Options{Start: s}, log)
	eval := decider(t, s, advice)
	for _, tc := range []struct {
		req  request
		want auditv1.Level
	}{
		{log[0], auditv1.LevelNone},             // alice's list: a read by a person
		{log[20], auditv1.LevelRequestResponse}, // alice's create of a deployment (R5)
		{log[22], auditv1.LevelRequestResponse}, // the admin's list (R4), as before
		{log[27], auditv1.LevelMetadata},        // the kubelet's Secret read (R2), as before
		{log[32], auditv1.LevelMetadata},        // the kubelet's status patch: a write keeps Metadata
		{log[len(log)-1], auditv1.LevelNone},    // the scheduler's watch
	} {
		if got := eval.Decide(tc.req.policyRequest()).Level; got != tc.want {
			t.Errorf("%s %s %s: %s, want %s", tc.req.user, tc.req.verb, tc.req.resource, got, tc.want)
		}
	}
	sum := advice.Summary
	if sum.BytesAfter >= sum.BytesBefore || sum.WrittenAfter >= sum.WrittenBefore {
		t.Errorf("summary %+v: nothing saved", sum)
	}
	for _, r := range sum.Security {
		if r.After != r.Before {
			t.Errorf("%s: %d kept after, %d before", r.Rule, r.After, r.Before)
		}
	}
	var saved int64
	for _, m := range advice.Modules {
		if m.Manifest.Spec.Order <= 300 {
			t.Errorf("module %s at order %d: before the starting module masters (300), which must decide first", m.Manifest.Name, m.Manifest.Spec.Order)
		}
		for _, r := range m.Rules {
			saved += r.BytesSaved
		}
	}
	if saved != sum.BytesBefore-sum.BytesAfter {
		t.Errorf("the rules save %d bytes together, simulate %d", saved, sum.BytesBefore-sum.BytesAfter)
	}
}

func TestDropWritesDropsComponentsWrites(t *testing.T) {
	s := start(t, startModules)
	log := shopLog()
	eval := decider(t, s, run(t, Options{Start: s, DropWrites: true}, log))
	if got := eval.Decide(log[32].policyRequest()).Level; got != auditv1.LevelNone {
		t.Errorf("the kubelet's status patch: %s, want None", got)
	}
	if got := eval.Decide(log[20].policyRequest()).Level; got != auditv1.LevelRequestResponse {
		t.Errorf("alice's create (R5): %s, want RequestResponse as before", got)
	}
}

// A custom guardrail that the starting policy keeps holds on the result, for every request.
func TestSuggestionsKeepTheGuardrails(t *testing.T) {
	s := start(t, startModules)
	log := shopLog()
	podReads := guardrail.Guardrail{Name: "pod-reads-logged", Scope: guardrail.Scope{Verbs: []string{"get", "list", "watch"},
		Resources: []auditv1.GroupResources{{Resources: []string{"pods"}}}}, MinLevel: auditv1.LevelMetadata}
	advice := run(t, Options{Start: s, Guardrails: append(guardrail.Builtins(), podReads)}, log)
	eval := decider(t, s, advice)
	if got := eval.Decide(log[0].policyRequest()).Level; got != auditv1.LevelMetadata {
		t.Errorf("alice's list of pods: %s, want Metadata (the guardrail forbids None, Metadata saves the body)", got)
	}
	if len(advice.BrokenByStart) != 0 {
		t.Errorf("broken by the start: %v", advice.BrokenByStart)
	}
}

// A guardrail the starting policy breaks somewhere is not broken for more requests of the logs.
func TestSuggestionsDoNotBreakABrokenGuardrailFurther(t *testing.T) {
	s := start(t, startModules)
	log := shopLog()
	// Jobs are at Metadata in the start: broken; pods are at RequestResponse, within bounds.
	bodies := guardrail.Guardrail{Name: "pod-and-job-bodies", Scope: guardrail.Scope{Resources: []auditv1.GroupResources{
		{Resources: []string{"pods"}}, {Group: "batch", Resources: []string{"jobs"}}}}, MinLevel: auditv1.LevelRequest}
	advice := run(t, Options{Start: s, Guardrails: append(guardrail.Builtins(), bodies)}, log)
	if !slices.Equal(advice.BrokenByStart, []string{bodies.Name}) {
		t.Errorf("broken by the start: %v", advice.BrokenByStart)
	}
	eval := decider(t, s, advice)
	if got := eval.Decide(log[0].policyRequest()).Level; got != auditv1.LevelRequestResponse {
		t.Errorf("alice's list of pods: %s, want RequestResponse as before", got)
	}
}

// A None rule that would have to come before the module keeping system:masters would drop
// requests of that group (a certificate can carry any user name with it): guardrail.Check takes
// it out, and Metadata (which system-masters-logged allows) is suggested instead.
func TestARuleAheadOfSystemMastersIsTakenOut(t *testing.T) {
	early := startModules + `
---
apiVersion: audit.kaudit.io/v1alpha1
kind: AuditPolicyModule
metadata: {name: pods-first}
spec:
  order: 10
  rules:
  - level: RequestResponse
    resources: [{group: "", resources: [pods]}]
`
	s := start(t, early)
	log := shopLog()
	advice := run(t, Options{Start: s}, log)
	for _, r := range rules(advice) {
		for _, gr := range r.Resources {
			if slices.Contains(gr.Resources, "pods") && r.Level == v1alpha1.LevelNone {
				t.Errorf("suggested %+v: it comes before masters (300) and drops system:masters' pod reads", r)
			}
		}
	}
	eval := decider(t, s, advice)
	forged := log[0]
	forged.groups = masters
	if got := eval.Decide(forged.policyRequest()).Level; got == auditv1.LevelNone {
		t.Errorf("alice in system:masters listing pods: dropped")
	}
	if got := eval.Decide(log[0].policyRequest()).Level; got != auditv1.LevelMetadata {
		t.Errorf("alice's list of pods: %s, want Metadata", got)
	}
	if got := eval.Decide(log[32].policyRequest()).Level; got != auditv1.LevelMetadata {
		t.Errorf("the kubelet's status patch: %s, want Metadata", got)
	}
}

func TestTheSameLogsGiveTheSameAdvice(t *testing.T) {
	s := start(t, startModules)
	var outs []string
	for _, workers := range []int{1, 3} {
		var b bytes.Buffer
		if err := run(t, Options{Start: s, Workers: workers}, shopLog()).WriteYAML(&b); err != nil {
			t.Fatal(err)
		}
		outs = append(outs, b.String())
	}
	if outs[0] != outs[1] {
		t.Errorf("one worker:\n%s\nthree:\n%s", outs[0], outs[1])
	}
}

func TestMaxRulesKeepsThoseThatSaveMost(t *testing.T) {
	s := start(t, startModules)
	all := run(t, Options{Start: s}, shopLog())
	one := run(t, Options{Start: s, MaxRules: 1}, shopLog())
	if n := len(rules(all)); n < 2 {
		t.Fatalf("%d rules without a limit: the limit is not tested", n)
	}
	if n := len(rules(one)); n != 1 {
		t.Fatalf("%d rules, want 1", n)
	}
	var best int64
	for _, m := range all.Modules {
		for _, r := range m.Rules {
			best = max(best, r.BytesSaved)
		}
	}
	if got := one.Modules[0].Rules[0].BytesSaved; got != best {
		t.Errorf("the one rule saves %d bytes; the best saves %d", got, best)
	}
}

func TestUnreadableOrEmptyLogsAreRefused(t *testing.T) {
	s := start(t, startModules)
	missing := simulate.Input{Name: "missing", Open: func() (io.ReadCloser, error) { return nil, fmt.Errorf("no such file") }}
	empty := simulate.Input{Name: "empty", Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("")), nil }}
	for _, in := range []simulate.Input{missing, empty} {
		_, err := Run(context.Background(), []simulate.Input{logOf(t, shopLog()), in}, Options{Start: s, Guardrails: guardrail.Builtins()})
		if in.Name == "missing" && (err == nil || !strings.Contains(err.Error(), "missing")) {
			t.Errorf("a missing input: %v", err)
		}
		if _, err := Run(context.Background(), []simulate.Input{empty}, Options{Start: s, Guardrails: guardrail.Builtins()}); err == nil {
			t.Errorf("no event: no error")
		}
	}
}

func TestTooManyDistinctRequestsAreRefused(t *testing.T) {
	s := start(t, startModules)
	_, err := Run(context.Background(), []simulate.Input{logOf(t, shopLog())}, Options{Start: s, Guardrails: guardrail.Builtins(), MaxRequests: 3})
	if err == nil || !strings.Contains(err.Error(), "more than 3 distinct requests") {
		t.Errorf("error %v", err)
	}
}
