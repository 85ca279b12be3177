package access

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
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
	"github.com/kaudit/kaudit/internal/testenv"
)

const namespace = testenv.Namespace

var (
	testEnv *testenv.Env
	k8s     client.Client
	ctx     context.Context
	cancel  context.CancelFunc
)

var configDir = filepath.Join("..", "..", "config")

func TestAccess(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Access Suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	ctx, cancel = context.WithCancel(context.Background())
	var err error
	testEnv, err = testenv.Start(ctx)
	Expect(err).NotTo(HaveOccurred())
	k8s = testEnv.Client
	// The shipped RBAC of the manager and the agent, and the admission policies.
	for _, dir := range []string{"rbac", "agent", "admission"} {
		for _, o := range kustomize(filepath.Join(configDir, dir)) {
			if o.GetKind() == "DaemonSet" {
				continue
			}
			Expect(k8s.Create(ctx, o)).To(Succeed(), "%s %s", o.GetKind(), o.GetName())
		}
	}
})

var _ = AfterSuite(func() {
	if cancel != nil {
		cancel()
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

// kustomize renders a kustomization with the kubectl of the envtest assets.
func kustomize(dir string) []*unstructured.Unstructured {
	GinkgoHelper()
	out, err := exec.Command(filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl"), "kustomize", dir).Output()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
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

// as returns a client that makes its requests as the given user, impersonated.
func as(user rest.ImpersonationConfig) client.Client {
	GinkgoHelper()
	cfg := rest.CopyConfig(testEnv.Config)
	cfg.Impersonate = user
	c, err := client.New(cfg, client.Options{Scheme: cmd.Scheme()})
	Expect(err).NotTo(HaveOccurred())
	return c
}

// serviceAccount is how the API server authenticates a service account's token.
func serviceAccount(ns, name string) rest.ImpersonationConfig {
	return rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + ns + ":" + name,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}
}
