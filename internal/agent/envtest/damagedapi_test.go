package envtest_test

import (
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/agent"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/revision"
)

var _ = Describe("Agents facing a damaged API", func() {
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
	// Every spec here publishes revision 1 only.
	applied := func(name string) func(g Gomega) {
		return func(g Gomega) {
			ap := &v1alpha1.AuditPolicy{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: v1alpha1.SingletonName}, ap)).To(Succeed())
			e := ap.Status.Node(name)
			g.Expect(e).NotTo(BeNil(), name)
			g.Expect(e.Phase).To(Equal(v1alpha1.NodeApplied), "%s: %s", name, e.Message)
			g.Expect(e.AppliedRevision).To(HaveValue(Equal(int64(1))), name)
		}
	}

	It("never write a revision whose policy does not match its hash annotation, and say so", func() {
		createSingleton("5s", "0s", true)
		a := startAgent(agentOptions{name: "cp-1", restarts: all, restartTime: 100 * time.Millisecond})
		agents = append(agents, a)
		publish(1)
		Eventually(applied("cp-1")).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())

		// Revision 2's ConfigMap carries other bytes than the ones its hash was computed from.
		publishRevision(2, policyOf(3), hashOf(2))
		Eventually(func(g Gomega) {
			e := singleton().Status.Node("cp-1")
			g.Expect(e.Phase).To(Equal(v1alpha1.NodeFailed))
			g.Expect(e.Message).To(ContainSubstring(revision.AnnotationPolicySHA256))
			g.Expect(e.Message).To(ContainSubstring("not written"))
		}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		Expect(a.policy()).To(Equal(string(policyOf(1))))
		Expect(a.state().Restarts).To(Equal(int64(1)))
		// The agent reports the phase, then records the event.
		Eventually(func() string { return strings.Join(a.eventList(), "\n") }).WithTimeout(10 * time.Second).Should(ContainSubstring(v1alpha1.EventRolloutFailed))
	})

	It("write their entry again when it disappears from the status while the node is Applied", func() {
		createSingleton("5s", "0s", true)
		agents = append(agents, startAgent(agentOptions{name: "cp-1", restarts: all, restartTime: 100 * time.Millisecond}))
		publish(1)
		Eventually(applied("cp-1")).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())

		// The manager drops the entry (it thought the node gone).
		Eventually(func() error {
			ap := singleton()
			var kept []v1alpha1.NodeStatus
			for _, n := range ap.Status.Nodes {
				if n.Name != "cp-1" {
					kept = append(kept, n)
				}
			}
			ap.Status.Nodes = kept
			return k8s.Status().Update(ctx, ap)
		}).WithTimeout(10 * time.Second).Should(Succeed())
		Expect(singleton().Status.Node("cp-1")).To(BeNil())
		Eventually(applied("cp-1")).WithTimeout(20 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	})

	It("write Applied again after the retry delay, not the resync, when the API refuses it after the restart", func() {
		createSingleton("5s", "0s", true)
		failures := &atomic.Int32{}
		failures.Store(3)
		sc := failingStatus{WithWatch: k8s, phases: []string{string(v1alpha1.NodeApplied)}, failures: failures}
		agents = append(agents, startAgent(agentOptions{name: "cp-1", statusClient: sc, restarts: all, restartTime: 100 * time.Millisecond, resync: time.Hour}))
		publish(1)
		Eventually(applied("cp-1")).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		Expect(failures.Load()).To(BeNumerically("<", 0), "the refused writes were retried")
	})

	It("keep the lease when a rollback cannot be reported, so no other node rolls the bad revision out", func() {
		createSingleton("1s", "0s", true)
		bad := policy.ShortHash(hashOf(2))
		isBad := func(a string) bool { return strings.HasPrefix(a, bad) }
		sc := failingStatus{WithWatch: k8s, phases: []string{string(v1alpha1.NodeRolledBack), string(v1alpha1.NodeFailed)}}
		for _, name := range []string{"cp-1", "cp-2"} {
			agents = append(agents, startAgent(agentOptions{name: name, statusClient: sc, restarts: all, restartTime: 100 * time.Millisecond, bad: isBad, resync: 2 * time.Second}))
		}
		publish(1)
		for _, name := range []string{"cp-1", "cp-2"} {
			Eventually(applied(name)).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		}

		publish(2)
		var failed, other *testAgent
		Eventually(func() bool {
			for i, a := range agents {
				if st := a.state(); st.Failed != nil && st.Failed.Revision == 2 {
					failed, other = a, agents[1-i]
					return true
				}
			}
			return false
		}).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(BeTrue())
		Consistently(func(g Gomega) {
			g.Expect(other.state().Restarts).To(Equal(int64(1)), "%s rolled out the revision %s rolled back", other.name, failed.name)
			l := &coordinationv1.Lease{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: namespace, Name: agent.LeaseName}, l)).To(Succeed())
			g.Expect(l.Spec.HolderIdentity).To(HaveValue(Equal(failed.name)))
		}).WithTimeout(5 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	})
})
