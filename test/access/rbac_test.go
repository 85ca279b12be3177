package access

import (
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/client-go/rest"
)

// allowed asks the API server's authorizer whether user may do verb on resource in namespace.
func allowed(user rest.ImpersonationConfig, verb, group, resource, ns string) bool {
	GinkgoHelper()
	review := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user.UserName, Groups: user.Groups,
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Group: group, Resource: resource},
	}}
	Expect(k8s.Create(ctx, review)).To(Succeed())
	return review.Status.Allowed
}

var _ = Describe("the shipped RBAC", func() {
	It("gives the manager no access to Leases: it runs without leader election, and could otherwise rewrite the agents' kaudit-rollout Lease", func() {
		for _, verb := range []string{"get", "list", "create", "update", "patch", "delete"} {
			Expect(allowed(serviceAccount(namespace, "kaudit-manager"), verb, "coordination.k8s.io", "leases", namespace)).To(BeFalse(), verb)
		}
	})

	It("gives the agent only what it does with pods: get its mirror pod in kube-system", func() {
		agent := serviceAccount(namespace, "kaudit-agent")
		Expect(allowed(agent, "get", "", "pods", "kube-system")).To(BeTrue())
		for _, verb := range []string{"list", "watch", "create", "update", "patch", "delete"} {
			Expect(allowed(agent, verb, "", "pods", "kube-system")).To(BeFalse(), verb)
		}
		Expect(allowed(agent, "get", "", "pods", namespace)).To(BeFalse())
	})

	It("aggregates no role into the built-in ones: the policy tells its reader which actions go unlogged", func() {
		for _, o := range kustomize(filepath.Join(configDir, "default")) {
			for label := range o.GetLabels() {
				Expect(strings.HasPrefix(label, "rbac.authorization.k8s.io/aggregate-to-")).To(BeFalse(), "%s %s has %s", o.GetKind(), o.GetName(), label)
			}
		}
	})
})
