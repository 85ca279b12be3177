package guardrail

import (
	"slices"
	"strconv"

	"github.com/kaudit/kaudit/internal/policy"
)

// Values preferred in witnesses, when the field allows them: real verbs, the core API group, no
// subresource, no name.
var (
	resourceVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
	urlVerbs      = []string{"get", "head", "post", "put", "patch", "delete"}
)

// request turns a found point into a readable request: a literal the rules use where the field
// is limited to literals, else a preferred value the field allows, else a fresh value.
func (u *universe) request(found reached) policy.Request {
	p := &found.point
	r := policy.Request{ResourceRequest: p[dimSpace].has(spaceResource)}
	r.User = u.pick(dimUser, p[dimUser], nil)
	for _, g := range found.groups {
		r.Groups = append(r.Groups, u.groupName(g))
	}
	slices.Sort(r.Groups)
	if !r.ResourceRequest {
		r.Verb = u.pick(dimVerb, p[dimVerb], urlVerbs)
		r.Path = u.pick(dimPath, p[dimPath], nil)
		return r
	}
	r.Verb = u.pick(dimVerb, p[dimVerb], resourceVerbs)
	r.APIGroup = u.pick(dimAPIGroup, p[dimAPIGroup], []string{""})
	r.Resource = u.pick(dimResource, p[dimResource], nil)
	r.Subresource = u.pick(dimSubresource, p[dimSubresource], []string{""})
	r.Namespace = u.pick(dimNamespace, p[dimNamespace], nil)
	var noName []string
	if r.Subresource == "" {
		noName = []string{""} // a subresource is always of a named object
	}
	r.Name = u.pick(dimName, p[dimName], noName)
	return r
}

// pick returns a value of the set: the first preferred one it holds, else its first literal,
// else a value no rule or scope mentions.
func (u *universe) pick(d dim, s valueSet, preferred []string) string {
	for _, v := range preferred {
		id, known := u.lookup(d, v)
		if !known && s.except || known && s.has(id) {
			return v
		}
	}
	if !s.except {
		return u.value(d, s.ids[0])
	}
	for i := 0; ; i++ {
		v := freshValues[d]
		if i > 0 {
			v += "-" + strconv.Itoa(i)
		}
		if _, known := u.lookup(d, v); !known {
			return v
		}
	}
}
