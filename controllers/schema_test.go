package controllers_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

// createYAML creates an object from YAML as kubectl does (strict field validation), so the
// apiserver's schema and CEL rules, not the Go types, decide.
func createYAML(doc string) error {
	u := &unstructured.Unstructured{}
	Expect(yaml.Unmarshal([]byte(doc), &u.Object)).To(Succeed())
	err := k8s.Create(ctx, u, client.FieldValidation("Strict"))
	if err == nil {
		DeferCleanup(func() { Expect(k8s.Delete(ctx, u)).To(Succeed()) })
	}
	return err
}

var _ = DescribeTable("the CRD schema rejects at apply time",
	func(rules string, wantField, wantMessage string) {
		err := createYAML(`
apiVersion: audit.kaudit.io/v1alpha1
kind: AuditPolicyModule
metadata: {name: schema-check}
spec:
  rules: ` + rules)
		Expect(apierrors.IsInvalid(err) || apierrors.IsBadRequest(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring(wantField))
		Expect(err.Error()).To(ContainSubstring(wantMessage))
	},
	Entry("an unknown level", `[{level: Everything}]`, "spec.rules[0].level", "Unsupported value"),
	Entry("a missing level", `[{verbs: [get]}]`, "spec.rules[0].level", "Required value"),
	Entry("an unknown stage", `[{level: Metadata, omitStages: [Sometimes]}]`, "spec.rules[0].omitStages[0]", "Unsupported value"),
	Entry("an empty module", `[]`, "spec.rules", "should have at least 1 items"),
	Entry("nonResourceURLs with resources", `[{level: None, nonResourceURLs: [/healthz], resources: [{resources: [pods]}]}]`, "spec.rules[0]", "nonResourceURLs cannot be combined with resources or namespaces"),
	Entry("nonResourceURLs with namespaces", `[{level: None, nonResourceURLs: [/healthz], namespaces: [default]}]`, "spec.rules[0]", "nonResourceURLs cannot be combined"),
	Entry("a wildcard inside a URL", `[{level: None, nonResourceURLs: ["/api/*/x"]}]`, "spec.rules[0].nonResourceURLs[0]", "should match"),
	Entry("a URL without a leading slash", `[{level: None, nonResourceURLs: [healthz]}]`, "spec.rules[0].nonResourceURLs[0]", "should match"),
	Entry("a wildcard inside a resource", `[{level: None, resources: [{resources: ["po*s"]}]}]`, "spec.rules[0].resources[0].resources[0]", "should match"),
	Entry("resourceNames without resources", `[{level: None, resources: [{group: apps, resourceNames: [x]}]}]`, "spec.rules[0].resources[0]", "resourceNames requires at least one entry in resources"),
	Entry("an unknown field", `[{level: None, user: [bob]}]`, "", "unknown field"),
)

var _ = It("the CRD schema accepts every wildcard form the apiserver allows", func() {
	Expect(createYAML(`
apiVersion: audit.kaudit.io/v1alpha1
kind: AuditPolicyModule
metadata: {name: wildcards}
spec:
  rules:
  - level: Metadata
    resources: [{group: "*", resources: ["*", "*/scale", "pods/*", "pods/log"]}]
  - level: None
    nonResourceURLs: ["*", "/healthz*", "/metrics"]`)).To(Succeed())
})

// patchSingleton changes the singleton's spec in a server-side dry run, so that only the schema
// and its CEL rules decide and nothing changes.
func patchSingleton(spec string) error {
	Eventually(func() error {
		return k8s.Get(ctx, types.NamespacedName{Name: v1alpha1.SingletonName}, &v1alpha1.AuditPolicy{})
	}, timeout).Should(Succeed())
	return k8s.Patch(ctx, &v1alpha1.AuditPolicy{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.SingletonName}},
		client.RawPatch(types.MergePatchType, []byte(`{"spec":`+spec+`}`)), client.DryRunAll)
}

var _ = DescribeTable("the AuditPolicy schema bounds the settings",
	func(spec, wantField, wantMessage string) {
		err := patchSingleton(spec)
		if wantMessage == "" {
			Expect(err).NotTo(HaveOccurred())
			return
		}
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring(wantField))
		Expect(err.Error()).To(ContainSubstring(wantMessage))
	},
	Entry("healthTimeout 0s, which rolls every rollout back", `{"rollout":{"healthTimeout":"0s"}}`, "spec.rollout.healthTimeout", "must be at least 30s"),
	Entry("healthTimeout 10s, shorter than a real restart", `{"rollout":{"healthTimeout":"10s"}}`, "spec.rollout.healthTimeout", "must be at least 30s"),
	Entry("healthTimeout 2h", `{"rollout":{"healthTimeout":"2h"}}`, "spec.rollout.healthTimeout", "must be at most 1h"),
	Entry("healthTimeout past the int64 nanoseconds", `{"rollout":{"healthTimeout":"9999999h"}}`, "spec.rollout.healthTimeout", "Invalid value"),
	Entry("healthTimeout 30s", `{"rollout":{"healthTimeout":"30s"}}`, "", ""),
	Entry("healthTimeout 1h", `{"rollout":{"healthTimeout":"1h"}}`, "", ""),
	Entry("debounce 11m", `{"rollout":{"debounce":"11m"}}`, "spec.rollout.debounce", "must be at most 10m"),
	Entry("debounce 0s", `{"rollout":{"debounce":"0s"}}`, "", ""),
	Entry("maxWait 2h", `{"rollout":{"maxWait":"2h"}}`, "spec.rollout.maxWait", "must be at most 1h"),
	Entry("minRestartInterval 25h", `{"rollout":{"minRestartInterval":"25h"}}`, "spec.rollout.minRestartInterval", "must be at most 24h"),
	Entry("minReadyTime 2h", `{"rollout":{"minReadyTime":"2h"}}`, "spec.rollout.minReadyTime", "must be at most 1h"),
	Entry("minReadyTime 0s", `{"rollout":{"minReadyTime":"0s"}}`, "", ""),
	Entry("shutdownDelayDuration 11m", `{"manageAPIServerFlags":true,"shutdownDelayDuration":"11m"}`, "spec.shutdownDelayDuration", "must be at most 10m"),
	Entry("shutdownDelayDuration without manageAPIServerFlags, which the agent would ignore", `{"shutdownDelayDuration":"15s"}`, "spec", "shutdownDelayDuration is set only when manageAPIServerFlags is true"),
	Entry("shutdownDelayDuration 15s", `{"manageAPIServerFlags":true,"shutdownDelayDuration":"15s"}`, "", ""),
	Entry("auditLog.path /", `{"auditLog":{"path":"/"}}`, "spec.auditLog.path", "should match '^/var/log/.+'"),
	Entry("auditLog.path in etcd's data", `{"auditLog":{"path":"/var/lib/etcd/member/audit.log"}}`, "spec.auditLog.path", "should match"),
	Entry("auditLog.path relative", `{"auditLog":{"path":"var/log/audit.log"}}`, "spec.auditLog.path", "should match"),
	Entry("auditLog.path out of /var/log by ..", `{"auditLog":{"path":"/var/log/../lib/etcd/audit.log"}}`, "spec.auditLog.path", "must not contain a '..' segment"),
	Entry("auditLog.path ending in ..", `{"auditLog":{"path":"/var/log/kubernetes/.."}}`, "spec.auditLog.path", "must not contain a '..' segment"),
	Entry("auditLog.path under /var/log", `{"auditLog":{"path":"/var/log/kubernetes/audit/audit.log"}}`, "", ""),
	Entry("auditLog.path with dots in a name", `{"auditLog":{"path":"/var/log/..audit/a..b.log"}}`, "", ""),
)
