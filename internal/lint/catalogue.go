package lint

import "slices"

// Check is one kind of problem lint looks for. Every finding names its check.
type Check struct {
	// Name is what findings carry in Finding.Check, e.g. "shadowed-rule".
	Name string
	// Severity of the check's findings. secrets-above-metadata reports configmaps one lower.
	Severity Severity
	// Summary says in one line what the check finds.
	Summary string
}

// checkID indexes the catalogue; findings are added by checkID, so that a check cannot report
// under a name the catalogue (and so `kaudit lint --help`) does not list.
type checkID int

const (
	invalid checkID = iota
	unknownField
	guardrailViolation
	guardrailBroken
	lowersLogging
	aboveCap
	namespacedModulesDisabled
	shadowedRule
	duplicateRule
	shadowedDefault
	redundantRule
	secretsAboveMetadata
	blindsAudit
	noCatchAll
	requestReceivedNotOmitted
	wildcardRequestResponse
	listWatchRequestResponse
	unknownGroup
	uncheckedGroup
	unknownResource
	unknownSubresource
	unknownVerb
	checkCount
)

// catalogue declares every check once, in the order `kaudit lint --help` lists them.
var catalogue = [checkCount]Check{
	invalid:                   {"invalid", Error, "a field kube-apiserver's loader rejects"},
	unknownField:              {"unknown-field", Error, "a field kube-apiserver drops (a typo?): the rule then matches more than meant"},
	guardrailViolation:        {"guardrail-violation", Error, "a module the manager rejects: it would log a guarded request outside the guardrail's bounds"},
	guardrailBroken:           {"guardrail-broken", Error, "a guardrail the settings break and no module mends (defaultLevel None): AuditPolicy Degraded"},
	lowersLogging:             {"lowers-logging", Error, "a namespaced module the manager rejects: it logs a request of its namespace less than the cluster's modules"},
	aboveCap:                  {"above-cap", Error, "a namespaced module the manager rejects: a rule above spec.namespacedModules.maxLevel"},
	namespacedModulesDisabled: {"namespaced-modules-disabled", Error, "a namespaced module while spec.namespacedModules.enabled is false: nothing of it is in force"},
	shadowedRule:              {"shadowed-rule", Warning, "a rule that never decides a request: earlier rules match all of it"},
	duplicateRule:             {"duplicate-rule", Warning, "a rule that matches exactly the requests of an earlier one"},
	shadowedDefault:           {"shadowed-default", Warning, "a module's catch-all makes the default level unreachable"},
	redundantRule:             {"redundant-rule", Info, "a rule whose requests get the same level and stages from later rules without it"},
	secretsAboveMetadata:      {"secrets-above-metadata", Error, "secret contents in a logged body: secrets, issued tokens, tokenreviews (configmaps: a warning)"},
	blindsAudit:               {"blinds-audit", Error, "level None for system:masters or for everyone's writes"},
	noCatchAll:                {"no-catch-all", Warning, "requests no module matches are not logged"},
	requestReceivedNotOmitted: {"request-received-not-omitted", Warning, "every request logged twice"},
	wildcardRequestResponse:   {"wildcard-requestresponse", Warning, "bodies of whole API groups or of every resource"},
	listWatchRequestResponse:  {"list-watch-requestresponse", Warning, "list and watch responses logged whole"},
	unknownGroup:              {"unknown-group", Warning, "an API group kube-apiserver does not serve (a typo?)"},
	uncheckedGroup:            {"unchecked-group", Info, "a custom API group whose resources were not checked"},
	unknownResource:           {"unknown-resource", Warning, "a resource its API group does not have (a typo?)"},
	unknownSubresource:        {"unknown-subresource", Info, "a subresource no known resource has"},
	unknownVerb:               {"unknown-verb", Warning, "a verb kube-apiserver does not use (a typo?)"},
}

// Checks returns the catalogue of checks, in the order `kaudit lint --help` lists them.
func Checks() []Check {
	return slices.Clone(catalogue[:])
}
