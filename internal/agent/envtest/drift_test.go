package envtest_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/agent"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/staticpod"
)

// Drift: the node's files edited by hand after the agent applied a revision (see
// docs/design.md, "Drift").
var _ = Describe("An agent whose node's files drift", func() {
	var (
		ta       *testAgent
		statuses *statusLog
	)

	BeforeEach(func() {
		resetCluster()
		createSingleton("5s", "0s", true)
		statuses = &statusLog{}
		// A long resync: drift must be found through the file watch, not the periodic pass.
		ta = startAgent(agentOptions{name: "cp-1", restartTime: 100 * time.Millisecond, resync: time.Minute,
			statusClient: recordingStatus{WithWatch: k8s, log: statuses}})
		DeferCleanup(ta.shutdown)
		publish(1)
		Eventually(nodePhase("cp-1", v1alpha1.NodeApplied, 1)).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		Expect(ta.policy()).To(Equal(string(policyOf(1))))
		// Let the passes that the rollout's own writes kicked (through the file watch) run: an
		// edit in the middle of one can fall between its drift check and its rollout, which then
		// repairs the edit as a rollout, without reporting drift.
		<-time.After(2 * time.Second)
	})

	policyFile := func() string { return filepath.Join(ta.paths.Root, managedPolicyFile) }
	manifestFile := func() string { return filepath.Join(ta.paths.Root, ta.paths.Manifest) }
	events := func() string { return strings.Join(ta.eventList(), "\n") }
	repaired := func(g Gomega) {
		g.Expect(events()).To(ContainSubstring(v1alpha1.EventDriftRepaired))
		e := singleton().Status.Node("cp-1")
		g.Expect(e.Phase).To(Equal(v1alpha1.NodeApplied), e.Message)
		g.Expect(e.AppliedRevision).To(HaveValue(Equal(int64(1))))
	}
	// metrics are the drift metrics once the files match again, with the repairs counted.
	metrics := func(repairsPolicy, repairsManifest int) string {
		return "# HELP kaudit_node_drift 1 while the node's file (policy, or the kaudit-owned parts of the kube-apiserver manifest) differs from the revision the node applied, else 0.\n" +
			"# TYPE kaudit_node_drift gauge\n" +
			"kaudit_node_drift{file=\"manifest\"} 0\n" +
			"kaudit_node_drift{file=\"policy\"} 0\n" +
			"# HELP kaudit_node_drift_repairs_total Times the node's file was found to differ from the applied revision and matched it again, since the agent started.\n" +
			"# TYPE kaudit_node_drift_repairs_total counter\n" +
			"kaudit_node_drift_repairs_total{file=\"manifest\"} " + strconv.Itoa(repairsManifest) + "\n" +
			"kaudit_node_drift_repairs_total{file=\"policy\"} " + strconv.Itoa(repairsPolicy) + "\n"
	}

	It("reports a hand edit of the policy file and restores it, without a restart when kube-apiserver started before the edit", func() {
		Expect(testutil.CollectAndCompare(ta.agent.DriftMetrics(), strings.NewReader(metrics(0, 0)))).To(Succeed())
		restarts := ta.state().Restarts
		// The agent compares in whole seconds, as pod times have them: an edit in the second the
		// apiserver started counts as loaded. The kernel stamps files from a clock a few
		// milliseconds behind, hence the margin.
		started := time.Unix(0, ta.kubelet.started.Load())
		<-time.After(time.Until(started.Truncate(time.Second).Add(time.Second + 100*time.Millisecond)))
		edited := strings.Replace(string(policyOf(1)), "level: RequestResponse", "level: None", 1)
		Expect(os.WriteFile(policyFile(), []byte(edited), 0o644)).To(Succeed())

		Eventually(repaired).WithTimeout(20 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		Expect(ta.policy()).To(Equal(string(policyOf(1))))
		Expect(ta.state().Restarts).To(Equal(restarts), "kube-apiserver was restarted: %v", statuses.drifted())
		Expect(events()).To(ContainSubstring("Warning " + v1alpha1.EventDriftDetected + " node cp-1: " + managedPolicyFile + ": rules differ from revision 1's"))
		drifted := statuses.drifted()
		Expect(drifted).NotTo(BeEmpty(), "the node never reported Drifted")
		Expect(drifted[0]).To(ContainSubstring(managedPolicyFile + ": rules differ from revision 1's"))
		Expect(drifted[0]).To(ContainSubstring("no restart needed"))
		Expect(testutil.CollectAndCompare(ta.agent.DriftMetrics(), strings.NewReader(metrics(1, 0)))).To(Succeed())
	})

	It("restarts kube-apiserver when kubelet shows, only after the restore, that it started between the edit and the restore", func() {
		restarts := ta.state().Restarts
		started := time.Unix(0, ta.kubelet.started.Load())
		<-time.After(time.Until(started.Truncate(time.Second).Add(time.Second + 100*time.Millisecond)))
		edited := strings.Replace(string(policyOf(1)), "level: RequestResponse", "level: None", 1)
		Expect(os.WriteFile(policyFile(), []byte(edited), 0o644)).To(Succeed())
		editedAt := time.Now()

		// kube-apiserver restarts right after the edit and loads it, but kubelet shows the new
		// start seconds late: only once the agent has restored the file.
		Eventually(ta.policy).WithTimeout(10 * time.Second).WithPolling(10 * time.Millisecond).Should(Equal(string(policyOf(1))))
		ta.kubelet.started.Store(editedAt.UnixNano())

		Eventually(repaired).WithTimeout(20 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		Expect(ta.state().Restarts).To(Equal(restarts+1), "kube-apiserver was not restarted: %v", statuses.drifted())
		Expect(ta.policy()).To(Equal(string(policyOf(1))))
		drifted := statuses.drifted()
		Expect(drifted).NotTo(BeEmpty(), "the node never reported Drifted")
		Expect(drifted[0]).To(ContainSubstring("no restart needed unless kube-apiserver restarted before the restore"))
		Expect(drifted).To(ContainElement(ContainSubstring("before it was restored at")))
		Expect(testutil.CollectAndCompare(ta.agent.DriftMetrics(), strings.NewReader(metrics(1, 0)))).To(Succeed())
	})

	It("restarts kube-apiserver through the rollout when it started after the edit, so may run the edited policy", func() {
		restarts := ta.state().Restarts
		// The edit comes first, then kube-apiserver restarts (kubelet, a crash) and loads it.
		ta.kubelet.started.Store(time.Now().Add(2 * time.Second).UnixNano())
		edited := strings.Replace(string(policyOf(1)), "level: RequestResponse", "level: None", 1)
		Expect(os.WriteFile(policyFile(), []byte(edited), 0o644)).To(Succeed())

		Eventually(repaired).WithTimeout(20 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		Expect(ta.policy()).To(Equal(string(policyOf(1))))
		Expect(ta.state().Restarts).To(Equal(restarts+1), "kube-apiserver was not restarted")
		b, err := os.ReadFile(manifestFile())
		Expect(err).NotTo(HaveOccurred())
		Expect(staticpod.Annotation(b, staticpod.AnnotationPolicyHash)).To(Equal(policy.ShortHash(hashOf(1))+"-r2"), "a new annotation value makes kubelet restart it")
		Expect(events()).To(ContainSubstring(v1alpha1.EventDriftDetected))
		Expect(events()).To(ContainSubstring(v1alpha1.EventNodeUpdated))
		Expect(statuses.drifted()).To(ContainElement(ContainSubstring("may run the changed policy")))
	})

	It("restarts kube-apiserver that may run an edited policy file also when the file is put back by hand while the restart waits for the Lease", func() {
		other := &agent.Lease{Client: k8s, Namespace: namespace, Name: agent.LeaseName, Identity: "cp-2", Clock: clock.RealClock{}}
		ok, _, err := other.TryAcquire(ctx, time.Minute)
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(BeTrue())
		restarts := ta.state().Restarts
		// The edit comes first, then kube-apiserver restarts and loads it.
		ta.kubelet.started.Store(time.Now().Add(2 * time.Second).UnixNano())
		edited := strings.Replace(string(policyOf(1)), "level: RequestResponse", "level: None", 1)
		Expect(os.WriteFile(policyFile(), []byte(edited), 0o644)).To(Succeed())
		Eventually(func(g Gomega) {
			e := singleton().Status.Node("cp-1")
			g.Expect(e.Phase).To(Equal(v1alpha1.NodeDrifted), e.Message)
			g.Expect(e.Message).To(ContainSubstring("may run the changed policy; the restart waits: revision 1 waits for node cp-2"))
		}).WithTimeout(20 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())

		// Someone puts the file back while the restart waits: the files match, but the running
		// kube-apiserver still audits by the edit.
		Expect(os.WriteFile(policyFile(), policyOf(1), 0o644)).To(Succeed())
		Eventually(func(g Gomega) {
			e := singleton().Status.Node("cp-1")
			g.Expect(e.Phase).To(Equal(v1alpha1.NodeDrifted), e.Message)
			g.Expect(e.Message).To(ContainSubstring("the policy file matches it again, but kube-apiserver started after it changed"))
			g.Expect(e.Message).To(ContainSubstring("the restart waits: revision 1 waits for node cp-2"))
		}).WithTimeout(20 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		Expect(ta.state().Restarts).To(Equal(restarts))

		Expect(other.Release(ctx)).To(Succeed())
		Eventually(repaired).WithTimeout(20 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		Expect(ta.state().Restarts).To(Equal(restarts+1), "kube-apiserver was not restarted: %v", statuses.drifted())
		Expect(ta.policy()).To(Equal(string(policyOf(1))))
		Expect(testutil.CollectAndCompare(ta.agent.DriftMetrics(), strings.NewReader(metrics(1, 0)))).To(Succeed())
	})

	It("reports the manifest's annotation removed by hand and rolls the node out again", func() {
		restarts := ta.state().Restarts
		b, err := os.ReadFile(manifestFile())
		Expect(err).NotTo(HaveOccurred())
		ann, err := staticpod.Annotation(b, staticpod.AnnotationPolicyHash)
		Expect(err).NotTo(HaveOccurred())
		line := "    " + staticpod.AnnotationPolicyHash + ": " + ann + "\n"
		Expect(string(b)).To(ContainSubstring(line))
		Expect(os.WriteFile(manifestFile(), []byte(strings.Replace(string(b), line, "", 1)), 0o600)).To(Succeed())

		Eventually(repaired).WithTimeout(20 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		Expect(ta.state().Restarts).To(Equal(restarts + 1))
		Expect(events()).To(ContainSubstring(ta.paths.Manifest + ": annotation " + staticpod.AnnotationPolicyHash + " is missing"))
		Expect(statuses.drifted()).To(ContainElement(ContainSubstring("kubelet restarts kube-apiserver anyway")))
		Expect(testutil.CollectAndCompare(ta.agent.DriftMetrics(), strings.NewReader(metrics(0, 1)))).To(Succeed())
	})

	It("records DriftDetected and RolloutHalted once each while the restart that repairs drift waits behind a halted rollout", func() {
		// Another node failed: the rollout is halted, and with it the restart that repairs drift.
		Expect((&agent.StatusWriter{Client: k8s, NodeName: "cp-2"}).Apply(ctx,
			v1alpha1.NodeStatus{Phase: v1alpha1.NodeFailed, Message: "revision 1: kube-apiserver never got ready"})).To(Succeed())
		b, err := os.ReadFile(manifestFile())
		Expect(err).NotTo(HaveOccurred())
		ann, err := staticpod.Annotation(b, staticpod.AnnotationPolicyHash)
		Expect(err).NotTo(HaveOccurred())
		drifted := []byte(strings.Replace(string(b), "    "+staticpod.AnnotationPolicyHash+": "+ann+"\n", "", 1))
		Expect(os.WriteFile(manifestFile(), drifted, 0o600)).To(Succeed())
		Eventually(func(g Gomega) {
			e := singleton().Status.Node("cp-1")
			g.Expect(e.Phase).To(Equal(v1alpha1.NodeDrifted), e.Message)
			g.Expect(e.Message).To(ContainSubstring("the rollout is halted because node cp-2 failed"))
		}).WithTimeout(20 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())

		count := func(reason string) int {
			n := 0
			for _, e := range ta.eventList() {
				if strings.HasPrefix(e, "Warning "+reason+" ") {
					n++
				}
			}
			return n
		}
		// A pass that read the manifest in the middle of the test's write (os.WriteFile is not
		// atomic) may have reported the halt before the drift: count from here.
		detected, halted := count(v1alpha1.EventDriftDetected), count(v1alpha1.ReasonRolloutHalted)
		Expect(detected).To(BeNumerically(">=", 1), events())
		Expect(halted).To(BeNumerically(">=", 1), events())

		// Each write kicks a pass through the file watch, which finds the same drift behind the
		// same halt: no new event.
		for range 3 {
			<-time.After(time.Second)
			Expect(os.WriteFile(manifestFile(), drifted, 0o600)).To(Succeed())
		}
		<-time.After(2 * time.Second)
		Expect(count(v1alpha1.EventDriftDetected)).To(Equal(detected), events())
		Expect(count(v1alpha1.ReasonRolloutHalted)).To(Equal(halted), events())
		// One report a pass, which says why the restart is needed and what it waits for: two
		// would flap the status, and each change kicks another pass.
		e := singleton().Status.Node("cp-1")
		Expect(e.Message).To(ContainSubstring("kubelet restarts kube-apiserver anyway; the restart waits: revision 1 waits: the rollout is halted because node cp-2 failed"))
	})

	It("reports drift once while the restart that repairs it waits for the Lease another node holds", func() {
		other := &agent.Lease{Client: k8s, Namespace: namespace, Name: agent.LeaseName, Identity: "cp-2", Clock: clock.RealClock{}}
		ok, _, err := other.TryAcquire(ctx, time.Minute)
		Expect(err).NotTo(HaveOccurred())
		Expect(ok).To(BeTrue())
		b, err := os.ReadFile(manifestFile())
		Expect(err).NotTo(HaveOccurred())
		ann, err := staticpod.Annotation(b, staticpod.AnnotationPolicyHash)
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(manifestFile(), []byte(strings.Replace(string(b), "    "+staticpod.AnnotationPolicyHash+": "+ann+"\n", "", 1)), 0o600)).To(Succeed())
		Eventually(func(g Gomega) {
			e := singleton().Status.Node("cp-1")
			g.Expect(e.Phase).To(Equal(v1alpha1.NodeDrifted), e.Message)
			g.Expect(e.Message).To(ContainSubstring("kubelet restarts kube-apiserver anyway; the restart waits: revision 1 waits for node cp-2"))
		}).WithTimeout(20 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())

		// The agent passes again every Retry (100 ms) while the Lease is held: one status write
		// a pass would flap the entry between two messages, and each change kicks a pass.
		n := len(statuses.drifted())
		<-time.After(3 * time.Second)
		Expect(len(statuses.drifted())-n).To(BeNumerically("<=", 1), "status writes: %v", statuses.drifted()[n:])
	})

	It("checks the files against the revision the node runs while a newer one waits behind a halted rollout", func() {
		restarts := ta.state().Restarts
		Expect((&agent.StatusWriter{Client: k8s, NodeName: "cp-2"}).Apply(ctx,
			v1alpha1.NodeStatus{Phase: v1alpha1.NodeFailed, Message: "revision 1: kube-apiserver never got ready"})).To(Succeed())
		publish(2)
		Eventually(func(g Gomega) {
			e := singleton().Status.Node("cp-1")
			g.Expect(e.Phase).To(Equal(v1alpha1.NodePending), e.Message)
			g.Expect(e.Message).To(ContainSubstring("revision 2 waits: the rollout is halted because node cp-2 failed"))
		}).WithTimeout(20 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())

		started := time.Unix(0, ta.kubelet.started.Load())
		<-time.After(time.Until(started.Truncate(time.Second).Add(time.Second + 100*time.Millisecond)))
		edited := strings.Replace(string(policyOf(1)), "level: RequestResponse", "level: None", 1)
		Expect(os.WriteFile(policyFile(), []byte(edited), 0o644)).To(Succeed())

		Eventually(func(g Gomega) {
			g.Expect(events()).To(ContainSubstring(v1alpha1.EventDriftRepaired))
			e := singleton().Status.Node("cp-1")
			g.Expect(e.Phase).To(Equal(v1alpha1.NodePending), e.Message)
			g.Expect(e.AppliedRevision).To(HaveValue(Equal(int64(1))))
		}).WithTimeout(20 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		Expect(ta.policy()).To(Equal(string(policyOf(1))), "the revision the node runs, not the one that waits")
		Expect(ta.state().Restarts).To(Equal(restarts))
		Expect(events()).To(ContainSubstring("Warning " + v1alpha1.EventDriftDetected + " node cp-1: " + managedPolicyFile + ": rules differ from revision 1's"))
		Expect(statuses.drifted()).NotTo(BeEmpty(), "the node never reported Drifted")
		Expect(testutil.CollectAndCompare(ta.agent.DriftMetrics(), strings.NewReader(metrics(1, 0)))).To(Succeed())
	})

	It("takes new managed flags for a new rollout of the same revision, not for drift, also while it waits behind a halted rollout", func() {
		restarts := ta.state().Restarts
		Expect((&agent.StatusWriter{Client: k8s, NodeName: "cp-2"}).Apply(ctx,
			v1alpha1.NodeStatus{Phase: v1alpha1.NodeFailed, Message: "revision 1: kube-apiserver never got ready"})).To(Succeed())
		Eventually(func() error { // the agent writes the status meanwhile: retry on conflicts
			ap := singleton()
			ap.Spec.AuditLog.MaxAge = ptr.To[int32](3)
			return k8s.Update(ctx, ap)
		}).WithTimeout(10 * time.Second).Should(Succeed())
		Eventually(func(g Gomega) {
			e := singleton().Status.Node("cp-1")
			g.Expect(e.Phase).To(Equal(v1alpha1.NodePending), e.Message)
			g.Expect(e.Message).To(ContainSubstring("revision 1 waits: the rollout is halted because node cp-2 failed"))
		}).WithTimeout(20 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		<-time.After(2 * time.Second)
		Expect(ta.state().Restarts).To(Equal(restarts))

		// The halt ends: the node rolls the new flags out, once.
		Expect((&agent.StatusWriter{Client: k8s, NodeName: "cp-2"}).Apply(ctx,
			v1alpha1.NodeStatus{Phase: v1alpha1.NodeApplied, AppliedRevision: ptr.To[int64](1), Message: "revision 1 applied"})).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(ta.state().Restarts).To(Equal(restarts + 1))
			e := singleton().Status.Node("cp-1")
			g.Expect(e.Phase).To(Equal(v1alpha1.NodeApplied), e.Message)
		}).WithTimeout(20 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		b, err := os.ReadFile(manifestFile())
		Expect(err).NotTo(HaveOccurred())
		Expect(string(b)).To(ContainSubstring("--audit-log-maxage=3"))
		Expect(statuses.drifted()).To(BeEmpty(), "a change of the managed flags was reported as drift")
		Expect(events()).NotTo(ContainSubstring(v1alpha1.EventDriftDetected))
		Expect(testutil.CollectAndCompare(ta.agent.DriftMetrics(), strings.NewReader(metrics(0, 0)))).To(Succeed())
	})

	It("does not take a rollout's own edits of the policy file and manifest for drift", func() {
		publish(2)
		Eventually(nodePhase("cp-1", v1alpha1.NodeApplied, 2)).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
		Expect(ta.policy()).To(Equal(string(policyOf(2))))
		// The file watch saw the rollout's writes; give the passes it kicked time to run.
		Consistently(func() string { return events() }).WithTimeout(2 * time.Second).WithPolling(200 * time.Millisecond).ShouldNot(ContainSubstring(v1alpha1.EventDriftDetected))
		Expect(statuses.drifted()).To(BeEmpty())
		Expect(testutil.CollectAndCompare(ta.agent.DriftMetrics(), strings.NewReader(metrics(0, 0)))).To(Succeed())
	})
})

// statusLog records the node entries an agent applies.
type statusLog struct {
	mu      sync.Mutex
	entries []string
}

// drifted is every recorded entry in phase Drifted, as JSON.
func (l *statusLog) drifted() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.entries {
		if strings.Contains(e, `"phase":"`+string(v1alpha1.NodeDrifted)+`"`) {
			out = append(out, e)
		}
	}
	return out
}

// recordingStatus records every status apply in log.
type recordingStatus struct {
	client.WithWatch
	log *statusLog
}

func (r recordingStatus) Status() client.SubResourceWriter {
	return recordingStatusWriter{r.WithWatch.Status(), r.log}
}

type recordingStatusWriter struct {
	client.SubResourceWriter
	log *statusLog
}

func (w recordingStatusWriter) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.SubResourceApplyOption) error {
	b, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	w.log.mu.Lock()
	w.log.entries = append(w.log.entries, string(b))
	w.log.mu.Unlock()
	return w.SubResourceWriter.Apply(ctx, obj, opts...)
}
