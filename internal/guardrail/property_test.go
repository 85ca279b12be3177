package guardrail

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/apiserver/pkg/audit"
	auditpolicy "k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/kaudit/kaudit/internal/policy"
)

// The property test compares the engine with brute force: every request of a finite universe
// that holds every literal of the case, every split of them on "/", prefixes of every path and
// a fresh value per field, evaluated by kube-apiserver's own evaluator.

// chooser is where a case's choices come from: a seeded generator or fuzzer bytes.
type chooser interface{ intn(n int) int }

type randChooser struct{ r *rand.Rand }

func (c randChooser) intn(n int) int { return c.r.IntN(n) }

type byteChooser struct{ data []byte }

func (c *byteChooser) intn(n int) int {
	if len(c.data) == 0 {
		return 0
	}
	b := int(c.data[0])
	c.data = c.data[1:]
	return b % n
}

// Pools the cases draw their literals from: wildcards, resource forms with and without
// subresources, names, cluster scope, URL prefixes that nest.
var (
	poolUsers      = []string{"alice", "bob", "system:apiserver"}
	poolGroups     = []string{"g1", "g2", "system:masters"}
	poolVerbs      = []string{"get", "create", "delete"}
	poolAPIGroups  = []string{"", "apps", "*"}
	poolResources  = []string{"pods", "secrets", "pods/exec", "pods/*", "*/exec", "*", "*/*", "secrets/x", "pods/exec/x", "/*"}
	poolNames      = []string{"n1", "n2"}
	poolNamespaces = []string{"", "ns1", "ns2"}
	poolURLs       = []string{"/a", "/a*", "/a/b", "/ab*", "*", "/*", "/a/*", "/b"}
	poolLevels     = []auditv1.Level{auditv1.LevelNone, auditv1.LevelMetadata, auditv1.LevelRequest, auditv1.LevelRequestResponse}
)

// vocabulary is the part of each pool one case uses: small, so brute force stays small.
type vocabulary struct {
	users, groups, verbs, apiGroups, resources, names, namespaces, urls []string
}

// pickSome returns one value of the pool, or (one time in two) up to most.
func pickSome(c chooser, pool []string, most int) []string {
	n := 1
	if c.intn(2) == 0 {
		n = most
	}
	var out []string
	for range n {
		v := pool[c.intn(len(pool))]
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

func newVocabulary(c chooser) vocabulary {
	return vocabulary{
		users: pickSome(c, poolUsers, 2), groups: pickSome(c, poolGroups, 2), verbs: pickSome(c, poolVerbs, 2),
		apiGroups: pickSome(c, poolAPIGroups, 2), resources: pickSome(c, poolResources, 2), names: pickSome(c, poolNames, 1),
		namespaces: pickSome(c, poolNamespaces, 2), urls: pickSome(c, poolURLs, 4),
	}
}

// some returns none of the values (any) with probability 1/emptyOdds, else one or two.
func some(c chooser, vs []string, emptyOdds int) []string {
	if c.intn(emptyOdds) != 0 {
		return nil
	}
	return pickSome(c, vs, 2)
}

func randomScope(c chooser, v vocabulary) Scope {
	s := Scope{Users: some(c, v.users, 2), UserGroups: some(c, v.groups, 3), Verbs: some(c, v.verbs, 2)}
	switch c.intn(6) {
	case 0, 1, 2:
		for range 1 + c.intn(2) {
			gr := auditv1.GroupResources{Group: v.apiGroups[c.intn(len(v.apiGroups))]}
			if c.intn(5) != 0 {
				gr.Resources = pickSome(c, v.resources, 2)
				if c.intn(4) == 0 {
					gr.ResourceNames = pickSome(c, v.names, 1)
				}
			}
			s.Resources = append(s.Resources, gr)
		}
		s.Namespaces = some(c, v.namespaces, 3)
	case 3:
		s.Namespaces = pickSome(c, v.namespaces, 2)
	case 4:
		s.NonResourceURLs = pickSome(c, v.urls, 2)
	}
	return s
}

func randomStages(c chooser, odds int) []auditv1.Stage {
	if c.intn(odds) != 0 {
		return nil
	}
	var out []auditv1.Stage
	for _, s := range stageBits {
		if c.intn(2) == 0 {
			out = append(out, s)
		}
	}
	return out
}

func randomRule(c chooser, v vocabulary) auditv1.PolicyRule {
	s := randomScope(c, v)
	r := s.rule()
	r.Level = poolLevels[c.intn(len(poolLevels))]
	r.OmitStages = randomStages(c, 4)
	if k := c.intn(4); k < 2 {
		mf := k == 0
		r.OmitManagedFields = &mf
	}
	return r
}

func randomPolicy(c chooser, v vocabulary, rules int) auditv1.Policy {
	p := auditv1.Policy{OmitStages: randomStages(c, 4), OmitManagedFields: c.intn(3) == 0}
	for range rules {
		p.Rules = append(p.Rules, randomRule(c, v))
	}
	return p
}

func randomGuardrail(c chooser, v vocabulary, i int) Guardrail {
	g := Guardrail{Name: fmt.Sprintf("g%d", i), Scope: randomScope(c, v)}
	for range c.intn(3) / 2 {
		g.Except = append(g.Except, randomScope(c, v))
	}
	for g.MinLevel == "" && g.MaxLevel == "" && g.RequiredStages == nil {
		switch c.intn(3) {
		case 0:
			g.MinLevel = poolLevels[1+c.intn(3)]
		case 1:
			g.MaxLevel = poolLevels[c.intn(3)]
		default:
			g.RequiredStages = []auditv1.Stage{stageBits[c.intn(len(stageBits))]}
		}
	}
	return g
}

// propertyCase is one random case: a policy and guardrails for Check, two policies and a
// region for FindWeakening.
type propertyCase struct {
	vocabulary
	policy         auditv1.Policy
	guardrails     []Guardrail
	combined, base auditv1.Policy
	// prefix is set when combined is prefix followed by base's rules, with base's settings:
	// the case of Prepared.FindWeakening.
	prefix []auditv1.PolicyRule
	region Scope
}

func newPropertyCase(c chooser) propertyCase {
	v := newVocabulary(c)
	pc := propertyCase{vocabulary: v, policy: randomPolicy(c, v, 1+c.intn(6))}
	for i := range 1 + c.intn(3) {
		pc.guardrails = append(pc.guardrails, randomGuardrail(c, v, i))
	}
	pc.base = randomPolicy(c, v, 1+c.intn(5))
	if c.intn(2) == 0 {
		// a module placed before the base: the shape FindWeakening is made for
		pc.combined = pc.base
		pc.prefix = randomPolicy(c, v, 1+c.intn(3)).Rules
		pc.combined.Rules = append(slices.Clip(pc.prefix), pc.base.Rules...)
	} else {
		pc.combined = randomPolicy(c, v, 1+c.intn(5))
	}
	pc.region = randomScope(c, v)
	return pc
}

// universe is every request brute force evaluates: each field takes the literals of the case
// and one fresh value. Every rule field compares a request's value with literals for equality
// ("*" being a wildcard), except paths, which are also compared by prefix: so a value that is
// no literal is decided like the fresh one, and a path like the one of its prefixes it extends
// followed by "~" (no literal contains "~"). Resource entries are split on "/" into the literals
// of resource and subresource. Groups take every subset of the group literals: a group no rule
// names changes nothing.
func (v vocabulary) universe(yield func(*authorizer.AttributesRecord)) {
	withFresh := func(vs []string, extra ...string) []string {
		out := append(slices.Clone(vs), extra...)
		slices.Sort(out)
		return slices.Compact(out)
	}
	var segments []string
	for _, r := range v.resources {
		segments = append(segments, strings.Split(r, "/")...)
	}
	var paths []string
	for _, u := range v.urls {
		u = strings.TrimRight(u, "*")
		for i := range len(u) + 1 {
			paths = append(paths, u[:i], u[:i]+"~")
		}
	}
	var groupSets [][]string
	for mask := range 1 << len(v.groups) {
		var set []string
		for i, g := range v.groups {
			if mask&(1<<i) != 0 {
				set = append(set, g)
			}
		}
		groupSets = append(groupSets, set)
	}
	users, verbs, paths := withFresh(v.users, "fresh-user"), withFresh(v.verbs, "fresh-verb"), withFresh(paths, "/~")
	apiGroups, namespaces, names := withFresh(v.apiGroups, "fresh.group"), withFresh(v.namespaces, "fresh-ns"), withFresh(v.names, "fresh-name")
	resources, subresources := withFresh(segments, "fresh-resource"), withFresh(segments, "fresh-sub", "")
	for _, u := range users {
		for _, gs := range groupSets {
			// one record, refilled: the evaluator keeps nothing of it
			r := &authorizer.AttributesRecord{User: &user.DefaultInfo{Name: u, Groups: gs}}
			for _, r.Verb = range verbs {
				r.ResourceRequest, r.APIGroup, r.Resource, r.Subresource, r.Namespace, r.Name = false, "", "", "", "", ""
				for _, r.Path = range paths {
					if strings.HasPrefix(r.Path, "/") {
						yield(r)
					}
				}
				r.ResourceRequest, r.Path = true, ""
				for _, r.APIGroup = range apiGroups {
					for _, r.Resource = range resources {
						for _, r.Subresource = range subresources {
							for _, r.Namespace = range namespaces {
								for _, r.Name = range names {
									yield(r)
								}
							}
						}
					}
				}
			}
		}
	}
}

// oracle is a case's policies and scopes loaded into kube-apiserver's evaluator, used directly
// (brute force needs no rule index).
type oracle struct {
	policy, combined, base audit.PolicyRuleEvaluator
	// rules[i] matches what rule i of policy matches.
	rules []audit.PolicyRuleEvaluator
	// guardrails[i] tells whether a request is in guardrail i's scope and in none of its
	// exceptions; region whether it is in the region.
	guardrails []func(authorizer.Attributes) bool
	region     func(authorizer.Attributes) bool
}

// newOracle loads the case; it fails when kube-apiserver's loader refuses a policy or scope
// (random scopes may, for example, mix resources and non-resource URLs).
func newOracle(pc *propertyCase) (*oracle, error) {
	o := &oracle{}
	var err error
	if o.policy, o.rules, err = evaluators(pc.policy); err != nil {
		return nil, err
	}
	if o.combined, _, err = evaluators(pc.combined); err != nil {
		return nil, err
	}
	if o.base, _, err = evaluators(pc.base); err != nil {
		return nil, err
	}
	// every scope is a rule of one policy, loaded once: loading dominates small cases
	var scopes auditv1.Policy
	add := func(s Scope) int {
		scopes.Rules = append(scopes.Rules, s.rule())
		return len(scopes.Rules) - 1
	}
	type member struct {
		scope   int
		excepts []int
	}
	var members []member
	for _, g := range append(slices.Clone(pc.guardrails), Guardrail{Scope: pc.region}) {
		m := member{scope: add(g.Scope)}
		for _, e := range g.Except {
			m.excepts = append(m.excepts, add(e))
		}
		members = append(members, m)
	}
	_, matches, err := evaluators(scopes)
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		in := func(a authorizer.Attributes) bool {
			if matches[m.scope].EvaluatePolicyRule(a).Level == auditinternal.LevelNone {
				return false
			}
			for _, e := range m.excepts {
				if matches[e].EvaluatePolicyRule(a).Level != auditinternal.LevelNone {
					return false
				}
			}
			return true
		}
		o.guardrails = append(o.guardrails, in)
	}
	o.region, o.guardrails = o.guardrails[len(o.guardrails)-1], o.guardrails[:len(o.guardrails)-1]
	return o, nil
}

// evaluators loads a policy and returns its evaluator and, for each rule, an evaluator that
// answers Metadata exactly when the rule matches.
func evaluators(p auditv1.Policy) (audit.PolicyRuleEvaluator, []audit.PolicyRuleEvaluator, error) {
	data, err := policyJSON(p)
	if err != nil {
		return nil, nil, err
	}
	loaded, err := policy.Load(data)
	if err != nil {
		return nil, nil, err
	}
	var rules []audit.PolicyRuleEvaluator
	for _, r := range loaded.Rules {
		r.Level, r.OmitStages = auditinternal.LevelMetadata, nil
		rules = append(rules, auditpolicy.NewPolicyRuleEvaluator(&auditinternal.Policy{Rules: []auditinternal.PolicyRule{r}}))
	}
	return auditpolicy.NewPolicyRuleEvaluator(loaded), rules, nil
}

// decidingRule is the index of the first rule of the policy that matches, len(rules) if none.
func (o *oracle) decidingRule(attrs authorizer.Attributes) int {
	for i, r := range o.rules {
		if r.EvaluatePolicyRule(attrs).Level != auditinternal.LevelNone {
			return i
		}
	}
	return len(o.rules)
}

// rank, omitted, breaks and logsLess restate the bounds from the evaluator's own output.
func rank(l auditinternal.Level) int {
	return slices.Index([]auditinternal.Level{auditinternal.LevelNone, auditinternal.LevelMetadata, auditinternal.LevelRequest, auditinternal.LevelRequestResponse}, l)
}

func omitted(cfg audit.RequestAuditConfig, s auditv1.Stage) bool {
	return slices.Contains(cfg.OmitStages, auditinternal.Stage(s))
}

func breaks(g Guardrail, cfg audit.RequestAuditConfig) bool {
	if g.MinLevel != "" && rank(cfg.Level) < rank(auditinternal.Level(g.MinLevel)) {
		return true
	}
	if g.MaxLevel != "" && rank(cfg.Level) > rank(auditinternal.Level(g.MaxLevel)) {
		return true
	}
	for _, s := range g.RequiredStages {
		if cfg.Level == auditinternal.LevelNone || omitted(cfg, s) {
			return true
		}
	}
	return false
}

func logsLess(c, b audit.RequestAuditConfig) bool {
	if rank(c.Level) < rank(b.Level) {
		return true
	}
	if b.Level == auditinternal.LevelNone {
		return false
	}
	for _, s := range stageBits {
		if omitted(c, s) && !omitted(b, s) {
			return true
		}
	}
	return rank(b.Level) >= rank(auditinternal.LevelRequest) && c.OmitManagedFields && !b.OmitManagedFields
}

// bruteForce answers what Check and FindWeakening answer, by evaluating every request.
type bruteForce struct {
	// violated[i] is the first rule (len(rules) for none) deciding a request that breaks
	// guardrail i, or -1.
	violated []int
	// weakened tells whether some request of the region is logged less by combined.
	weakened bool
}

func (pc *propertyCase) bruteForce(o *oracle) bruteForce {
	out := bruteForce{violated: make([]int, len(pc.guardrails))}
	for i := range out.violated {
		out.violated[i] = -1
	}
	pc.universe(func(attrs *authorizer.AttributesRecord) {
		cfg := o.policy.EvaluatePolicyRule(attrs)
		for i, g := range pc.guardrails {
			if breaks(g, cfg) && o.guardrails[i](attrs) {
				rule := o.decidingRule(attrs)
				if out.violated[i] < 0 || rule < out.violated[i] {
					out.violated[i] = rule
				}
			}
		}
		if !out.weakened && logsLess(o.combined.EvaluatePolicyRule(attrs), o.base.EvaluatePolicyRule(attrs)) && o.region(attrs) {
			out.weakened = true
		}
	})
	return out
}

// checkAgainstBruteForce runs the engine on a case and fails the test where it disagrees with
// brute force.
func checkAgainstBruteForce(t testing.TB, pc propertyCase, o *oracle) {
	t.Helper()
	want := pc.bruteForce(o)
	violations, err := Check(pc.policy, pc.guardrails)
	if err != nil {
		t.Fatalf("Check: %v\n%s", err, pc)
	}
	got := map[string]Violation{}
	for _, v := range violations {
		got[v.Guardrail] = v
	}
	for i, g := range pc.guardrails {
		v, ok := got[g.Name]
		if ok != (want.violated[i] >= 0) {
			t.Fatalf("guardrail %s: engine says violated=%v (%+v), brute force %v\n%s", g.Name, ok, v, want.violated[i] >= 0, pc)
		}
		if !ok {
			continue
		}
		rule := v.Decision.Rule
		if rule < 0 {
			rule = len(pc.policy.Rules)
		}
		if rule != want.violated[i] {
			t.Fatalf("guardrail %s: engine's witness %+v is decided by rule %d, brute force finds rule %d first\n%s", g.Name, v.Request, rule, want.violated[i], pc)
		}
		attrs := v.Request.Attributes()
		if !o.guardrails[i](attrs) || !breaks(g, o.policy.EvaluatePolicyRule(attrs)) {
			t.Fatalf("guardrail %s: witness %+v is not a violation\n%s", g.Name, v.Request, pc)
		}
	}
	w, err := FindWeakening(pc.combined, pc.base, pc.region)
	if err != nil {
		t.Fatalf("FindWeakening: %v\n%s", err, pc)
	}
	if (w != nil) != want.weakened {
		t.Fatalf("weakening: engine found %+v, brute force says %v\n%s", w, want.weakened, pc)
	}
	if w != nil {
		attrs := w.Request.Attributes()
		if !o.region(attrs) || !logsLess(o.combined.EvaluatePolicyRule(attrs), o.base.EvaluatePolicyRule(attrs)) {
			t.Fatalf("weakening witness %+v is not weakened\n%s", w.Request, pc)
		}
	}
	checkPrepared(t, pc, o, violations, w)
}

// checkPrepared holds Prepared to what Check and FindWeakening answered on the same case: the
// same violations, and a weakening exactly when FindWeakening finds one, decided by the same
// rules. One Prepared answers after serving other calls, as the manager's does, and must answer
// as a fresh one.
func checkPrepared(t testing.TB, pc propertyCase, o *oracle, violations []Violation, w *Weakening) {
	t.Helper()
	prepared := Prepare(pc.policy)
	got, err := prepared.Check(pc.guardrails)
	if err != nil {
		t.Fatalf("Prepared.Check: %v\n%s", err, pc)
	}
	if !reflect.DeepEqual(got, violations) {
		t.Fatalf("Prepared.Check answers %+v, Check %+v\n%s", got, violations, pc)
	}
	if pc.prefix == nil {
		return
	}
	base := Prepare(pc.base)
	// other modules first: what they add to the literals must not change the answer
	for _, other := range [][]auditv1.PolicyRule{pc.policy.Rules, pc.combined.Rules} {
		if _, err := base.FindWeakening(other, pc.region); err != nil {
			t.Fatalf("Prepared.FindWeakening of other rules: %v\n%s", err, pc)
		}
	}
	pw, err := base.FindWeakening(pc.prefix, pc.region)
	if err != nil {
		t.Fatalf("Prepared.FindWeakening: %v\n%s", err, pc)
	}
	if (pw != nil) != (w != nil) {
		t.Fatalf("weakening: Prepared.FindWeakening found %+v, FindWeakening %+v\n%s", pw, w, pc)
	}
	if pw == nil {
		return
	}
	if pw.Combined.Rule != w.Combined.Rule || pw.Base.Rule != w.Base.Rule {
		t.Fatalf("weakening: Prepared.FindWeakening's witness %+v is decided by rules %d and %d, FindWeakening's %+v by %d and %d\n%s",
			pw.Request, pw.Combined.Rule, pw.Base.Rule, w.Request, w.Combined.Rule, w.Base.Rule, pc)
	}
	attrs := pw.Request.Attributes()
	if !o.region(attrs) || !logsLess(o.combined.EvaluatePolicyRule(attrs), o.base.EvaluatePolicyRule(attrs)) {
		t.Fatalf("Prepared.FindWeakening's witness %+v is not weakened\n%s", pw.Request, pc)
	}
	fresh, err := Prepare(pc.base).FindWeakening(pc.prefix, pc.region)
	if err != nil || !reflect.DeepEqual(fresh, pw) {
		t.Fatalf("a fresh Prepared answers %+v (%v), one that served other calls %+v\n%s", fresh, err, pw, pc)
	}
	again, err := base.Check(pc.guardrails)
	if want, wantErr := Prepare(pc.base).Check(pc.guardrails); err != nil || wantErr != nil || !reflect.DeepEqual(again, want) {
		t.Fatalf("Check of a Prepared that served other calls answers %+v (%v), a fresh one %+v (%v)\n%s", again, err, want, wantErr, pc)
	}
}

func (pc propertyCase) String() string {
	var b strings.Builder
	for _, p := range []struct {
		name string
		p    auditv1.Policy
	}{{"policy", pc.policy}, {"combined", pc.combined}, {"base", pc.base}} {
		data, _ := policyJSON(p.p)
		fmt.Fprintf(&b, "%s: %s\n", p.name, data)
	}
	for _, g := range pc.guardrails {
		fmt.Fprintf(&b, "guardrail: %+v\n", g)
	}
	fmt.Fprintf(&b, "region: %+v\n", pc.region)
	return b.String()
}

// TestEngineAgreesWithBruteForce is the property test: on random small cases, the engine's
// verdicts (per guardrail; weakening or not) equal brute force's, its witness for a guardrail is
// decided by the earliest rule that decides any violation, and every witness really violates.
func TestEngineAgreesWithBruteForce(t *testing.T) {
	cases := 3000
	if testing.Short() || raceDetector {
		cases = 300
	}
	start := time.Now()
	checked, requests := 0, 0
	for seed := range cases {
		pc := newPropertyCase(randChooser{rand.New(rand.NewPCG(uint64(seed), 16))})
		o, err := newOracle(&pc)
		if err != nil {
			continue
		}
		checked++
		pc.universe(func(*authorizer.AttributesRecord) { requests++ })
		checkAgainstBruteForce(t, pc, o)
	}
	t.Logf("%d cases checked (of %d generated, %d requests each on average) in %v", checked, cases, requests/max(checked, 1), time.Since(start))
}

// FuzzEngineAgreesWithBruteForce is the property test with the fuzzer's choices.
func FuzzEngineAgreesWithBruteForce(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte("secrets are never logged with bodies, says the guardrail"))
	f.Add([]byte{255, 254, 3, 3, 0, 0, 1, 7, 7, 2, 9, 4, 4, 4, 1, 0, 2, 5, 6, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		pc := newPropertyCase(&byteChooser{data: data})
		o, err := newOracle(&pc)
		if err != nil {
			t.Skipf("the loader refuses this case: %v", err)
		}
		checkAgainstBruteForce(t, pc, o)
	})
}

func policyJSON(p auditv1.Policy) ([]byte, error) {
	p.APIVersion, p.Kind = auditv1.SchemeGroupVersion.String(), "Policy"
	return json.Marshal(p)
}
