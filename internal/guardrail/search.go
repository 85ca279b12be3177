package guardrail

import "slices"

// area is the set of requests a search is confined to: requests whose groups hit every list in
// must and whose other fields are in one of boxes.
type area struct {
	must  [][]int32
	boxes []box
}

// reached is a request the search found: decided by rule (len(rules) when no rule matches),
// with groups, and the other fields anywhere in point.
type reached struct {
	rule   int
	groups []int32
	point  box
}

// subtrahend is a list of rules that takes requests out of a search: the rules before before.
type subtrahend struct {
	rules  *ruleIndex
	before int
}

// firstReachable finds the first rule of c whose result is bad and that decides some request
// of a outside the rules of excepts, and one such request. Rules are tried in order; after the
// last rule, the no-match result.
//
// A rule decides a request when it matches it and no earlier rule does. Rules that miss the
// part of a still open are skipped, and an area box that one rule covers whole (groups
// included) is closed: nothing in it reaches a later rule. When every area box is closed the
// walk stops.
func firstReachable(c *compiled, a area, excepts []subtrahend, bad func(result) bool) (reached, bool) {
	w := walk{a: a, covered: make([]bool, len(a.boxes)), left: len(a.boxes), subs: append(slices.Clip(excepts), subtrahend{rules: c.index()})}
	for i := range c.rules {
		r := &c.rules[i]
		if !w.touches(r) {
			continue
		}
		w.subs[len(w.subs)-1].before = i
		if bad(c.results[i]) {
			if groups, point, ok := w.reach(r.groups, r.boxes); ok {
				return reached{rule: i, groups: groups, point: point}, true
			}
		}
		if w.cover(r) {
			return reached{}, false
		}
	}
	w.subs[len(w.subs)-1].before = len(c.rules)
	if bad(c.defaultResult()) {
		if groups, point, ok := w.reach(nil, nil); ok {
			return reached{rule: len(c.rules), groups: groups, point: point}, true
		}
	}
	return reached{}, false
}

// walk is the state of firstReachable.
type walk struct {
	a       area
	covered []bool
	left    int
	// subs are the exceptions and, last, the rules walked so far.
	subs []subtrahend
}

// touches tells whether m meets an area box that is still open.
func (w *walk) touches(m *matcher) bool {
	for i := range m.boxes {
		for j := range w.a.boxes {
			if !w.covered[j] && m.boxes[i].meets(&w.a.boxes[j]) {
				return true
			}
		}
	}
	return false
}

// cover closes the area boxes that m covers whole and tells whether none is left open.
func (w *walk) cover(m *matcher) bool {
	if !m.groupsImplied(w.a.must) {
		return false
	}
	for i := range w.a.boxes {
		if w.covered[i] {
			continue
		}
		for j := range m.boxes {
			if m.boxes[j].covers(&w.a.boxes[i]) {
				w.covered[i] = true
				w.left--
				break
			}
		}
	}
	return w.left == 0
}

// reach looks for a request in the open area, matched by a rule with these groups and boxes
// (nil boxes: any request), and outside every subtrahend. Boxes of closed area boxes need no
// search: every request in them is decided by an earlier rule.
//
// Rules and exceptions match more requests when the user has more groups, so if any request
// qualifies, one whose groups are a minimal set that hits every required list qualifies too:
// one group from each list. Those sets are tried, each fixing which subtrahends apply.
func (w *walk) reach(ruleGroups []int32, ruleBoxes []box) ([]int32, box, bool) {
	must := w.a.must
	if ruleGroups != nil {
		must = append(slices.Clone(must), ruleGroups)
	}
	var subs []*box
	search := func(t box, groups []int32) (box, bool) {
		subs = subs[:0]
		for _, s := range w.subs {
			subs = s.rules.meeting(&t, groups, s.before, subs)
		}
		return find(t, subs)
	}
	for _, groups := range minimalGroupSets(must) {
		for i := range w.a.boxes {
			if w.covered[i] {
				continue
			}
			if ruleBoxes == nil {
				if p, ok := search(w.a.boxes[i], groups); ok {
					return groups, p, true
				}
				continue
			}
			for j := range ruleBoxes {
				t := ruleBoxes[j].intersect(&w.a.boxes[i])
				if t.empty() {
					continue
				}
				if p, ok := search(t, groups); ok {
					return groups, p, true
				}
			}
		}
	}
	return nil, box{}, false
}

// minimalGroupSets returns the sets made of one group from each list, sorted and without
// repeats, in the order of the lists.
func minimalGroupSets(lists [][]int32) [][]int32 {
	sets := [][]int32{nil}
	for _, list := range lists {
		var next [][]int32
		for _, set := range sets {
			for _, g := range list {
				grown := set
				if !slices.Contains(set, g) {
					grown = append(slices.Clone(set), g)
					slices.Sort(grown)
				}
				if !slices.ContainsFunc(next, func(s []int32) bool { return slices.Equal(s, grown) }) {
					next = append(next, grown)
				}
			}
		}
		sets = next
	}
	return sets
}

// find returns a box inside t that meets none of subs, if t is not covered by their union.
//
// It first shrinks t by every sub that differs from it in one field only (t minus such a sub is
// still a box), and gives up when a sub covers t. If subs are left, it splits t on the field
// where most of them differ from it: one piece holds the values of t that none of those subs
// lists, which none of them meets, and one piece each value that they do list, which only the
// subs listing it (or any value) meet. Each piece is searched with the subs that can meet it.
func find(t box, subs []*box) (box, bool) {
	active := make([]*box, 0, len(subs))
	for _, s := range subs {
		if s.meets(&t) {
			active = append(active, s)
		}
	}
	for changed := true; changed; {
		changed = false
		// the values to take out of each field, gathered first: taking them out one sub at a
		// time would copy a growing except set once per sub
		var out [numDims][]int32
		kept := active[:0]
		for _, s := range active {
			if !s.meets(&t) {
				continue
			}
			d, n := differingField(s, &t)
			switch {
			case n == 0:
				return box{}, false
			case n == 1 && s[d].except:
				t[d] = t[d].minus(s[d])
				changed = true
			case n == 1:
				out[d] = append(out[d], s[d].ids...)
				changed = true
			default:
				kept = append(kept, s)
			}
		}
		for d := range numDims {
			if out[d] != nil {
				if t[d] = t[d].minus(only(out[d]...)); t[d].empty() {
					return box{}, false
				}
			}
		}
		active = kept
	}
	if len(active) == 0 {
		return t, true
	}

	// Every sub left differs from t in two fields or more, so the field exists; in each piece,
	// each sub that does not cover t in it either misses the piece or covers it in that field.
	d := splitField(&t, active)
	var listed valueSet
	var common []*box
	byValue := map[int32][]*box{}
	for _, s := range active {
		if !s[d].covers(t[d]) {
			listed = listed.union(valueSet{ids: s[d].ids})
		}
		if s[d].except || s[d].covers(t[d]) {
			common = append(common, s)
			continue
		}
		for _, v := range s[d].ids {
			byValue[v] = append(byValue[v], s)
		}
	}
	if rest := t[d].minus(listed); !rest.empty() {
		piece := t
		piece[d] = rest
		if p, ok := find(piece, common); ok {
			return p, true
		}
	}
	for _, v := range t[d].intersect(listed).ids {
		piece := t
		piece[d] = valueSet{ids: []int32{v}}
		if p, ok := find(piece, append(slices.Clip(common), byValue[v]...)); ok {
			return p, true
		}
	}
	return box{}, false
}

// splitField is the field where most subs do not cover t. Ties go to the earlier field of
// splitOrder, which puts the request space last so that witnesses tend to be resource requests.
func splitField(t *box, subs []*box) dim {
	best, most := dimSpace, 0
	for _, d := range splitOrder {
		n := 0
		for _, s := range subs {
			if !s[d].covers(t[d]) {
				n++
			}
		}
		if n > most {
			best, most = d, n
		}
	}
	return best
}

var splitOrder = []dim{dimUser, dimVerb, dimAPIGroup, dimResource, dimSubresource, dimNamespace, dimName, dimPath, dimSpace}

// differingField returns a field where s does not cover t, and how many there are (0, 1 or 2
// for "more than one").
func differingField(s, t *box) (dim, int) {
	found, n := dim(0), 0
	for d := range numDims {
		if !s[d].covers(t[d]) {
			if n == 1 {
				return found, 2
			}
			found, n = d, 1
		}
	}
	return found, n
}
