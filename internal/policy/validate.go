package policy

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	auditpolicy "k8s.io/apiserver/pkg/audit/policy"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

// Load parses and validates a policy exactly as kube-apiserver does at start-up
// (--audit-policy-file).
func Load(policy []byte) (*auditinternal.Policy, error) {
	return auditpolicy.LoadPolicyFromBytes(policy)
}

// Problem is one reason a module or the settings are invalid.
type Problem struct {
	// Rule is the index in spec.rules, or -1 for a problem outside the rules.
	Rule int
	// Field is the path inside the rule (or inside spec when Rule is -1), e.g. "resources.group".
	Field string
	// Detail is the loader's explanation, e.g. `Invalid value: "Apps/v1": a lowercase RFC 1123 ...`.
	Detail string
}

func (p Problem) String() string {
	switch {
	case p.Rule >= 0 && p.Field != "":
		return fmt.Sprintf("rule %d: %s: %s", p.Rule, p.Field, p.Detail)
	case p.Rule >= 0:
		return fmt.Sprintf("rule %d: %s", p.Rule, p.Detail)
	case p.Field != "":
		return fmt.Sprintf("%s: %s", p.Field, p.Detail)
	}
	return p.Detail
}

// ModuleError says why kube-apiserver would reject a module, naming rule and field.
type ModuleError struct {
	Module   string
	Problems []Problem
}

func (e *ModuleError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = fmt.Sprintf("module %q %s", e.Module, p)
	}
	return strings.Join(parts, "; ")
}

// Summary is the error without the module name, for the module's own status.
func (e *ModuleError) Summary() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return strings.Join(parts, "; ")
}

// SettingsError says why the AuditPolicy singleton's settings are invalid.
type SettingsError struct {
	Problems []Problem
}

func (e *SettingsError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.String()
	}
	return "AuditPolicy " + strconv.Quote(v1alpha1.SingletonName) + ": " + strings.Join(parts, "; ")
}

// ValidateModule checks a module's rules and settings with kube-apiserver's loader, and that
// each rule of a namespaced module names no namespace but its own. Disabled modules are checked
// too: enabling one must not be the moment it turns out to be broken.
func ValidateModule(m Module) error {
	if len(m.Spec.Rules) == 0 {
		return errNoRules(m.ID())
	}
	if err := validateConfinement(m); err != nil {
		return err
	}
	doc := auditv1.Policy{OmitStages: toUpstreamStages(m.Spec.OmitStages)}
	for _, r := range m.Spec.Rules {
		doc.Rules = append(doc.Rules, ToUpstream(r))
	}
	_, err := Load(encode(doc))
	if err == nil {
		return nil
	}
	return &ModuleError{Module: m.ID(), Problems: problems(err, "spec.")}
}

// validateConfinement checks that every rule of a namespaced module applies to its own
// namespace only: the merge confines each rule to it, which must not change what a rule says
// (see docs/design.md, "Namespaced modules"). The schema cannot check this, since it does not
// see metadata.namespace.
func validateConfinement(m Module) error {
	if m.Namespace == "" {
		return nil
	}
	var ps []Problem
	for i, r := range m.Spec.Rules {
		for j, ns := range r.Namespaces {
			if ns != m.Namespace {
				ps = append(ps, Problem{Rule: i, Field: fmt.Sprintf("namespaces[%d]", j),
					Detail: fmt.Sprintf("Invalid value: %q: a NamespacedAuditPolicyModule applies only to its own namespace %q", ns, m.Namespace)})
			}
		}
		if len(r.NonResourceURLs) > 0 {
			ps = append(ps, Problem{Rule: i, Field: "nonResourceURLs", Detail: "Forbidden: non-resource URLs belong to no namespace"})
		}
	}
	if len(ps) > 0 {
		return &ModuleError{Module: m.ID(), Problems: ps}
	}
	return nil
}

func errNoRules(module string) error {
	return &ModuleError{Module: module, Problems: []Problem{{Rule: -1, Field: "spec.rules", Detail: "Required value: a module needs at least one rule"}}}
}

// ValidateSettings checks the singleton's policy-level settings with kube-apiserver's loader.
func ValidateSettings(s Settings) error {
	doc := auditv1.Policy{
		OmitStages: toUpstreamStages(s.OmitStages),
		Rules:      []auditv1.PolicyRule{{Level: auditv1.Level(defaultLevel(s))}},
	}
	if _, err := Load(encode(doc)); err != nil {
		ps := problems(err, "spec.")
		for i := range ps {
			if ps[i].Rule == 0 && ps[i].Field == "level" {
				ps[i] = Problem{Rule: -1, Field: "spec.defaultLevel", Detail: ps[i].Detail}
			}
		}
		return &SettingsError{Problems: ps}
	}
	return nil
}

// blame turns a loader error on the merged policy into an error that names the module.
func (m *Merged) blame(err error) error {
	ps := problems(err, "")
	if len(ps) > 0 && ps[0].Rule >= 0 && ps[0].Rule < len(m.Sources) && !m.Sources[ps[0].Rule].IsDefault() {
		src := m.Sources[ps[0].Rule]
		p := ps[0]
		p.Rule = src.Rule
		return &ModuleError{Module: src.ModuleID(), Problems: []Problem{p}}
	}
	return fmt.Errorf("merged policy rejected by the apiserver's loader: %w", err)
}

var rulePath = regexp.MustCompile(`^rules\[(\d+)\]\.?(.*)$`)

// problems splits a loader error into per-rule problems. Paths outside the rules get
// outsidePrefix ("spec." for a module, whose omitStages live under spec).
func problems(err error, outsidePrefix string) []Problem {
	var errs []error
	var agg utilerrors.Aggregate
	if errors.As(err, &agg) {
		errs = agg.Errors()
	} else {
		errs = []error{err}
	}
	var out []Problem
	for _, e := range errs {
		var fe *field.Error
		if !errors.As(e, &fe) {
			out = append(out, Problem{Rule: -1, Detail: e.Error()})
			continue
		}
		detail := strings.TrimPrefix(fe.Error(), fe.Field+": ")
		if sub := rulePath.FindStringSubmatch(fe.Field); sub != nil {
			idx, _ := strconv.Atoi(sub[1])
			out = append(out, Problem{Rule: idx, Field: sub[2], Detail: detail})
			continue
		}
		out = append(out, Problem{Rule: -1, Field: outsidePrefix + fe.Field, Detail: detail})
	}
	return out
}

func toUpstreamStages(stages []v1alpha1.Stage) []auditv1.Stage {
	var out []auditv1.Stage
	for _, s := range stages {
		out = append(out, auditv1.Stage(s))
	}
	return out
}
