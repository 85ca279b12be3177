package access

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/internal/revision"
)

// revisionConfigMap is a ConfigMap carrying the revision label.
func revisionConfigMap(ns, name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
		Labels: map[string]string{revision.LabelRevision: "1", revision.LabelManagedBy: revision.ManagedBy}}}
}

func plainConfigMap(ns, name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

// deniedByRevisionPolicy tells an error of the revision ConfigMap policy from any other.
func deniedByRevisionPolicy(err error) {
	GinkgoHelper()
	Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got %v", err)
	Expect(err.Error()).To(ContainSubstring("ValidatingAdmissionPolicy 'kaudit-revision-configmaps'"))
	Expect(err.Error()).To(ContainSubstring("which only the kaudit manager (system:serviceaccount:kaudit-system:kaudit-manager) writes"))
}

var _ = Describe("the revision ConfigMap policy", Ordered, func() {
	var alice, manager, namespaceController client.Client

	BeforeAll(func() {
		// Alice and the namespace controller may do anything with ConfigMaps, by RBAC.
		Expect(k8s.Create(ctx, &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "test-configmap-writer"},
			Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"*"}}},
		})).To(Succeed())
		Expect(k8s.Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "test-configmap-writer"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "test-configmap-writer"},
			Subjects: []rbacv1.Subject{
				{APIGroup: rbacv1.GroupName, Kind: "User", Name: "alice"},
				{Kind: "ServiceAccount", Namespace: "kube-system", Name: "namespace-controller"},
			},
		})).To(Succeed())
		alice = as(rest.ImpersonationConfig{UserName: "alice", Groups: []string{"system:authenticated"}})
		// The manager has only its shipped RBAC (config/rbac): create, delete, get, list, watch.
		manager = as(serviceAccount(namespace, "kaudit-manager"))
		namespaceController = as(serviceAccount("kube-system", "namespace-controller"))

		// A policy takes a moment to become effective.
		Eventually(func() error {
			return alice.Create(ctx, revisionConfigMap(namespace, "probe"), client.DryRunAll)
		}, "30s", "200ms").Should(MatchError(ContainSubstring("kaudit-revision-configmaps")))
	})

	It("denies anyone but the manager creating a ConfigMap with the revision label", func() {
		deniedByRevisionPolicy(alice.Create(ctx, revisionConfigMap(namespace, revision.Name(1))))
	})

	It("allows the same user ConfigMaps without the label, and the label in other namespaces", func() {
		Expect(alice.Create(ctx, plainConfigMap(namespace, "settings"))).To(Succeed(), "so RBAC allows the user to create ConfigMaps")
		Expect(alice.Create(ctx, revisionConfigMap("default", revision.Name(1)))).To(Succeed())
	})

	It("allows the manager to create and delete revisions", func() {
		Expect(manager.Create(ctx, revisionConfigMap(namespace, revision.Name(2)))).To(Succeed())
		Expect(manager.Delete(ctx, revisionConfigMap(namespace, revision.Name(2)))).To(Succeed())
	})

	It("denies anyone but the manager changing, unlabelling or deleting a revision", func() {
		Expect(manager.Create(ctx, revisionConfigMap(namespace, revision.Name(3)))).To(Succeed())
		key := types.NamespacedName{Namespace: namespace, Name: revision.Name(3)}
		cm := &corev1.ConfigMap{}
		Expect(alice.Get(ctx, key, cm)).To(Succeed())

		changed := cm.DeepCopy()
		changed.Annotations = map[string]string{revision.AnnotationPolicySHA256: "0000"}
		deniedByRevisionPolicy(alice.Update(ctx, changed))

		unlabelled := cm.DeepCopy()
		delete(unlabelled.Labels, revision.LabelRevision)
		deniedByRevisionPolicy(alice.Update(ctx, unlabelled))

		deniedByRevisionPolicy(alice.Delete(ctx, cm))
		Expect(k8s.Get(ctx, key, &corev1.ConfigMap{})).To(Succeed(), "the revision is still there")
	})

	It("denies labelling an existing ConfigMap as a revision", func() {
		cm := plainConfigMap(namespace, "becomes-a-revision")
		Expect(alice.Create(ctx, cm)).To(Succeed())
		cm.Labels = revisionConfigMap(namespace, cm.Name).Labels
		deniedByRevisionPolicy(alice.Update(ctx, cm))
	})

	It("lets the namespace controller delete revisions, so that the namespace can be deleted, and nothing else", func() {
		Expect(manager.Create(ctx, revisionConfigMap(namespace, revision.Name(4)))).To(Succeed())
		deniedByRevisionPolicy(namespaceController.Create(ctx, revisionConfigMap(namespace, revision.Name(5))))
		Expect(namespaceController.Delete(ctx, revisionConfigMap(namespace, revision.Name(4)))).To(Succeed())
	})
})
