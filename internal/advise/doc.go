// Package advise proposes AuditPolicyModules that cut the volume of an audit policy, from
// recorded audit logs: `kaudit advise`.
//
// The logs (any level: a log recorded at Metadata gives smaller estimates, never wrong ones) are
// streamed once through internal/simulate's reader, and every distinct request (user, groups,
// verb, resource and namespace; the object's name too where the starting policy names objects)
// is remembered with the bytes its events take at each level, as simulate estimates them. The
// starting policy decides each request.
//
// Candidates are None and Metadata rules for one identity (a user, or the kubelets as the
// group system:nodes), for its reads or its writes of a set of resources (or its reads of a set
// of paths), in the namespaces it used when there are few. A candidate is kept only if no
// request of the logs that it decides is security-relevant (internal/relevance) and recorded
// higher by the starting policy, if writes are only lowered to Metadata (unless asked), and if it
// lowers no request in the scope of a guardrail the starting policy already breaks. Each
// identity's rules become one module, ordered just before the starting module that decides
// what its rules catch, so that every module the starting policy puts first (secrets,
// privilege changes, system:masters) still decides first.
//
// Then the proposal is checked as it would be applied: merged with the starting modules exactly
// as the controller merges them, every request of the logs decided again, guardrail.Check run
// on the merged policy (the built-in guardrails plus the singleton's); a rule that lowers a
// security-relevant request, adds a guardrail violation or saves nothing is taken out, until
// none does. The manifests are read back as `kaudit render` reads them, and the logs are replayed
// through the result and the starting policy by internal/simulate for the summary.
package advise
