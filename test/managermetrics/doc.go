// Package managermetrics tests the manager's metrics on a real control plane (envtest:
// kube-apiserver, etcd, and the manager running as its ServiceAccount with the shipped RBAC of
// config/rbac): what they count after modules, a revision and node entries, and that the
// metrics endpoint serves them over HTTPS only to callers allowed to get /metrics. See
// docs/metrics.md, "Manager".
//
// It ships nothing: everything but this file is test code.
package managermetrics
