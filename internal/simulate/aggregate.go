package simulate

import (
	"cmp"
	"slices"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/relevance"
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
	// Level, DecidedBy and Needs say, for a security-relevant request the policy does not record
	// as required, the level the policy gives it, the rule that decides it and the level
	// required.
	Level     string `json:"level,omitempty"`
	DecidedBy string `json:"decidedBy,omitempty"`
	Needs     string `json:"needs,omitempty"`
	loc       location
}

// securityCount counts the security-relevant requests of one rule of docs/modules.md.
type securityCount struct {
	Requests, Kept, BaselineKept int64
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
	// security counts security-relevant requests per rule of relevance.Rules.
	security []securityCount
	// managedFields counts written events with bodies whose policy omits managedFields: their
	// recorded bodies may hold managedFields that the estimate does not subtract.
	managedFields int64
	// missed are examples of security-relevant requests the policy does not keep, per rule.
	missed [][]Example
}

func newAggregate(cand, base *compiled, examples int) *aggregate {
	return &aggregate{
		cand: cand, base: base, examples: examples,
		rules: map[int]*counters{}, baseRules: map[int]*counters{},
		levels: map[auditv1.Level]*counters{}, baseLevels: map[auditv1.Level]*counters{},
		users: map[string]*counters{}, verbs: map[string]*counters{}, resources: map[string]*counters{},
		transitions: map[[2]int]*counters{},
		security:    make([]securityCount, len(relevance.Rules)), missed: make([][]Example, len(relevance.Rules)),
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

// relevant counts a security-relevant request of rule r, and shows it if the policy misses it.
func (a *aggregate) relevant(r relevance.Rule, kept, baseKept bool, loc location, example func() Example) {
	i := slices.Index(relevance.Rules, r)
	c := &a.security[i]
	c.Requests++
	if kept {
		c.Kept++
	} else if len(a.missed[i]) < a.examples {
		ex := example()
		ex.loc = loc
		a.missed[i] = append(a.missed[i], ex)
	}
	if baseKept {
		c.BaselineKept++
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
	for i := range a.security {
		c, oc := &a.security[i], &o.security[i]
		c.Requests, c.Kept, c.BaselineKept = c.Requests+oc.Requests, c.Kept+oc.Kept, c.BaselineKept+oc.BaselineKept
		ex := append(a.missed[i], o.missed[i]...)
		slices.SortFunc(ex, func(x, y Example) int { return compareLoc(x.loc, y.loc) })
		if len(ex) > a.examples {
			ex = ex[:a.examples]
		}
		a.missed[i] = ex
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
