package envtest_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/agent"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/staticpod"
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

		kubeconfig := filepath.Join(root, "kubeconfig")
		Expect(clientcmd.WriteToFile(clientcmdapi.Config{
			Clusters:       map[string]*clientcmdapi.Cluster{"envtest": {Server: cfg.Host, CertificateAuthorityData: cfg.CAData}},
			AuthInfos:      map[string]*clientcmdapi.AuthInfo{"admin": {ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}},
			Contexts:       map[string]*clientcmdapi.Context{"envtest": {Cluster: "envtest", AuthInfo: "admin"}},
			CurrentContext: "envtest",
		}, kubeconfig)).To(Succeed())

		cmd := exec.Command(bin, "agent", "--kubeconfig", kubeconfig, "--root", root,
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

const managedPolicyFile = agent.DefaultPolicyFile

func rssKiB(pid int) int64 { return procStatus(pid, "VmRSS:") }
func hwmKiB(pid int) int64 { return procStatus(pid, "VmHWM:") }

func procStatus(pid int, key string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		if f := strings.Fields(s.Text()); len(f) >= 2 && f[0] == key {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// finishedRollouts reads the agent's "rollout finished" log lines.
func finishedRollouts(logs string) []string {
	var out []string
	for _, line := range strings.Split(logs, "\n") {
		var l struct {
			Msg        string  `json:"msg"`
			Phase      string  `json:"phase"`
			Seconds    float64 `json:"seconds"`
			HealthWait float64 `json:"healthWaitSeconds"`
			Overhead   float64 `json:"overheadSeconds"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "rollout finished" {
			out = append(out, fmt.Sprintf("%s %.3f/%.3f/%.3f", l.Phase, l.Seconds, l.HealthWait, l.Overhead))
		}
	}
	return out
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func nodePhase(nodeName string, want v1alpha1.NodePhase, rev int64) func(g Gomega) {
	return func(g Gomega) {
		e := singleton().Status.Node(nodeName)
		g.Expect(e).NotTo(BeNil())
		g.Expect(e.Phase).To(Equal(want), e.Message)
		g.Expect(e.AppliedRevision).To(HaveValue(Equal(rev)))
	}
}

// fakeControlPlane is one node's kubelet and kube-apiserver: a node root with kind's manifest,
// a mirror pod that follows the manifest's annotation after restartTime (a new container start
// time each time), and a /readyz over TLS that fails while a policy whose annotation starts
// with badPrefix runs.
type fakeControlPlane struct {
	root, manifest, readyzURL, caFile string
	badPrefix                         atomic.Value
}

func newFakeControlPlane(nodeName string, restartTime time.Duration) *fakeControlPlane {
	root := GinkgoT().TempDir()
	for _, d := range []string{"etc/kubernetes/manifests", "etc/kubernetes/kaudit", "etc/kubernetes/audit"} {
		Expect(os.MkdirAll(filepath.Join(root, d), 0o755)).To(Succeed())
	}
	manifestData, err := os.ReadFile(filepath.Join("..", "..", "staticpod", "testdata", "kind-v1.30.yaml"))
	Expect(err).NotTo(HaveOccurred())
	manifest := filepath.Join(root, agent.DefaultManifest)
	Expect(os.WriteFile(manifest, manifestData, 0o600)).To(Succeed())

	// kube-apiserver: /readyz is not ready while a bad policy runs.
	cp := &fakeControlPlane{root: root, manifest: manifest}
	cp.badPrefix.Store("none")
	currentAnnotation := func() string {
		b, err := os.ReadFile(manifest)
		if err != nil {
			return ""
		}
		a, _ := staticpod.Annotation(b, staticpod.AnnotationPolicyHash)
		return a
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if strings.HasPrefix(currentAnnotation(), cp.badPrefix.Load().(string)) {
			http.Error(w, "[-]poststarthook/start-apiserver-admission-initializer failed", http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	DeferCleanup(srv.Close)
	ca := filepath.Join(root, "ca.crt")
	Expect(os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)).To(Succeed())

	// kubelet: the mirror pod follows the manifest after restartTime.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "kube-apiserver-" + nodeName},
		Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: staticpod.APIServerContainer, Image: "registry.k8s.io/kube-apiserver:v1.30.0"}}},
	}
	_ = k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system"}})
	Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, pod))).To(Succeed())
	kubeletCtx, stopKubelet := context.WithCancel(ctx)
	DeferCleanup(stopKubelet)
	go func() {
		defer GinkgoRecover()
		seen := ""
		for kubeletCtx.Err() == nil {
			if a := currentAnnotation(); a != seen {
				seen = a
				select {
				case <-kubeletCtx.Done():
					return
				case <-time.After(restartTime):
				}
				p := &corev1.Pod{}
				if k8s.Get(kubeletCtx, client.ObjectKeyFromObject(pod), p) == nil {
					p.Annotations = map[string]string{staticpod.AnnotationPolicyHash: a}
					_ = k8s.Update(kubeletCtx, p)
					p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: staticpod.APIServerContainer, Ready: true,
						State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}}
					_ = k8s.Status().Update(kubeletCtx, p)
				}
			}
			select {
			case <-kubeletCtx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	cp.readyzURL, cp.caFile = srv.URL+"/readyz", ca
	return cp
}
