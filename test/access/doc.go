// Package access tests who may do what with kaudit's objects, against a real kube-apiserver
// (envtest): the admission policies of config/admission (only the manager writes revision
// ConfigMaps; an agent's token changes only its own node's entry of the AuditPolicy status) and
// the shipped RBAC. Requests are made as the identities in question by impersonation, each
// holding the RBAC it needs (the shipped roles where there are some), so that a denial proves
// the admission policy, not RBAC, denied it.
//
// It ships nothing: everything but this file is test code.
package access
