package managermetrics

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/kaudit/kaudit/cmd"
	"github.com/kaudit/kaudit/controllers"
	"github.com/kaudit/kaudit/internal/testenv"
)

const namespace = testenv.Namespace

// One control plane and one manager, whose metrics server listens on metricsAddress.
var (
	k8s            client.WithWatch
	testEnv        *testenv.Env
	ctx            context.Context
	cancel         context.CancelFunc
	managerUp      <-chan error
	metricsAddress string
)

var configDir = filepath.Join("..", "..", "config")

func TestManagerMetrics(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Manager Metrics Suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	ctx, cancel = context.WithCancel(context.Background())
	var err error
	testEnv, err = testenv.Start(ctx)
	Expect(err).NotTo(HaveOccurred())
	k8s = testEnv.Client
	for _, o := range kustomize(filepath.Join(configDir, "rbac")) {
		Expect(k8s.Create(ctx, o)).To(Succeed(), "%s %s", o.GetKind(), o.GetName())
	}
	// The manager as its ServiceAccount, with only the shipped RBAC: it must be allowed to
	// review the tokens of its metrics' callers.
	cfg := rest.CopyConfig(testEnv.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + namespace + ":kaudit-manager",
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}
	metricsAddress = freeAddress()
	mgr, err := cmd.NewManager(cfg, cmd.ManagerOptions{
		Namespace: namespace, HistoryLimit: 10,
		MaxPolicyRules: controllers.DefaultMaxPolicyRules, MaxPolicyBytes: controllers.DefaultMaxPolicyBytes,
		MetricsAddress: metricsAddress, MetricsSecure: true, HealthProbeAddress: "0",
	})
	Expect(err).NotTo(HaveOccurred())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	managerUp = done
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

// freeAddress is a local address no one listens on now.
func freeAddress() string {
	GinkgoHelper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	return l.Addr().String()
}

// kustomize renders a kustomization with the kubectl of the envtest assets.
func kustomize(dir string) []*unstructured.Unstructured {
	GinkgoHelper()
	out, err := exec.Command(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl"), "kustomize", dir).Output()
	if exitErr, ok := errors.AsType[*exec.ExitError](err); ok {
		Fail("kubectl kustomize " + dir + ": " + string(exitErr.Stderr))
	}
	Expect(err).NotTo(HaveOccurred())
	var objs []*unstructured.Unstructured
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		Expect(err).NotTo(HaveOccurred())
		u := &unstructured.Unstructured{}
		Expect(yaml.Unmarshal(doc, &u.Object)).To(Succeed())
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}
