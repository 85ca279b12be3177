package advise

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/policy"
)

// nodesGroup is the kubelets' group: one user per node, all alike, so rules name the group.
const nodesGroup = "system:nodes"

// identity is who a suggested rule is about: a user, or the members of a group.
type identity struct {
	user, group string
}

func identityOf(r policy.Request) identity {
	if slices.Contains(r.Groups, nodesGroup) {
		return identity{group: nodesGroup}
	}
	return identity{user: r.User}
}

func (id identity) String() string {
	switch {
	case id.group == nodesGroup:
		return "the kubelets (group " + nodesGroup + ")"
	case id.group != "":
		return "group " + id.group
	}
	return "user " + id.user
}

// name is the identity as part of a module name: lower case letters, digits and dashes.
func (id identity) name() string {
	s := id.user
	if id.group != "" {
		s = "group-" + id.group
	}
	s = nameInvalid.ReplaceAllString(strings.ToLower(s), "-")
	s = strings.Trim(s, "-")
	if s == "" {
		s = "anyone"
	}
	return s
}

var nameInvalid = regexp.MustCompile(`[^a-z0-9]+`)

func (id identity) setOn(r *v1alpha1.PolicyRule) {
	if id.group != "" {
		r.UserGroups = []string{id.group}
	} else {
		r.Users = []string{id.user}
	}
}

func isRead(r policy.Request) bool {
	if r.ResourceRequest {
		return r.Verb == "get" || r.Verb == "list" || r.Verb == "watch"
	}
	return r.Verb == "get" || r.Verb == "head"
}

// verbOrder is how verbs are listed: reads, then writes, as kubectl and RBAC list them.
var verbOrder = []string{"get", "head", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}

func sortVerbs(verbs []string) {
	slices.SortFunc(verbs, func(a, b string) int {
		ia, ib := slices.Index(verbOrder, a), slices.Index(verbOrder, b)
		if ia < 0 {
			ia = len(verbOrder)
		}
		if ib < 0 {
			ib = len(verbOrder)
		}
		return cmp.Or(cmp.Compare(ia, ib), cmp.Compare(a, b))
	})
}

// maxNamespaces is the most namespaces a rule lists; an identity seen in more is matched in all.
const maxNamespaces = 3

// candidate is a suggested rule and what it does to the requests of the logs.
type candidate struct {
	id    identity
	level auditv1.Level
	read  bool
	verbs []string
	// resources maps API groups to resources ("pods", "pods/log"); paths are URL patterns.
	resources  map[string][]string
	paths      []string
	namespaces []string // nil: every namespace

	// Found by evaluate: the entries the rule decides on its own, whether it may decide all of
	// them, what it saves, and the first rule of the starting policy that decides one of them.
	matched []int
	valid   bool
	saved   int64
	slot    int

	// Found by verify, in the merged policy.
	effect effect
}

// effect is what a rule decides of the logs in the merged policy, against the starting policy.
type effect struct {
	events                      int64
	writtenBefore, writtenAfter int64
	bytesBefore, bytesAfter     int64
}

func (c *candidate) rule() v1alpha1.PolicyRule {
	r := v1alpha1.PolicyRule{Level: v1alpha1.Level(c.level), Verbs: slices.Clone(c.verbs), Namespaces: slices.Clone(c.namespaces)}
	c.id.setOn(&r)
	if c.paths != nil {
		r.NonResourceURLs = slices.Clone(c.paths)
		return r
	}
	for _, g := range sortedKeys(c.resources) {
		r.Resources = append(r.Resources, v1alpha1.GroupResources{Group: g, Resources: slices.Clone(c.resources[g])})
	}
	return r
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// what says in words what the rule matches: "get, list of pods (core) by user alice in shop".
func (c *candidate) what() string {
	var objects []string
	if c.paths != nil {
		objects = append(objects, "paths "+strings.Join(c.paths, ", "))
	}
	for _, g := range sortedKeys(c.resources) {
		name := g
		if name == "" {
			name = "core"
		}
		objects = append(objects, strings.Join(c.resources[g], ", ")+" ("+name+")")
	}
	s := strings.Join(c.verbs, ", ") + " of " + strings.Join(objects, "; ") + " by " + c.id.String()
	switch len(c.namespaces) {
	case 0:
	case 1:
		s += " in namespace " + c.namespaces[0]
	default:
		s += " in namespaces " + strings.Join(c.namespaces, ", ")
	}
	return s
}

// stops says what the rule stops recording.
func (c *candidate) stops() string {
	if c.level == auditv1.LevelNone {
		return "Stops recording " + c.what() + "."
	}
	return "Records " + c.what() + " at Metadata: without request and response bodies."
}

// atom is what one identity did to one resource (or path pattern) of one kind (reads or
// writes), across verbs and namespaces: the smallest thing a suggestion is made for.
type atom struct {
	id         identity
	read       bool
	group      string
	resource   string // "pods/log"
	path       string // a non-resource URL pattern; resource is empty then
	verbs      []string
	namespaces []string // "" for cluster scope or all namespaces
}

func atomKeyOf(e *entry) atom {
	a := atom{id: identityOf(e.req), read: isRead(e.req)}
	if !e.req.ResourceRequest {
		a.path = pathPattern(e.req.Path)
		return a
	}
	a.group, a.resource = e.req.APIGroup, e.req.Resource
	if e.req.Subresource != "" {
		a.resource += "/" + e.req.Subresource
	}
	return a
}

func (a atom) key() string {
	return fmt.Sprintf("%s\x00%s\x00%v\x00%s\x00%s\x00%s", a.id.user, a.id.group, a.read, a.group, a.resource, a.path)
}

// pathPattern generalizes a path to its first segment: /openapi/v3/apis/apps/v1 to /openapi/*,
// /readyz/etcd to /readyz/*; /version and /api stay as they are.
func pathPattern(p string) string {
	first, rest, found := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	if !found || rest == "" {
		return p
	}
	return "/" + first + "/*"
}

// atoms groups the entries by identity, kind, resource and namespace.
func atoms(entries []*entry) []atom {
	byKey := map[string]*atom{}
	var order []string
	for _, e := range entries {
		k := atomKeyOf(e)
		key := k.key()
		a := byKey[key]
		if a == nil {
			a = &k
			byKey[key] = a
			order = append(order, key)
		}
		if !slices.Contains(a.verbs, e.req.Verb) {
			a.verbs = append(a.verbs, e.req.Verb)
		}
		if e.req.ResourceRequest && !slices.Contains(a.namespaces, e.req.Namespace) {
			a.namespaces = append(a.namespaces, e.req.Namespace)
		}
	}
	out := make([]atom, 0, len(order))
	for _, k := range order {
		a := *byKey[k]
		sortVerbs(a.verbs)
		slices.Sort(a.namespaces)
		out = append(out, a)
	}
	return out
}

// ruleNamespaces are the namespaces a rule for the atom lists: those it was seen in, when they
// are few and all are namespaces; nil (every namespace) otherwise.
func (a atom) ruleNamespaces() []string {
	if a.path != "" || len(a.namespaces) > maxNamespaces || slices.Contains(a.namespaces, "") {
		return nil
	}
	return slices.Clone(a.namespaces)
}

func (a atom) candidate(level auditv1.Level, verbs []string) *candidate {
	c := &candidate{id: a.id, level: level, read: a.read, verbs: verbs, namespaces: a.ruleNamespaces()}
	if a.path != "" {
		c.paths = []string{a.path}
	} else {
		c.resources = map[string][]string{a.group: {a.resource}}
	}
	return c
}

// sameShape tells whether two candidates can be one rule: same identity, level, kind and
// namespaces, both for resources or both for paths.
func sameShape(a, b *candidate) bool {
	return a.id == b.id && a.level == b.level && a.read == b.read && (a.paths == nil) == (b.paths == nil) &&
		slices.Equal(a.namespaces, b.namespaces)
}

// union is one rule for both candidates: the union of their verbs and of their resources (or
// paths). It matches every combination of the two, so it must be evaluated again.
func union(a, b *candidate) *candidate {
	c := &candidate{id: a.id, level: a.level, read: a.read, namespaces: slices.Clone(a.namespaces)}
	c.verbs = slices.Clone(a.verbs)
	for _, v := range b.verbs {
		if !slices.Contains(c.verbs, v) {
			c.verbs = append(c.verbs, v)
		}
	}
	sortVerbs(c.verbs)
	if a.paths != nil {
		c.paths = slices.Clone(a.paths)
		for _, p := range b.paths {
			if !slices.Contains(c.paths, p) {
				c.paths = append(c.paths, p)
			}
		}
		slices.Sort(c.paths)
		return c
	}
	c.resources = map[string][]string{}
	for _, from := range []*candidate{a, b} {
		for g, rs := range from.resources {
			for _, r := range rs {
				if !slices.Contains(c.resources[g], r) {
					c.resources[g] = append(c.resources[g], r)
				}
			}
		}
	}
	for g := range c.resources {
		slices.Sort(c.resources[g])
	}
	return c
}
