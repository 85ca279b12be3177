// Package inforce decides which spec of each module the next revision holds, and what each
// module's Accepted condition says (see docs/design.md, "Last known good", "Guardrails" and
// "Namespaced modules").
//
// A module's current spec is put in force when kube-apiserver's loader accepts it, and, for a
// NamespacedAuditPolicyModule, when its rules stay in its namespace, under the singleton's cap,
// and log no request of the namespace less than the cluster's modules do. Otherwise its last
// accepted spec (the record in the policy in force) stays, or nothing of it is in force.
// Guardrails are then enforced on the merged result: while the merged policy breaks a
// guardrail that the policy in force keeps, the change that exposes the witness request is
// taken back (Decide), one module at a time.
//
// The decision is pure: inputs in, a Result out, no client and no clock, so that the manager
// and the offline tools decide alike. A Memo only saves work between calls.
package inforce
