package access

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

func teamModule(namespace, name string, namespaces ...string) *v1alpha1.NamespacedAuditPolicyModule {
	return &v1alpha1.NamespacedAuditPolicyModule{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: v1alpha1.NamespacedAuditPolicyModuleSpec{Rules: []v1alpha1.NamespacedPolicyRule{{
			Level: v1alpha1.LevelRequestResponse, Namespaces: namespaces,
			Resources: []v1alpha1.GroupResources{{Group: "apps", Resources: []string{"deployments"}}},
		}}},
	}
}

var _ = Describe("team-owned namespaced modules", Ordered, func() {
	team := rest.ImpersonationConfig{UserName: "carol", Groups: []string{"team-a", "system:authenticated"}}
	var carol client.Client

	BeforeAll(func() {
		for _, ns := range []string{"team-a", "team-b"} {
			Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		}
		// As the docs say: the shipped ClusterRole, bound in the team's namespace.
		Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "audit-rules"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "kaudit-namespacedauditpolicymodule-editor"},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "Group", Name: "team-a"}},
		})).To(Succeed())
		carol = as(team)
		// A policy takes a moment to become effective.
		Eventually(func() error {
			return k8s.Create(ctx, teamModule("team-a", "probe", "team-b"), client.DryRunAll)
		}, "30s", "200ms").Should(MatchError(ContainSubstring("kaudit-namespaced-module-namespaces")))
	})

	It("lets a team bound to the editor role write modules in its namespace only", func() {
		for _, verb := range []string{"create", "update", "patch", "delete", "get", "list", "watch"} {
			Expect(allowed(team, verb, v1alpha1.GroupVersion.Group, "namespacedauditpolicymodules", "team-a")).To(BeTrue(), verb)
			Expect(allowed(team, verb, v1alpha1.GroupVersion.Group, "namespacedauditpolicymodules", "team-b")).To(BeFalse(), verb)
		}
		Expect(allowed(team, "patch", v1alpha1.GroupVersion.Group, "namespacedauditpolicymodules/status", "team-a")).To(BeFalse(), "status is the manager's")
		Expect(allowed(team, "create", v1alpha1.GroupVersion.Group, "auditpolicymodules", "")).To(BeFalse())
		Expect(allowed(team, "patch", v1alpha1.GroupVersion.Group, "auditpolicies", "")).To(BeFalse())
		Expect(carol.Create(ctx, teamModule("team-a", "deployment-bodies"))).To(Succeed())
		Expect(carol.Create(ctx, teamModule("team-a", "named-own", "team-a"))).To(Succeed())
		Expect(apierrors.IsForbidden(carol.Create(ctx, teamModule("team-b", "elsewhere")))).To(BeTrue())
	})

	It("refuses at apply time a rule naming another namespace", func() {
		err := carol.Create(ctx, teamModule("team-a", "escape", "kube-system"))
		Expect(apierrors.IsInvalid(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("a NamespacedAuditPolicyModule applies only to its own namespace team-a"))
		m := &v1alpha1.NamespacedAuditPolicyModule{}
		Expect(carol.Get(ctx, client.ObjectKey{Namespace: "team-a", Name: "named-own"}, m)).To(Succeed())
		m.Spec.Rules[0].Namespaces = []string{"team-b"}
		Expect(apierrors.IsInvalid(carol.Update(ctx, m))).To(BeTrue(), "an update too")
	})

	It("lets the manager read namespaced modules and write their status, nothing else", func() {
		manager := serviceAccount(namespace, "kaudit-manager")
		for _, verb := range []string{"get", "list", "watch"} {
			Expect(allowed(manager, verb, v1alpha1.GroupVersion.Group, "namespacedauditpolicymodules", "team-a")).To(BeTrue(), verb)
		}
		for _, verb := range []string{"create", "update", "patch", "delete"} {
			Expect(allowed(manager, verb, v1alpha1.GroupVersion.Group, "namespacedauditpolicymodules", "team-a")).To(BeFalse(), verb)
		}
		Expect(allowed(manager, "patch", v1alpha1.GroupVersion.Group, "namespacedauditpolicymodules/status", "team-a")).To(BeTrue())
	})
})
