package lint

import (
	"slices"
	"strings"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/internal/policy"
)

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
)

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
		m := l.rules.matching(w)
		if !slices.Contains(m, i) {
			continue
		}
		matched++
		if m[0] == i {
			reached = append(reached, w)
		} else if !slices.Contains(catchers, m[0]) {
			catchers = append(catchers, m[0])
		}
	}
	return reached, catchers, matched
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

// userName shows a witness's user, a fresh one as "any user".
func userName(w policy.Request) string {
	if w.User == freshUser {
		return "any user"
	}
	return w.User
}
