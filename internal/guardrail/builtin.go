package guardrail

import auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

// Names of the built-in guardrails.
const (
	NoCredentialBodies         = "no-credential-bodies"
	SystemMastersLogged        = "system-masters-logged"
	RBACWritesLogged           = "rbac-writes-logged"
	AdmissionWritesLogged      = "admission-writes-logged"
	PodInteractiveAccessLogged = "pod-interactive-access-logged"
)

// writeVerbs are the verbs that change objects.
func writeVerbs() []string {
	return []string{"create", "update", "patch", "delete", "deletecollection"}
}

// Builtins returns the guardrails that hold by default: the security-relevant requests of
// docs/modules.md ("What security-relevant means here") R1 to R4, each as a bound that no
// module may break. It returns a new slice on each call.
func Builtins() []Guardrail {
	return []Guardrail{
		{
			Name:        NoCredentialBodies,
			Description: "Secrets, ConfigMaps, service account tokens, TokenReviews, CertificateSigningRequests and PodCertificateRequests are never logged above Metadata: their bodies are the credentials.",
			Scope: Scope{Resources: []auditv1.GroupResources{
				{Group: "", Resources: []string{"secrets", "configmaps", "serviceaccounts/token"}},
				{Group: "authentication.k8s.io", Resources: []string{"tokenreviews"}},
				{Group: "certificates.k8s.io", Resources: []string{"certificatesigningrequests/*", "podcertificaterequests/*"}},
			}},
			MaxLevel: auditv1.LevelMetadata,
		},
		{
			Name:        SystemMastersLogged,
			Description: "Requests by members of system:masters are always logged, except those of kube-apiserver's own loopback user system:apiserver.",
			Scope:       Scope{UserGroups: []string{"system:masters"}},
			Except:      []Scope{{Users: []string{"system:apiserver"}}},
			MinLevel:    auditv1.LevelMetadata,
		},
		{
			Name:        RBACWritesLogged,
			Description: "Writes of Roles, RoleBindings, ClusterRoles and ClusterRoleBindings are always logged, by anyone.",
			Scope: Scope{Verbs: writeVerbs(), Resources: []auditv1.GroupResources{
				{Group: "rbac.authorization.k8s.io", Resources: []string{"roles", "rolebindings", "clusterroles", "clusterrolebindings"}},
			}},
			MinLevel: auditv1.LevelMetadata,
		},
		{
			Name:        AdmissionWritesLogged,
			Description: "Writes of admission webhook configurations, admission policies and their bindings, CustomResourceDefinitions, APIServices and Namespaces are always logged, by anyone.",
			Scope: Scope{Verbs: writeVerbs(), Resources: []auditv1.GroupResources{
				{Group: "admissionregistration.k8s.io", Resources: []string{
					"mutatingwebhookconfigurations", "validatingwebhookconfigurations",
					"validatingadmissionpolicies", "validatingadmissionpolicybindings",
					"mutatingadmissionpolicies", "mutatingadmissionpolicybindings",
				}},
				{Group: "apiextensions.k8s.io", Resources: []string{"customresourcedefinitions"}},
				{Group: "apiregistration.k8s.io", Resources: []string{"apiservices"}},
				{Group: "", Resources: []string{"namespaces"}},
			}},
			MinLevel: auditv1.LevelMetadata,
		},
		{
			Name:        PodInteractiveAccessLogged,
			Description: "exec, attach, port-forward and ephemeral containers of pods are always logged, for every verb and by anyone.",
			Scope: Scope{Resources: []auditv1.GroupResources{
				{Group: "", Resources: []string{"pods/exec", "pods/attach", "pods/portforward", "pods/ephemeralcontainers"}},
			}},
			MinLevel: auditv1.LevelMetadata,
		},
	}
}
