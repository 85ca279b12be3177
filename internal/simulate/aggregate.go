package simulate

import (
	"cmp"
	"slices"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/internal/policy"
)

// Example is one event shown in the report.
type Example struct {
	File          string `json:"file"`
	Line          int64  `json:"line"`
	User          string `json:"user"`
	Verb          string `json:"verb"`
	Resource      string `json:"resource"`
	Namespace     string `json:"namespace,omitempty"`
	Name          string `json:"name,omitempty"`
	RecordedLevel string `json:"recordedLevel"`
	loc           location
}

type lineProblem struct {
	loc location
	msg string
}

// aggregate adds up counts; each worker has its own, merged at the end.
type aggregate struct {
	cand, base  *compiled
	examples    int
	recorded    [4]counters
	badLines    int64
	badSamples  []lineProblem
	otherLines  int64
	otherSample []lineProblem
	total       counters
	rules       map[int]*counters
	baseRules   map[int]*counters
	levels      map[auditv1.Level]*counters
	baseLevels  map[auditv1.Level]*counters
	users       map[string]*counters
	verbs       map[string]*counters
	resources   map[string]*counters
	transitions map[[2]int]*counters
	security    [numCategories]counters
	// managedFields counts written events with bodies whose policy omits managedFields: their
	// recorded bodies may hold managedFields that the estimate does not subtract.
	managedFields int64
	secExamples   [numCategories][]Example
}

func newAggregate(cand, base *compiled, examples int) *aggregate {
	return &aggregate{
		cand: cand, base: base, examples: examples,
		rules: map[int]*counters{}, baseRules: map[int]*counters{},
		levels: map[auditv1.Level]*counters{}, baseLevels: map[auditv1.Level]*counters{},
		users: map[string]*counters{}, verbs: map[string]*counters{}, resources: map[string]*counters{},
		transitions: map[[2]int]*counters{},
	}
}

func (a *aggregate) badLine(loc location, msg string) {
	a.badLines++
	if len(a.badSamples) < a.examples {
		a.badSamples = append(a.badSamples, lineProblem{loc, msg})
	}
}

func (a *aggregate) otherVersion(loc location, apiVersion, kind string) {
	a.otherLines++
	if len(a.otherSample) < a.examples {
		a.otherSample = append(a.otherSample, lineProblem{loc, "apiVersion " + quote(apiVersion) + " kind " + quote(kind) + ": not an " + eventAPIVersion + " Event"})
	}
}

func quote(s string) string { return "\"" + s + "\"" }

func (a *aggregate) securityDrop(cats uint8, loc location, example func() Example) {
	for i := range numCategories {
		if cats&(1<<i) != 0 && len(a.secExamples[i]) < a.examples {
			ex := example()
			ex.loc = loc
			a.secExamples[i] = append(a.secExamples[i], ex)
		}
	}
}

func bucket[K comparable](m map[K]*counters, k K) *counters {
	c, ok := m[k]
	if !ok {
		c = &counters{}
		m[k] = c
	}
	return c
}

func (a *aggregate) addEntry(e *entry) {
	c := &e.c
	if c.Events == 0 {
		return
	}
	a.total.add(c)
	if e.cand.OmitManagedFields && policy.LevelRank(e.cand.Level) >= 2 {
		a.managedFields += c.Written
	}
	bucket(a.rules, e.cand.Rule).add(c)
	bucket(a.levels, e.cand.Level).add(c)
	if e.hasBase {
		bucket(a.baseRules, e.base.Rule).add(c)
		bucket(a.baseLevels, e.base.Level).add(c)
		bucket(a.transitions, [2]int{e.base.Rule, e.cand.Rule}).add(c)
	}
	bucket(a.users, e.info.user).add(c)
	bucket(a.verbs, e.info.verb).add(c)
	bucket(a.resources, e.info.resource).add(c)
	for i := range numCategories {
		if e.info.categories&(1<<i) != 0 {
			a.security[i].add(c)
		}
	}
	*c = counters{}
}

func mergeMap[K comparable](into, from map[K]*counters) {
	for k, c := range from {
		bucket(into, k).add(c)
	}
}

func (a *aggregate) merge(o *aggregate) {
	for i := range a.recorded {
		a.recorded[i].add(&o.recorded[i])
	}
	a.badLines += o.badLines
	a.badSamples = firstProblems(append(a.badSamples, o.badSamples...), a.examples)
	a.otherLines += o.otherLines
	a.otherSample = firstProblems(append(a.otherSample, o.otherSample...), a.examples)
	a.total.add(&o.total)
	a.managedFields += o.managedFields
	mergeMap(a.rules, o.rules)
	mergeMap(a.baseRules, o.baseRules)
	mergeMap(a.levels, o.levels)
	mergeMap(a.baseLevels, o.baseLevels)
	mergeMap(a.users, o.users)
	mergeMap(a.verbs, o.verbs)
	mergeMap(a.resources, o.resources)
	mergeMap(a.transitions, o.transitions)
	for i := range numCategories {
		a.security[i].add(&o.security[i])
		ex := append(a.secExamples[i], o.secExamples[i]...)
		slices.SortFunc(ex, func(x, y Example) int { return compareLoc(x.loc, y.loc) })
		if len(ex) > a.examples {
			ex = ex[:a.examples]
		}
		a.secExamples[i] = ex
	}
}

func compareLoc(x, y location) int {
	return cmp.Or(cmp.Compare(x.File, y.File), cmp.Compare(x.Line, y.Line))
}

func firstProblems(p []lineProblem, n int) []lineProblem {
	slices.SortFunc(p, func(x, y lineProblem) int { return compareLoc(x.loc, y.loc) })
	if len(p) > n {
		p = p[:n]
	}
	return p
}
