// Package cli proves that the offline tools and the controller agree on a real control plane
// (envtest: kube-apiserver, etcd and the manager): module manifests of both kinds and the
// AuditPolicy applied to the apiserver make a revision whose policy.yaml is byte for byte what
// `kaudit render` makes of the same files, and the modules render refuses are those the manager
// rejects, with the reasons and messages of their Accepted conditions.
//
// It ships nothing: everything but this file is test code.
package cli
