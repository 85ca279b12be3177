// Command demo runs kaudit end to end with no existing cluster: it starts a local control
// plane (kube-apiserver and etcd from the envtest assets), installs the CRDs, runs the manager,
// applies modules with the real kubectl and prints the merged policy and every module's status.
//
//	make demo                                    # the sample modules in config/samples
//	make demo DEMO_MODULES=config/modules/baseline
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/testenv"
)

const namespace = testenv.Namespace

// brokenModule is applied after the samples to show what happens to a module that
// kube-apiserver would reject: it is reported, and the policy in force does not change.
const brokenModule = `apiVersion: audit.kaudit.io/v1alpha1
kind: AuditPolicyModule
metadata:
  name: demo-typo
spec:
  order: 150
  description: A typo that the schema cannot see but kube-apiserver would reject.
  rules:
  - level: Request
    resources:
    - group: Apps/v1
      resources: [deployments]
`

func main() {
	modules := flag.String("modules", "config/samples", "kustomize directory of modules to apply")
	keep := flag.Bool("keep", false, "keep the control plane running until interrupted, and print how to reach it")
	flag.Parse()
	if err := run(*modules, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(modules string, keep bool) error {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		return errors.New("KUBEBUILDER_ASSETS is not set: run `make demo`")
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(discard{})))
	step("Starting a local control plane (kube-apiserver + etcd from %s)", assets)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env, err := testenv.Start(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	k8s := env.Client

	kubeconfig, err := env.AddUser("demo-admin", "system:masters")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "kaudit-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	kubeconfigPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		return err
	}
	kubectl := func(stdin string, args ...string) (string, error) {
		c := exec.Command(filepath.Join(assets, "kubectl"), append([]string{"--kubeconfig", kubeconfigPath}, args...)...)
		c.Stdin = strings.NewReader(stdin)
		out, err := c.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}

	step("Starting the kaudit manager")
	mgrDone, err := env.StartManager(ctx, 10)
	if err != nil {
		return err
	}

	step("kubectl apply -k %s", modules)
	out, err := kubectl("", "apply", "--server-side", "-k", modules)
	if err != nil {
		return err
	}
	fmt.Print(indent(out))

	step("Waiting for the first revision (debounce: 2s after the last change)")
	rev, err := waitForRevision(ctx, k8s, 1, 60*time.Second)
	if err != nil {
		return err
	}

	step("A module with a typo that only kube-apiserver's loader can see")
	out, err = kubectl(brokenModule, "apply", "-f", "-")
	if err != nil {
		return err
	}
	fmt.Print(indent(out))
	if err := waitForRejection(ctx, k8s, "demo-typo", 30*time.Second); err != nil {
		return err
	}

	step("kubectl get auditpolicymodules -o wide")
	if out, err = kubectl("", "get", "auditpolicymodules", "-o", "wide"); err != nil {
		return err
	}
	fmt.Print(indent(out))
	step("kubectl get auditpolicymodule demo-typo -o jsonpath='{.status.conditions[0].message}'")
	if out, err = kubectl("", "get", "auditpolicymodule", "demo-typo", "-o", "jsonpath={.status.conditions[0].message}"); err != nil {
		return err
	}
	fmt.Println(indent(out))
	step("kubectl get auditpolicy cluster")
	if out, err = kubectl("", "get", "auditpolicy", "cluster"); err != nil {
		return err
	}
	fmt.Print(indent(out))
	step("kubectl get configmaps -n %s -l audit.kaudit.io/revision --show-labels", namespace)
	if out, err = kubectl("", "get", "configmaps", "-n", namespace, "-l", "audit.kaudit.io/revision", "--show-labels"); err != nil {
		return err
	}
	fmt.Print(indent(out))
	step("The merged policy in force, revision %s (what the agent writes to /etc/kubernetes/audit/policy.yaml)", rev)
	if out, err = kubectl("", "get", "configmap", "-n", namespace, "kaudit-policy-"+rev, "-o", "jsonpath={.data.policy\\.yaml}"); err != nil {
		return err
	}
	fmt.Print(indent(out))

	if keep {
		step("The control plane keeps running. In another shell:\n    export KUBECONFIG=%s\nPress Ctrl-C to stop.", kubeconfigPath)
		<-ctrl.SetupSignalHandler().Done()
	}
	cancel()
	if err := <-mgrDone; err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	step("Done: the control plane is stopped")
	return nil
}

func waitForRevision(ctx context.Context, c client.Client, atLeast int64, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var ap v1alpha1.AuditPolicy
		if err := c.Get(ctx, types.NamespacedName{Name: v1alpha1.SingletonName}, &ap); err == nil && ap.Status.LatestRevision != nil && *ap.Status.LatestRevision >= atLeast {
			return fmt.Sprint(*ap.Status.LatestRevision), nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return "", fmt.Errorf("no revision after %s", timeout)
}

func waitForRejection(ctx context.Context, c client.Client, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var m v1alpha1.AuditPolicyModule
		if err := c.Get(ctx, types.NamespacedName{Name: name}, &m); err == nil && m.Status.ObservedGeneration == m.Generation && len(m.Status.Conditions) > 0 {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("module %s has no status after %s", name, timeout)
}

func step(format string, args ...any) {
	fmt.Printf("\n==> "+format+"\n", args...)
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
