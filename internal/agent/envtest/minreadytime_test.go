package envtest_test

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/agent"
)

var _ = Describe("rollout.minReadyTime", func() {
	var (
		agents []*testAgent
		all    *restarts
	)
	BeforeEach(func() {
		resetCluster()
		all = &restarts{}
		agents = nil
	})
	AfterEach(func() {
		for _, a := range agents {
			a.shutdown()
		}
	})

	It("keeps the next node from restarting until that long after the previous one was ready, and no longer", func() {
		const minReadyTime = 2 * time.Second
		createSingletonWith(map[string]any{"healthTimeout": "5s", "minReadyTime": minReadyTime.String()}, true)
		// A Retry far longer than minReadyTime: the next node must start when the Lease expires,
		// not at its next retry. The margin allows for a loaded machine (the health check's
		// 500 ms period and scheduling).
		const retry, margin = 10 * time.Second, 3 * time.Second
		for i := 1; i <= 3; i++ {
			agents = append(agents, startAgent(agentOptions{name: fmt.Sprintf("cp-%d", i), restarts: all, restartTime: 300 * time.Millisecond, retry: retry}))
		}
		publish(1)
		Eventually(func() []restart { return all.list() }).WithTimeout(40 * time.Second).WithPolling(100 * time.Millisecond).Should(HaveLen(3))
		list := all.list()
		for i := 1; i < len(list); i++ {
			gap := list[i].start.Sub(list[i-1].end)
			GinkgoWriter.Printf("%s restarted %s after %s was ready\n", list[i].node, gap, list[i-1].node)
			Expect(gap).To(BeNumerically(">=", minReadyTime), "%s restarted before minReadyTime after %s", list[i].node, list[i-1].node)
			Expect(gap).To(BeNumerically("<", minReadyTime+margin), "%s waited for its retry, not for the Lease", list[i].node)
		}
		Expect(all.max.Load()).To(Equal(int32(1)))
	})

	It("holds through a restart of the agent that finished: the wait is in the Lease", func() {
		const minReadyTime = 3 * time.Second
		createSingletonWith(map[string]any{"healthTimeout": "5s", "minReadyTime": minReadyTime.String()}, true)
		first := startAgent(agentOptions{name: "cp-1", restarts: all, restartTime: 100 * time.Millisecond})
		publish(1)
		Eventually(nodePhase("cp-1", v1alpha1.NodeApplied, 1)).WithTimeout(30 * time.Second).WithPolling(20 * time.Millisecond).Should(Succeed())
		first.shutdown()
		agents = append(agents,
			startAgent(agentOptions{name: "cp-1", paths: first.paths, restarts: all, restartTime: 100 * time.Millisecond}),
			startAgent(agentOptions{name: "cp-2", restarts: all, restartTime: 100 * time.Millisecond}))
		Eventually(nodePhase("cp-2", v1alpha1.NodeApplied, 1)).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
		list := all.list()
		Expect(list).To(HaveLen(2), "cp-1 restarted once")
		Expect(list[1].start.Sub(list[0].end)).To(BeNumerically(">=", minReadyTime))
	})

	It("is all a crash after the health wait costs: the restarted agent hands on the Lease it still holds", func() {
		const minReadyTime = 2 * time.Second
		createSingletonWith(map[string]any{"healthTimeout": "5s", "minReadyTime": minReadyTime.String()}, true)
		agents = append(agents, startAgent(agentOptions{name: "cp-1", restarts: all, restartTime: 100 * time.Millisecond}))
		publish(1)
		Eventually(nodePhase("cp-1", v1alpha1.NodeApplied, 1)).WithTimeout(30 * time.Second).WithPolling(20 * time.Millisecond).Should(Succeed())
		// As if the agent had stopped between the health wait and settle: the Lease is still
		// ours for the whole rollout duration, and the files are up to date.
		lease := &coordinationv1.Lease{}
		Eventually(func() error {
			return k8s.Get(ctx, client.ObjectKey{Namespace: namespace, Name: agent.LeaseName}, lease)
		}).Should(Succeed())
		lease.Spec.HolderIdentity = ptr.To("cp-1")
		lease.Spec.RenewTime = ptr.To(metav1.NewMicroTime(time.Now()))
		lease.Spec.LeaseDurationSeconds = ptr.To(int32(270))
		Expect(k8s.Update(ctx, lease)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: namespace, Name: agent.LeaseName}, lease)).To(Succeed())
			end := lease.Spec.RenewTime.Add(time.Duration(*lease.Spec.LeaseDurationSeconds) * time.Second)
			g.Expect(time.Until(end)).To(BeNumerically("<=", minReadyTime+time.Second))
		}).WithTimeout(15 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
	})
})
