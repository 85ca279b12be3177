// Package lint reviews a merged audit policy: rules that can never decide a request, secrets
// logged with bodies, rules that blind the audit log for system:masters, volume traps, typos.
// Every check is declared once, in the catalogue (Checks).
//
// Reachability is decided by kube-apiserver's own evaluator (through internal/policy), never by
// re-describing its matching: for each rule, lint builds witness requests from the rule's own
// values (every listed user, group, verb, resource, namespace and name, and a fresh value for
// each field the rule leaves open) and asks which rule of the whole policy decides them.
package lint

import (
	"fmt"
	"strings"

	"github.com/kaudit/kaudit/internal/apiresources"
	"github.com/kaudit/kaudit/internal/inforce"
	"github.com/kaudit/kaudit/internal/policy"
)

// Options extends what lint knows.
type Options struct {
	// Resources adds "group/resource" entries (custom resources, from discovery) to the known ones.
	Resources []string
	// UnknownFields are fields that were dropped when the modules were read, reported by Modules.
	UnknownFields []UnknownField
}

// UnknownField is a field of a module (or of a policy file) that its type does not have, and
// that kube-apiserver therefore drops.
type UnknownField struct {
	// Module and Rule locate it; Module is empty for the settings, Rule -1 outside the rules.
	Module string
	Rule   int
	// Problem says which field and what kube-apiserver makes of the rule without it.
	Problem string
}

type linter struct {
	m     *policy.Merged
	rules *ruleIndex
	known map[string]map[string]bool
	out   []Finding
	// reachable[i] tells whether rule i decides any request.
	reachable []bool
}

// Lint reviews a merged policy.
func Lint(m *policy.Merged, opts Options) ([]Finding, error) {
	rules, err := newRuleIndex(m.Policy)
	if err != nil {
		return nil, err
	}
	l := &linter{m: m, rules: rules, known: map[string]map[string]bool{}}
	for _, g := range apiresources.Groups() {
		for _, r := range apiresources.Resources(g) {
			l.addKnown(g, r)
		}
	}
	for _, gr := range opts.Resources {
		g, r, ok := strings.Cut(gr, "/")
		if !ok {
			g, r = "", gr
		}
		l.addKnown(g, r)
		if sub := strings.SplitN(r, "/", 2); len(sub) == 2 {
			l.addKnown(g, sub[0])
		}
	}
	l.reachable = make([]bool, len(m.Policy.Rules))
	for i := range m.Policy.Rules {
		l.reachable[i] = l.checkReachable(i)
	}
	for i, r := range m.Policy.Rules {
		l.checkNames(i, r)
		if !l.reachable[i] {
			continue
		}
		l.checkSecrets(i, r)
		l.checkBlinds(i, r)
		l.checkVolume(i, r)
		l.checkRedundant(i)
	}
	l.checkCatchAll()
	l.checkRequestReceived()
	sortFindings(l.out)
	return l.out, nil
}

// Modules validates each module and the settings on their own (so one bad module or guardrail
// does not hide the others' findings), reports what the manager would reject of the valid
// modules (see decided), then lints the policy merged from all of them.
func Modules(modules []policy.Module, settings inforce.Settings, opts Options) ([]Finding, error) {
	var findings []Finding
	for _, u := range opts.UnknownFields {
		c := catalogue[unknownField]
		findings = append(findings, Finding{Severity: c.Severity, Check: c.Name, Module: u.Module, Rule: u.Rule, PolicyRule: -1, Message: u.Problem, Fix: fixUnknownField})
	}
	var valid []policy.Module
	for _, m := range modules {
		if err := policy.ValidateModule(m); err != nil {
			findings = append(findings, FromError(err)...)
			continue
		}
		valid = append(valid, m)
	}
	if err := policy.ValidateSettings(settings.Policy); err != nil {
		findings = append(findings, FromError(err)...)
		settings.Policy = policy.Settings{}
	}
	var invalid []Finding
	settings.Guardrails, invalid = validGuardrails(settings.Guardrails)
	findings = append(findings, invalid...)
	merged, err := policy.Merge(valid, settings.Policy)
	if err != nil {
		return append(findings, FromError(err)...), nil
	}
	rejected, err := decided(valid, settings, merged)
	if err != nil {
		return nil, err
	}
	findings = append(findings, rejected...)
	more, err := Lint(merged, opts)
	if err != nil {
		return nil, err
	}
	return append(findings, more...), nil
}

func (l *linter) addKnown(group, resource string) {
	if l.known[group] == nil {
		l.known[group] = map[string]bool{}
	}
	l.known[group][resource] = true
}

// add reports a finding of check id, at the check's severity, about policy rule i (-1: the
// whole policy).
func (l *linter) add(i int, id checkID, msg, fix string) {
	l.addAt(i, id, catalogue[id].Severity, msg, fix)
}

// addAt is add for checks whose findings differ in severity.
func (l *linter) addAt(i int, id checkID, sev Severity, msg, fix string) {
	f := Finding{Severity: sev, Check: catalogue[id].Name, Rule: -1, PolicyRule: i, Message: msg, Fix: fix}
	if i >= 0 && i < len(l.m.Sources) && !l.m.Sources[i].IsDefault() {
		f.Module, f.Rule = l.m.Sources[i].ModuleID(), l.m.Sources[i].Rule
	}
	l.out = append(l.out, f)
}

// label names policy rule i for a message.
func (l *linter) label(i int) string {
	if i < 0 {
		return "no rule"
	}
	if l.m.Sources[i].IsDefault() {
		return "the default rule"
	}
	return fmt.Sprintf("module %s rule %d", l.m.Sources[i].ModuleID(), l.m.Sources[i].Rule)
}
