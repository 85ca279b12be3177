package guardrail

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestPathRepresentativesStandForEveryPath checks the claim the path field rests on: for any
// set of nonResourceURLs patterns, every path is matched by exactly the same patterns as one of
// the representatives. Paths are every string of up to six characters over "/", "a" and "b"
// that starts with "/", which holds every way to nest, extend and just miss the patterns.
func TestPathRepresentativesStandForEveryPath(t *testing.T) {
	pool := []string{"*", "/", "/*", "/a", "/a*", "/a/", "/a/*", "/ab", "/ab*", "/b*", "/a/b", "/a/b*", "/aa*"}
	var paths []string
	var grow func(string)
	grow = func(p string) {
		paths = append(paths, p)
		if len(p) < 6 {
			for _, c := range []string{"/", "a", "b"} {
				grow(p + c)
			}
		}
	}
	grow("/")
	r := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		var patterns []string
		for range 1 + r.IntN(5) {
			patterns = append(patterns, pool[r.IntN(len(pool))])
		}
		slices.Sort(patterns)
		patterns = slices.Compact(patterns)
		matches := func(path string) []bool {
			out := make([]bool, len(patterns))
			for i, p := range patterns {
				out[i] = pathMatches(path, p)
			}
			return out
		}
		reps := pathRepresentatives(patterns)
		var classes [][]bool
		for _, rep := range reps {
			if rep == "" || rep[0] != '/' {
				t.Fatalf("patterns %q: representative %q is not a path", patterns, rep)
			}
			classes = append(classes, matches(rep))
		}
		for _, path := range paths {
			m := matches(path)
			if !slices.ContainsFunc(classes, func(c []bool) bool { return slices.Equal(c, m) }) {
				t.Fatalf("patterns %q: no representative among %q is matched like %q", patterns, reps, path)
			}
		}
	}
}
