package envtest_test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/agent"
	"github.com/kaudit/kaudit/internal/policy"
)

var _ = Describe("The rollout Lease", func() {
	BeforeEach(resetCluster)

	It("lets exactly one of several racing agents hold it, and the next one after release", func() {
		const agents = 4
		leases := make([]*agent.Lease, agents)
		for i := range leases {
			leases[i] = &agent.Lease{Client: k8s, Namespace: namespace, Name: agent.LeaseName, Identity: fmt.Sprintf("cp-%d", i), Clock: clock.RealClock{}}
		}
		for round := 0; round < 5; round++ {
			var wg sync.WaitGroup
			won := make([]bool, agents)
			for i := range leases {
				wg.Add(1)
				go func() {
					defer GinkgoRecover()
					defer wg.Done()
					ok, _, err := leases[i].TryAcquire(ctx, time.Minute)
					Expect(err).NotTo(HaveOccurred())
					won[i] = ok
				}()
			}
			wg.Wait()
			winners := 0
			var winner *agent.Lease
			for i, ok := range won {
				if ok {
					winners++
					winner = leases[i]
				}
			}
			Expect(winners).To(Equal(1), "round %d: winners %v", round, won)
			for _, l := range leases {
				if l != winner {
					ok, holder, err := l.TryAcquire(ctx, time.Minute)
					Expect(err).NotTo(HaveOccurred())
					Expect(ok).To(BeFalse())
					Expect(holder).To(Equal(winner.Identity))
				}
			}
			Expect(winner.Release(ctx)).To(Succeed())
		}
	})

	It("is taken over once its dead holder let it expire on the reader's clock, and not before", func() {
		now := time.Now()
		dead := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: agent.LeaseName},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr.To("cp-dead"),
				LeaseDurationSeconds: ptr.To(int32(270)),
				AcquireTime:          ptr.To(metav1.NewMicroTime(now)),
				RenewTime:            ptr.To(metav1.NewMicroTime(now)),
			},
		}
		Expect(k8s.Create(ctx, dead)).To(Succeed())
		fake := clocktesting.NewFakeClock(now.Add(4 * time.Minute))
		l := &agent.Lease{Client: k8s, Namespace: namespace, Name: agent.LeaseName, Identity: "cp-alive", Clock: fake}
		ok, holder, err := l.TryAcquire(ctx, agent.LeaseDuration(2*time.Minute))
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(BeFalse())
		Expect(holder).To(Equal("cp-dead"))

		// Expired on the holder's clock, but this agent first read it 30 s ago: a lease lasts its
		// duration on the reader's clock, so a holder's clock running behind cannot end it early.
		fake.SetTime(now.Add(270*time.Second + time.Millisecond))
		ok, holder, err = l.TryAcquire(ctx, agent.LeaseDuration(2*time.Minute))
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(BeFalse())
		Expect(holder).To(Equal("cp-dead"))

		fake.SetTime(now.Add(4*time.Minute + 270*time.Second))
		ok, _, err = l.TryAcquire(ctx, agent.LeaseDuration(2*time.Minute))
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(BeTrue())
		got := &coordinationv1.Lease{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(dead), got)).To(Succeed())
		Expect(*got.Spec.HolderIdentity).To(Equal("cp-alive"))
		Expect(*got.Spec.LeaseTransitions).To(Equal(int32(1)))
		Expect(*got.Spec.LeaseDurationSeconds).To(Equal(int32(270)), "2 x healthTimeout + 30s")
	})
})

var _ = Describe("Node status", func() {
	BeforeEach(func() {
		resetCluster()
		createSingleton("2s", "0s", false)
	})

	It("keeps every node's entry when several agents and the manager write at once", func() {
		const nodes, writes = 6, 15
		var wg sync.WaitGroup
		for i := 0; i < nodes; i++ {
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				w := &agent.StatusWriter{Client: k8s, NodeName: fmt.Sprintf("cp-%d", i)}
				for n := int64(1); n <= writes; n++ {
					Expect(w.Apply(ctx, v1alpha1.NodeStatus{
						AppliedRevision: ptr.To(n), PolicyHash: hashOf(n), Phase: v1alpha1.NodeApplied,
						Message: fmt.Sprintf("revision %d applied", n), LastRolloutSeconds: ptr.To(n),
					})).To(Succeed())
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer GinkgoRecover()
			defer wg.Done()
			for n := int64(1); n <= writes; n++ {
				publish(n)
			}
		}()
		wg.Wait()
		ap := singleton()
		Expect(ap.Status.Nodes).To(HaveLen(nodes))
		for i := 0; i < nodes; i++ {
			e := ap.Status.Node(fmt.Sprintf("cp-%d", i))
			Expect(e).NotTo(BeNil())
			Expect(*e.AppliedRevision).To(Equal(int64(writes)))
			Expect(e.Message).To(Equal(fmt.Sprintf("revision %d applied", writes)))
		}
		Expect(*ap.Status.DesiredRevision).To(Equal(int64(writes)), "the manager's fields survive the agents' writes")
		for _, mf := range ap.ManagedFields {
			if strings.HasPrefix(mf.Manager, "kaudit-agent-") {
				Expect(mf.Subresource).To(Equal("status"))
				Expect(mf.FieldsV1.GetRawString()).To(ContainSubstring(`"k:{\"name\":\"` + strings.TrimPrefix(mf.Manager, "kaudit-agent-") + `\"}"`))
			}
		}
	})
})

var _ = Describe("Agents", func() {
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
	start := func(n int, restartTime time.Duration, bad func(string) bool) {
		for i := 1; i <= n; i++ {
			agents = append(agents, startAgent(agentOptions{name: fmt.Sprintf("cp-%d", i), restarts: all, restartTime: restartTime, bad: bad}))
		}
	}
	allAppliedOf := func(names []string, rev int64) func(g Gomega) {
		return func(g Gomega) {
			ap := &v1alpha1.AuditPolicy{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: v1alpha1.SingletonName}, ap)).To(Succeed())
			for _, name := range names {
				e := ap.Status.Node(name)
				g.Expect(e).NotTo(BeNil(), name)
				g.Expect(e.Phase).To(Equal(v1alpha1.NodeApplied), "%s: %s", name, e.Message)
				g.Expect(e.AppliedRevision).To(HaveValue(Equal(rev)), name)
			}
		}
	}
	allApplied := func(rev int64) func(g Gomega) {
		return func(g Gomega) {
			ap := &v1alpha1.AuditPolicy{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: v1alpha1.SingletonName}, ap)).To(Succeed())
			for _, a := range agents {
				e := ap.Status.Node(a.name)
				g.Expect(e).NotTo(BeNil(), a.name)
				g.Expect(e.Phase).To(Equal(v1alpha1.NodeApplied), "%s: %s", a.name, e.Message)
				g.Expect(e.AppliedRevision).To(HaveValue(Equal(rev)), a.name)
				g.Expect(e.PolicyHash).To(Equal(hashOf(rev)))
				g.Expect(e.LastRestartTime).NotTo(BeNil())
			}
		}
	}

	It("roll every node to the desired revision, restarting one node at a time", func() {
		createSingleton("5s", "0s", true)
		start(3, 300*time.Millisecond, nil)
		publish(1)
		Eventually(allApplied(1)).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		publish(2)
		Eventually(allApplied(2)).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		Expect(all.max.Load()).To(Equal(int32(1)), "two apiservers restarted at the same time")
		for _, a := range agents {
			Expect(a.policy()).To(Equal(string(policyOf(2))))
			Expect(a.state().Restarts).To(Equal(int64(2)))
			Expect(strings.Join(a.eventList(), "\n")).To(ContainSubstring(v1alpha1.EventNodeUpdated))
		}
	})

	DescribeTable("coalesce a burst of 50 revisions into few restarts per node",
		func(spacing time.Duration, maxRestarts int64) {
			createSingleton("5s", "0s", true)
			start(3, 300*time.Millisecond, nil)
			for n := int64(1); n <= 50; n++ {
				publish(n)
				if spacing > 0 {
					<-time.After(spacing) // the burst's pace, not a wait for a result
				}
			}
			Eventually(allApplied(50)).WithTimeout(60 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
			var counts []int64
			for _, a := range agents {
				counts = append(counts, a.state().Restarts)
				Expect(a.state().Restarts).To(BeNumerically("<=", maxRestarts), "%s restarted too often", a.name)
			}
			AddReportEntry("restarts per node for a burst of 50 revisions", fmt.Sprintf("spacing %s: %v", spacing, counts))
			GinkgoWriter.Printf("restarts per node for a burst of 50 revisions %s apart (simulated restart 300ms): %v\n", spacing, counts)
			Expect(all.max.Load()).To(Equal(int32(1)))
		},
		Entry("published back to back", time.Duration(0), int64(3)),
		Entry("published 50ms apart over 2.5s", 50*time.Millisecond, int64(6)),
	)

	It("honour minRestartInterval between two restarts of a node", func() {
		createSingleton("5s", "3s", true)
		start(1, 100*time.Millisecond, nil)
		publish(1)
		Eventually(allApplied(1)).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		first := agents[0].state().LastRestartTime
		publish(2)
		Eventually(func(g Gomega) {
			e := singleton().Status.Node("cp-1")
			g.Expect(e.Phase).To(Equal(v1alpha1.NodePending))
			g.Expect(e.Message).To(ContainSubstring("minRestartInterval"))
		}).WithTimeout(10 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
		Eventually(allApplied(2)).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		Expect(agents[0].state().LastRestartTime.Sub(first)).To(BeNumerically(">=", 3*time.Second))
	})

	It("keep the lease through an agent restart in the middle of a rollout, and finish it", func() {
		createSingleton("20s", "0s", true)
		slow := startAgent(agentOptions{name: "cp-1", restarts: all, restartTime: 3 * time.Second})
		agents = append(agents, slow)
		publish(1)
		Eventually(func(g Gomega) {
			e := singleton().Status.Node("cp-1")
			g.Expect(e).NotTo(BeNil())
			g.Expect(e.Message).To(ContainSubstring("waiting for kube-apiserver to restart"))
		}).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
		slow.shutdown() // killed while kubelet restarts the apiserver
		j, err := agent.NewNodeFiles(slow.paths).LoadJournal()
		Expect(err).NotTo(HaveOccurred())
		Expect(j).NotTo(BeNil())
		Expect(j.Step).To(Equal(agent.StepManifestWritten))

		other := startAgent(agentOptions{name: "cp-2", restarts: all, restartTime: 100 * time.Millisecond})
		agents = append(agents, other)
		Eventually(func(g Gomega) {
			e := singleton().Status.Node("cp-2")
			g.Expect(e).NotTo(BeNil())
			g.Expect(e.Message).To(ContainSubstring("waits for node cp-1"))
		}).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
		Expect(other.state().Restarts).To(BeZero())

		restarted := startAgent(agentOptions{name: "cp-1", paths: slow.paths, restarts: all, restartTime: 100 * time.Millisecond})
		agents = append(agents, restarted)
		Eventually(allAppliedOf([]string{"cp-1", "cp-2"}, 1)).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		Expect(restarted.state().Restarts).To(Equal(int64(1)), "the resumed rollout is not redone")
		Expect(all.max.Load()).To(Equal(int32(1)))
	})

	It("roll back a node whose apiserver does not come back, and halt the others until the revision changes", func() {
		createSingleton("1s", "0s", true)
		bad := policy.ShortHash(hashOf(2))
		var broken atomic.Bool
		broken.Store(true)
		start(3, 200*time.Millisecond, func(a string) bool { return broken.Load() && strings.HasPrefix(a, bad) })
		publish(1)
		Eventually(allApplied(1)).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())

		publish(2)
		var failed string
		Eventually(func(g Gomega) {
			ap := singleton()
			var rolledBack, halted int
			for _, a := range agents {
				e := ap.Status.Node(a.name)
				switch {
				case e.Phase == v1alpha1.NodeRolledBack:
					rolledBack++
					failed = a.name
					g.Expect(e.Message).To(ContainSubstring("readyz"))
					g.Expect(e.AppliedRevision).To(HaveValue(Equal(int64(1))))
				case e.Phase == v1alpha1.NodePending && strings.Contains(e.Message, "halted"):
					halted++
				}
			}
			g.Expect(rolledBack).To(Equal(1))
			g.Expect(halted).To(Equal(2))
		}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		for _, a := range agents {
			if a.name == failed {
				Expect(a.policy()).To(Equal(string(policyOf(1))), "rolled back to the old policy")
				Expect(strings.Join(a.eventList(), "\n")).To(ContainSubstring(v1alpha1.EventRolledBack))
			} else {
				Expect(a.state().Restarts).To(Equal(int64(1)), "%s must not restart for the failed revision", a.name)
			}
		}

		// The failed revision is not retried until the revision or the spec changes: editing
		// the spec (a longer health timeout, say, once the cause is fixed) retries it.
		broken.Store(false)
		Eventually(func() error { // agents write the status meanwhile: retry on conflicts
			ap := singleton()
			ap.Spec.Rollout.HealthTimeout = &metav1.Duration{Duration: 2 * time.Second}
			return k8s.Update(ctx, ap)
		}).WithTimeout(10 * time.Second).Should(Succeed())
		Eventually(allApplied(2)).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())

		publish(3)
		Eventually(allApplied(3)).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		Expect(all.max.Load()).To(Equal(int32(1)))
	})
})
