package lint

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kaudit/kaudit/internal/spelling"
)

// The one-line fixes that findings end with, so the advice reads the same wherever it is given.
const (
	fixInvalidModule             = "correct the field; until then the controller keeps the module's last accepted spec"
	fixInvalidInput              = "correct the input"
	fixUnknownField              = "correct the field's name (they are case-sensitive)"
	fixGuardrailViolation        = "log the request within the guardrail's bounds (in an earlier rule, or by narrowing this one), or switch the guardrail off in spec.guardrails of AuditPolicy cluster"
	fixGuardrailBroken           = "log the request within the guardrail's bounds (spec.defaultLevel Metadata, or a module's rule), or switch the guardrail off in spec.guardrails of AuditPolicy cluster"
	fixLowersLogging             = "narrow the rule or raise its level: a namespaced module may only make logging stricter than the cluster's modules"
	fixAboveCap                  = "lower the rule's level to spec.namespacedModules.maxLevel of AuditPolicy cluster, or ask the platform to raise it"
	fixNamespacedModulesDisabled = "set spec.namespacedModules.enabled of AuditPolicy cluster to true, or move the rules to an AuditPolicyModule"
	fixShadowedDefault           = "remove the catch-all rule from the module and set spec.defaultLevel of AuditPolicy cluster instead"
	fixDuplicateRule             = "delete this rule, or merge what differs into the earlier one"
	fixShadowedRule              = "delete the rule, or move it (module spec.order) before the rules that shadow it"
	fixRedundantRule             = "delete the rule, unless it is there to pin the decision against later changes"
	fixBlindsAudit               = "narrow the rule to the users, verbs and resources that are really noise, or log them at Metadata"
	fixWildcardRequestResponse   = "list the resources that need bodies; log the rest at Metadata"
	fixListWatchRequestResponse  = "set verbs to the writes (create, update, patch, delete) or log list and watch at Metadata in an earlier rule"
	fixUnknownGroup              = "correct the group (\"\" is the core group), or pass --kubeconfig so lint reads the cluster's API groups"
	fixUncheckedGroup            = "pass --kubeconfig so lint reads the cluster's custom resources"
	fixUnknownResource           = "correct the resource name (plural, lower case), or pass --kubeconfig for custom resources"
	fixUnknownSubresource        = "check the subresource name"
	fixUnknownVerb               = "use get, list, watch, create, update, patch, delete or deletecollection (or a custom verb such as bind, escalate, impersonate)"
	fixNoCatchAll                = "set spec.defaultLevel of AuditPolicy cluster to Metadata"
	fixRequestReceived           = "set spec.omitStages: [RequestReceived] on AuditPolicy cluster"
)

// fixSecrets is the fix of a secrets-above-metadata finding about what (e.g. "secrets").
func fixSecrets(what string) string {
	return "decide " + what + " at Metadata in a rule that runs first (like the secrets-metadata-only preset, order below this module's)"
}

// suggest returns ` (did you mean "c"?)` for the candidate closest to s, or "" if none is close.
// Subresources ("pods/exec") are not candidates.
func suggest(s string, candidates []string) string {
	best, ok := spelling.Closest(s, slices.DeleteFunc(slices.Clone(candidates), func(c string) bool { return strings.Contains(c, "/") }))
	if !ok {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
