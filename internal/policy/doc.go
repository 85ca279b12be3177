// Package policy merges AuditPolicyModules into one audit.k8s.io/v1 Policy, renders it,
// validates it with kube-apiserver's own loader and hashes it.
//
// It has no Kubernetes client and does no I/O: the CLI, the controller and the node agent all
// call it, so every one of them decides exactly alike.
package policy
