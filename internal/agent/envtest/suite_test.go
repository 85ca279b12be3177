// Package envtest_test runs node agents against a real kube-apiserver (envtest): the Lease,
// concurrent status writes, and whole rollouts over temporary node roots with a simulated
// kubelet.
package envtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/agent"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/revision"
	"github.com/kaudit/kaudit/internal/staticpod"
)

const namespace = agent.DefaultNamespace

var (
	testEnv *envtest.Environment
	cfg     *rest.Config
	k8s     client.WithWatch
	scheme  = runtime.NewScheme()
	ctx     context.Context
	cancel  context.CancelFunc
)

func TestAgentEnvtest(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Agent envtest Suite")
}

var _ = BeforeSuite(func() {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		Fail("KUBEBUILDER_ASSETS is not set: run `make test`, or export KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh)")
	}
	ctx, cancel = context.WithCancel(context.Background())
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(v1alpha1.AddToScheme(scheme)).To(Succeed())
	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	var err error
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())
	k8s, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}})).To(Succeed())
})

var _ = AfterSuite(func() {
	if cancel != nil {
		cancel()
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

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

// createSingleton creates the AuditPolicy as the manager would, with test-sized rollout times.
func createSingleton(healthTimeout, minRestartInterval string, manageFlags bool) {
	ap := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "AuditPolicy",
		"metadata": map[string]any{"name": v1alpha1.SingletonName},
		"spec": map[string]any{
			"manageAPIServerFlags": manageFlags,
			"rollout":              map[string]any{"healthTimeout": healthTimeout, "minRestartInterval": minRestartInterval},
		},
	}}
	Expect(k8s.Create(ctx, ap)).To(Succeed())
}

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
	cm, err := revision.ToConfigMap(namespace, revision.Revision{Number: n, Hash: hash, Policy: p})
	Expect(err).NotTo(HaveOccurred())
	cm.TypeMeta = metav1.TypeMeta{}
	Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, cm))).To(Succeed())
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "AuditPolicy",
		"metadata": map[string]any{"name": v1alpha1.SingletonName},
		"status":   map[string]any{"latestRevision": n, "desiredRevision": n, "desiredPolicyHash": hash},
	}}
	Expect(k8s.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("kaudit-manager"), client.ForceOwnership)).To(Succeed())
}

func singleton() *v1alpha1.AuditPolicy {
	ap := &v1alpha1.AuditPolicy{}
	Expect(k8s.Get(ctx, client.ObjectKey{Name: v1alpha1.SingletonName}, ap)).To(Succeed())
	return ap
}

// restarts counts, across all simulated kubelets, apiserver restarts in progress.
type restarts struct {
	active, max atomic.Int32
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

func (r *restarts) end() { r.active.Add(-1) }

// simKubelet plays kubelet and kube-apiserver on one node: after the manifest changes, the
// apiserver takes restartTime to come back, unless bad says its policy never gets it ready.
type simKubelet struct {
	manifest    string
	restartTime time.Duration
	bad         func(annotation string) bool
	all         *restarts
}

func (k *simKubelet) Wait(ctx context.Context, annotation string, since time.Time, timeout time.Duration) error {
	k.all.begin()
	defer k.all.end()
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
	return nil
}

// testAgent is one control-plane node: a temporary root with kind's manifest and an agent.
type testAgent struct {
	name     string
	paths    agent.Paths
	recorder *record.FakeRecorder
	stop     context.CancelFunc
	done     chan struct{}
	events   []string
	mu       sync.Mutex
}

func startAgent(name string, all *restarts, restartTime time.Duration, bad func(string) bool) *testAgent {
	return startAgentAs(k8s, name, all, restartTime, bad)
}

// startAgentAs runs an agent whose API calls go through c, on a new node root.
func startAgentAs(c client.WithWatch, name string, all *restarts, restartTime time.Duration, bad func(string) bool) *testAgent {
	return runAgent(c, name, newNodeRoot(), all, restartTime, bad)
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

// runAgent runs an agent on an existing node root (a restarted agent when the root was used).
func runAgent(c client.WithWatch, name string, paths agent.Paths, all *restarts, restartTime time.Duration, bad func(string) bool) *testAgent {
	return runAgentWithStatus(c, c, name, paths, all, restartTime, bad, 2*time.Second)
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

// runAgentWithStatus runs an agent whose status writes go through sc, passing at least every
// resync.
func runAgentWithStatus(c client.WithWatch, sc client.Client, name string, paths agent.Paths, all *restarts, restartTime time.Duration, bad func(string) bool, resync time.Duration) *testAgent {
	root := paths.Root
	files := agent.NewNodeFiles(paths)
	ta := &testAgent{name: name, paths: paths, recorder: record.NewFakeRecorder(1000), done: make(chan struct{})}
	a := agent.New(agent.Options{
		NodeName:  name,
		Namespace: namespace,
		Client:    c,
		Rollout: &agent.Rollout{Files: files, Clock: clock.RealClock{},
			Health: &simKubelet{manifest: filepath.Join(root, paths.Manifest), restartTime: restartTime, bad: bad, all: all}},
		Lease:    &agent.Lease{Client: c, Namespace: namespace, Name: agent.LeaseName, Identity: name, Clock: clock.RealClock{}},
		Status:   &agent.StatusWriter{Client: sc, NodeName: name},
		Recorder: ta.recorder,
		Clock:    clock.RealClock{},
		Resync:   resync,
		Retry:    100 * time.Millisecond,
	})
	actx, stop := context.WithCancel(ctx)
	ta.stop = stop
	go func() {
		defer GinkgoRecover()
		defer close(ta.done)
		Expect(a.Run(actx)).To(Succeed())
	}()
	return ta
}

func (ta *testAgent) shutdown() {
	ta.stop()
	Eventually(ta.done).WithTimeout(30 * time.Second).Should(BeClosed())
}

func (ta *testAgent) state() agent.State {
	st, err := agent.NewNodeFiles(ta.paths).LoadState()
	Expect(err).NotTo(HaveOccurred())
	return st
}

func (ta *testAgent) policy() string {
	b, _ := os.ReadFile(filepath.Join(ta.paths.Root, ta.paths.PolicyFile))
	return string(b)
}

// eventReasons drains the recorder and returns every event seen so far.
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
