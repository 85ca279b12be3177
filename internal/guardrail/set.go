package guardrail

import "slices"

// valueSet is a set of values of one request field, as ids of the literals that the policies
// and scopes mention: either exactly ids, or (except) every value but ids. Fields whose values
// are any string (users, verbs, names...) are infinite, so an except set always holds a value
// that no rule mentions; the fields with a finite list of representatives (space, path) only
// ever hold plain sets. ids are sorted and unique.
type valueSet struct {
	except bool
	ids    []int32
}

// anyValue is every value of an infinite field.
var anyValue = valueSet{except: true}

func only(ids ...int32) valueSet {
	out := slices.Clone(ids)
	slices.Sort(out)
	return valueSet{ids: slices.Compact(out)}
}

func (s valueSet) empty() bool { return !s.except && len(s.ids) == 0 }

func (s valueSet) has(id int32) bool {
	_, found := slices.BinarySearch(s.ids, id)
	return found != s.except
}

// meets tells whether the sets share a value.
func (s valueSet) meets(o valueSet) bool {
	switch {
	case s.except && o.except:
		return true
	case s.except:
		return !subsetOf(o.ids, s.ids)
	case o.except:
		return !subsetOf(s.ids, o.ids)
	}
	return sharesID(s.ids, o.ids)
}

// covers tells whether every value of o is in s.
func (s valueSet) covers(o valueSet) bool {
	switch {
	case s.except && o.except:
		return subsetOf(s.ids, o.ids)
	case s.except:
		return !sharesID(o.ids, s.ids)
	case o.except:
		return false
	}
	return subsetOf(o.ids, s.ids)
}

func (s valueSet) intersect(o valueSet) valueSet {
	switch {
	case s.except && o.except:
		return valueSet{except: true, ids: unionIDs(s.ids, o.ids)}
	case s.except:
		return valueSet{ids: minusIDs(o.ids, s.ids)}
	case o.except:
		return valueSet{ids: minusIDs(s.ids, o.ids)}
	}
	return valueSet{ids: intersectIDs(s.ids, o.ids)}
}

func (s valueSet) minus(o valueSet) valueSet {
	return s.intersect(valueSet{except: !o.except, ids: o.ids})
}

func (s valueSet) union(o valueSet) valueSet {
	switch {
	case s.except && o.except:
		return valueSet{except: true, ids: intersectIDs(s.ids, o.ids)}
	case s.except:
		return valueSet{except: true, ids: minusIDs(s.ids, o.ids)}
	case o.except:
		return valueSet{except: true, ids: minusIDs(o.ids, s.ids)}
	}
	return valueSet{ids: unionIDs(s.ids, o.ids)}
}

func (s valueSet) equal(o valueSet) bool { return s.except == o.except && slices.Equal(s.ids, o.ids) }

// small is the length under which a list is looked up in a long one by binary search rather
// than by walking both.
const small = 8

// subsetOf tells whether every id of a is in b (both sorted).
func subsetOf(a, b []int32) bool {
	if len(a) > len(b) {
		return false
	}
	if len(a) <= small && len(b) > 4*small {
		for _, x := range a {
			if _, found := slices.BinarySearch(b, x); !found {
				return false
			}
		}
		return true
	}
	j := 0
	for _, x := range a {
		for j < len(b) && b[j] < x {
			j++
		}
		if j == len(b) || b[j] != x {
			return false
		}
		j++
	}
	return true
}

func sharesID(a, b []int32) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	if len(a) <= small && len(b) > 4*small {
		for _, x := range a {
			if _, found := slices.BinarySearch(b, x); found {
				return true
			}
		}
		return false
	}
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] == b[j]:
			return true
		case a[i] < b[j]:
			i++
		default:
			j++
		}
	}
	return false
}

func intersectIDs(a, b []int32) []int32 {
	var out []int32
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] == b[j]:
			out = append(out, a[i])
			i++
			j++
		case a[i] < b[j]:
			i++
		default:
			j++
		}
	}
	return out
}

func minusIDs(a, b []int32) []int32 {
	if !sharesID(a, b) {
		return a
	}
	out := make([]int32, 0, len(a))
	j := 0
	for _, x := range a {
		for j < len(b) && b[j] < x {
			j++
		}
		if j < len(b) && b[j] == x {
			continue
		}
		out = append(out, x)
	}
	return out
}

func unionIDs(a, b []int32) []int32 {
	if len(b) == 0 {
		return a
	}
	if len(a) == 0 {
		return b
	}
	out := make([]int32, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] == b[j]:
			out = append(out, a[i])
			i++
			j++
		case a[i] < b[j]:
			out = append(out, a[i])
			i++
		default:
			out = append(out, b[j])
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}
