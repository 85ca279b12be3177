package controllers_test

import (
	"fmt"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

// rolloutStatusSpecs run inside the suite's ordered container, after the revision specs.
func rolloutStatusSpecs() {
	Describe("the rollout summary on the singleton", Ordered, func() {
		var desired int64

		BeforeAll(func() {
			Eventually(func() error {
				return k8s.Get(ctx, types.NamespacedName{Name: v1alpha1.SingletonName}, &v1alpha1.AuditPolicy{})
			}, timeout).Should(Succeed())
			setRollout("100ms", "5s")
			Expect(k8s.Create(ctx, newModule("rollout-status", 1, rule(v1alpha1.LevelMetadata, "pods")))).To(Succeed())
			// The module's revision is the desired one once the singleton's status says so: the
			// module's status can be written first.
			Eventually(func() *int64 { return getModule("rollout-status").Status.IncludedInRevision }, timeout).ShouldNot(BeNil())
			desired = *getModule("rollout-status").Status.IncludedInRevision
			Eventually(func() *int64 { return singleton().Status.DesiredRevision }, timeout).Should(HaveValue(Equal(desired)))
		})
		AfterAll(func() {
			Expect(k8s.Delete(ctx, getModule("rollout-status"))).To(Succeed())
			for _, n := range []string{"cp-1", "cp-2"} {
				Expect(client.IgnoreNotFound(k8s.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}))).To(Succeed())
			}
		})

		It("is not Available while no control-plane node exists", func() {
			Eventually(func() string { return condition(v1alpha1.ConditionAvailable).Reason }, timeout).Should(Equal(v1alpha1.ReasonNoControlPlaneNodes))
		})

		It("counts control-plane nodes and the agents' entries", func() {
			Expect(k8s.Create(ctx, controlPlaneNode("cp-1"))).To(Succeed())
			Expect(k8s.Create(ctx, controlPlaneNode("cp-2"))).To(Succeed())
			Expect(k8s.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-1"}})).To(Succeed())
			DeferCleanup(func() {
				Expect(k8s.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-1"}})).To(Succeed())
			})
			Eventually(func() string { return singleton().Status.UpdatedNodes }, timeout).Should(Equal("0/2"))

			reportNode("cp-1", desired, v1alpha1.NodeApplied, "")
			Eventually(func() string { return singleton().Status.UpdatedNodes }, timeout).Should(Equal("1/2"))
			Expect(condition(v1alpha1.ConditionAvailable).Status).To(Equal(metav1.ConditionFalse))
			Expect(condition(v1alpha1.ConditionProgressing).Status).To(Equal(metav1.ConditionTrue))
			Expect(condition(v1alpha1.ConditionProgressing).Message).To(ContainSubstring("cp-2"))

			reportNode("cp-2", desired, v1alpha1.NodeApplied, "")
			Eventually(func() metav1.ConditionStatus { return condition(v1alpha1.ConditionAvailable).Status }, timeout).Should(Equal(metav1.ConditionTrue))
			Expect(singleton().Status.UpdatedNodes).To(Equal("2/2"))
			Expect(condition(v1alpha1.ConditionProgressing).Status).To(Equal(metav1.ConditionFalse))
			Expect(singleton().Status.Nodes).To(HaveLen(2), "the manager's status write keeps the agents' entries")
		})

		It("is Degraded, naming the node and what differs, while a node's files drifted", func() {
			reportNode("cp-2", desired, v1alpha1.NodeDrifted, "revision 1: the node's files differ from it: /etc/kubernetes/audit/policy.yaml: rules differ")
			Eventually(func() string { return condition(v1alpha1.ConditionDegraded).Reason }, timeout).Should(Equal(v1alpha1.ReasonNodeDrifted))
			Expect(condition(v1alpha1.ConditionDegraded).Message).To(ContainSubstring(fmt.Sprintf("node cp-2 %s: revision 1: the node's files differ from it: /etc/kubernetes/audit/policy.yaml: rules differ", v1alpha1.NodeDrifted)))
			Expect(condition(v1alpha1.ConditionAvailable).Status).To(Equal(metav1.ConditionFalse))
			Expect(condition(v1alpha1.ConditionProgressing).Message).To(ContainSubstring("cp-2"))

			reportNode("cp-2", desired, v1alpha1.NodeApplied, "")
			Eventually(func() metav1.ConditionStatus { return condition(v1alpha1.ConditionDegraded).Status }, timeout).Should(Equal(metav1.ConditionFalse))
			Expect(condition(v1alpha1.ConditionAvailable).Status).To(Equal(metav1.ConditionTrue))
		})

		It("is Degraded, naming the node and reason, when a node rolled back", func() {
			reportNode("cp-2", desired-1, v1alpha1.NodeRolledBack, "kube-apiserver not ready within 2m0s")
			Eventually(func() metav1.ConditionStatus { return condition(v1alpha1.ConditionDegraded).Status }, timeout).Should(Equal(metav1.ConditionTrue))
			Expect(condition(v1alpha1.ConditionDegraded).Message).To(ContainSubstring(fmt.Sprintf("node cp-2 %s: kube-apiserver not ready within 2m0s", v1alpha1.NodeRolledBack)))
			Expect(condition(v1alpha1.ConditionProgressing).Reason).To(Equal(v1alpha1.ReasonRolloutHalted))
			Expect(condition(v1alpha1.ConditionAvailable).Status).To(Equal(metav1.ConditionFalse))
		})

		It("drops the entry of a node that is gone", func() {
			Expect(k8s.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "cp-2"}})).To(Succeed())
			Eventually(func() []v1alpha1.NodeStatus { return singleton().Status.Nodes }, timeout).Should(HaveLen(1))
			Expect(singleton().Status.Nodes[0].Name).To(Equal("cp-1"))
			Eventually(func() string { return singleton().Status.UpdatedNodes }, timeout).Should(Equal("1/1"))
			Eventually(func() metav1.ConditionStatus { return condition(v1alpha1.ConditionDegraded).Status }, timeout).Should(Equal(metav1.ConditionFalse))
		})

		It("drops the entry of a node that is no longer a control-plane node", func() {
			Expect(k8s.Patch(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "cp-1"}},
				client.RawPatch(types.JSONPatchType, []byte(`[{"op":"remove","path":"/metadata/labels/node-role.kubernetes.io~1control-plane"}]`)))).To(Succeed())
			Eventually(func() []v1alpha1.NodeStatus { return singleton().Status.Nodes }, timeout).Should(BeEmpty())
			// The entry is removed before the status of the same reconcile is written.
			Eventually(func() string { return condition(v1alpha1.ConditionAvailable).Reason }, timeout).Should(Equal(v1alpha1.ReasonNoControlPlaneNodes))
		})
	})
}
