package envtest_test

import (
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

// What an agent finds on its node besides its own files: another agent.
var _ = Describe("An agent on its node", func() {
	BeforeEach(resetCluster)

	It("is the only one to act there: a second agent waits until the first exits", func() {
		createSingleton("5s", "0s", true)
		first := startAgent(agentOptions{name: "cp-1", restartTime: 100 * time.Millisecond})
		DeferCleanup(first.shutdown)
		publish(1)
		Eventually(nodePhase("cp-1", v1alpha1.NodeApplied, 1)).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())

		// A force-deleted pod's process still runs while the DaemonSet starts another.
		gets := &atomic.Int32{}
		second := startAgent(agentOptions{name: "cp-1", paths: first.paths, client: countingClient{WithWatch: k8s, gets: gets}, restartTime: 100 * time.Millisecond})
		DeferCleanup(second.shutdown)
		Consistently(gets.Load).WithTimeout(2*time.Second).WithPolling(100*time.Millisecond).Should(BeZero(), "the second agent acted while the first runs")

		first.shutdown()
		Eventually(gets.Load).WithTimeout(10 * time.Second).Should(BeNumerically(">", 0))
		publish(2)
		Eventually(nodePhase("cp-1", v1alpha1.NodeApplied, 2)).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		Expect(second.state().Restarts).To(Equal(int64(2)))
	})
})
