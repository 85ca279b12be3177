package cli

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/kaudit/kaudit/internal/testenv"
)

// One control plane and one manager for the package: each module set is applied in turn.
var (
	k8s       client.WithWatch
	testEnv   *testenv.Env
	ctx       context.Context
	cancel    context.CancelFunc
	managerUp <-chan error
)

func TestCLI(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "CLI Suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	ctx, cancel = context.WithCancel(context.Background())
	var err error
	testEnv, err = testenv.Start(ctx)
	Expect(err).NotTo(HaveOccurred())
	k8s = testEnv.Client
	managerUp, err = testEnv.StartManager(ctx, 10)
	Expect(err).NotTo(HaveOccurred())
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
