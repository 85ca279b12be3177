package envtest_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

// applyConfigAgent creates the ServiceAccount and RBAC of config/agent.
func applyConfigAgent() {
	for _, f := range []string{"service_account.yaml", "role.yaml", "role_binding.yaml"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "..", "config", "agent", f))
		Expect(err).NotTo(HaveOccurred())
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			Expect(err).NotTo(HaveOccurred())
			u := &unstructured.Unstructured{}
			Expect(yaml.Unmarshal(doc, &u.Object)).To(Succeed())
			if len(u.Object) == 0 {
				continue
			}
			Expect(client.IgnoreAlreadyExists(k8s.Create(ctx, u))).To(Succeed(), "%s %s", u.GetKind(), u.GetName())
		}
	}
}

var _ = Describe("The agent's RBAC from config/agent", func() {
	var agentClient client.WithWatch
	BeforeEach(func() {
		resetCluster()
		applyConfigAgent()
		c := rest.CopyConfig(cfg)
		c.Impersonate = rest.ImpersonationConfig{
			UserName: "system:serviceaccount:kaudit-system:kaudit-agent",
			Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:kaudit-system", "system:authenticated"},
		}
		var err error
		agentClient, err = client.NewWithWatch(c, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
	})

	It("is enough for a whole rollout", func() {
		createSingleton("5s", "0s", true)
		a := startAgent(agentOptions{name: "cp-rbac", client: agentClient, restarts: &restarts{}, restartTime: 100 * time.Millisecond})
		DeferCleanup(a.shutdown)
		publish(1)
		Eventually(func(g Gomega) {
			e := singleton().Status.Node("cp-rbac")
			g.Expect(e).NotTo(BeNil())
			g.Expect(e.Phase).To(Equal(v1alpha1.NodeApplied), e.Message)
		}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())

		w, err := agentClient.Watch(ctx, &v1alpha1.AuditPolicyList{}, client.MatchingFields{"metadata.name": v1alpha1.SingletonName})
		Expect(err).NotTo(HaveOccurred(), "the agent watches the singleton by name")
		w.Stop()

		// The mirror pod and events, which the simulated kubelet and recorder do not exercise.
		err = agentClient.Get(ctx, client.ObjectKey{Namespace: "kube-system", Name: "kube-apiserver-cp-rbac"}, &corev1.Pod{})
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "want NotFound, not Forbidden: %v", err)
		ev := &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Namespace: "default", GenerateName: "cluster."},
			InvolvedObject: corev1.ObjectReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: "AuditPolicy", Name: v1alpha1.SingletonName},
			Reason:         "NodeUpdated", Message: "test", Type: corev1.EventTypeNormal,
		}
		Expect(agentClient.Create(ctx, ev)).To(Succeed())
	})

	It("denies what the agent must not do", func() {
		createSingleton("5s", "0s", false)
		ap := singleton()
		ap.Spec.PinnedRevision = new(int64)
		*ap.Spec.PinnedRevision = 1
		Expect(apierrors.IsForbidden(agentClient.Update(ctx, ap))).To(BeTrue(), "spec is the user's")
		Expect(apierrors.IsForbidden(agentClient.Get(ctx, client.ObjectKey{Namespace: "kube-system", Name: "x"}, &corev1.Secret{}))).To(BeTrue())
		Expect(apierrors.IsForbidden(agentClient.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "kaudit-policy-1"}}))).To(BeTrue())
		Expect(apierrors.IsForbidden(agentClient.List(ctx, &v1alpha1.AuditPolicyModuleList{}))).To(BeTrue())
		// Pods only in kube-system (mirror pods), events only in default (the singleton's).
		Expect(apierrors.IsForbidden(agentClient.Get(ctx, client.ObjectKey{Namespace: namespace, Name: "x"}, &corev1.Pod{}))).To(BeTrue(), "pods outside kube-system")
		ev := &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Namespace: namespace, GenerateName: "x."},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "x", Namespace: namespace},
			Reason:         "Test", Message: "test", Type: corev1.EventTypeNormal,
		}
		Expect(apierrors.IsForbidden(agentClient.Create(ctx, ev))).To(BeTrue(), "events outside default")
	})
})
