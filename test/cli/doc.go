// Package cli proves that the offline tools and the controller agree on a real control plane
// (envtest: kube-apiserver, etcd and the manager): module manifests applied to the apiserver
// make a revision whose policy.yaml is byte for byte what `kaudit render` makes of the same
// files.
//
// It ships nothing: everything but this file is test code.
package cli
