package guardrail

import (
	"slices"
	"strings"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// dim is one field of a request, as the policy evaluator sees it.
type dim int

const (
	// dimSpace tells resource requests (spaceResource) from non-resource ones (spaceURL).
	dimSpace dim = iota
	dimUser
	dimVerb
	dimAPIGroup
	dimResource
	dimSubresource
	dimNamespace
	dimName
	// dimPath is the URL path of a non-resource request.
	dimPath
	numDims
)

// The values of dimSpace.
const (
	spaceResource int32 = iota
	spaceURL
)

// fresh values stand for "a value no rule or scope mentions"; if a policy happens to use one,
// a suffix makes it fresh again.
var freshValues = [numDims]string{
	dimUser:        "kaudit-any-user",
	dimVerb:        "kaudit-any-verb",
	dimAPIGroup:    "kaudit-any-group.example.com",
	dimResource:    "kaudit-any-resource",
	dimSubresource: "kaudit-any-subresource",
	dimNamespace:   "kaudit-any-namespace",
	dimName:        "kaudit-any-name",
}

// universe interns the literal values that policies and scopes mention, per field. Two requests
// that agree on every literal (equal to the same literals, or to none) are decided alike by every
// rule, so a search over literal ids and one fresh value per field is exact. Paths are the
// exception: trailing-"*" prefixes make the path space a finite list of representatives, one per
// class of paths that every URL pattern treats alike (see pathRepresentatives).
//
// A universe can be an overlay of a frozen one (see overlay): it sees its parent's literals
// under their ids and adds its own after them, leaving the parent as it was. Adding literals
// never changes what a compiled matcher means: a set of listed ids stays those values, and an
// except set ("every value but") takes in the new ones, which no rule compiled before lists.
// Only paths cannot grow that way, since new patterns change the representatives.
type universe struct {
	// parent, if set, holds the ids below offset of each field (and groups below groupOffset).
	parent      *universe
	offset      [numDims]int32
	groupOffset int32
	ids         [numDims]map[string]int32
	values      [numDims][]string
	groups      map[string]int32
	// groupNames[id-groupOffset] is the name of group id.
	groupNames []string
	// urlPatterns are the nonResourceURLs seen while collecting; pathSets their compiled sets.
	urlPatterns map[string]bool
	pathSets    map[string]valueSet
	// boxes is matcher's buffer.
	boxes []box
}

func newUniverse() *universe {
	u := &universe{groups: map[string]int32{}, urlPatterns: map[string]bool{}, pathSets: map[string]valueSet{}}
	for d := range numDims {
		u.ids[d] = map[string]int32{}
	}
	u.values[dimSpace] = []string{"resource", "non-resource"}
	return u
}

// overlay returns a universe that starts with u's literals and adds its own without changing
// u, so that one compiled policy serves many searches, each with the literals of its own rules
// numbered the same way whatever the searches before it saw. u must be frozen, and the overlay
// must not collect URL patterns that u does not know (see knowsPatterns).
func (u *universe) overlay() *universe {
	o := &universe{parent: u, groups: map[string]int32{}, urlPatterns: u.urlPatterns, pathSets: map[string]valueSet{}}
	for d := range numDims {
		o.ids[d] = map[string]int32{}
		o.offset[d] = u.size(d)
	}
	o.groupOffset = int32(len(u.groupNames)) + u.groupOffset
	return o
}

// size is the number of literal ids of a field.
func (u *universe) size(d dim) int32 { return u.offset[d] + int32(len(u.values[d])) }

// lookup returns the id of a literal, if it is one.
func (u *universe) lookup(d dim, v string) (int32, bool) {
	if u.parent != nil {
		if id, ok := u.parent.lookup(d, v); ok {
			return id, true
		}
	}
	id, ok := u.ids[d][v]
	return id, ok
}

// value is the literal of an id.
func (u *universe) value(d dim, id int32) string {
	if id < u.offset[d] {
		return u.parent.value(d, id)
	}
	return u.values[d][id-u.offset[d]]
}

func (u *universe) intern(d dim, v string) {
	if _, ok := u.lookup(d, v); ok {
		return
	}
	u.ids[d][v] = u.size(d)
	u.values[d] = append(u.values[d], v)
}

func (u *universe) lookupGroup(g string) (int32, bool) {
	if u.parent != nil {
		if id, ok := u.parent.lookupGroup(g); ok {
			return id, true
		}
	}
	id, ok := u.groups[g]
	return id, ok
}

func (u *universe) group(g string) int32 {
	if id, ok := u.lookupGroup(g); ok {
		return id
	}
	id := u.groupOffset + int32(len(u.groupNames))
	u.groups[g] = id
	u.groupNames = append(u.groupNames, g)
	return id
}

func (u *universe) groupName(id int32) string {
	if id < u.groupOffset {
		return u.parent.groupName(id)
	}
	return u.groupNames[id-u.groupOffset]
}

// knowsPatterns tells whether every nonResourceURLs pattern of the fields is one u collected,
// so that an overlay of u can compile them.
func (u *universe) knowsPatterns(fields []matchFields) bool {
	for _, f := range fields {
		for _, p := range f.NonResourceURLs {
			if !u.urlPatterns[p] {
				return false
			}
		}
	}
	return true
}

// collect interns the literals of a rule's matching fields. Every rule and scope must be
// collected before the first one is compiled, because paths are compiled against the
// representatives of all patterns.
func (u *universe) collect(m matchFields) {
	for _, v := range m.Users {
		u.intern(dimUser, v)
	}
	for _, g := range m.UserGroups {
		u.group(g)
	}
	for _, v := range m.Verbs {
		u.intern(dimVerb, v)
	}
	for _, v := range m.Namespaces {
		u.intern(dimNamespace, v)
	}
	for _, gr := range m.Resources {
		if gr.Group != "*" {
			u.intern(dimAPIGroup, gr.Group)
		}
		for _, r := range gr.Resources {
			for _, f := range resourceForms(r) {
				if !f.anyResource {
					u.intern(dimResource, f.resource)
				}
				if !f.anySubresource {
					u.intern(dimSubresource, f.subresource)
				}
			}
		}
		for _, n := range gr.ResourceNames {
			u.intern(dimName, n)
		}
	}
	for _, p := range m.NonResourceURLs {
		if u.parent == nil {
			u.urlPatterns[p] = true
		}
	}
}

// freeze computes the path representatives once every pattern is known.
func (u *universe) freeze() {
	patterns := make([]string, 0, len(u.urlPatterns))
	for p := range u.urlPatterns {
		patterns = append(patterns, p)
	}
	slices.Sort(patterns)
	for _, rep := range pathRepresentatives(patterns) {
		u.intern(dimPath, rep)
	}
}

// all is every value of a field.
func (u *universe) all(d dim) valueSet {
	switch d {
	case dimSpace:
		return only(spaceResource, spaceURL)
	case dimPath:
		ids := make([]int32, u.size(dimPath))
		for i := range ids {
			ids[i] = int32(i)
		}
		return valueSet{ids: ids}
	}
	return anyValue
}

// literals is the set of the given values, or every value when none is given (an empty list
// in a rule means "any").
func (u *universe) literals(d dim, vs []string) valueSet {
	if len(vs) == 0 {
		return u.all(d)
	}
	ids := make([]int32, len(vs))
	for i, v := range vs {
		ids[i], _ = u.lookup(d, v)
	}
	return only(ids...)
}

// groupList is the sorted ids of a userGroups list; nil (any user) when empty.
func (u *universe) groupList(gs []string) []int32 {
	if len(gs) == 0 {
		return nil
	}
	ids := make([]int32, len(gs))
	for i, g := range gs {
		ids[i], _ = u.lookupGroup(g)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// paths is the set of path representatives a list of nonResourceURLs matches.
func (u *universe) paths(patterns []string) valueSet {
	var out valueSet
	for _, p := range patterns {
		s, ok := u.pathSets[p]
		if !ok {
			var ids []int32
			for id := range u.size(dimPath) {
				if pathMatches(u.value(dimPath, id), p) {
					ids = append(ids, id)
				}
			}
			s = valueSet{ids: ids}
			u.pathSets[p] = s
		}
		out = out.union(s)
	}
	return out
}

// pathMatches is the apiserver's nonResourceURLs test (k8s.io/apiserver/pkg/audit/policy,
// checker.go): "*", an exact path, or a prefix ending in "*".
func pathMatches(path, spec string) bool {
	if spec == "*" || spec == path {
		return true
	}
	return strings.HasSuffix(spec, "*") && strings.HasPrefix(path, strings.TrimRight(spec, "*"))
}

// pathRepresentatives returns one path per class of paths that every pattern treats alike.
// A path that is not itself a literal (an exact pattern or a prefix) is matched exactly by the
// prefixes it starts with, which all are prefixes of the longest one, p: it behaves like p
// followed by a suffix that starts no longer prefix. So the representatives are the literals,
// each prefix followed by such a suffix, and a path under no prefix at all. Real paths start
// with "/", and so do all of these.
func pathRepresentatives(patterns []string) []string {
	var literals, prefixes []string
	for _, p := range patterns {
		switch {
		case p == "*":
		case strings.HasSuffix(p, "*"):
			prefixes = append(prefixes, strings.TrimRight(p, "*"))
		default:
			literals = append(literals, p)
		}
	}
	isLiteral := func(s string) bool { return slices.Contains(literals, s) || slices.Contains(prefixes, s) }
	// beyond tells whether path starts with a prefix longer than base.
	beyond := func(base, path string) bool {
		for _, q := range prefixes {
			if len(q) > len(base) && strings.HasPrefix(path, q) {
				return true
			}
		}
		return false
	}
	var out []string
	add := func(s string) {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, l := range literals {
		add(l)
	}
	for _, p := range prefixes {
		add(p)
	}
	for _, p := range append([]string{""}, prefixes...) {
		if p == "" && slices.Contains(prefixes, "/") {
			continue // every real path is under "/"
		}
		for i := 0; ; i++ {
			if path := p + freshSuffix(p, i); !isLiteral(path) && !beyond(p, path) {
				add(path)
				break
			}
		}
	}
	return out
}

// freshSuffix is the i-th suffix tried after a prefix until one starts no longer prefix and
// makes no literal. All but the first two start with distinct characters, so one of them
// succeeds: there are finitely many prefixes and literals.
func freshSuffix(prefix string, i int) string {
	const word = "kaudit-any-path"
	lead := "/"
	if prefix != "" {
		lead = ""
	}
	switch {
	case i == 0 && !strings.HasSuffix(prefix, "/"):
		return "/" + word
	case i <= 1 && prefix != "":
		return word
	}
	return lead + string(rune('!'+i)) + word
}

// resourceForm is one way a resources entry matches: a resource and a subresource, each either
// one literal or any. The apiserver's request info never puts a "/" in either.
type resourceForm struct {
	resource, subresource       string
	anyResource, anySubresource bool
}

// resourceForms says which (resource, subresource) pairs a resources entry matches, following
// the apiserver's ruleMatchesResource (checker.go): "*" matches everything; an entry equals
// "resource" (no subresource) or "resource/subresource"; "*/sub" matches sub of any resource;
// "res/*" matches res with any subresource, none included.
func resourceForms(r string) []resourceForm {
	if r == "*" {
		return []resourceForm{{anyResource: true, anySubresource: true}}
	}
	var out []resourceForm
	switch res, sub, found := strings.Cut(r, "/"); {
	case !found:
		out = append(out, resourceForm{resource: r})
	case sub != "" && !strings.Contains(sub, "/"):
		out = append(out, resourceForm{resource: res, subresource: sub})
	}
	if sub, ok := strings.CutPrefix(r, "*/"); ok && sub != "" && !strings.Contains(sub, "/") {
		out = append(out, resourceForm{anyResource: true, subresource: sub})
	}
	if res, ok := strings.CutSuffix(r, "/*"); ok && !strings.Contains(res, "/") {
		out = append(out, resourceForm{resource: res, anySubresource: true})
	}
	return out
}

// matchFields are the fields of a rule that decide whether it matches a request.
type matchFields struct {
	Users, UserGroups, Verbs []string
	Resources                []auditv1.GroupResources
	Namespaces               []string
	NonResourceURLs          []string
}
