// Package guardrail decides, exactly, whether an audit policy can decide any request outside
// given bounds (Check), or log any request of a region less than another policy does
// (FindWeakening), and finds a witness request when it can.
//
// # What "exact" means
//
// The requests considered are every input kube-apiserver's policy evaluator can be given: a
// user (any name, any set of groups, or none at all), a verb, and either a resource request (API
// group, resource, subresource, namespace, name) or a non-resource request (a path). Fields are
// any strings, with two limits that the apiserver's request info guarantees: resource and
// subresource contain no "/", and paths start with "/". Requests for resources that do not exist
// or are not namespaced, and requests whose authentication failed (no user), are included: the
// apiserver audits them with the same policy.
//
// A guardrail is reported if and only if such a request is in its scope, in none of its
// exceptions, and decided outside its bounds; FindWeakening returns a request if and only if
// one exists. The reported request is decided by the earliest rule that decides any violating
// request, and kube-apiserver's evaluator confirms it (level, stages, deciding rule, scope):
// a disagreement is returned as an error, and would be a bug here.
//
// The check is conservative in one way: users that carry neither system:authenticated nor
// system:unauthenticated are considered although kube-apiserver adds one of them to every
// authenticated user but system:anonymous. That changes a verdict only for a policy, scope or
// exception that lists system:authenticated in userGroups, and then errs towards reporting:
// see docs/design.md, "Guardrails".
//
// # How
//
// kube-apiserver decides a request with the first rule that matches it, and every test a rule
// makes is equality with a literal it lists, a "*" wildcard, or (paths) a prefix. So the
// requests that agree on every literal of the policy and the guardrails are decided alike: each
// field is searched over the ids of those literals plus "any other value", and paths over one
// representative per class of paths that the URL patterns treat alike. A rule's match set is
// then a union of boxes (products of per-field sets), except for groups, where a rule matches
// users in any of its groups: matching only grows with the set of groups, so the smallest group
// sets suffice (one group from each list that must be hit).
//
// For each rule, in order, whose own result is out of bounds, the search asks whether (rule ∩
// scope) minus (earlier rules ∪ exceptions) holds a request, by splitting boxes. Rules that miss
// the scope are skipped, earlier rules are found through an index by field value, and the walk
// stops once earlier rules cover the whole scope, which is what keeps it fast on large policies.
//
// A Prepared policy is compiled and indexed once for many calls (the manager's cluster policy,
// against which every namespaced module is checked), and loaded into kube-apiserver's evaluator
// only when a call finds a request to confirm: loading is most of the cost when nothing is found.
package guardrail
