// Package spelling finds what a misspelt name was probably meant to be, for "did you mean"
// hints in findings and errors.
package spelling

import "strings"

// Closest returns the candidate nearest to s by edit distance, ignoring case, if one is within
// two edits; ok is false otherwise.
func Closest(s string, candidates []string) (best string, ok bool) {
	dist := 3
	for _, c := range candidates {
		if d := distance(strings.ToLower(s), strings.ToLower(c)); d < dist {
			best, dist = c, d
		}
	}
	return best, dist < 3
}

// distance is the Levenshtein distance of a and b, in bytes.
func distance(a, b string) int {
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
