package envtest_test

import (
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/agent"
)

// What an agent finds on its node besides its own files: another agent, a kubeadm upgrade, a
// layout it cannot write.
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

	It("starts no rollout while a kubeadm upgrade is in progress there", func() {
		createSingleton("5s", "0s", true)
		paths := newNodeRoot()
		tmp := filepath.Join(paths.Root, agent.DefaultKubeadmTempDir)
		// Backups of earlier upgrades, which kubeadm keeps, are no upgrade in progress.
		Expect(os.MkdirAll(filepath.Join(tmp, "kubeadm-backup-manifests-2025-01-01-00-00-00"), 0o700)).To(Succeed())
		upgrade := filepath.Join(tmp, "kubeadm-upgraded-manifests1234567")
		Expect(os.MkdirAll(upgrade, 0o700)).To(Succeed())
		a := startAgent(agentOptions{name: "cp-1", paths: paths, restartTime: 100 * time.Millisecond})
		DeferCleanup(a.shutdown)
		publish(1)
		Eventually(func(g Gomega) {
			e := singleton().Status.Node("cp-1")
			g.Expect(e).NotTo(BeNil())
			g.Expect(e.Phase).To(Equal(v1alpha1.NodePending), e.Message)
			g.Expect(e.Message).To(ContainSubstring("a kubeadm upgrade is in progress on this node (" + agent.DefaultKubeadmTempDir + "/kubeadm-upgraded-manifests1234567 exists)"))
		}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		Expect(a.state().Restarts).To(BeZero())

		Expect(os.RemoveAll(upgrade)).To(Succeed()) // kubeadm is done
		Eventually(nodePhase("cp-1", v1alpha1.NodeApplied, 1)).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	})

	It("reports a policy file mounted alone as Failed once, says what to change, and does not retry in a tight loop", func() {
		createSingleton("5s", "0s", false)
		paths := newNodeRoot()
		manifest, err := os.ReadFile(filepath.Join("..", "..", "staticpod", "testdata", "docs-single-file-audit.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(filepath.Join(paths.Root, paths.Manifest), manifest, 0o600)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(paths.Root, "etc/kubernetes/audit-policy.yaml"), policyOf(0), 0o644)).To(Succeed())
		gets := &atomic.Int32{}
		a := startAgent(agentOptions{name: "cp-1", paths: paths, client: countingClient{WithWatch: k8s, gets: gets}, restartTime: 100 * time.Millisecond, resync: time.Hour})
		DeferCleanup(a.shutdown)
		publish(1)
		Eventually(func(g Gomega) {
			e := singleton().Status.Node("cp-1")
			g.Expect(e).NotTo(BeNil())
			g.Expect(e.Phase).To(Equal(v1alpha1.NodeFailed), e.Message)
			g.Expect(e.Message).To(ContainSubstring("/etc/kubernetes/audit-policy.yaml as a single file"))
			g.Expect(e.Message).To(ContainSubstring("manageAPIServerFlags: true"))
		}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())

		// The agent's retry is 100 ms: a tight loop would make dozens of passes here.
		seen := gets.Load()
		Consistently(gets.Load).WithTimeout(2*time.Second).WithPolling(100*time.Millisecond).Should(BeNumerically("<=", seen+8), "passes in a tight loop")
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: namespace, Name: agent.LeaseName}, &coordinationv1.Lease{})).To(Satisfy(apierrors.IsNotFound), "the agent took the rollout lease")
		Expect(strings.Count(strings.Join(a.eventList(), "\n"), v1alpha1.EventRolloutFailed)).To(Equal(1))
		b, err := os.ReadFile(filepath.Join(paths.Root, "etc/kubernetes/audit-policy.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(b)).To(Equal(string(policyOf(0))))
	})
})
