// Package explain tells which module and rule of a merged audit policy decide a request, at
// which level, which later rules match it too but are shadowed, and which guardrails bound it.
// The decision is kube-apiserver's own evaluator's (through internal/policy), the guardrails'
// scopes and bounds internal/guardrail's.
package explain

import (
	"fmt"
	"io"
	"strings"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"sigs.k8s.io/yaml"

	"github.com/kaudit/kaudit/internal/guardrail"
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
	// Guardrails are the guardrails whose scope holds the request.
	Guardrails []Bound `json:"guardrails"`
	// Rejection is set when the manager would not put the deciding rule's module in force.
	Rejection *Rejection `json:"rejection,omitempty"`
}

// Bound is a guardrail whose scope holds the request: its bounds, and whether the decision is
// within them.
type Bound struct {
	Name           string          `json:"name"`
	Description    string          `json:"description"`
	MinLevel       auditv1.Level   `json:"minLevel,omitempty"`
	MaxLevel       auditv1.Level   `json:"maxLevel,omitempty"`
	RequiredStages []auditv1.Stage `json:"requiredStages,omitempty"`
	Within         bool            `json:"within"`
}

// Rejection says why the manager would not put a module in force, and how the policy it would
// put in force decides the request instead.
type Rejection struct {
	// Module is the module's ID (namespace/name for a namespaced one).
	Module string `json:"module"`
	// Reason and Message are those of the module's Accepted condition.
	Reason  string `json:"reason"`
	Message string `json:"message"`
	// InForce is the rule that decides the request in the policy the manager would put in force.
	InForce Rule `json:"inForce"`
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

// Explain evaluates req with kube-apiserver's own evaluator against the merged policy, and
// tells which of the guardrails hold the request and whether the decision is within their
// bounds.
func Explain(m *policy.Merged, req policy.Request, guardrails []guardrail.Guardrail) (*Explanation, error) {
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
	ex.Guardrails = []Bound{}
	for i := range guardrails {
		g := &guardrails[i]
		in, err := g.Contains(req)
		if err != nil {
			return nil, err
		}
		if in {
			ex.Guardrails = append(ex.Guardrails, Bound{Name: g.Name, Description: g.Description, MinLevel: g.MinLevel, MaxLevel: g.MaxLevel,
				RequiredStages: g.RequiredStages, Within: g.Allows(d)})
		}
	}
	return ex, nil
}

// Decided is the rule that decides the request in another policy, such as the one the manager
// would put in force: its source and level, without its spec.
func Decided(m *policy.Merged, req policy.Request) (Rule, error) {
	eval, err := policy.NewEvaluator(m.Policy)
	if err != nil {
		return Rule{}, err
	}
	return ruleAt(m, eval.Decide(req).Rule, false), nil
}

// ruleAt describes rule i of the merged policy (-1: none), with its spec if asked.
func ruleAt(m *policy.Merged, i int, spec bool) Rule {
	if i < 0 {
		return Rule{Index: -1, Rule: -1, Source: "no rule matches: kube-apiserver does not log the request", Level: auditv1.LevelNone}
	}
	r := Rule{Index: i, Rule: -1, Level: m.Policy.Rules[i].Level}
	src := m.Sources[i]
	switch {
	case src.IsDefault():
		r.Source = "default: no module matches (AuditPolicy cluster spec.defaultLevel)"
	case src.Namespace != "":
		r.Module, r.Rule = src.ModuleID(), src.Rule
		r.Source = fmt.Sprintf("namespaced module %s, rule %d", src.ModuleID(), src.Rule)
	default:
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
	writeGuardrails(&b, ex.Guardrails)
	if r := ex.Rejection; r != nil {
		fmt.Fprintf(&b, "Rejected:    the manager would not put module %s in force (%s): %s\n", r.Module, r.Reason, r.Message)
		fmt.Fprintf(&b, "In force:    %s", r.InForce.Source)
		if r.InForce.Index >= 0 {
			fmt.Fprintf(&b, " (rule %d of the policy in force)", r.InForce.Index)
		}
		fmt.Fprintf(&b, ": %s\n", r.InForce.Level)
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

// writeGuardrails writes the guardrails that hold the request, one a line, with their bounds and
// whether the decision is within them; nothing when none does.
func writeGuardrails(b *strings.Builder, bounds []Bound) {
	for i, g := range bounds {
		label := "Guardrails:  "
		if i > 0 {
			label = strings.Repeat(" ", len(label))
		}
		verdict := "within"
		if !g.Within {
			verdict = "OUTSIDE"
		}
		fmt.Fprintf(b, "%s%s (%s): %s\n", label, g.Name, g.bounds(), verdict)
	}
}

// bounds says what the guardrail requires: "at least Metadata", "at most Metadata, stages
// ResponseComplete written".
func (g Bound) bounds() string {
	var parts []string
	if g.MinLevel != "" {
		parts = append(parts, "at least "+string(g.MinLevel))
	}
	if g.MaxLevel != "" {
		parts = append(parts, "at most "+string(g.MaxLevel))
	}
	if len(g.RequiredStages) > 0 {
		stages := make([]string, len(g.RequiredStages))
		for i, s := range g.RequiredStages {
			stages[i] = string(s)
		}
		parts = append(parts, "stages "+strings.Join(stages, ", ")+" written")
	}
	return strings.Join(parts, ", ")
}
