package argocd

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/kaudit/kaudit/cmd"
)

// One envtest control plane and one manager for the whole package: the health checks are fed
// objects the manager really wrote, and the no-drift test applies manifests as Argo CD would.
const namespace = "kaudit-system"

var (
	cfg       *rest.Config
	k8s       client.Client
	testEnv   *envtest.Environment
	ctx       context.Context
	cancel    context.CancelFunc
	managerUp chan error
)

func TestArgoCD(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Argo CD Suite")
}

var _ = BeforeSuite(func() {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		Fail("KUBEBUILDER_ASSETS is not set: run `make test`, or export KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh)")
	}
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	ctx, cancel = context.WithCancel(context.Background())

	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	var err error
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())

	k8s, err = client.New(cfg, client.Options{Scheme: cmd.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}})).To(Succeed())

	mgr, err := cmd.NewManager(cfg, cmd.ManagerOptions{
		Namespace: namespace, HistoryLimit: 10,
		MetricsAddress: "0", HealthProbeAddress: "0",
	})
	Expect(err).NotTo(HaveOccurred())
	managerUp = make(chan error, 1)
	go func() {
		defer GinkgoRecover()
		managerUp <- mgr.Start(ctx)
	}()
})

var _ = AfterSuite(func() {
	if cancel != nil {
		cancel()
	}
	if managerUp != nil {
		Eventually(managerUp, "30s").Should(Receive(BeNil()))
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})
