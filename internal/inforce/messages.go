package inforce

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/guardrail"
	"github.com/kaudit/kaudit/internal/policy"
)

// Breach is a request for which a change would make the merged policy break a guardrail.
type Breach struct {
	Guardrail guardrail.Guardrail
	Request   policy.Request
	// After is how the merged policy with the change decides Request, and AfterBy the rule.
	After   policy.Decision
	AfterBy string
	// Decides is true when the changed module's own rule decides Request.
	Decides bool
	// Before is how the policy in force decides Request, by the changed module's rule BeforeBy,
	// when the change exposed Request rather than deciding it; nil otherwise.
	Before   *policy.Decision
	BeforeBy string
}

// Kept is a deleted module whose last accepted spec stays in force for a guardrail.
type Kept struct {
	Module policy.Module
	Breach Breach
}

// Message says why the module's rules stay, for the singleton's condition and event.
func (k Kept) Message() string {
	b := k.Breach
	details := stagesMatter(b.Guardrail)
	return fmt.Sprintf("%s was deleted, but its last accepted rules stay in force: without them %s would be logged at %s (%s) instead of %s (%s), breaking %s. They go once that request is kept another way.",
		moduleNoun(k.Module), describeRequest(b.Request), describeDecision(b.After, details), b.AfterBy,
		describeDecision(*b.Before, details), b.BeforeBy, describeGuardrail(b.Guardrail))
}

// Standing is a guardrail that the merged policy breaks, as the policy in force did already.
type Standing struct {
	Guardrail guardrail.Guardrail
	Request   policy.Request
	Decision  policy.Decision
	// By names the deciding rule.
	By string
}

// Message says what breaks the guardrail, for the singleton's condition and event.
func (s Standing) Message() string {
	return fmt.Sprintf("The policy breaks %s: %s is logged at %s (%s). Module changes are not held to this guardrail until the policy keeps it.",
		describeGuardrail(s.Guardrail), describeRequest(s.Request), describeDecision(s.Decision, stagesMatter(s.Guardrail)), s.By)
}

// InvalidOutcome is the verdict on a module whose current spec is invalid. The last accepted
// version, if any, stays in force.
func InvalidOutcome(m Module) Outcome {
	o := Outcome{Generation: m.Generation, Reason: v1alpha1.ReasonInvalid}
	var modErr *policy.ModuleError
	switch {
	case errors.As(m.Invalid, &modErr) && m.Namespace != "":
		o.Message = "This module is invalid: " + modErr.Summary() + "."
	case errors.As(m.Invalid, &modErr):
		o.Message = "kube-apiserver would reject this module: " + modErr.Summary() + ". The last accepted version, if any, stays in force."
	default:
		o.Message = m.Invalid.Error()
	}
	return o
}

func validOutcome(generation int64) Outcome {
	return Outcome{Generation: generation, Accepted: true, Reason: v1alpha1.ReasonValid, Message: "The module is valid and part of the merged policy."}
}

func disabledOutcome(generation int64) Outcome {
	return Outcome{Generation: generation, Accepted: true, Reason: v1alpha1.ReasonDisabled, Message: "The module is valid and disabled: it contributes no rules."}
}

// pinnedOutcome is the verdict on a live module whose change was taken back for a guardrail.
func pinnedOutcome(e *entry) Outcome {
	b := e.pinned
	details := stagesMatter(b.Guardrail)
	o := Outcome{Generation: e.mod.Generation, Reason: v1alpha1.ReasonGuardrailViolation}
	stays := " The last accepted version stays in force."
	if e.record == nil {
		stays = " Nothing of this module is in force."
	}
	if b.Decides {
		o.Message = fmt.Sprintf("Not put in force: it would break %s: %s would be logged at %s by its %s.%s",
			describeGuardrail(b.Guardrail), describeRequest(b.Request), describeDecision(b.After, details), ownRule(b.AfterBy), stays)
		return o
	}
	change := "This change"
	switch {
	case e.mod.Spec.Disabled:
		change = "Disabling this module"
	case e.why != "":
		// The current spec was not going to be in force anyway; say why, then what holds it.
		change = e.why + " Yet taking its last accepted rules out of the policy"
	}
	o.Message = fmt.Sprintf("%s would break %s: %s, logged at %s by its last accepted %s, would be logged at %s (%s). The last accepted version stays in force until that request is kept another way.",
		change, describeGuardrail(b.Guardrail), describeRequest(b.Request), describeDecision(*b.Before, details), ownRule(b.BeforeBy), describeDecision(b.After, details), b.AfterBy)
	return o
}

// ownRule turns "rule 2 of module x" into "rule 2".
func ownRule(by string) string {
	if i := strings.Index(by, " of "); i >= 0 {
		return by[:i]
	}
	return by
}

func moduleNoun(m policy.Module) string {
	if m.Namespace != "" {
		return "NamespacedAuditPolicyModule " + m.ID()
	}
	return "AuditPolicyModule " + m.Name
}

func describeGuardrail(g guardrail.Guardrail) string {
	if g.Description == "" {
		return "guardrail " + strconv.Quote(g.Name)
	}
	return fmt.Sprintf("guardrail %q (%s)", g.Name, strings.TrimSuffix(g.Description, "."))
}

// describeRule names rule i of a merged policy: "rule 2 of module x", or the default level.
func describeRule(m *policy.Merged, i int) string {
	if i < 0 || i >= len(m.Sources) || m.Sources[i].IsDefault() {
		return "the default level, spec.defaultLevel of AuditPolicy cluster"
	}
	src := m.Sources[i]
	if src.Namespace != "" {
		return fmt.Sprintf("rule %d of namespaced module %s", src.Rule, src.ModuleID())
	}
	return fmt.Sprintf("rule %d of module %s", src.Rule, src.Module)
}

// describeRequest says who does what: `get secrets in namespace "x" by user "u" (groups: g)`.
func describeRequest(r policy.Request) string {
	var b strings.Builder
	b.WriteString(r.Verb)
	if !r.ResourceRequest {
		b.WriteString(" " + r.Path)
	} else {
		b.WriteString(" " + r.Resource)
		if r.Subresource != "" {
			b.WriteString("/" + r.Subresource)
		}
		if r.APIGroup != "" {
			fmt.Fprintf(&b, " (API group %s)", r.APIGroup)
		}
		if r.Name != "" {
			fmt.Fprintf(&b, " named %q", r.Name)
		}
		if r.Namespace != "" {
			fmt.Fprintf(&b, " in namespace %q", r.Namespace)
		} else {
			b.WriteString(" (cluster-scoped)")
		}
	}
	fmt.Fprintf(&b, " by user %q", r.User)
	if len(r.Groups) > 0 {
		fmt.Fprintf(&b, " (groups: %s)", strings.Join(r.Groups, ", "))
	} else {
		b.WriteString(" (no groups)")
	}
	return b.String()
}

// describeDecision is the level and, with details, what the events leave out: omitted stages,
// and managedFields in bodies. Details matter where they make the difference (a guardrail with
// required stages, a module that logs at the same level with less), and are noise elsewhere.
func describeDecision(d policy.Decision, details bool) string {
	s := string(d.Level)
	if d.Level == auditv1.LevelNone || !details {
		return s
	}
	var omits []string
	for _, st := range d.OmitStages {
		omits = append(omits, string(st))
	}
	if policy.LevelRank(d.Level) >= policy.LevelRank(auditv1.LevelRequest) && d.OmitManagedFields {
		omits = append(omits, "managedFields")
	}
	if len(omits) > 0 {
		s += " without " + strings.Join(omits, ", ")
	}
	return s
}

// stagesMatter tells whether a guardrail bounds stages, so that its messages name them.
func stagesMatter(g guardrail.Guardrail) bool { return len(g.RequiredStages) > 0 }

func levelOf(l v1alpha1.Level) auditv1.Level { return auditv1.Level(l) }
