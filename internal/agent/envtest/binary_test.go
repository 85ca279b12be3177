package envtest_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/agent"
	"github.com/kaudit/kaudit/internal/policy"
)

// The agent with the health check of production (the mirror pod through the API and /readyz
// over TLS) against a simulated kubelet.
var _ = Describe("An agent with the real health checks", func() {
	It("applies a revision whose apiserver comes back and rolls back one whose /readyz fails", func() {
		resetCluster()
		createSingleton("3s", "0s", true)
		const nodeName = "cp-health"
		cp := newFakeControlPlane(nodeName, 300*time.Millisecond)
		readyz, err := agent.NewReadyz(agent.ReadyzOptions{URL: cp.readyzURL, CAFile: cp.caFile, ServerName: "example.com", Timeout: time.Second})
		Expect(err).NotTo(HaveOccurred())
		health := &agent.APIServerHealth{
			MirrorPod: func(ctx context.Context) (*corev1.Pod, error) {
				pod := &corev1.Pod{}
				return pod, k8s.Get(ctx, client.ObjectKey{Namespace: "kube-system", Name: "kube-apiserver-" + nodeName}, pod)
			},
			Readyz: readyz, Clock: clock.RealClock{}, Interval: 50 * time.Millisecond,
		}
		a := agent.New(agent.Options{
			NodeName: nodeName, Namespace: namespace, Client: k8s,
			Rollout: &agent.Rollout{Files: agent.NewNodeFiles(agent.DefaultPaths(cp.root)), Health: health, Clock: clock.RealClock{}},
			Lease:   &agent.Lease{Client: k8s, Namespace: namespace, Name: agent.LeaseName, Identity: nodeName, Clock: clock.RealClock{}},
			Status:  &agent.StatusWriter{Client: k8s, NodeName: nodeName},
			Clock:   clock.RealClock{}, Resync: 2 * time.Second, Retry: 100 * time.Millisecond,
		})
		actx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(done)
			Expect(a.Run(actx)).To(Succeed())
		}()
		DeferCleanup(func() {
			stop()
			Eventually(done).WithTimeout(30 * time.Second).Should(BeClosed())
		})

		publish(1)
		Eventually(nodePhase(nodeName, v1alpha1.NodeApplied, 1)).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
		cp.badPrefix.Store(policy.ShortHash(hashOf(2)))
		publish(2)
		Eventually(nodePhase(nodeName, v1alpha1.NodeRolledBack, 1)).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
		Expect(singleton().Status.Node(nodeName).Message).To(ContainSubstring("admission-initializer"))
		b, err := os.ReadFile(filepath.Join(cp.root, managedPolicyFile))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(b)).To(Equal(string(policyOf(1))))
	})
})

// The kaudit binary's agent, against envtest, with a simulated kubelet that updates the mirror
// pod and a local /readyz over TLS. It measures the agent's memory and its own share of a
// rollout. Set KAUDIT_BINARY to a built kaudit (make build) to run it.
var _ = Describe("The kaudit agent binary", func() {
	It("rolls out, rolls back, and reports its memory and overhead", func() {
		bin := os.Getenv("KAUDIT_BINARY")
		if bin == "" {
			Skip("KAUDIT_BINARY is not set")
		}
		resetCluster()
		createSingleton("3s", "0s", true)
		const nodeName = "cp-bin"
		cp := newFakeControlPlane(nodeName, 500*time.Millisecond)
		root, badPrefix := cp.root, &cp.badPrefix

		cmd := exec.Command(bin, "agent", "--kubeconfig", adminKubeconfig(root), "--root", root,
			"--readyz-url", cp.readyzURL, "--readyz-ca-file", cp.caFile, "--readyz-server-name", "example.com",
			"--poll-interval", "100ms", "--retry", "200ms")
		cmd.Env = append(os.Environ(), "NODE_NAME="+nodeName)
		var logs syncBuffer
		cmd.Stderr = &logs
		Expect(cmd.Start()).To(Succeed())
		DeferCleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
		})

		var peak atomic.Int64
		sampler, stopSampler := context.WithCancel(ctx)
		go func() {
			for sampler.Err() == nil {
				if rss := rssKiB(cmd.Process.Pid); rss > peak.Load() {
					peak.Store(rss)
				}
				select {
				case <-sampler.Done():
				case <-time.After(10 * time.Millisecond):
				}
			}
		}()
		phase := func(want v1alpha1.NodePhase, rev int64) func(g Gomega) { return nodePhase(nodeName, want, rev) }
		Eventually(func(g Gomega) {
			g.Expect(singleton().Status.Node(nodeName)).NotTo(BeNil())
		}).WithTimeout(30 * time.Second).Should(Succeed())
		idleBefore := rssKiB(cmd.Process.Pid)
		peak.Store(0)

		publish(1)
		Eventually(phase(v1alpha1.NodeApplied, 1)).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
		rolloutPeak := peak.Load()
		Consistently(phase(v1alpha1.NodeApplied, 1)).WithTimeout(3 * time.Second).Should(Succeed())
		idleAfter := rssKiB(cmd.Process.Pid)

		badPrefix.Store(policy.ShortHash(hashOf(2)))
		publish(2)
		Eventually(phase(v1alpha1.NodeRolledBack, 1)).WithTimeout(30 * time.Second).WithPolling(50 * time.Millisecond).Should(Succeed())
		stopSampler()
		b, err := os.ReadFile(filepath.Join(root, managedPolicyFile))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(b)).To(Equal(string(policyOf(1))))

		var events corev1.EventList
		Expect(k8s.List(ctx, &events, client.InNamespace("default"))).To(Succeed())
		reasons := map[string]bool{}
		for _, e := range events.Items {
			reasons[e.Reason] = true
		}
		Expect(reasons).To(HaveKey(v1alpha1.EventNodeUpdated))
		Expect(reasons).To(HaveKey(v1alpha1.EventRolledBack))

		overheads := finishedRollouts(logs.String())
		Expect(overheads).NotTo(BeEmpty())
		report := fmt.Sprintf("RSS idle %d KiB before, %d KiB after a rollout; peak during rollout %d KiB (VmHWM %d KiB); rollouts (seconds total/health wait/overhead): %v",
			idleBefore, idleAfter, rolloutPeak, hwmKiB(cmd.Process.Pid), overheads)
		AddReportEntry("agent binary", report)
		GinkgoWriter.Println(report)
	})
})
