package advise

import (
	"context"
	"fmt"
	"slices"
	"strings"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/relevance"
	"github.com/kaudit/kaudit/internal/simulate"
)

// Stages are counted apart because each rule omits its own; slot 4 holds events of an unknown
// stage, which no rule omits.
var stages = []auditv1.Stage{auditv1.StageRequestReceived, auditv1.StageResponseStarted, auditv1.StageResponseComplete, auditv1.StagePanic}

// bodyLevels are the levels that write an event, in the order of entry.bytes.
var bodyLevels = []auditv1.Level{auditv1.LevelMetadata, auditv1.LevelRequest, auditv1.LevelRequestResponse}

// entry is a distinct request of the logs: every event of it is decided alike by the starting
// policy and by any suggestion.
type entry struct {
	req  policy.Request
	need relevance.Requirement
	// start is the starting policy's decision.
	start policy.Decision
	// events per stage; bytes per stage and level (bodyLevels), as simulate estimates them.
	events [5]int64
	bytes  [5][3]int64
}

func stageSlot(s auditv1.Stage) int {
	if i := slices.Index(stages, s); i >= 0 {
		return i
	}
	return len(stages)
}

// written counts the events and bytes a decision writes of the entry.
func (e *entry) written(d policy.Decision) (events, bytes int64) {
	if d.Level == auditv1.LevelNone {
		return 0, 0
	}
	li := slices.Index(bodyLevels, d.Level)
	for s := range e.events {
		if s < len(stages) && slices.Contains(d.OmitStages, stages[s]) {
			continue
		}
		events += e.events[s]
		bytes += e.bytes[s][li]
	}
	return events, bytes
}

func (e *entry) total() int64 {
	var n int64
	for _, c := range e.events {
		n += c
	}
	return n
}

func (e *entry) add(o *entry) {
	for s := range e.events {
		e.events[s] += o.events[s]
		for l := range e.bytes[s] {
			e.bytes[s][l] += o.bytes[s][l]
		}
	}
}

// table remembers the distinct requests one worker saw, up to a bound.
type table struct {
	names   nameKeys
	max     int
	entries map[string]*entry
	full    bool
	key     []byte
}

func (t *table) visit(l *simulate.Line) {
	var req policy.Request
	t.key = l.AppendKey(t.key[:0], false)
	if t.names.any() {
		// The object's name decides only for the resources a rule names objects of.
		req = l.Request()
		if t.names.matter(req) {
			t.key = append(t.key, 0)
			t.key = append(t.key, req.Name...)
		}
	}
	e := t.entries[string(t.key)]
	if e == nil {
		if len(t.entries) >= t.max {
			t.full = true
			return
		}
		if !t.names.any() {
			req = l.Request()
		}
		e = &entry{req: req}
		t.entries[string(t.key)] = e
	}
	s := stageSlot(l.Stage())
	e.events[s]++
	for i, level := range bodyLevels {
		e.bytes[s][i] += l.Bytes(level)
	}
}

// collect reads the logs into one table of distinct requests. It fails when an input cannot be
// read, when no event was read, and when the logs hold more than max distinct requests: a
// request that is not remembered could not be checked.
func collect(ctx context.Context, inputs []simulate.Input, workers, max int, names nameKeys) ([]*entry, simulate.VisitSummary, error) {
	var tables []*table
	summary := simulate.Visit(ctx, inputs, workers, func() func(*simulate.Line) {
		t := &table{names: names, max: max, entries: map[string]*entry{}}
		tables = append(tables, t) // Visit calls newVisit on this goroutine
		return t.visit
	})
	var failed []string
	for _, in := range summary.Inputs {
		if in.Error != "" {
			failed = append(failed, in.Name+": "+in.Error)
		}
	}
	switch {
	case len(failed) > 0:
		return nil, summary, fmt.Errorf("%d of %d inputs could not be read; suggestions from part of a log are not made:\n  %s", len(failed), len(summary.Inputs), strings.Join(failed, "\n  "))
	case summary.Events == 0:
		return nil, summary, fmt.Errorf("no audit event was read (%d malformed lines, %d lines of another kind or version)", summary.BadLines, summary.OtherLines)
	}
	all := map[string]*entry{}
	var keys []string
	for _, t := range tables {
		if t.full {
			return nil, summary, tooMany(max)
		}
		for k, e := range t.entries {
			if have := all[k]; have != nil {
				have.add(e)
				continue
			}
			if len(all) >= max {
				return nil, summary, tooMany(max)
			}
			all[k] = e
			keys = append(keys, k)
		}
	}
	// Workers see lines in any order: sort, so that the same logs give the same suggestions.
	slices.Sort(keys)
	out := make([]*entry, len(keys))
	for i, k := range keys {
		out[i] = all[k]
	}
	return out, summary, nil
}

func tooMany(max int) error {
	return fmt.Errorf("the logs hold more than %d distinct requests (user, groups, verb, resource, namespace): give a shorter stretch of log", max)
}

// nameKeys says for which requests the object's name is part of what a policy decides on: those
// of the resources that a rule with resourceNames lists.
type nameKeys struct {
	all       bool
	resources []auditv1.GroupResources
}

func namesOf(p auditv1.Policy) nameKeys {
	var k nameKeys
	for _, r := range p.Rules {
		for _, gr := range r.Resources {
			if len(gr.ResourceNames) == 0 {
				continue
			}
			if len(gr.Resources) == 0 {
				k.all = true
			}
			for _, res := range gr.Resources {
				if strings.Contains(res, "*") {
					k.all = true
				}
			}
			k.resources = append(k.resources, gr)
		}
	}
	return k
}

func (k nameKeys) any() bool { return k.all || len(k.resources) > 0 }

func (k nameKeys) matter(r policy.Request) bool {
	if !r.ResourceRequest {
		return false
	}
	if k.all {
		return true
	}
	res := r.Resource
	if r.Subresource != "" {
		res += "/" + r.Subresource
	}
	for _, gr := range k.resources {
		if gr.Group == r.APIGroup && slices.Contains(gr.Resources, res) {
			return true
		}
	}
	return false
}
