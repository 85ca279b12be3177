// Package explain tells which module and rule of a merged audit policy decide a request, at
// which level, and which later rules match it too but are shadowed. The decision is
// kube-apiserver's own evaluator's (through internal/policy).
package explain

import (
	"fmt"
	"io"
	"strings"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"sigs.k8s.io/yaml"

	"github.com/kaudit/kaudit/internal/policy"
)

// Explanation tells which rule decides a request, how, and which later rules match it too.
type Explanation struct {
	Request  policy.Request `json:"request"`
	Decision Rule           `json:"decision"`
	// OmitStages are the stages not written for the request (the rule's and the policy's).
	OmitStages        []auditv1.Stage `json:"omitStages"`
	OmitManagedFields bool            `json:"omitManagedFields"`
	// Shadowed are later rules that match the request too but never decide it.
	Shadowed []Rule `json:"shadowed"`
}

// Rule is a rule of the merged policy and where it came from.
type Rule struct {
	// Index is the rule's index in the merged policy; -1 when no rule matches.
	Index int `json:"index"`
	// Module and Rule are the module and the rule's index in its spec.rules; Module is empty and
	// Rule -1 for the default rule and for none.
	Module string `json:"module,omitempty"`
	Rule   int    `json:"rule"`
	// Source says where the rule came from, for a person.
	Source string        `json:"source"`
	Level  auditv1.Level `json:"level"`
	// Spec is the rule as kube-apiserver reads it; only the deciding rule carries it.
	Spec *auditv1.PolicyRule `json:"spec,omitempty"`
}

// Explain evaluates req with kube-apiserver's own evaluator against the merged policy.
func Explain(m *policy.Merged, req policy.Request) (*Explanation, error) {
	eval, err := policy.NewEvaluator(m.Policy)
	if err != nil {
		return nil, err
	}
	d := eval.Decide(req)
	ex := &Explanation{Request: req, Decision: ruleAt(m, d.Rule, true), OmitStages: d.OmitStages, OmitManagedFields: d.OmitManagedFields}
	if ex.OmitStages == nil {
		ex.OmitStages = []auditv1.Stage{}
	}
	ex.Shadowed = []Rule{}
	for _, i := range eval.Matching(req) {
		if i != d.Rule {
			ex.Shadowed = append(ex.Shadowed, ruleAt(m, i, false))
		}
	}
	return ex, nil
}

// ruleAt describes rule i of the merged policy (-1: none), with its spec if asked.
func ruleAt(m *policy.Merged, i int, spec bool) Rule {
	if i < 0 {
		return Rule{Index: -1, Rule: -1, Source: "no rule matches: kube-apiserver does not log the request", Level: auditv1.LevelNone}
	}
	r := Rule{Index: i, Rule: -1, Level: m.Policy.Rules[i].Level}
	src := m.Sources[i]
	if src.IsDefault() {
		r.Source = "default: no module matches (AuditPolicy cluster spec.defaultLevel)"
	} else {
		r.Module, r.Rule = src.Module, src.Rule
		r.Source = fmt.Sprintf("module %s, rule %d", src.Module, src.Rule)
	}
	if spec {
		rule := m.Policy.Rules[i]
		r.Spec = &rule
	}
	return r
}

// WriteText writes the explanation for a person.
func (ex *Explanation) WriteText(w io.Writer) error {
	r := ex.Request
	var b strings.Builder
	who := r.User
	if who == "" {
		who = "(no user)"
	}
	if len(r.Groups) > 0 {
		who += " (groups " + strings.Join(r.Groups, ", ") + ")"
	}
	what := r.Path
	if r.ResourceRequest {
		what = r.Resource
		if r.Subresource != "" {
			what += "/" + r.Subresource
		}
		if r.APIGroup != "" {
			what += " in API group " + r.APIGroup
		}
		switch {
		case r.Namespace != "" && r.Name != "":
			what += fmt.Sprintf(", %s/%s", r.Namespace, r.Name)
		case r.Namespace != "":
			what += ", namespace " + r.Namespace
		case r.Name != "":
			what += ", name " + r.Name
		}
	}
	fmt.Fprintf(&b, "Request:     %s %s by %s\n", r.Verb, what, who)
	fmt.Fprintf(&b, "Decided by:  %s", ex.Decision.Source)
	if ex.Decision.Index >= 0 {
		fmt.Fprintf(&b, " (rule %d of the policy)", ex.Decision.Index)
	}
	fmt.Fprintf(&b, "\nLevel:       %s\n", ex.Decision.Level)
	if ex.Decision.Level != auditv1.LevelNone {
		stages := "none"
		if len(ex.OmitStages) > 0 {
			var s []string
			for _, st := range ex.OmitStages {
				s = append(s, string(st))
			}
			stages = strings.Join(s, ", ")
		}
		fmt.Fprintf(&b, "Omitted:     %s (stages not written)\n", stages)
		if ex.Decision.Level == auditv1.LevelRequest || ex.Decision.Level == auditv1.LevelRequestResponse {
			fmt.Fprintf(&b, "managedFields omitted from bodies: %v\n", ex.OmitManagedFields)
		}
	}
	if ex.Decision.Spec != nil {
		y, err := yaml.Marshal(ex.Decision.Spec)
		if err != nil {
			return err
		}
		b.WriteString("Rule:\n")
		for _, line := range strings.Split(strings.TrimSuffix(string(y), "\n"), "\n") {
			b.WriteString("  " + line + "\n")
		}
	}
	if len(ex.Shadowed) > 0 {
		b.WriteString("Also matching, shadowed for this request by the rule above:\n")
		for _, s := range ex.Shadowed {
			fmt.Fprintf(&b, "  %s (rule %d of the policy): %s\n", s.Source, s.Index, s.Level)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
