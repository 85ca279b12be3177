package guardrail

import "slices"

// ruleIndex holds the boxes of a list of rules (or exceptions), indexed by the values of each
// field so that the boxes that can meet a given box are found without looking at the others.
// Rules are indexed when a search first needs them: most walks search little or nothing, and
// one index serves every walk over the same rules.
type ruleIndex struct {
	rules []matcher
	// indexed is how many rules the index holds.
	indexed int
	boxes   []*box
	// owner[pos] is the rule of boxes[pos]; positions follow rule order. all is every position.
	owner []int32
	all   []int32
	// byValue[d][v] are the positions of the boxes whose field d lists value v; anyValue[d]
	// those whose field d is an except set. The request space is not indexed: it has two
	// values.
	byValue  [numDims]map[int32][]int32
	anyValue [numDims][]int32
	// seen[pos] == mark when pos was already gathered by the current call of meeting, into
	// gathered.
	seen     []uint32
	mark     uint32
	gathered []int32
}

func newRuleIndex(rules []matcher) *ruleIndex { return &ruleIndex{rules: rules} }

// index adds the rules before before to the index.
func (x *ruleIndex) index(before int) {
	for ; x.indexed < before; x.indexed++ {
		for j := range x.rules[x.indexed].boxes {
			pos, b := int32(len(x.boxes)), &x.rules[x.indexed].boxes[j]
			x.boxes = append(x.boxes, b)
			x.owner = append(x.owner, int32(x.indexed))
			x.all = append(x.all, pos)
			x.seen = append(x.seen, 0)
			for d := dimSpace + 1; d < numDims; d++ {
				if b[d].except {
					x.anyValue[d] = append(x.anyValue[d], pos)
					continue
				}
				if x.byValue[d] == nil {
					x.byValue[d] = map[int32][]int32{}
				}
				for _, v := range b[d].ids {
					x.byValue[d][v] = append(x.byValue[d][v], pos)
				}
			}
		}
	}
}

// meeting appends to out the boxes of the rules before before that apply to a user with these
// groups and meet t, in rule order. It gathers candidates from the field of t whose index lists
// are shortest.
func (x *ruleIndex) meeting(t *box, groups []int32, before int, out []*box) []*box {
	x.index(before)
	// end is the first position of a rule at or after before
	end := func(list []int32) []int32 {
		n, _ := slices.BinarySearchFunc(list, int32(before), func(pos, rule int32) int { return int(x.owner[pos] - rule) })
		return list[:n]
	}
	all := end(x.all)
	best, bestCost := dim(-1), len(all)
	for d := dimSpace + 1; d < numDims; d++ {
		if t[d].except {
			continue
		}
		cost := len(end(x.anyValue[d]))
		for _, v := range t[d].ids {
			if cost >= bestCost {
				break
			}
			cost += len(end(x.byValue[d][v]))
		}
		if cost < bestCost {
			best, bestCost = d, cost
		}
	}
	positions := all
	if best >= 0 {
		x.mark++
		x.gathered = x.gathered[:0]
		gather := func(list []int32) {
			for _, pos := range end(list) {
				if x.seen[pos] != x.mark {
					x.seen[pos] = x.mark
					x.gathered = append(x.gathered, pos)
				}
			}
		}
		gather(x.anyValue[best])
		for _, v := range t[best].ids {
			gather(x.byValue[best][v])
		}
		slices.Sort(x.gathered)
		positions = x.gathered
	}
	for _, pos := range positions {
		g := x.rules[x.owner[pos]].groups
		if (g == nil || sharesID(g, groups)) && x.boxes[pos].meets(t) {
			out = append(out, x.boxes[pos])
		}
	}
	return out
}
