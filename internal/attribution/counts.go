package attribution

import (
	"cmp"
	"slices"
	"time"
)

// Counts is what an Attributor counted, as plain data: what auditwatch exports as metrics and
// saves with the follower's checkpoint.
type Counts struct {
	// Rules are events and bytes per revision, rule and stage: only the pairs that saw events.
	Rules []RuleCount `json:"rules,omitempty"`
	// LevelMismatches count, per revision, events recorded at another level than their rule
	// decides: the apiserver did not run the policy of the revision it was credited with.
	LevelMismatches []RevisionCount `json:"levelMismatches,omitempty"`
	// Security counts events per security-relevant category (Options.Categories).
	Security []CategoryCount `json:"security,omitempty"`
	// Lines credited to no rule: not JSON, JSON of another kind or apiVersion, an event without
	// a time, written before the first revision known (or in a revision's time after it was
	// dropped), and decided by no rule of its revision (level None: not written by that policy).
	Malformed  int64 `json:"malformed,omitempty"`
	NotEvents  int64 `json:"notEvents,omitempty"`
	NoTime     int64 `json:"noTime,omitempty"`
	NoRevision int64 `json:"noRevision,omitempty"`
	NoRule     int64 `json:"noRule,omitempty"`
	// Latest is the latest time of an event read.
	Latest time.Time `json:"latest,omitzero"`
}

// RuleCount is the events one rule of one revision decided, at one stage.
type RuleCount struct {
	Revision int64 `json:"revision"`
	// Module and Rule name the rule: the module's name and the rule's index in it; "default"
	// and "default" for the catch-all; "policy" and the index in the policy for a policy that
	// kaudit did not render.
	Module string `json:"module"`
	Rule   string `json:"rule"`
	// Level is the rule's level.
	Level string `json:"level"`
	// Stage is the stage the events were written at.
	Stage string `json:"stage"`
	// Events is the number of events and Bytes their size in the log, newlines included.
	Events int64 `json:"events"`
	Bytes  int64 `json:"bytes"`
}

// RevisionCount is a number of events of one revision.
type RevisionCount struct {
	Revision int64 `json:"revision"`
	Events   int64 `json:"events"`
}

// CategoryCount is a number of events of one security-relevant category.
type CategoryCount struct {
	Category string `json:"category"`
	Events   int64  `json:"events"`
}

// Snapshot returns a copy of the counts, in a stable order.
func (a *Attributor) Snapshot() Counts {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := Counts{
		Malformed: a.totals.malformed, NotEvents: a.totals.notEvent, NoTime: a.totals.noTime,
		NoRevision: a.totals.noRevision, NoRule: a.totals.noRule, Latest: a.latest,
	}
	for _, r := range a.sortedRevisions() {
		for i := range r.counts {
			for st, t := range r.counts[i] {
				if t.events > 0 {
					c.Rules = append(c.Rules, RuleCount{
						Revision: r.number, Module: r.modules[i], Rule: r.rules[i], Level: string(r.levels[i]),
						Stage: stageNames[st], Events: t.events, Bytes: t.bytes,
					})
				}
			}
		}
		if r.mismatches > 0 {
			c.LevelMismatches = append(c.LevelMismatches, RevisionCount{Revision: r.number, Events: r.mismatches})
		}
	}
	for cat, n := range a.security {
		c.Security = append(c.Security, CategoryCount{Category: cat, Events: n})
	}
	slices.SortFunc(c.Security, func(x, y CategoryCount) int { return cmp.Compare(x.Category, y.Category) })
	return c
}

// Restore adds counts saved earlier, after a restart, to the revisions of the history given to
// SetRevisions. It returns how many rule counts matched no rule of those revisions (the history
// no longer holds their revision); they are dropped.
func (a *Attributor) Restore(c Counts) (dropped int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.totals.malformed += c.Malformed
	a.totals.notEvent += c.NotEvents
	a.totals.noTime += c.NoTime
	a.totals.noRevision += c.NoRevision
	a.totals.noRule += c.NoRule
	if c.Latest.After(a.latest) {
		a.latest = c.Latest
	}
	for _, rc := range c.Rules {
		r := a.revs[rc.Revision]
		st := slices.Index(stageNames[:], rc.Stage)
		i := -1
		if r != nil {
			i = r.ruleIndex(rc.Module, rc.Rule)
		}
		if i < 0 || st < 0 {
			dropped++
			continue
		}
		r.counts[i][st].events += rc.Events
		r.counts[i][st].bytes += rc.Bytes
	}
	for _, m := range c.LevelMismatches {
		if r := a.revs[m.Revision]; r != nil {
			r.mismatches += m.Events
		}
	}
	for _, s := range c.Security {
		a.security[s.Category] += s.Events
	}
	a.prune()
	return dropped
}

// ruleIndex finds a rule by its labels; -1 when there is none.
func (r *revision) ruleIndex(module, rule string) int {
	for i := range r.modules {
		if r.modules[i] == module && r.rules[i] == rule {
			return i
		}
	}
	return -1
}
