//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/revision"
)

const (
	kauditNamespace = "kaudit-system"
	policyOnNode    = "/etc/kubernetes/audit/policy.yaml"
	manifestOnNode  = "/etc/kubernetes/manifests/kube-apiserver.yaml"
	// dataNamespace holds the objects whose audit events the suite reads.
	dataNamespace = "kaudit-e2e-data"
	// rolloutTimeout bounds one rollout: a kube-apiserver restart takes 40-60 s on
	// a 2-core machine (mostly the old instance's graceful shutdown).
	rolloutTimeout = 5 * time.Minute
)

// install loads the image into the cluster and installs kaudit from
// config/default, then waits for the manager and the agent.
func (k *cluster) install() {
	kustomization := envOr("KAUDIT_E2E_KUSTOMIZE", "config/default")
	if _, err := os.Stat(filepath.Join(repoRoot, kustomization, "kustomization.yaml")); err != nil && !filepath.IsAbs(kustomization) {
		Fail(kustomization + "/kustomization.yaml is missing: kaudit cannot be installed")
	}
	Expect(runLogged(nil, k.env["KIND"], "load", "docker-image", img, "--name", k.name)).To(Succeed())
	out, err := run([]string{"KUBECONFIG=" + k.kubeconfig()}, "", k.kubectlBin, "apply", "--server-side", "--force-conflicts", "-k", kustomization)
	fmt.Fprintln(GinkgoWriter, out)
	Expect(err).NotTo(HaveOccurred())
	k.waitKauditReady()
}

// waitKauditReady waits until the manager Deployment and the agent DaemonSet are ready.
func (k *cluster) waitKauditReady() {
	// The image is local: never try to pull it.
	Eventually(func() error {
		out, err := k.kubectl("-n", kauditNamespace, "get", "deploy,ds", "-o",
			`jsonpath={range .items[*]}{.kind}/{.metadata.name} {.status.readyReplicas}{.status.numberReady}/{.status.replicas}{.status.desiredNumberScheduled}{"\n"}{end}`)
		if err != nil {
			return err
		}
		lines := strings.Fields(strings.TrimSpace(out))
		if len(lines) < 4 {
			return fmt.Errorf("want a manager Deployment and an agent DaemonSet in %s, have:\n%s", kauditNamespace, out)
		}
		for i := 0; i+1 < len(lines); i += 2 {
			parts := strings.SplitN(lines[i+1], "/", 2)
			if len(parts) != 2 || parts[0] == "" || parts[0] != parts[1] || parts[0] == "0" {
				return fmt.Errorf("%s not ready: %s", lines[i], lines[i+1])
			}
		}
		return nil
	}).WithTimeout(3*time.Minute).WithPolling(2*time.Second).Should(Succeed(), func() string {
		out, _ := k.kubectl("-n", kauditNamespace, "get", "pods", "-o", "wide")
		desc, _ := k.kubectl("-n", kauditNamespace, "describe", "pods")
		return out + "\n" + desc
	})
}

func (k *cluster) singleton() (*v1alpha1.AuditPolicy, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ap := &v1alpha1.AuditPolicy{}
	return ap, k.c.Get(ctx, client.ObjectKey{Name: "cluster"}, ap)
}

func (k *cluster) module(name string) (*v1alpha1.AuditPolicyModule, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m := &v1alpha1.AuditPolicyModule{}
	return m, k.c.Get(ctx, client.ObjectKey{Name: name}, m)
}

func (k *cluster) revision(n int64) (*revision.Revision, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cm := &corev1.ConfigMap{}
	if err := k.c.Get(ctx, client.ObjectKey{Namespace: kauditNamespace, Name: revision.Name(n)}, cm); err != nil {
		return nil, err
	}
	return revision.FromConfigMap(cm)
}

func latest(ap *v1alpha1.AuditPolicy) int64 {
	if ap.Status.LatestRevision == nil {
		return 0
	}
	return *ap.Status.LatestRevision
}

func (k *cluster) latestRevision() int64 {
	ap, err := k.singleton()
	if err != nil {
		return 0
	}
	return latest(ap)
}

func condition(ap *v1alpha1.AuditPolicy, t string) *metav1.Condition {
	return meta.FindStatusCondition(ap.Status.Conditions, t)
}

// inEffect is a revision that the node runs.
type inEffect struct {
	Revision int64
	Policy   string
	At       time.Time
	Start    apiserverStart
}

// rolledOut checks that revision atLeast or later is desired, applied on the
// node, written to the node's policy file, and that the running apiserver
// carries its hash and is ready.
func (k *cluster) rolledOut(atLeast int64) (inEffect, error) {
	ap, err := k.singleton()
	if err != nil {
		return inEffect{}, err
	}
	if ap.Status.DesiredRevision == nil || *ap.Status.DesiredRevision < atLeast {
		return inEffect{}, fmt.Errorf("desiredRevision %v, want >= %d", ap.Status.DesiredRevision, atLeast)
	}
	want := *ap.Status.DesiredRevision
	n := ap.Status.Node(k.node())
	if n == nil || n.AppliedRevision == nil || *n.AppliedRevision != want {
		return inEffect{}, fmt.Errorf("node entry %+v, want appliedRevision %d", n, want)
	}
	if c := condition(ap, "Available"); c == nil || c.Status != metav1.ConditionTrue {
		return inEffect{}, fmt.Errorf("Available condition %+v", c)
	}
	rev, err := k.revision(want)
	if err != nil {
		return inEffect{}, err
	}
	file, err := k.nodeFile(policyOnNode)
	if err != nil {
		return inEffect{}, err
	}
	if file != string(rev.Policy) {
		return inEffect{}, fmt.Errorf("%s on the node differs from revision %d", policyOnNode, want)
	}
	start, err := k.apiserverStart()
	if err != nil {
		return inEffect{}, err
	}
	short := rev.Hash
	if len(short) > 16 {
		short = short[:16]
	}
	if !strings.HasPrefix(start.Hash, short) && !strings.HasPrefix(rev.Hash, start.Hash) || start.Hash == "" {
		return inEffect{}, fmt.Errorf("mirror pod %s=%q does not carry revision %d's hash %s", annotationPolicyHash, start.Hash, want, rev.Hash)
	}
	if err := k.readyz(); err != nil {
		return inEffect{}, err
	}
	return inEffect{Revision: want, Policy: file, At: time.Now(), Start: start}, nil
}

// newestRevision returns the highest-numbered revision ConfigMap.
func (k *cluster) newestRevision() (*revision.Revision, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list := &corev1.ConfigMapList{}
	if err := k.c.List(ctx, list, client.InNamespace(kauditNamespace), client.MatchingLabelsSelector{Selector: revision.Selector()}); err != nil {
		return nil, err
	}
	var best *corev1.ConfigMap
	var bestN int64
	for i := range list.Items {
		n, err := revision.Number(&list.Items[i])
		if err == nil && n > bestN {
			best, bestN = &list.Items[i], n
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no revision ConfigMap in %s", kauditNamespace)
	}
	return revision.FromConfigMap(best)
}

// waitPolicyInEffect waits until the newest revision (atLeast or later) is in
// effect on the node: its policy is the node's file and the running, ready
// kube-apiserver carries its hash. It reads no kaudit status, so it times
// the rollout itself; waitRolledOut then checks what status reports. Both wait
// up to rolloutTimeout. It returns when it saw the policy in effect.
func (k *cluster) waitPolicyInEffect(atLeast int64) time.Time {
	var at time.Time
	Eventually(func() error {
		rev, err := k.newestRevision()
		if err != nil {
			return err
		}
		if rev.Number < atLeast {
			return fmt.Errorf("newest revision %d, want >= %d", rev.Number, atLeast)
		}
		start, err := k.apiserverStart()
		if err != nil {
			return err
		}
		if start.Hash == "" || !strings.HasPrefix(rev.Hash, start.Hash) {
			return fmt.Errorf("running kube-apiserver has %s=%q, revision %d is %s", annotationPolicyHash, start.Hash, rev.Number, rev.Hash)
		}
		if err := k.readyz(); err != nil {
			return err
		}
		file, err := k.nodeFile(policyOnNode)
		if err != nil {
			return err
		}
		if file != string(rev.Policy) {
			return fmt.Errorf("%s on the node is not revision %d", policyOnNode, rev.Number)
		}
		at = time.Now()
		return nil
	}).WithTimeout(rolloutTimeout).WithPolling(time.Second).Should(Succeed())
	return at
}

// waitRolledOut waits until rolledOut(atLeast) holds.
func (k *cluster) waitRolledOut(atLeast int64) inEffect {
	var got inEffect
	Eventually(func() error {
		var err error
		got, err = k.rolledOut(atLeast)
		return err
	}).WithTimeout(rolloutTimeout).WithPolling(time.Second).Should(Succeed(), func() string {
		out, _ := k.kubectl("get", "auditpolicy", "cluster", "-o", "yaml")
		return out
	})
	return got
}

// module renders a one-rule test module.
func testModule(name string, order int, level, namespace, resource string) string {
	return fmt.Sprintf(`apiVersion: audit.kaudit.io/v1alpha1
kind: AuditPolicyModule
metadata:
  name: %s
spec:
  order: %d
  description: kaudit e2e - %s in %s at %s
  rules:
  - level: %s
    namespaces: [%s]
    resources: [{group: "", resources: [%s]}]
`, name, order, resource, namespace, level, level, namespace, resource)
}

// writeNodeFile replaces a file on the node atomically (temp file in the same
// directory, then rename), the way the agent writes it.
func (k *cluster) writeNodeFile(path, content string) error {
	_, err := run(nil, content, "docker", "exec", "-i", k.node(), "bash", "-c",
		fmt.Sprintf(`set -eu; t=$(mktemp %[1]s.e2e.XXXXXX); cat > "$t"; mv "$t" %[1]s`, path))
	return err
}
