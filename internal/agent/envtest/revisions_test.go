package envtest_test

import (
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/revision"
)

// The agent rolls out only what the manager recorded in the singleton's status (desiredRevision,
// desiredPolicyHash), never a ConfigMap someone else made or changed.
var _ = Describe("An agent given a revision ConfigMap the manager did not make", func() {
	var a *testAgent
	BeforeEach(func() {
		resetCluster()
		createSingleton("5s", "0s", true)
		a = startAgent(agentOptions{name: "cp-1", restartTime: 100 * time.Millisecond})
		publish(1)
		Eventually(nodePhase("cp-1", v1alpha1.NodeApplied, 1)).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	})
	AfterEach(func() { a.shutdown() })

	DescribeTable("refuses it as Failed, with a Warning event naming the ConfigMap and why",
		func(forged func() (cm *corev1.ConfigMap, desiredHash string), why string) {
			cm, desiredHash := forged()
			publishConfigMap(cm, 2, desiredHash)
			name := "ConfigMap " + namespace + "/" + revision.Name(2)
			Eventually(func(g Gomega) {
				e := singleton().Status.Node("cp-1")
				g.Expect(e.Phase).To(Equal(v1alpha1.NodeFailed), e.Message)
				g.Expect(e.Message).To(ContainSubstring(name))
				g.Expect(e.Message).To(ContainSubstring(why))
				g.Expect(e.Message).To(ContainSubstring("not written"))
			}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
			Expect(a.policy()).To(Equal(string(policyOf(1))))
			Expect(a.state().Restarts).To(Equal(int64(1)), "the node restarted for the forged revision")
			Eventually(func() string { return strings.Join(a.eventList(), "\n") }).WithTimeout(10 * time.Second).Should(And(
				ContainSubstring(corev1.EventTypeWarning+" "+v1alpha1.EventRolloutFailed), ContainSubstring(name), ContainSubstring(why)))
		},
		Entry("labelled with another revision number", func() (*corev1.ConfigMap, string) {
			cm := revisionConfigMap(5, policyOf(2), hashOf(2))
			cm.Name = revision.Name(2)
			return cm, hashOf(2)
		}, "label "+revision.LabelRevision+"=5"),
		Entry("mutable", func() (*corev1.ConfigMap, string) {
			cm := revisionConfigMap(2, policyOf(2), hashOf(2))
			cm.Immutable = ptr.To(false)
			return cm, hashOf(2)
		}, "not immutable"),
		Entry("consistent in itself, but not with the hash the manager recorded", func() (*corev1.ConfigMap, string) {
			return revisionConfigMap(2, policyOf(3), hashOf(3)), hashOf(2)
		}, "the manager recorded"),
	)

	It("waits, Pending, while the manager has not recorded the desired revision's hash", func() {
		publishConfigMap(revisionConfigMap(2, policyOf(2), hashOf(2)), 2, "")
		Eventually(func(g Gomega) {
			e := singleton().Status.Node("cp-1")
			g.Expect(e.Phase).To(Equal(v1alpha1.NodePending), e.Message)
			g.Expect(e.Message).To(ContainSubstring("waiting for the manager to record its policy hash"))
		}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		Expect(a.state().Restarts).To(Equal(int64(1)))
		publish(2)
		Eventually(nodePhase("cp-1", v1alpha1.NodeApplied, 2)).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	})
})
