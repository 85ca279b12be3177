package policy

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

// ImportOptions controls how an existing policy is split into modules.
type ImportOptions struct {
	// Prefix starts every module name; empty means "imported".
	Prefix string
	// Single puts every rule into one module instead of one module per group of similar rules
	// (several modules if there are more than MaxModuleRules).
	Single bool
	// Source is named in each module's description.
	Source string
}

// MaxModuleRules is the most rules a module may have (the CRD's maxItems of spec.rules).
const MaxModuleRules = 200

// Imported is an existing audit policy as kaudit modules and settings.
type Imported struct {
	Modules  []Module
	Settings Settings
	// Notes say where the import could not do what the user would expect, for the user.
	Notes []string
	// Sources[i] is the module and rule that rule i of the policy became; the default rule for
	// a final catch-all that became the default level.
	Sources []RuleSource
}

// Import splits an audit.k8s.io/v1 Policy into modules that merge back into a policy that
// decides every request exactly as the original does: rules keep their order (module orders
// 10, 20, ...), the policy's omitStages become the settings' omitStages, its omitManagedFields
// is pushed into every module, and a final rule that matches every request becomes the
// default level (without one, the default level is None, as for the original policy). The
// final rule's own omitStages become the policy's when every other rule that logs omits them
// too; when not, the rule stays in a module (see catchAllDefault).
func Import(p auditv1.Policy, opts ImportOptions) Imported {
	prefix := opts.Prefix
	if prefix == "" {
		prefix = "imported"
	}
	prefix = dnsName(prefix)
	out := Imported{Settings: Settings{DefaultLevel: v1alpha1.LevelNone}, Sources: make([]RuleSource, len(p.Rules))}
	rules := slices.Clone(p.Rules)
	policyStages := slices.Clone(p.OmitStages)
	if n := len(rules); n > 0 && MatchesEverything(rules[n-1]) {
		last := rules[n-1]
		out.Settings.DefaultLevel = v1alpha1.Level(last.Level)
		if stages, why := catchAllDefault(p, rules[:n-1], last); why == "" {
			rules, policyStages = withoutStages(rules[:n-1], stages), append(policyStages, stages...)
		} else {
			// The catch-all decides every request it sees; the default level is the same one, so
			// that the policy never reads as dropping what no rule matches.
			out.Notes = append(out.Notes, fmt.Sprintf("rule %d matches every request but stays a module rule, not spec.defaultLevel: %s", n-1, why))
		}
	}
	for _, s := range policyStages {
		out.Settings.OmitStages = append(out.Settings.OmitStages, v1alpha1.Stage(s))
	}

	type group struct {
		label      string
		first, end int
	}
	var groups []group
	for i, r := range rules {
		label := "rules"
		if !opts.Single {
			label = ruleLabel(r)
		}
		if len(groups) > 0 && groups[len(groups)-1].label == label {
			groups[len(groups)-1].end = i + 1
			continue
		}
		groups = append(groups, group{label: label, first: i, end: i + 1})
	}
	// A module holds at most MaxModuleRules rules: larger groups become several modules.
	var split []group
	for _, g := range groups {
		for first := g.first; first < g.end; first += MaxModuleRules {
			split = append(split, group{label: g.label, first: first, end: min(first+MaxModuleRules, g.end)})
		}
	}
	groups = split
	for gi, g := range groups {
		spec := v1alpha1.AuditPolicyModuleSpec{Order: int32(10 * (gi + 1))}
		spec.Description = fmt.Sprintf("Rules %d-%d of the imported policy", g.first, g.end-1)
		if g.end-g.first == 1 {
			spec.Description = fmt.Sprintf("Rule %d of the imported policy", g.first)
		}
		if opts.Source != "" {
			spec.Description += " " + opts.Source
		}
		spec.Description += "."
		if p.OmitManagedFields {
			t := true
			spec.OmitManagedFields = &t
		}
		var common []auditv1.Stage
		for i := g.first; i < g.end; i++ {
			stages := sortedStages(rules[i].OmitStages)
			if i == g.first {
				common = stages
			} else if !slices.Equal(common, stages) {
				common = nil
				break
			}
		}
		name := fmt.Sprintf("%s-%02d-%s", prefix, gi+1, g.label)
		for i := g.first; i < g.end; i++ {
			r := FromUpstream(rules[i])
			if len(common) > 0 {
				r.OmitStages = nil
			}
			spec.Rules = append(spec.Rules, r)
			out.Sources[i] = RuleSource{Module: name, Rule: i - g.first}
		}
		for _, s := range common {
			spec.OmitStages = append(spec.OmitStages, v1alpha1.Stage(s))
		}
		out.Modules = append(out.Modules, Module{Name: name, Spec: spec})
	}
	return out
}

// catchAllDefault tells whether the policy's final catch-all, last, can become the default rule
// (the settings' default level, no stages of its own), and which of its omitStages then move to
// the policy: those the policy does not omit already. It says why not otherwise.
func catchAllDefault(p auditv1.Policy, earlier []auditv1.PolicyRule, last auditv1.PolicyRule) ([]auditv1.Stage, string) {
	bodies := LevelRank(last.Level) >= LevelRank(auditv1.LevelRequest)
	if bodies && last.OmitManagedFields != nil && *last.OmitManagedFields != p.OmitManagedFields {
		return nil, "its omitManagedFields differs from the policy's"
	}
	if bodies && p.OmitManagedFields {
		return nil, "the policy's omitManagedFields cannot apply to the default rule"
	}
	if last.Level == auditv1.LevelNone {
		return nil, "" // writes nothing: its stages do not matter
	}
	var extra []auditv1.Stage
	for _, s := range last.OmitStages {
		if !slices.Contains(p.OmitStages, s) && !slices.Contains(extra, s) {
			extra = append(extra, s)
		}
	}
	// Policy-level stages apply to every rule: only where every rule that logs omits them
	// already do they change nothing. A rule at None writes nothing, whatever it omits.
	for i, r := range earlier {
		if r.Level == auditv1.LevelNone {
			continue
		}
		for _, s := range extra {
			if !slices.Contains(r.OmitStages, s) {
				return nil, fmt.Sprintf("its omitStages %s would become the policy's, and rule %d logs that stage", s, i)
			}
		}
	}
	return extra, ""
}

// withoutStages returns rules without the given omitStages, which the policy omits instead.
func withoutStages(rules []auditv1.PolicyRule, stages []auditv1.Stage) []auditv1.PolicyRule {
	if len(stages) == 0 {
		return rules
	}
	out := make([]auditv1.PolicyRule, len(rules))
	for i, r := range rules {
		r.OmitStages = slices.DeleteFunc(slices.Clone(r.OmitStages), func(s auditv1.Stage) bool { return slices.Contains(stages, s) })
		if len(r.OmitStages) == 0 {
			r.OmitStages = nil
		}
		out[i] = r
	}
	return out
}

func sortedStages(s []auditv1.Stage) []auditv1.Stage {
	v := make([]v1alpha1.Stage, len(s))
	for i := range s {
		v[i] = v1alpha1.Stage(s[i])
	}
	return normalizeStages(v)
}

// MatchesEverything tells whether a rule matches every request (a catch-all).
func MatchesEverything(r auditv1.PolicyRule) bool {
	return len(r.Users) == 0 && len(r.UserGroups) == 0 && len(r.Verbs) == 0 && len(r.Resources) == 0 &&
		len(r.Namespaces) == 0 && len(r.NonResourceURLs) == 0
}

// ruleLabel names what a rule is about, to group similar neighbouring rules into one module.
func ruleLabel(r auditv1.PolicyRule) string {
	switch {
	case len(r.NonResourceURLs) > 0:
		return "nonresource"
	case r.Level == auditv1.LevelNone:
		return "noise"
	}
	rbac := len(r.Resources) > 0
	for _, gr := range r.Resources {
		for _, res := range gr.Resources {
			base, _, _ := strings.Cut(res, "/")
			if (gr.Group == "" && (base == "secrets" || base == "configmaps" || base == "serviceaccounts")) ||
				(gr.Group == "authentication.k8s.io" && base == "tokenreviews") {
				return "secrets"
			}
		}
		rbac = rbac && gr.Group == "rbac.authorization.k8s.io"
	}
	if rbac {
		return "rbac"
	}
	return strings.ToLower(string(r.Level))
}

var notDNS = regexp.MustCompile(`[^a-z0-9-]+`)

// dnsName makes a string usable as (the start of) a module name.
func dnsName(s string) string {
	s = notDNS.ReplaceAllString(strings.ToLower(s), "-")
	s = strings.Trim(s, "-")
	if len(s) > 40 {
		s = strings.Trim(s[:40], "-")
	}
	if s == "" {
		return "imported"
	}
	return s
}
