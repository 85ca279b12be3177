package guardrail

import (
	"slices"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/internal/policy"
)

// box is a set of requests: the product of one value set per field.
type box [numDims]valueSet

func (b *box) empty() bool {
	for d := range numDims {
		if b[d].empty() {
			return true
		}
	}
	return false
}

func (b *box) meets(o *box) bool {
	for d := range numDims {
		if !b[d].meets(o[d]) {
			return false
		}
	}
	return true
}

func (b *box) covers(o *box) bool {
	for d := range numDims {
		if !b[d].covers(o[d]) {
			return false
		}
	}
	return true
}

func (b *box) intersect(o *box) box {
	var out box
	for d := range numDims {
		out[d] = b[d].intersect(o[d])
	}
	return out
}

// matcher is the set of requests a rule (or a scope) matches: the user is in one of groups
// (nil: any user), and the rest of the request is in one of boxes.
type matcher struct {
	groups []int32
	boxes  []box
}

// groupsImplied tells whether every request that hits each of the must lists also hits m's
// groups.
func (m *matcher) groupsImplied(must [][]int32) bool {
	if m.groups == nil {
		return true
	}
	for _, gs := range must {
		if subsetOf(gs, m.groups) {
			return true
		}
	}
	return false
}

// result is what a rule decides: the fields of an audit configuration that a guardrail bounds.
type result struct {
	level auditv1.Level
	// omits is a bit per stage, in stageBits order: the rule's and the policy's omitStages.
	omits        uint8
	omitsManaged bool
}

var stageBits = []auditv1.Stage{
	auditv1.StageRequestReceived, auditv1.StageResponseStarted,
	auditv1.StageResponseComplete, auditv1.StagePanic,
}

func stageMask(stages []auditv1.Stage) uint8 {
	var m uint8
	for _, s := range stages {
		for i, known := range stageBits {
			if s == known {
				m |= 1 << i
			}
		}
	}
	return m
}

func resultOf(d policy.Decision) result {
	return result{level: d.Level, omits: stageMask(d.OmitStages), omitsManaged: d.OmitManagedFields}
}

// compiled is a policy ready for the search: each rule's matcher and result, in order.
type compiled struct {
	rules []matcher
	// results[i] is rule i's result; results[len(rules)] is the result when no rule matches.
	results []result
	// idx indexes rules once a search needs it.
	idx *ruleIndex
}

func (c *compiled) defaultResult() result { return c.results[len(c.rules)] }

func (c *compiled) index() *ruleIndex {
	if c.idx == nil {
		c.idx = newRuleIndex(c.rules)
	}
	return c.idx
}

func compilePolicy(u *universe, p auditv1.Policy) *compiled {
	c := &compiled{rules: make([]matcher, len(p.Rules))}
	policyOmits := stageMask(p.OmitStages)
	for i, r := range p.Rules {
		c.rules[i] = u.matcher(fieldsOf(r))
		omitsManaged := p.OmitManagedFields
		if r.OmitManagedFields != nil {
			omitsManaged = *r.OmitManagedFields
		}
		c.results = append(c.results, result{level: r.Level, omits: policyOmits | stageMask(r.OmitStages), omitsManaged: omitsManaged})
	}
	c.results = append(c.results, result{level: auditv1.LevelNone, omits: policyOmits, omitsManaged: p.OmitManagedFields})
	return c
}

func fieldsOf(r auditv1.PolicyRule) matchFields {
	return matchFields{Users: r.Users, UserGroups: r.UserGroups, Verbs: r.Verbs, Resources: r.Resources, Namespaces: r.Namespaces, NonResourceURLs: r.NonResourceURLs}
}

func collectPolicy(u *universe, p auditv1.Policy) {
	for _, r := range p.Rules {
		u.collect(fieldsOf(r))
	}
}

// matcher compiles matching fields exactly as the apiserver's ruleMatches reads them: users,
// groups and verbs first; then namespaces and resources, which make the rule match resource
// requests only; else nonResourceURLs, which make it match non-resource requests only; with
// none of them, any request.
func (u *universe) matcher(f matchFields) matcher {
	m := matcher{groups: u.groupList(f.UserGroups), boxes: u.boxes[:0]}
	var base box
	for d := range numDims {
		base[d] = u.all(d)
	}
	base[dimUser] = u.literals(dimUser, f.Users)
	base[dimVerb] = u.literals(dimVerb, f.Verbs)
	switch {
	case len(f.Namespaces) > 0 || len(f.Resources) > 0:
		base[dimSpace] = only(spaceResource)
		base[dimNamespace] = u.literals(dimNamespace, f.Namespaces)
		if len(f.Resources) == 0 {
			m.boxes = append(m.boxes, base)
			break
		}
		for _, gr := range f.Resources {
			b := base
			if gr.Group != "*" {
				b[dimAPIGroup] = u.literals(dimAPIGroup, []string{gr.Group})
			}
			if len(gr.Resources) == 0 {
				// resourceNames without resources is rejected by the loader; the evaluator would
				// match the whole group.
				m.boxes = append(m.boxes, b)
				continue
			}
			b[dimName] = u.literals(dimName, gr.ResourceNames)
			for _, r := range gr.Resources {
				for _, form := range resourceForms(r) {
					fb := b
					if !form.anyResource {
						fb[dimResource] = u.literals(dimResource, []string{form.resource})
					}
					if !form.anySubresource {
						fb[dimSubresource] = u.literals(dimSubresource, []string{form.subresource})
					}
					m.boxes = append(m.boxes, fb)
				}
			}
		}
	case len(f.NonResourceURLs) > 0:
		base[dimSpace] = only(spaceURL)
		base[dimPath] = u.paths(f.NonResourceURLs)
		m.boxes = append(m.boxes, base)
	default:
		m.boxes = append(m.boxes, base)
	}
	// The boxes are gathered and merged in the universe's buffer and kept at their final
	// size: grown one box at a time, they were most of what compiling a policy allocated.
	merged := mergeBoxes(m.boxes)
	u.boxes = merged[:0]
	m.boxes = nil
	if len(merged) > 0 {
		m.boxes = slices.Clone(merged)
	}
	return m
}

// mergeBoxes joins boxes that differ in one field only (their union is a box), and drops
// boxes inside others, so that a rule listing many resources of one group is one box.
func mergeBoxes(boxes []box) []box {
	for merged := true; merged; {
		merged = false
		for i := 0; i < len(boxes); i++ {
			for j := i + 1; j < len(boxes); {
				if u, ok := unionBox(&boxes[i], &boxes[j]); ok {
					boxes[i] = u
					boxes = append(boxes[:j], boxes[j+1:]...)
					merged = true
					j = i + 1
					continue
				}
				j++
			}
		}
	}
	return boxes
}

func unionBox(a, b *box) (box, bool) {
	switch {
	case a.covers(b):
		return *a, true
	case b.covers(a):
		return *b, true
	}
	differ := -1
	for d := range numDims {
		if !a[d].equal(b[d]) {
			if differ >= 0 {
				return box{}, false
			}
			differ = int(d)
		}
	}
	out := *a
	out[differ] = a[differ].union(b[differ])
	return out, true
}
