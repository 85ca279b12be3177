package access

import (
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

const nodeNameExtra = "authentication.kubernetes.io/node-name"

// agentOn is the agent's service account with a token bound to a pod on the given nodes, as
// the API server authenticates it (one node for a real pod's token).
func agentOn(nodes ...string) client.Client {
	user := serviceAccount(namespace, "kaudit-agent")
	if len(nodes) > 0 {
		user.Extra = map[string][]string{nodeNameExtra: nodes}
	}
	return as(user)
}

// applyStatus server-side applies status fields of the singleton as fieldOwner, as the agent
// and the manager do.
func applyStatus(c client.Client, fieldOwner string, status map[string]any) error {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "AuditPolicy",
		"metadata": map[string]any{"name": v1alpha1.SingletonName},
		"status":   status,
	}}
	return c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(fieldOwner), client.ForceOwnership)
}

// reportAs applies one node's entry as the agent of node does.
func reportAs(c client.Client, node string, entry map[string]any) error {
	entry["name"] = node
	return applyStatus(c, "kaudit-agent-"+node, map[string]any{"nodes": []any{entry}})
}

func jsonPatchStatus(c client.Client, patch string) error {
	return c.Status().Patch(ctx, &v1alpha1.AuditPolicy{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.SingletonName}},
		client.RawPatch(types.JSONPatchType, []byte(patch)))
}

func deniedByAgentPolicy(err error, message string) {
	GinkgoHelper()
	Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got %v", err)
	Expect(err.Error()).To(ContainSubstring("ValidatingAdmissionPolicy 'kaudit-agent-status'"))
	Expect(err.Error()).To(ContainSubstring(message))
}

func singletonStatus() *v1alpha1.AuditPolicyStatus {
	GinkgoHelper()
	ap := &v1alpha1.AuditPolicy{}
	Expect(k8s.Get(ctx, types.NamespacedName{Name: v1alpha1.SingletonName}, ap)).To(Succeed())
	return &ap.Status
}

var _ = Describe("the agent status policy", Ordered, func() {
	const digest = "0000000000000000000000000000000000000000000000000000000000000001"
	applied := map[string]any{"appliedRevision": int64(2), "phase": string(v1alpha1.NodeApplied)}

	BeforeAll(func() {
		Expect(k8s.Create(ctx, &v1alpha1.AuditPolicy{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.SingletonName}})).To(Succeed())
		Expect(applyStatus(k8s, "kaudit-manager", map[string]any{
			"latestRevision": int64(2), "desiredRevision": int64(2), "desiredPolicyHash": "abc",
			"revisions": []any{map[string]any{"number": int64(2), "sha256": digest}},
		})).To(Succeed())
		for _, node := range []string{"cp-1", "cp-2"} {
			Expect(reportAs(k8s, node, map[string]any{"appliedRevision": int64(1), "phase": string(v1alpha1.NodePending)})).To(Succeed())
		}
		// A policy takes a moment to become effective.
		Eventually(func() error {
			return reportAs(agentOn(), "cp-1", map[string]any{"phase": string(v1alpha1.NodeRollingOut)})
		}, "30s", "200ms").Should(MatchError(ContainSubstring("kaudit-agent-status")))
	})

	It("lets an agent write its own node's entry", func() {
		Expect(reportAs(agentOn("cp-1"), "cp-1", applied)).To(Succeed())
		Expect(singletonStatus().Node("cp-1").Phase).To(Equal(v1alpha1.NodeApplied))
	})

	It("denies a token not bound to a node, or bound to several", func() {
		deniedByAgentPolicy(reportAs(agentOn(), "cp-1", applied), "not bound to one node")
		deniedByAgentPolicy(reportAs(agentOn("cp-1", "cp-2"), "cp-1", applied), "not bound to one node")
	})

	It("denies changing, adding or removing another node's entry", func() {
		agent := agentOn("cp-1")
		failed := map[string]any{"phase": string(v1alpha1.NodeFailed), "message": "forged"}
		deniedByAgentPolicy(reportAs(agent, "cp-2", failed), "the kaudit agent of node cp-1 may change only its own entry of status.nodes")
		deniedByAgentPolicy(reportAs(agent, "cp-3", applied), "may change only its own entry")
		i := 0
		if singletonStatus().Nodes[0].Name == "cp-1" {
			i = 1
		}
		deniedByAgentPolicy(jsonPatchStatus(agent, fmt.Sprintf(`[{"op":"test","path":"/status/nodes/%d/name","value":"cp-2"},{"op":"remove","path":"/status/nodes/%d"}]`, i, i)), "may change only its own entry")
		Expect(singletonStatus().Node("cp-2").Phase).To(Equal(v1alpha1.NodePending))
	})

	DescribeTable("denies changing a manager-owned field",
		func(field string, value any) {
			deniedByAgentPolicy(applyStatus(agentOn("cp-1"), "kaudit-agent-cp-1", map[string]any{field: value}),
				"may not change the manager-owned status fields")
		},
		Entry("desiredRevision, to push an older revision", "desiredRevision", int64(1)),
		Entry("desiredPolicyHash", "desiredPolicyHash", "def"),
		Entry("latestRevision", "latestRevision", int64(9)),
		Entry("revisions, to record a forged revision", "revisions", []any{map[string]any{"number": int64(3), "sha256": digest}}),
		Entry("observedGeneration", "observedGeneration", int64(7)),
		Entry("updatedNodes", "updatedNodes", "2/2"),
		Entry("conditions", "conditions", []any{map[string]any{"type": "Available", "status": "True", "reason": "RolloutComplete", "message": "", "lastTransitionTime": "2024-01-01T00:00:00Z"}}),
	)

	It("lets an agent remove its own entry", func() {
		i := 0
		if singletonStatus().Nodes[0].Name != "cp-1" {
			i = 1
		}
		Expect(jsonPatchStatus(agentOn("cp-1"), fmt.Sprintf(`[{"op":"test","path":"/status/nodes/%d/name","value":"cp-1"},{"op":"remove","path":"/status/nodes/%d"}]`, i, i))).To(Succeed())
		Expect(singletonStatus().Node("cp-1")).To(BeNil())
	})

	It("does not restrict the manager, which removes the entries of gone nodes", func() {
		manager := as(serviceAccount(namespace, "kaudit-manager"))
		Expect(jsonPatchStatus(manager, `[{"op":"test","path":"/status/nodes/0/name","value":"cp-2"},{"op":"remove","path":"/status/nodes/0"}]`)).To(Succeed())
		Expect(applyStatus(manager, "kaudit-manager", map[string]any{"desiredRevision": int64(3), "desiredPolicyHash": "def"})).To(Succeed())
		Expect(singletonStatus().Nodes).To(BeEmpty())
	})
})
