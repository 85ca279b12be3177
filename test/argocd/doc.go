// Package argocd tests kaudit under Argo CD without Argo CD, which cannot be installed on
// kaudit's CI machines (no images can be pulled and its Go modules do not build here).
//
// It runs the shipped health checks (config/argocd) the way Argo CD does (runner_test.go), on
// objects an envtest run of the manager really wrote, stores them as Argo CD test cases, checks
// that server-side-apply dry runs of the shipped manifests show no drift, and checks the sync
// waves. See docs/gitops.md.
//
// It ships nothing: everything but this file is test code, the Lua runner included.
package argocd
