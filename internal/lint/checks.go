package lint

import (
	"fmt"
	"slices"
	"strings"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/internal/apiresources"
	"github.com/kaudit/kaudit/internal/policy"
)

// masters is the group of cluster administrators, whose requests must stay audited.
const masters = "system:masters"

// checkReachable: a rule (or the default) that decides no request (shadowed-rule,
// duplicate-rule, shadowed-default). It tells whether rule i decides any request.
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
		l.add(i, shadowedDefault, fmt.Sprintf("the default level %s never applies: every request is decided first by %s", r.Level, strings.Join(names, ", ")),
			fixShadowedDefault)
		return false
	}
	if len(catchers) == 1 && sameMatch(l.m.Policy.Rules[catchers[0]], r) {
		l.add(i, duplicateRule, fmt.Sprintf("never decides anything: it matches exactly the requests of %s, which comes first", names[0]),
			fixDuplicateRule)
		return false
	}
	l.add(i, shadowedRule, fmt.Sprintf("never decides anything: every request it matches is decided first by %s", strings.Join(names, ", ")),
		fixShadowedRule)
	return false
}

func sameMatch(a, b auditv1.PolicyRule) bool {
	a.Level, b.Level = "", ""
	a.OmitStages, b.OmitStages = nil, nil
	a.OmitManagedFields, b.OmitManagedFields = nil, nil
	return fmt.Sprint(a) == fmt.Sprint(b)
}

// checkRedundant: a rule whose requests get the same decision without it.
func (l *linter) checkRedundant(i int) {
	if l.m.Sources[i].IsDefault() {
		return
	}
	reached, _, _ := l.reaching(i, witnesses(l.m.Policy.Rules[i], shape{}))
	if len(reached) == 0 {
		return
	}
	var deciders []int
	for _, w := range reached {
		// Without rule i, the next matching rule decides.
		a, b := l.rules.decide(w), l.rules.decideSkipping(w, i)
		if a.Level != b.Level || !slices.Equal(a.OmitStages, b.OmitStages) || (policy.LevelRank(a.Level) >= 2 && a.OmitManagedFields != b.OmitManagedFields) {
			return
		}
		if b.Rule < 0 || l.m.Sources[b.Rule].IsDefault() || !l.reachable[b.Rule] {
			// Rules that restate the default level pin decisions on purpose (secrets at
			// Metadata stays Metadata whatever the default becomes): not reported. Nor are
			// rules whose stand-in is shadowed: that one is reported instead.
			return
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
	l.add(i, redundantRule, fmt.Sprintf("changes no decision: without it, the requests it decides get the same level and stages from %s", strings.Join(names, ", ")),
		fixRedundantRule)
}

var writeVerbs = []string{"create", "update", "patch", "delete"}

// secretBearer is a kind of object whose contents are secret, and the verbs whose request body
// and response body carry those contents. Request level writes request bodies only;
// RequestResponse writes both, except for watch, whose streamed response is never logged.
type secretBearer struct {
	what       string
	sev        Severity
	target     target
	inRequest  []string
	inResponse []string
}

var (
	// objectWrites send the object; objectResponses return it (a delete returns the deleted
	// object, a deletecollection the deleted list). Reads and deletes send no object.
	objectWrites    = []string{"create", "update", "patch"}
	objectResponses = []string{"get", "list", "create", "update", "patch", "delete", "deletecollection"}
	secretBearers   = []secretBearer{
		{"secrets", Error, target{resource: true, res: "secrets"}, objectWrites, objectResponses},
		// A TokenRequest asks for a token (audiences, expiry); the token is in the response.
		{"service account tokens (serviceaccounts/token)", Error, target{resource: true, res: "serviceaccounts", sub: "token"}, nil, []string{"create"}},
		// A TokenReview sends the token to review and gets it back.
		{"tokenreviews", Error, target{resource: true, group: "authentication.k8s.io", res: "tokenreviews"}, []string{"create"}, []string{"create"}},
		{"configmaps", Warning, target{resource: true, res: "configmaps"}, objectWrites, objectResponses},
	}
)

// checkSecrets: secret contents written into the audit log, in a request or a response body.
func (l *linter) checkSecrets(i int, r auditv1.PolicyRule) {
	if policy.LevelRank(r.Level) < 2 || len(r.NonResourceURLs) > 0 {
		return
	}
	for _, s := range secretBearers {
		verbs := s.inRequest
		if r.Level == auditv1.LevelRequestResponse {
			verbs = slices.Clone(s.inRequest)
			for _, v := range s.inResponse {
				if !slices.Contains(verbs, v) {
					verbs = append(verbs, v)
				}
			}
		}
		if len(verbs) == 0 {
			continue
		}
		var targets []target
		names := []string{freshName}
		for _, gr := range r.Resources {
			names = append(names, gr.ResourceNames...)
		}
		namespaces := append([]string{freshNS}, r.Namespaces...)
		for _, n := range names {
			for _, ns := range namespaces {
				t := s.target
				t.name, t.ns = n, ns
				targets = append(targets, t)
			}
		}
		reached, _, _ := l.reaching(i, witnesses(r, shape{verbs: verbs, targets: targets}))
		if len(reached) == 0 {
			continue
		}
		w := reached[0]
		body := "response"
		if slices.Contains(s.inRequest, w.Verb) {
			body = "request"
		}
		l.addAt(i, secretsAboveMetadata, s.sev, fmt.Sprintf("logs %s at %s: the audit log would hold their contents (e.g. the %s body of %s %s by %s)", s.what, r.Level, body, w.Verb, resourceName(w), userName(w)),
			fixSecrets(s.what))
	}
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
	l.add(i, blindsAudit, fmt.Sprintf("drops requests of %s at level None (e.g. %s %s): cluster-admin actions would leave no trace", who, w.Verb, resourceName(w)),
		fixBlindsAudit)
}

// checkVolume: RequestResponse on wildcard resources or on list/watch.
func (l *linter) checkVolume(i int, r auditv1.PolicyRule) {
	if r.Level != auditv1.LevelRequestResponse || len(r.NonResourceURLs) > 0 {
		return
	}
	var wild, wholeGroups []string
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
			wholeGroups = append(wholeGroups, g)
		case slices.Contains(gr.Resources, "*"):
			wild = append(wild, `"*" in group `+g)
		}
	}
	// Name a few groups only: GKE's policy lists 18, and a finding is read on one line.
	switch n := len(wholeGroups); {
	case n == 1:
		wild = append(wild, "every resource of group "+wholeGroups[0])
	case n > 1 && n <= 3:
		wild = append(wild, "every resource of groups "+strings.Join(wholeGroups, ", "))
	case n > 3:
		wild = append(wild, fmt.Sprintf("every resource of %d groups (%s and %d more)", n, strings.Join(wholeGroups[:3], ", "), n-3))
	}
	if len(wild) > 0 {
		l.add(i, wildcardRequestResponse, fmt.Sprintf("logs %s at RequestResponse: request and response bodies of everything there, custom resources holding credentials included", strings.Join(wild, ", ")),
			fixWildcardRequestResponse)
	}
	if reached, _, _ := l.reaching(i, witnesses(r, shape{verbs: []string{"list", "watch"}})); len(reached) > 0 {
		l.add(i, listWatchRequestResponse, fmt.Sprintf("logs %s at RequestResponse: a list response holds every object of the collection, the largest events of all", reached[0].Verb),
			fixListWatchRequestResponse)
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
				l.add(i, unknownGroup, fmt.Sprintf("API group %q is not served by kube-apiserver%s", gr.Group, hint),
					fixUnknownGroup)
			} else {
				l.add(i, uncheckedGroup, fmt.Sprintf("API group %q is not a built-in group: its resources were not checked", gr.Group),
					fixUncheckedGroup)
			}
			continue
		}
		for _, res := range gr.Resources {
			base, sub, hasSub := strings.Cut(res, "/")
			if base == "*" {
				continue
			}
			if !known[base] {
				l.add(i, unknownResource, fmt.Sprintf("resource %q is not in API group %q%s", base, gr.Group, suggest(base, keys(known))),
					fixUnknownResource)
				continue
			}
			if hasSub && sub != "*" && !known[base+"/"+sub] && !l.subresourceOf(sub) {
				l.add(i, unknownSubresource, fmt.Sprintf("subresource %q of %q is not a known subresource", sub, base),
					fixUnknownSubresource)
			}
		}
	}
	for _, v := range r.Verbs {
		if known := apiresources.Verbs(); !slices.Contains(known, v) && !slices.Contains(httpVerbs, v) {
			l.add(i, unknownVerb, fmt.Sprintf("verb %q is not a verb kube-apiserver uses%s", v, suggest(v, known)),
				fixUnknownVerb)
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

// checkCatchAll: requests no rule matches are dropped silently (unless an earlier catch-all
// leaves the default rule nothing to decide).
func (l *linter) checkCatchAll() {
	rules := l.m.Policy.Rules
	n := len(rules)
	if n == 0 {
		return
	}
	last := rules[n-1]
	if policy.MatchesEverything(last) && last.Level == auditv1.LevelNone && l.reachable[n-1] {
		l.add(n-1, noCatchAll, "requests that no module matches are not logged (default level None): new resources and new clients go unaudited",
			fixNoCatchAll)
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
			name = "module " + l.m.Sources[i].ModuleID()
		}
		if !slices.Contains(modules, name) {
			modules = append(modules, name)
		}
	}
	if len(modules) == 0 {
		return
	}
	l.add(-1, requestReceivedNotOmitted, fmt.Sprintf("RequestReceived is not omitted (%s): each request is logged twice, once before it is handled", strings.Join(modules, ", ")),
		fixRequestReceived)
}
