// Package envtest_test runs node agents against a real kube-apiserver (envtest): the Lease,
// concurrent status writes, and whole rollouts over temporary node roots with a simulated
// kubelet.
package envtest_test

import (
	"context"
	"os"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/agent"
	"github.com/kaudit/kaudit/internal/testenv"
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
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	ctx, cancel = context.WithCancel(context.Background())
	Expect(clientgoscheme.AddToScheme(scheme)).To(Succeed())
	Expect(v1alpha1.AddToScheme(scheme)).To(Succeed())
	crds, err := testenv.CRDs()
	Expect(err).NotTo(HaveOccurred())
	// The simulated kubelets restart in well under a second: the shipped 30s minimum of
	// rollout.healthTimeout would make the rollback specs wait half a minute each.
	Expect(testenv.RelaxHealthTimeoutMinimum(crds)).To(Succeed())
	testEnv = &envtest.Environment{CRDs: crds}
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
