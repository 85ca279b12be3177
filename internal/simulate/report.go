package simulate

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/relevance"
)

// Report is the result of a simulation. Its JSON form is the machine output (--format json).
type Report struct {
	Inputs []InputSummary `json:"inputs"`
	// Events is the number of audit.k8s.io/v1 events read.
	Events int64 `json:"events"`
	// RecordedBytes is the size of those events' lines.
	RecordedBytes int64 `json:"recordedBytes"`
	// Recorded counts events per level as recorded in the log.
	Recorded []LevelCount `json:"recorded"`
	// BadLines are lines that are not JSON objects; OtherLines are JSON of another kind or version.
	BadLines        int64         `json:"badLines"`
	BadLineExamples []LineProblem `json:"badLineExamples,omitempty"`
	OtherLines      int64         `json:"otherLines"`
	OtherExamples   []LineProblem `json:"otherLineExamples,omitempty"`

	// Policy is what the simulated policy does with the events.
	Policy PolicyReport `json:"policy"`
	// Baseline is the policy given with --against, if any.
	Baseline *PolicyReport `json:"baseline,omitempty"`
	// Diff compares the policy with the baseline (the --against policy, or the recorded log).
	Diff Diff `json:"diff"`
	// Top users, verbs and resources by bytes the policy keeps.
	TopUsers     []Top `json:"topUsers"`
	TopVerbs     []Top `json:"topVerbs"`
	TopResources []Top `json:"topResources"`
	// Security counts, per rule of docs/modules.md's definition (R1-R6), the security-relevant
	// requests and how many the policy and the baseline record at the level the rule requires.
	// A request is counted once: a long-running one (watch, exec, port-forward, logs, proxy) at
	// its ResponseStarted event, any other at its final stage (ResponseComplete or Panic).
	Security []SecurityRule `json:"security"`
	// Notes say what the estimates cannot know.
	Notes []string `json:"notes,omitempty"`
}

// InputSummary is one input file.
type InputSummary struct {
	Name  string `json:"name"`
	Lines int64  `json:"lines"`
	Bytes int64  `json:"bytes"`
	Error string `json:"error,omitempty"`
}

// LineProblem is a line that was not counted.
type LineProblem struct {
	File    string `json:"file"`
	Line    int64  `json:"line"`
	Problem string `json:"problem"`
}

// LevelCount is events and estimated bytes at one level.
type LevelCount struct {
	Level   string `json:"level"`
	Events  int64  `json:"events"`
	Written int64  `json:"written"`
	Bytes   int64  `json:"bytes"`
}

// RuleCount is what one rule decided.
type RuleCount struct {
	Index   int    `json:"index"`
	Source  string `json:"source"`
	Level   string `json:"level"`
	Events  int64  `json:"events"`
	Written int64  `json:"written"`
	Bytes   int64  `json:"bytes"`
}

// PolicyReport is what one policy does with the events.
type PolicyReport struct {
	Name     string       `json:"name"`
	Written  int64        `json:"written"`
	Bytes    int64        `json:"bytes"`
	Levels   []LevelCount `json:"levels"`
	Modules  []RuleCount  `json:"modules"`
	Rules    []RuleCount  `json:"rules"`
	NeverHit []string     `json:"rulesNeverHit"`
	// BodiesNotRecorded counts written events that the policy records at a higher level than
	// the log did: their bodies are missing from the log, so their bytes are a lower bound.
	BodiesNotRecorded int64 `json:"bodiesNotRecorded"`
}

// Diff compares the policy with the baseline.
type Diff struct {
	Baseline        string       `json:"baseline"`
	BaselineWritten int64        `json:"baselineWritten"`
	BaselineBytes   int64        `json:"baselineBytes"`
	Bytes           int64        `json:"bytes"`
	Dropped         int64        `json:"dropped"`
	DroppedBytes    int64        `json:"droppedBytes"`
	StageOmitted    int64        `json:"stageOmitted"`
	StageBytes      int64        `json:"stageOmittedBytes"`
	Added           int64        `json:"added"`
	AddedBytes      int64        `json:"addedBytes"`
	LevelUp         int64        `json:"levelUp"`
	LevelDown       int64        `json:"levelDown"`
	Changes         []Transition `json:"changes,omitempty"`
}

// Transition is a group of events decided by one baseline rule and another policy rule.
type Transition struct {
	From          string `json:"from"`
	To            string `json:"to"`
	Events        int64  `json:"events"`
	Dropped       int64  `json:"dropped"`
	Added         int64  `json:"added"`
	BytesChange   int64  `json:"bytesChange"`
	BaselineBytes int64  `json:"baselineBytes"`
	Bytes         int64  `json:"bytes"`
}

// Top is a user, verb or resource and the events and bytes the policy keeps of it.
type Top struct {
	Name    string `json:"name"`
	Events  int64  `json:"events"`
	Written int64  `json:"written"`
	Bytes   int64  `json:"bytes"`
}

// SecurityRule is what the policy and the baseline keep of the requests that one rule of the
// definition of security-relevant covers.
type SecurityRule struct {
	Rule string `json:"rule"`
	What string `json:"what"`
	// Requests are the requests of the rule; Kept and BaselineKept those the policy and the
	// baseline record at the required level.
	Requests     int64 `json:"requests"`
	Kept         int64 `json:"kept"`
	BaselineKept int64 `json:"baselineKept"`
	// Missed are examples of requests the policy does not record at the required level.
	Missed []Example `json:"missed,omitempty"`
}

const topN = 10

var levels = []auditv1.Level{auditv1.LevelNone, auditv1.LevelMetadata, auditv1.LevelRequest, auditv1.LevelRequestResponse}

func (a *aggregate) report(inputs []*inputState) *Report {
	r := &Report{Events: a.total.Events, RecordedBytes: a.total.RecordedBytes, BadLines: a.badLines, OtherLines: a.otherLines}
	name := func(i int) string { return inputs[i].Name }
	for _, in := range inputs {
		s := InputSummary{Name: in.Name, Lines: in.lines, Bytes: in.bytes}
		if in.err != nil {
			s.Error = inputErrorText(in.err)
		}
		r.Inputs = append(r.Inputs, s)
	}
	for i, l := range levels {
		r.Recorded = append(r.Recorded, LevelCount{Level: string(l), Events: a.recorded[i].Events, Written: a.recorded[i].Events, Bytes: a.recorded[i].RecordedBytes})
	}
	for _, p := range a.badSamples {
		r.BadLineExamples = append(r.BadLineExamples, LineProblem{File: name(p.loc.File), Line: p.loc.Line, Problem: p.msg})
	}
	for _, p := range a.otherSample {
		r.OtherExamples = append(r.OtherExamples, LineProblem{File: name(p.loc.File), Line: p.loc.Line, Problem: p.msg})
	}

	r.Policy = policyReport(a.cand, a.rules, a.levels, false)
	r.Policy.BodiesNotRecorded = a.total.LowerBound
	r.Diff = Diff{
		Baseline: "recorded log", BaselineWritten: a.total.BaseWritten, BaselineBytes: a.total.BaseBytes, Bytes: a.total.Bytes,
		Dropped: a.total.Dropped, DroppedBytes: a.total.DroppedBytes, StageOmitted: a.total.StageOmitted, StageBytes: a.total.StageBytes, Added: a.total.Added, AddedBytes: a.total.AddedBytes,
		LevelUp: a.total.LevelUp, LevelDown: a.total.LevelDown,
	}
	if a.base != nil {
		b := policyReport(a.base, a.baseRules, a.baseLevels, true)
		r.Baseline = &b
		r.Diff.Baseline = a.base.target.Name
		for k, c := range a.transitions {
			if k[0] == k[1] && c.Dropped == 0 && c.Added == 0 && c.Bytes == c.BaseBytes {
				continue
			}
			r.Diff.Changes = append(r.Diff.Changes, Transition{
				From: a.base.label(k[0]), To: a.cand.label(k[1]), Events: c.Events, Dropped: c.Dropped, Added: c.Added,
				BytesChange: c.Bytes - c.BaseBytes, BaselineBytes: c.BaseBytes, Bytes: c.Bytes,
			})
		}
		slices.SortFunc(r.Diff.Changes, func(x, y Transition) int {
			return cmp.Or(cmp.Compare(abs(y.BytesChange), abs(x.BytesChange)), cmp.Compare(y.Events, x.Events), cmp.Compare(x.From, y.From), cmp.Compare(x.To, y.To))
		})
		if len(r.Diff.Changes) > topN {
			r.Diff.Changes = r.Diff.Changes[:topN]
		}
	}
	r.TopUsers = top(a.users)
	r.TopVerbs = top(a.verbs)
	r.TopResources = top(a.resources)
	for i, rule := range relevance.Rules {
		c := a.security[i]
		sr := SecurityRule{Rule: string(rule), What: rule.Title(), Requests: c.Requests, Kept: c.Kept, BaselineKept: c.BaselineKept}
		for _, ex := range a.missed[i] {
			ex.File, ex.Line = name(ex.loc.File), ex.loc.Line
			sr.Missed = append(sr.Missed, ex)
		}
		r.Security = append(r.Security, sr)
	}
	if a.total.LowerBound > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d events are written at a higher level than the log recorded them: their bodies are not in the log, so their bytes are a lower bound", a.total.LowerBound))
	}
	if a.recorded[policy.LevelRank(auditv1.LevelRequest)].Events+a.recorded[policy.LevelRank(auditv1.LevelRequestResponse)].Events == 0 && a.total.Events > 0 {
		r.Notes = append(r.Notes, "the log holds no request or response bodies (recorded at Metadata): body sizes cannot be estimated")
	}
	if a.managedFields > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("%d written events have bodies with omitManagedFields set: the estimate keeps any managedFields their recorded bodies hold, so it is an upper bound for them", a.managedFields))
	}
	r.Notes = append(r.Notes, "events that the recording policy dropped (level None or an omitted stage) are not in the log and cannot be counted as added")
	return r
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

func (c *compiled) label(rule int) string { return RuleLabel(c.target.Sources, rule) }

func policyReport(c *compiled, rules map[int]*counters, lv map[auditv1.Level]*counters, baseline bool) PolicyReport {
	pick := func(x *counters) (int64, int64) {
		if baseline {
			return x.BaseWritten, x.BaseBytes
		}
		return x.Written, x.Bytes
	}
	p := PolicyReport{Name: c.target.Name}
	for _, l := range levels {
		x := lv[l]
		if x == nil {
			x = &counters{}
		}
		w, b := pick(x)
		p.Levels = append(p.Levels, LevelCount{Level: string(l), Events: x.Events, Written: w, Bytes: b})
		p.Written += w
		p.Bytes += b
	}
	for i, rule := range c.target.Policy.Rules {
		x := rules[i]
		if x == nil {
			x = &counters{}
		}
		w, b := pick(x)
		p.Rules = append(p.Rules, RuleCount{Index: i, Source: c.label(i), Level: string(rule.Level), Events: x.Events, Written: w, Bytes: b})
		if x.Events == 0 {
			p.NeverHit = append(p.NeverHit, c.label(i))
		}
	}
	// Per module: the module's rules added up, in policy order.
	for _, rc := range p.Rules {
		name := "default"
		if rc.Index < len(c.target.Sources) && !c.target.Sources[rc.Index].IsDefault() {
			name = c.target.Sources[rc.Index].ModuleID()
		} else if len(c.target.Sources) == 0 {
			name = "policy"
		}
		if n := len(p.Modules); n > 0 && p.Modules[n-1].Source == name {
			m := &p.Modules[n-1]
			m.Events, m.Written, m.Bytes = m.Events+rc.Events, m.Written+rc.Written, m.Bytes+rc.Bytes
			if m.Level != rc.Level {
				m.Level = "mixed"
			}
			continue
		}
		p.Modules = append(p.Modules, RuleCount{Index: rc.Index, Source: name, Level: rc.Level, Events: rc.Events, Written: rc.Written, Bytes: rc.Bytes})
	}
	if x := rules[-1]; x != nil && x.Events > 0 {
		w, b := pick(x)
		p.Rules = append(p.Rules, RuleCount{Index: -1, Source: c.label(-1), Level: string(auditv1.LevelNone), Events: x.Events, Written: w, Bytes: b})
	}
	return p
}

func top(m map[string]*counters) []Top {
	out := make([]Top, 0, len(m))
	for k, c := range m {
		out = append(out, Top{Name: k, Events: c.Events, Written: c.Written, Bytes: c.Bytes})
	}
	slices.SortFunc(out, func(x, y Top) int {
		return cmp.Or(cmp.Compare(y.Bytes, x.Bytes), cmp.Compare(y.Events, x.Events), cmp.Compare(x.Name, y.Name))
	})
	if len(out) > topN {
		out = out[:topN]
	}
	return out
}

// WriteText writes the report as tables for a person.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }
	p("Input: %d events, %s", r.Events, size(r.RecordedBytes))
	if r.BadLines > 0 || r.OtherLines > 0 {
		p(", %d malformed lines, %d lines of another kind or version (not counted)", r.BadLines, r.OtherLines)
	}
	p("\n")
	for _, in := range r.Inputs {
		if in.Error != "" {
			p("  %s: %s\n", in.Name, in.Error)
		}
	}
	for _, b := range r.BadLineExamples {
		p("  %s:%d: %s\n", b.File, b.Line, b.Problem)
	}
	for _, b := range r.OtherExamples {
		p("  %s:%d: %s\n", b.File, b.Line, b.Problem)
	}

	p("\nPolicy %s: writes %d events, %s (baseline %s: %d events, %s, %s)\n", r.Policy.Name, r.Policy.Written, size(r.Policy.Bytes),
		r.Diff.Baseline, r.Diff.BaselineWritten, size(r.Diff.BaselineBytes), change(r.Diff.Bytes, r.Diff.BaselineBytes))
	p("\nLEVEL\tRECORDED\tDECIDED\tWRITTEN\tBYTES\n")
	for i, l := range r.Policy.Levels {
		p("%s\t%d\t%d\t%d\t%s\n", l.Level, r.Recorded[i].Events, l.Events, l.Written, size(l.Bytes))
	}
	p("\nMODULE\tLEVEL\tEVENTS\tWRITTEN\tBYTES\tSHARE\n")
	for _, m := range r.Policy.Modules {
		p("%s\t%s\t%d\t%d\t%s\t%s\n", m.Source, m.Level, m.Events, m.Written, size(m.Bytes), share(m.Bytes, r.Policy.Bytes))
	}
	p("\nRULE\tSOURCE\tLEVEL\tEVENTS\tWRITTEN\tBYTES\tSHARE\n")
	for _, rule := range r.Policy.Rules {
		idx := fmt.Sprint(rule.Index)
		if rule.Index < 0 {
			idx = "-"
		}
		p("%s\t%s\t%s\t%d\t%d\t%s\t%s\n", idx, rule.Source, rule.Level, rule.Events, rule.Written, size(rule.Bytes), share(rule.Bytes, r.Policy.Bytes))
	}
	if len(r.Policy.NeverHit) > 0 {
		p("\nRules never hit: %s\n", strings.Join(r.Policy.NeverHit, ", "))
	}

	d := r.Diff
	p("\nCompared with the %s: %d events dropped at level None (%s), %d of omitted stages (%s), %d added (%s), %d at a higher level, %d at a lower level\n",
		d.Baseline, d.Dropped, size(d.DroppedBytes), d.StageOmitted, size(d.StageBytes), d.Added, size(d.AddedBytes), d.LevelUp, d.LevelDown)
	if len(d.Changes) > 0 {
		p("\nBASELINE RULE\tPOLICY RULE\tEVENTS\tDROPPED\tADDED\tBYTES CHANGE\n")
		for _, t := range d.Changes {
			p("%s\t%s\t%d\t%d\t%d\t%s\n", t.From, t.To, t.Events, t.Dropped, t.Added, signed(t.BytesChange))
		}
	}

	var all SecurityRule
	for _, s := range r.Security {
		all.Requests, all.Kept, all.BaselineKept = all.Requests+s.Requests, all.Kept+s.Kept, all.BaselineKept+s.BaselineKept
	}
	if all.Requests > 0 {
		p("\nSecurity-relevant requests (R1-R6 of docs/modules.md), recorded at the required level:\n")
		p("RULE\tWHAT\tREQUESTS\tPOLICY\tBASELINE\n")
		for _, s := range r.Security {
			if s.Requests > 0 {
				p("%s\t%s\t%d\t%d\t%d\n", s.Rule, s.What, s.Requests, s.Kept, s.BaselineKept)
			}
		}
		p("all\t\t%d\t%d\t%d\n", all.Requests, all.Kept, all.BaselineKept)
		for _, s := range r.Security {
			for _, ex := range s.Missed {
				obj := ex.Resource
				if ex.Namespace != "" || ex.Name != "" {
					obj += " " + strings.Trim(ex.Namespace+"/"+ex.Name, "/")
				}
				p("  missed %s: %s:%d: %s %s %s: %s by %s, needs %s\n", s.Rule, ex.File, ex.Line, ex.User, ex.Verb, obj, ex.Level, ex.DecidedBy, ex.Needs)
			}
		}
	}

	for _, t := range []struct {
		title string
		rows  []Top
	}{{"USER", r.TopUsers}, {"VERB", r.TopVerbs}, {"RESOURCE", r.TopResources}} {
		p("\nTOP %s\tWRITTEN\tBYTES\tSHARE\n", t.title)
		for _, row := range t.rows {
			p("%s\t%d\t%s\t%s\n", row.Name, row.Written, size(row.Bytes), share(row.Bytes, r.Policy.Bytes))
		}
	}
	if len(r.Notes) > 0 {
		p("\n")
		for _, n := range r.Notes {
			p("Note: %s\n", n)
		}
	}
	return tw.Flush()
}

func size(n int64) string {
	switch {
	case n >= 1e9 || n <= -1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6 || n <= -1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	case n >= 1e3 || n <= -1e3:
		return fmt.Sprintf("%.1f kB", float64(n)/1e3)
	}
	return fmt.Sprintf("%d B", n)
}

func signed(n int64) string {
	if n > 0 {
		return "+" + size(n)
	}
	return size(n)
}

func share(n, total int64) string {
	if total == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(total))
}

func change(now, before int64) string {
	if before == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%+.1f%%", 100*(float64(now)-float64(before))/float64(before))
}
