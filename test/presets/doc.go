// Package presets holds the tests of kaudit's ready-made modules: config/modules/baseline (the
// baseline kustomization) and config/modules/managed-cloud-example.
//
// The tests read the manifests exactly as `kaudit render` does (internal/manifest, CRD defaults
// applied), merge them with internal/policy, load the rendered policy with kube-apiserver's own
// loader and feed representative requests through the apiserver's own rule evaluator
// (k8s.io/apiserver/pkg/audit/policy). Nothing here re-implements rule matching.
//
// They also replay audit logs recorded on kind clusters (testdata/auditlogs) through
// internal/simulate and the same evaluator, to measure kept bytes against the Kubernetes
// documentation's example policy and to check that every security-relevant request is kept.
//
// docs/modules.md explains the modules and the definition of "security-relevant" that the tests
// hold them to.
//
// It ships nothing: the package exists for its tests and the recorded audit logs in testdata, and
// no binary imports it.
package presets
