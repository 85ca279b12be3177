// Package e2e is kaudit's end-to-end suite: a real kind cluster whose kubelet
// restarts a real static kube-apiserver, and assertions on the audit log file
// that apiserver writes. It needs Docker and runs only with the e2e build tag:
//
//	go test -tags e2e ./test/e2e -v -count=1 -timeout 80m -ginkgo.v -ginkgo.label-filter='!ha'
//
// (`make test-e2e`). On machines that cannot pull images, hack/kind builds
// the node image and prepares the host first (see hack/kind/README.md).
//
// Environment:
//
//	IMG                      kaudit image (default kaudit.local/kaudit:dev)
//	KAUDIT_E2E_BUILD_IMAGE   "false": use IMG as it is in Docker instead of building it
//	KAUDIT_E2E_KUSTOMIZE     what to install (default config/default; e.g. an overlay)
//	KAUDIT_E2E_REUSE         "true": reuse existing clusters of the same name
//	KAUDIT_E2E_KEEP          "true": keep the clusters afterwards
//	KAUDIT_E2E_ARTIFACTS     where failures save kind logs and the audit log
//	                         (default /tmp/kaudit-e2e/artifacts)
//	KAUDIT_E2E_HA_CLUSTER    the three-control-plane suite's cluster (default
//	                         kaudit-e2e-ha)
//
// The specs labelled "ha" run on a cluster of three control-plane nodes behind
// kind's load balancer, created once for them (`make test-e2e-ha`, which runs
// only those; `make test-e2e` runs the others). They install kaudit with IMG as
// the image, whatever config/default names.
package e2e
