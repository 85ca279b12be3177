package envtest_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/agent"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/revision"
	"github.com/kaudit/kaudit/internal/staticpod"
)

// resetCluster removes the singleton, the revisions and the Lease between specs.
func resetCluster() {
	ap := &v1alpha1.AuditPolicy{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.SingletonName}}
	Expect(client.IgnoreNotFound(k8s.Delete(ctx, ap))).To(Succeed())
	Expect(k8s.DeleteAllOf(ctx, &corev1.ConfigMap{}, client.InNamespace(namespace), client.MatchingLabels{revision.LabelManagedBy: revision.ManagedBy})).To(Succeed())
	lease := &unstructured.Unstructured{}
	lease.SetAPIVersion("coordination.k8s.io/v1")
	lease.SetKind("Lease")
	lease.SetNamespace(namespace)
	lease.SetName(agent.LeaseName)
	Expect(client.IgnoreNotFound(k8s.Delete(ctx, lease))).To(Succeed())
	Eventually(func() bool {
		return k8s.Get(ctx, client.ObjectKey{Name: v1alpha1.SingletonName}, &v1alpha1.AuditPolicy{}) != nil
	}).WithTimeout(10 * time.Second).Should(BeTrue())
}

// createSingleton creates the AuditPolicy as the manager would, with test-sized rollout times
// and no rollout.minReadyTime.
func createSingleton(healthTimeout, minRestartInterval string, manageFlags bool) {
	createSingletonWith(map[string]any{"healthTimeout": healthTimeout, "minRestartInterval": minRestartInterval, "minReadyTime": "0s"}, manageFlags)
}

// createSingletonWith creates the AuditPolicy with the given spec.rollout.
func createSingletonWith(rollout map[string]any, manageFlags bool) {
	ap := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "AuditPolicy",
		"metadata": map[string]any{"name": v1alpha1.SingletonName},
		"spec": map[string]any{
			"manageAPIServerFlags": manageFlags,
			"rollout":              rollout,
		},
	}}
	Expect(k8s.Create(ctx, ap)).To(Succeed())
}

// policyOf is revision n's policy.
func policyOf(n int64) []byte {
	return fmt.Appendf(nil, "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n# module test, rule 0\n- level: RequestResponse\n  namespaces: [ns-%d]\n- level: Metadata\n", n)
}

// hashOf is revision n's policy hash, as the manager computes it.
func hashOf(n int64) string {
	h, err := policy.HashOf(policyOf(n))
	Expect(err).NotTo(HaveOccurred())
	return h
}

// publish plays the manager: it stores revision n and makes it the desired one.
func publish(n int64) {
	publishRevision(n, policyOf(n), hashOf(n))
}

// publishRevision stores revision n with the given policy bytes and hash (which a test may make
// disagree) and makes it the desired one.
func publishRevision(n int64, p []byte, hash string) {
	publishConfigMap(revisionConfigMap(n, p, hash), n, hash)
}

// revisionConfigMap is revision n's ConfigMap as the manager writes it, with the given policy
// bytes and hash.
func revisionConfigMap(n int64, p []byte, hash string) *corev1.ConfigMap {
	cm, _, err := revision.Encode(namespace, revision.Revision{Number: n, Hash: hash, Policy: p})
	Expect(err).NotTo(HaveOccurred())
	cm.TypeMeta = metav1.TypeMeta{}
	return cm
}

// publishConfigMap stores cm, which a test may have forged, and makes revision n desired with
// the policy hash desiredHash ("" leaves status.desiredPolicyHash unset), as the manager would.
func publishConfigMap(cm *corev1.ConfigMap, n int64, desiredHash string) {
	Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, cm))).To(Succeed())
	status := map[string]any{"latestRevision": n, "desiredRevision": n}
	if desiredHash != "" {
		status["desiredPolicyHash"] = desiredHash
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "AuditPolicy",
		"metadata": map[string]any{"name": v1alpha1.SingletonName},
		"status":   status,
	}}
	Expect(k8s.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("kaudit-manager"), client.ForceOwnership)).To(Succeed())
}

// countingClient counts the Get calls an agent makes through it.
type countingClient struct {
	client.WithWatch
	gets *atomic.Int32
}

func (c countingClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.gets.Add(1)
	return c.WithWatch.Get(ctx, key, obj, opts...)
}

// singleton reads the AuditPolicy.
func singleton() *v1alpha1.AuditPolicy {
	ap := &v1alpha1.AuditPolicy{}
	Expect(k8s.Get(ctx, client.ObjectKey{Name: v1alpha1.SingletonName}, ap)).To(Succeed())
	return ap
}

// restarts counts, across all simulated kubelets, apiserver restarts in progress, and records
// each one.
type restarts struct {
	active, max atomic.Int32
	mu          sync.Mutex
	done        []restart
}

// restart is one simulated apiserver restart: from the manifest change the agent waits on until
// the apiserver is ready (or the wait ends).
type restart struct {
	node       string
	start, end time.Time
}

func (r *restarts) begin() {
	n := r.active.Add(1)
	for {
		m := r.max.Load()
		if n <= m || r.max.CompareAndSwap(m, n) {
			return
		}
	}
}

func (r *restarts) end(node string, start time.Time) {
	r.mu.Lock()
	r.done = append(r.done, restart{node: node, start: start, end: time.Now()})
	r.mu.Unlock()
	r.active.Add(-1)
}

// list is every restart that ended, in the order they began.
func (r *restarts) list() []restart {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := slices.Clone(r.done)
	slices.SortFunc(out, func(a, b restart) int { return a.start.Compare(b.start) })
	return out
}

// simKubelet plays kubelet and kube-apiserver on one node: after the manifest changes, the
// apiserver takes restartTime to come back, unless bad says its policy never gets it ready.
// Meanwhile down, when set, is true: the node's own apiserver does not answer.
type simKubelet struct {
	node        string
	manifest    string
	restartTime time.Duration
	bad         func(annotation string) bool
	all         *restarts
	down        *atomic.Bool
	// started is when the simulated apiserver last became ready, in Unix nanoseconds.
	started atomic.Int64
}

// Started is when the simulated apiserver last became ready (see agent's drift repair).
func (k *simKubelet) Started(context.Context) (time.Time, error) {
	if n := k.started.Load(); n != 0 {
		return time.Unix(0, n), nil
	}
	return time.Time{}, errors.New("the simulated apiserver never restarted")
}

func (k *simKubelet) Wait(ctx context.Context, annotation string, since time.Time, timeout time.Duration) error {
	k.all.begin()
	defer k.all.end(k.node, time.Now())
	if k.down != nil {
		k.down.Store(true)
		defer k.down.Store(false)
	}
	b, err := os.ReadFile(k.manifest)
	if err != nil {
		return err
	}
	got, err := staticpod.Annotation(b, staticpod.AnnotationPolicyHash)
	if err != nil {
		return err
	}
	if got != annotation {
		return fmt.Errorf("mirror pod has %q, want %q", got, annotation)
	}
	wait := k.restartTime
	if k.bad != nil && k.bad(annotation) {
		wait = timeout
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(wait):
	}
	if k.bad != nil && k.bad(annotation) {
		return fmt.Errorf("/readyz: [-]poststarthook/start-apiserver-admission-initializer failed")
	}
	k.started.Store(time.Now().UnixNano())
	return nil
}

// testAgent is one control-plane node: a temporary root with kind's manifest and an agent.
type testAgent struct {
	name     string
	paths    agent.Paths
	agent    *agent.Agent
	kubelet  *simKubelet
	recorder *record.FakeRecorder
	stop     context.CancelFunc
	done     chan struct{}
	events   []string
	mu       sync.Mutex
}

// agentOptions describe a test agent; only name is required.
type agentOptions struct {
	name string
	// client makes the agent's API calls; nil means k8s.
	client client.WithWatch
	// leaseClient makes the Lease's; nil means client.
	leaseClient client.WithWatch
	// down is set while the simulated apiserver restarts; nil means it is not recorded.
	down *atomic.Bool
	// retry is the agent's Retry; 0 means 100 ms.
	retry time.Duration
	// statusClient writes the node's status entry; nil means client.
	statusClient client.Client
	// paths is the node root; zero means a new one (newNodeRoot), and a used one restarts an
	// agent on that node.
	paths agent.Paths
	// restarts counts apiserver restarts across nodes; nil means a count of this node's own.
	restarts *restarts
	// restartTime is how long the simulated apiserver takes to come back.
	restartTime time.Duration
	// bad says which annotation values' apiserver never gets ready; nil means none.
	bad func(annotation string) bool
	// resync is the agent's longest pause between passes; 0 means 2 s.
	resync time.Duration
}

// startAgent runs an agent with a simulated kubelet.
func startAgent(o agentOptions) *testAgent {
	if o.client == nil {
		o.client = k8s
	}
	if o.statusClient == nil {
		o.statusClient = o.client
	}
	if o.leaseClient == nil {
		o.leaseClient = o.client
	}
	if o.retry == 0 {
		o.retry = 100 * time.Millisecond
	}
	if o.paths == (agent.Paths{}) {
		o.paths = newNodeRoot()
	}
	if o.restarts == nil {
		o.restarts = &restarts{}
	}
	if o.resync == 0 {
		o.resync = 2 * time.Second
	}
	ta := &testAgent{name: o.name, paths: o.paths, recorder: record.NewFakeRecorder(1000), done: make(chan struct{}),
		kubelet: &simKubelet{node: o.name, manifest: filepath.Join(o.paths.Root, o.paths.Manifest), restartTime: o.restartTime, bad: o.bad, all: o.restarts, down: o.down}}
	a := agent.New(agent.Options{
		NodeName:  o.name,
		Namespace: namespace,
		Client:    o.client,
		Rollout: &agent.Rollout{Files: agent.NewNodeFiles(o.paths), Clock: clock.RealClock{},
			Health: ta.kubelet},
		Lease:    &agent.Lease{Client: o.leaseClient, Namespace: namespace, Name: agent.LeaseName, Identity: o.name, Clock: clock.RealClock{}},
		Status:   &agent.StatusWriter{Client: o.statusClient, NodeName: o.name},
		Recorder: ta.recorder,
		Clock:    clock.RealClock{},
		Resync:   o.resync,
		Retry:    o.retry,
		// The simulated kubelet shows a restart at once; a short delay keeps the drift specs
		// quick while the agent still waits for it.
		KubeletStatusDelay: 2 * time.Second,
	})
	ta.agent = a
	actx, stop := context.WithCancel(ctx)
	ta.stop = stop
	go func() {
		defer GinkgoRecover()
		defer close(ta.done)
		Expect(a.Run(actx)).To(Succeed())
	}()
	return ta
}

// newNodeRoot lays out a control-plane node with kind's manifest under a temporary root.
func newNodeRoot() agent.Paths {
	root := GinkgoT().TempDir()
	for _, d := range []string{"etc/kubernetes/manifests", "etc/kubernetes/kaudit", "etc/kubernetes/audit"} {
		Expect(os.MkdirAll(filepath.Join(root, d), 0o755)).To(Succeed())
	}
	manifest, err := os.ReadFile(filepath.Join("..", "..", "staticpod", "testdata", "kind-v1.30.yaml"))
	Expect(err).NotTo(HaveOccurred())
	paths := agent.DefaultPaths(root)
	Expect(os.WriteFile(filepath.Join(root, paths.Manifest), manifest, 0o600)).To(Succeed())
	return paths
}

// shutdown stops the agent and waits until it has stopped.
func (ta *testAgent) shutdown() {
	ta.stop()
	Eventually(ta.done).WithTimeout(30 * time.Second).Should(BeClosed())
}

// state reads the agent's state file.
func (ta *testAgent) state() agent.State {
	st, err := agent.NewNodeFiles(ta.paths).LoadState()
	Expect(err).NotTo(HaveOccurred())
	return st
}

// policy reads the node's policy file.
func (ta *testAgent) policy() string {
	b, _ := os.ReadFile(filepath.Join(ta.paths.Root, ta.paths.PolicyFile))
	return string(b)
}

// eventList drains the recorder and returns every event seen so far.
func (ta *testAgent) eventList() []string {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	for {
		select {
		case e := <-ta.recorder.Events:
			ta.events = append(ta.events, e)
		default:
			return append([]string(nil), ta.events...)
		}
	}
}

// failingStatus makes every status apply whose content contains one of the phases fail, as if
// the API were unreachable just then; with failures set, only that many of them.
type failingStatus struct {
	client.WithWatch
	phases   []string
	failures *atomic.Int32
}

func (f failingStatus) Status() client.SubResourceWriter {
	return failingStatusWriter{f.WithWatch.Status(), f.phases, f.failures}
}

type failingStatusWriter struct {
	client.SubResourceWriter
	phases   []string
	failures *atomic.Int32
}

func (w failingStatusWriter) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.SubResourceApplyOption) error {
	b, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	for _, p := range w.phases {
		if strings.Contains(string(b), `"phase":"`+p+`"`) && (w.failures == nil || w.failures.Add(-1) >= 0) {
			return errors.New("injected failure: the API is unreachable")
		}
	}
	return w.SubResourceWriter.Apply(ctx, obj, opts...)
}

// managedPolicyFile is where the agent writes the policy when it manages the apiserver's flags.
const managedPolicyFile = agent.DefaultPolicyFile

// rssKiB and hwmKiB are a process's resident memory now and at its peak.
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

// syncBuffer collects a process's output while the test reads it.
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

// nodePhase checks a node's status entry: its phase and the revision it runs.
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
