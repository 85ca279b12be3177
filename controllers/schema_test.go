package controllers_test

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
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
