// Package lint reviews a merged audit policy: rules that can never decide a request, secrets
// logged with bodies, rules that blind the audit log for system:masters, volume traps, typos.
//
// Reachability is decided by kube-apiserver's own evaluator (through internal/policy), never by
// re-describing its matching: for each rule, lint builds witness requests from the rule's own
// values (every listed user, group, verb, resource, namespace and name, and a fresh value for
// each field the rule leaves open) and asks which rule of the whole policy decides them.
package lint

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/internal/policy"
)

// Severity of a finding.
type Severity string

// Severities, most severe first.
const (
	Error   Severity = "error"
	Warning Severity = "warning"
	Info    Severity = "info"
)

func (s Severity) rank() int {
	switch s {
	case Error:
		return 0
	case Warning:
		return 1
	}
	return 2
}

// Finding is one problem.
type Finding struct {
	Severity Severity `json:"severity"`
	// Check names the check, e.g. "shadowed-rule".
	Check string `json:"check"`
	// Module and Rule locate the problem; Module is empty and Rule -1 for the policy as a whole.
	Module string `json:"module,omitempty"`
	Rule   int    `json:"rule"`
	// PolicyRule is the index of the rule in the merged policy, -1 if none.
	PolicyRule int    `json:"policyRule"`
	Message    string `json:"message"`
	Fix        string `json:"fix"`
}

// Where names the finding's place for a person.
func (f Finding) Where() string {
	switch {
	case f.Module != "" && f.Rule >= 0:
		return fmt.Sprintf("module %s rule %d", f.Module, f.Rule)
	case f.Module != "":
		return "module " + f.Module
	case f.PolicyRule >= 0:
		return "default rule"
	}
	return "policy"
}

// Options extends what lint knows.
type Options struct {
	// Resources adds "group/resource" entries (custom resources, from discovery) to the known ones.
	Resources []string
}

// maxWitnesses bounds the requests built per rule; rules with more combinations are checked on
// a prefix of them (a finding then still holds, a missing one is not a proof).
const maxWitnesses = 4096

// fresh values stand for "anything the rule leaves open": no rule of a real policy names them.
const (
	freshUser     = "kaudit:lint:user"
	freshName     = "kaudit-lint-name"
	freshNS       = "kaudit-lint-namespace"
	freshGroup    = "kaudit-lint.example.com"
	freshResource = "kauditlintprobes"
	freshSub      = "kauditlintsub"
	freshPath     = "/kaudit-lint-path"
	freshVerb     = "kaudit-lint-verb"
	masters       = "system:masters"
)

type linter struct {
	m     *policy.Merged
	eval  *policy.Evaluator
	opts  Options
	known map[string]map[string]bool
	out   []Finding
	// reachable[i] tells whether rule i decides any request.
	reachable []bool
}

// Lint reviews a merged policy.
func Lint(m *policy.Merged, opts Options) ([]Finding, error) {
	eval, err := policy.NewEvaluator(m.Policy)
	if err != nil {
		return nil, err
	}
	l := &linter{m: m, eval: eval, opts: opts, known: map[string]map[string]bool{}}
	for g, rs := range builtinResources {
		for _, r := range rs {
			l.addKnown(g, r)
		}
	}
	for _, gr := range opts.Resources {
		g, r, ok := strings.Cut(gr, "/")
		if !ok {
			g, r = "", gr
		}
		l.addKnown(g, r)
		if sub := strings.SplitN(r, "/", 2); len(sub) == 2 {
			l.addKnown(g, sub[0])
		}
	}
	l.reachable = make([]bool, len(m.Policy.Rules))
	for i := range m.Policy.Rules {
		l.reachable[i] = l.checkReachable(i)
	}
	for i, r := range m.Policy.Rules {
		l.checkNames(i, r)
		if !l.reachable[i] {
			continue
		}
		l.checkSecrets(i, r)
		l.checkBlinds(i, r)
		l.checkVolume(i, r)
		if err := l.checkRedundant(i); err != nil {
			return nil, err
		}
	}
	l.checkCatchAll()
	l.checkRequestReceived()
	slices.SortStableFunc(l.out, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(order(a), order(b)), cmp.Compare(a.Severity.rank(), b.Severity.rank()), cmp.Compare(a.Check, b.Check))
	})
	return l.out, nil
}

// order puts findings in policy order, those about the whole policy last.
func order(f Finding) int {
	if f.PolicyRule < 0 {
		return 1 << 30
	}
	return f.PolicyRule
}

// FromError turns a merge or validation error into findings, so a policy the apiserver would
// reject is reported like any other problem.
func FromError(err error) []Finding {
	var me *policy.ModuleError
	if errors.As(err, &me) {
		var out []Finding
		for _, p := range me.Problems {
			msg := p.Detail
			if p.Field != "" {
				msg = p.Field + ": " + p.Detail
			}
			out = append(out, Finding{Severity: Error, Check: "invalid", Module: me.Module, Rule: p.Rule, PolicyRule: -1,
				Message: "kube-apiserver would reject this: " + msg, Fix: "correct the field; until then the controller keeps the module's last accepted spec"})
		}
		return out
	}
	return []Finding{{Severity: Error, Check: "invalid", Rule: -1, PolicyRule: -1, Message: err.Error(), Fix: "correct the input"}}
}

func (l *linter) addKnown(group, resource string) {
	if l.known[group] == nil {
		l.known[group] = map[string]bool{}
	}
	l.known[group][resource] = true
}

func (l *linter) add(i int, sev Severity, check, msg, fix string) {
	f := Finding{Severity: sev, Check: check, Rule: -1, PolicyRule: i, Message: msg, Fix: fix}
	if i >= 0 && i < len(l.m.Sources) && !l.m.Sources[i].IsDefault() {
		f.Module, f.Rule = l.m.Sources[i].Module, l.m.Sources[i].Rule
	}
	l.out = append(l.out, f)
}

func (l *linter) label(i int) string {
	if i < 0 {
		return "no rule"
	}
	if l.m.Sources[i].IsDefault() {
		return "the default rule"
	}
	return fmt.Sprintf("module %s rule %d", l.m.Sources[i].Module, l.m.Sources[i].Rule)
}

// target is what a witness request asks for.
type target struct {
	resource                   bool
	group, res, sub, name, url string
	ns                         string
}

// shape overrides parts of the witnesses of a rule.
type shape struct {
	verbs   []string // instead of the rule's verbs (only those the rule matches are kept)
	targets []target // instead of the rule's resources
	groups  []string // added to every witness's groups
}

// witnesses builds requests that the rule matches, from its own values and fresh ones.
func witnesses(r auditv1.PolicyRule, s shape) []policy.Request {
	users := r.Users
	if len(users) == 0 {
		users = []string{freshUser}
	}
	groupSets := [][]string{nil}
	if len(r.UserGroups) > 0 {
		groupSets = nil
		for _, g := range r.UserGroups {
			groupSets = append(groupSets, []string{g})
		}
	}
	verbs := r.Verbs
	if len(verbs) == 0 {
		verbs = []string{freshVerb}
	}
	if s.verbs != nil {
		verbs = s.verbs
	}
	targets := s.targets
	if targets == nil {
		targets = ruleTargets(r)
	}
	var out []policy.Request
	for _, u := range users {
		for _, gs := range groupSets {
			groups := append(slices.Clone(gs), s.groups...)
			for _, v := range verbs {
				for _, t := range targets {
					req := policy.Request{User: u, Groups: groups, Verb: v, ResourceRequest: t.resource, Path: t.url,
						APIGroup: t.group, Resource: t.res, Subresource: t.sub, Name: t.name, Namespace: t.ns}
					out = append(out, req)
					if len(out) >= maxWitnesses {
						return out
					}
				}
			}
		}
	}
	return out
}

func ruleTargets(r auditv1.PolicyRule) []target {
	namespaces := r.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{freshNS}
	}
	var out []target
	switch {
	case len(r.NonResourceURLs) > 0:
		for _, u := range r.NonResourceURLs {
			switch {
			case u == "*":
				out = append(out, target{url: freshPath})
			case strings.HasSuffix(u, "*"):
				out = append(out, target{url: strings.TrimRight(u, "*") + "kaudit-lint"})
			default:
				out = append(out, target{url: u})
			}
		}
	case len(r.Resources) > 0 || len(r.Namespaces) > 0:
		resources := r.Resources
		if len(resources) == 0 {
			resources = []auditv1.GroupResources{{Group: "*"}}
		}
		for _, gr := range resources {
			group := gr.Group
			if group == "*" {
				group = freshGroup
			}
			names := gr.ResourceNames
			if len(names) == 0 {
				names = []string{freshName}
			}
			specs := gr.Resources
			if len(specs) == 0 {
				specs = []string{"*"}
			}
			for _, spec := range specs {
				res, sub := resourceOf(spec)
				for _, name := range names {
					for _, ns := range namespaces {
						out = append(out, target{resource: true, group: group, res: res, sub: sub, name: name, ns: ns})
					}
				}
			}
		}
	default:
		out = append(out, target{resource: true, group: freshGroup, res: freshResource, name: freshName, ns: freshNS}, target{url: freshPath})
	}
	return out
}

// resourceOf picks a resource and subresource that a resource pattern matches.
func resourceOf(spec string) (string, string) {
	res, sub, _ := strings.Cut(spec, "/")
	if res == "*" {
		res = freshResource
	}
	if sub == "*" {
		sub = freshSub
	}
	return res, sub
}

// reaching returns the witnesses that the rule itself decides, and the rules that decide the
// others. Witnesses the rule does not match (shape overrides) are left out.
func (l *linter) reaching(i int, ws []policy.Request) (reached []policy.Request, catchers []int, matched int) {
	for _, w := range ws {
		if !slices.Contains(l.eval.Matching(w), i) {
			continue
		}
		matched++
		d := l.eval.Decide(w)
		if d.Rule == i {
			reached = append(reached, w)
		} else if !slices.Contains(catchers, d.Rule) {
			catchers = append(catchers, d.Rule)
		}
	}
	return reached, catchers, matched
}

func (l *linter) checkReachable(i int) bool {
	r := l.m.Policy.Rules[i]
	reached, catchers, matched := l.reaching(i, witnesses(r, shape{}))
	if matched == 0 || len(reached) > 0 {
		return true
	}
	slices.Sort(catchers)
	names := make([]string, len(catchers))
	for k, c := range catchers {
		names[k] = l.label(c)
	}
	if l.m.Sources[i].IsDefault() {
		l.add(i, Warning, "shadowed-default", fmt.Sprintf("the default level %s never applies: every request is decided first by %s", r.Level, strings.Join(names, ", ")),
			"remove the catch-all rule from the module and set spec.defaultLevel of AuditPolicy cluster instead")
		return false
	}
	if len(catchers) == 1 && sameMatch(l.m.Policy.Rules[catchers[0]], r) {
		l.add(i, Warning, "duplicate-rule", fmt.Sprintf("never decides anything: it matches exactly the requests of %s, which comes first", names[0]),
			"delete this rule, or merge what differs into the earlier one")
		return false
	}
	l.add(i, Warning, "shadowed-rule", fmt.Sprintf("never decides anything: every request it matches is decided first by %s", strings.Join(names, ", ")),
		"delete the rule, or move it (module spec.order) before the rules that shadow it")
	return false
}

func sameMatch(a, b auditv1.PolicyRule) bool {
	a.Level, b.Level = "", ""
	a.OmitStages, b.OmitStages = nil, nil
	a.OmitManagedFields, b.OmitManagedFields = nil, nil
	return fmt.Sprint(a) == fmt.Sprint(b)
}

// checkRedundant: a rule whose requests get the same decision without it.
func (l *linter) checkRedundant(i int) error {
	if l.m.Sources[i].IsDefault() {
		return nil
	}
	reached, _, _ := l.reaching(i, witnesses(l.m.Policy.Rules[i], shape{}))
	if len(reached) == 0 {
		return nil
	}
	// Cheap filter first: the rule that would take over must be a reachable module rule at the
	// same level for every witness; only then is the policy without the rule evaluated.
	for _, w := range reached {
		next := -1
		for _, j := range l.eval.Matching(w) {
			if j > i {
				next = j
				break
			}
		}
		if next < 0 || l.m.Sources[next].IsDefault() || !l.reachable[next] || l.m.Policy.Rules[next].Level != l.m.Policy.Rules[i].Level {
			return nil
		}
	}
	without := l.m.Policy
	without.Rules = slices.Delete(slices.Clone(without.Rules), i, i+1)
	eval, err := policy.NewEvaluator(without)
	if err != nil {
		return err
	}
	var deciders []int
	for _, w := range reached {
		a, b := l.eval.Decide(w), eval.Decide(w)
		if a.Level != b.Level || !slices.Equal(a.OmitStages, b.OmitStages) || (policy.LevelRank(a.Level) >= 2 && a.OmitManagedFields != b.OmitManagedFields) {
			return nil
		}
		if b.Rule >= i {
			b.Rule++ // back to the index in the whole policy
		}
		if b.Rule < 0 || l.m.Sources[b.Rule].IsDefault() || !l.reachable[b.Rule] {
			// Rules that restate the default level pin decisions on purpose (secrets at
			// Metadata stays Metadata whatever the default becomes): not reported. Nor are
			// rules whose stand-in is shadowed: that one is reported instead.
			return nil
		}
		if !slices.Contains(deciders, b.Rule) {
			deciders = append(deciders, b.Rule)
		}
	}
	slices.Sort(deciders)
	names := make([]string, len(deciders))
	for k, d := range deciders {
		names[k] = l.label(d)
	}
	l.add(i, Info, "redundant-rule", fmt.Sprintf("changes no decision: without it, the requests it decides get the same level and stages from %s", strings.Join(names, ", ")),
		"delete the rule, unless it is there to pin the decision against later changes")
	return nil
}

var writeVerbs = []string{"create", "update", "patch", "delete"}

// checkSecrets: secret-bearing objects logged with bodies.
func (l *linter) checkSecrets(i int, r auditv1.PolicyRule) {
	if policy.LevelRank(r.Level) < 2 || len(r.NonResourceURLs) > 0 {
		return
	}
	type sensitive struct {
		what    string
		sev     Severity
		targets []target
	}
	all := []sensitive{
		{"secrets", Error, []target{{resource: true, res: "secrets"}}},
		{"service account tokens (serviceaccounts/token)", Error, []target{{resource: true, res: "serviceaccounts", sub: "token"}}},
		{"tokenreviews", Error, []target{{resource: true, group: "authentication.k8s.io", res: "tokenreviews"}}},
		{"configmaps", Warning, []target{{resource: true, res: "configmaps"}}},
	}
	for _, s := range all {
		var targets []target
		for _, t := range s.targets {
			names := []string{freshName}
			for _, gr := range r.Resources {
				names = append(names, gr.ResourceNames...)
			}
			namespaces := append([]string{freshNS}, r.Namespaces...)
			for _, n := range names {
				for _, ns := range namespaces {
					t.name, t.ns = n, ns
					targets = append(targets, t)
				}
			}
		}
		verbs := r.Verbs
		if len(verbs) == 0 {
			verbs = []string{"get", "create", "update"}
		}
		reached, _, _ := l.reaching(i, witnesses(r, shape{verbs: verbs, targets: targets}))
		if len(reached) == 0 {
			continue
		}
		w := reached[0]
		l.add(i, s.sev, "secrets-above-metadata", fmt.Sprintf("logs %s at %s, with bodies: the audit log would hold their contents (e.g. %s %s by %s)", s.what, r.Level, w.Verb, resourceName(w), userName(w)),
			"decide "+s.what+" at Metadata in a rule that runs first (like the secrets-metadata-only preset, order below this module's)")
	}
}

// resourceName shows a witness's resource, fresh values as "any".
func resourceName(w policy.Request) string {
	s := w.Resource
	if s == freshResource {
		s = "any resource"
	}
	if w.Subresource != "" {
		s += "/" + strings.ReplaceAll(w.Subresource, freshSub, "any subresource")
	}
	switch w.APIGroup {
	case "":
	case freshGroup:
		s += " of any API group"
	default:
		s += "." + w.APIGroup
	}
	return s
}

func userName(w policy.Request) string {
	if w.User == freshUser {
		return "any user"
	}
	return w.User
}

// checkBlinds: None for system:masters or for everyone's writes.
func (l *linter) checkBlinds(i int, r auditv1.PolicyRule) {
	if r.Level != auditv1.LevelNone || len(r.Users) > 0 || len(r.NonResourceURLs) > 0 {
		return
	}
	forMasters := slices.Contains(r.UserGroups, masters)
	if len(r.UserGroups) > 0 && !forMasters && !slices.Contains(r.UserGroups, "system:authenticated") {
		return
	}
	targets := []target{
		{resource: true, group: freshGroup, res: freshResource, name: freshName, ns: freshNS},
		{resource: true, res: "secrets", name: freshName, ns: freshNS},
		{resource: true, res: "pods", sub: "exec", name: freshName, ns: freshNS},
		{resource: true, group: "rbac.authorization.k8s.io", res: "clusterrolebindings", name: freshName},
	}
	reached, _, _ := l.reaching(i, witnesses(r, shape{verbs: writeVerbs, targets: targets, groups: []string{masters}}))
	if forMasters {
		// Any request of system:masters dropped is worth an error.
		more, _, _ := l.reaching(i, witnesses(r, shape{groups: []string{masters}}))
		reached = append(reached, more...)
	}
	if len(reached) == 0 {
		return
	}
	w := reached[0]
	who := "every user, system:masters included"
	if forMasters {
		who = "members of system:masters"
	}
	l.add(i, Error, "blinds-audit", fmt.Sprintf("drops requests of %s at level None (e.g. %s %s): cluster-admin actions would leave no trace", who, w.Verb, resourceName(w)),
		"narrow the rule to the users, verbs and resources that are really noise, or log them at Metadata")
}

// checkVolume: RequestResponse on wildcard resources or on list/watch.
func (l *linter) checkVolume(i int, r auditv1.PolicyRule) {
	if r.Level != auditv1.LevelRequestResponse || len(r.NonResourceURLs) > 0 {
		return
	}
	var wild []string
	if len(r.Resources) == 0 {
		wild = append(wild, "every resource")
	}
	for _, gr := range r.Resources {
		g := gr.Group
		if g == "" {
			g = "core"
		}
		switch {
		case gr.Group == "*":
			wild = append(wild, "every API group")
		case len(gr.Resources) == 0:
			wild = append(wild, "every resource of group "+g)
		case slices.Contains(gr.Resources, "*"):
			wild = append(wild, `"*" in group `+g)
		}
	}
	if len(wild) > 0 {
		l.add(i, Warning, "wildcard-requestresponse", fmt.Sprintf("logs %s at RequestResponse: request and response bodies of everything there, custom resources holding credentials included", strings.Join(wild, ", ")),
			"list the resources that need bodies; log the rest at Metadata")
	}
	if reached, _, _ := l.reaching(i, witnesses(r, shape{verbs: []string{"list", "watch"}})); len(reached) > 0 {
		l.add(i, Warning, "list-watch-requestresponse", fmt.Sprintf("logs %s at RequestResponse: a list response holds every object of the collection, the largest events of all", reached[0].Verb),
			"set verbs to the writes (create, update, patch, delete) or log list and watch at Metadata in an earlier rule")
	}
}

// checkNames: typos in resources, groups and verbs.
func (l *linter) checkNames(i int, r auditv1.PolicyRule) {
	for _, gr := range r.Resources {
		if gr.Group == "*" {
			continue
		}
		known, ok := l.known[gr.Group]
		if !ok {
			if hint := suggest(gr.Group, keys(l.known)); hint != "" || strings.HasSuffix(gr.Group, ".k8s.io") || !strings.Contains(gr.Group, ".") {
				l.add(i, Warning, "unknown-group", fmt.Sprintf("API group %q is not served by kube-apiserver%s", gr.Group, hint),
					"correct the group (\"\" is the core group), or pass --kubeconfig so lint reads the cluster's API groups")
			} else {
				l.add(i, Info, "unchecked-group", fmt.Sprintf("API group %q is not a built-in group: its resources were not checked", gr.Group),
					"pass --kubeconfig so lint reads the cluster's custom resources")
			}
			continue
		}
		for _, res := range gr.Resources {
			base, sub, hasSub := strings.Cut(res, "/")
			if base == "*" {
				continue
			}
			if !known[base] {
				l.add(i, Warning, "unknown-resource", fmt.Sprintf("resource %q is not in API group %q%s", base, gr.Group, suggest(base, keys(known))),
					"correct the resource name (plural, lower case), or pass --kubeconfig for custom resources")
				continue
			}
			if hasSub && sub != "*" && !known[base+"/"+sub] && !l.subresourceOf(sub) {
				l.add(i, Info, "unknown-subresource", fmt.Sprintf("subresource %q of %q is not a known subresource", sub, base),
					"check the subresource name")
			}
		}
	}
	for _, v := range r.Verbs {
		if !slices.Contains(knownVerbs, v) && !slices.Contains(httpVerbs, v) {
			l.add(i, Warning, "unknown-verb", fmt.Sprintf("verb %q is not a verb kube-apiserver uses%s", v, suggest(v, knownVerbs)),
				"use get, list, watch, create, update, patch, delete or deletecollection (or a custom verb such as bind, escalate, impersonate)")
		}
	}
}

var httpVerbs = []string{"post", "put", "head", "options"}

func (l *linter) subresourceOf(sub string) bool {
	for _, rs := range l.known {
		for r := range rs {
			if strings.HasSuffix(r, "/"+sub) {
				return true
			}
		}
	}
	return false
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func suggest(s string, candidates []string) string {
	best, dist := "", 3
	for _, c := range candidates {
		if strings.Contains(c, "/") {
			continue
		}
		if d := levenshtein(s, c); d < dist {
			best, dist = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// checkCatchAll: requests no rule matches are dropped silently.
func (l *linter) checkCatchAll() {
	rules := l.m.Policy.Rules
	n := len(rules)
	if n == 0 {
		return
	}
	last := rules[n-1]
	if policy.MatchesEverything(last) && last.Level == auditv1.LevelNone {
		l.add(n-1, Warning, "no-catch-all", "requests that no module matches are not logged (default level None): new resources and new clients go unaudited",
			"set spec.defaultLevel of AuditPolicy cluster to Metadata")
	}
}

// checkRequestReceived: without omitting RequestReceived, every request is logged twice.
func (l *linter) checkRequestReceived() {
	if slices.Contains(l.m.Policy.OmitStages, auditv1.StageRequestReceived) {
		return
	}
	var modules []string
	for i, r := range l.m.Policy.Rules {
		if r.Level == auditv1.LevelNone || slices.Contains(r.OmitStages, auditv1.StageRequestReceived) {
			continue
		}
		name := "the default rule"
		if !l.m.Sources[i].IsDefault() {
			name = "module " + l.m.Sources[i].Module
		}
		if !slices.Contains(modules, name) {
			modules = append(modules, name)
		}
	}
	if len(modules) == 0 {
		return
	}
	l.add(-1, Warning, "request-received-not-omitted", fmt.Sprintf("RequestReceived is not omitted (%s): each request is logged twice, once before it is handled", strings.Join(modules, ", ")),
		"set spec.omitStages: [RequestReceived] on AuditPolicy cluster")
}
