// Package relevance decides which requests are security-relevant and at which level each must
// be recorded: rules R1 to R6 of docs/modules.md ("What security-relevant means here"). It is
// the one definition that simulate's security section and the preset tests use.
package relevance

import (
	"slices"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/internal/policy"
)

// Rule names a rule of the definition.
type Rule string

// The rules, in the order docs/modules.md lists them.
const (
	R1 Rule = "R1" // privilege and admission changes
	R2 Rule = "R2" // secret and credential access
	R3 Rule = "R3" // interactive pod access
	R4 Rule = "R4" // anything done as system:masters
	R5 Rule = "R5" // writes by non-components
	R6 Rule = "R6" // pod placement
)

// Rules lists the rules in order.
var Rules = []Rule{R1, R2, R3, R4, R5, R6}

// Title says in a few words what a rule covers.
func (r Rule) Title() string {
	switch r {
	case R1:
		return "privilege and admission changes"
	case R2:
		return "secret and credential access"
	case R3:
		return "interactive pod access"
	case R4:
		return "requests of system:masters"
	case R5:
		return "writes by non-components"
	case R6:
		return "pod placement"
	}
	return ""
}

// Requirement is the rule that makes a request security-relevant and the level it must be
// recorded at. The zero value is a request that is not security-relevant.
type Requirement struct {
	Rule Rule `json:"rule,omitempty"`
	// Level is the least level; with Exact, also the most (R2: never a body).
	Level auditv1.Level `json:"level,omitempty"`
	Exact bool          `json:"exact,omitempty"`
}

// Relevant tells whether the request is security-relevant.
func (r Requirement) Relevant() bool { return r.Rule != "" }

// MetBy tells whether recording the request at level meets the requirement.
func (r Requirement) MetBy(level auditv1.Level) bool {
	if !r.Relevant() {
		return true
	}
	if r.Exact {
		return level == r.Level
	}
	return policy.LevelRank(level) >= policy.LevelRank(r.Level)
}

// GroupResource is an API group and a resource, "pods" or "pods/exec".
type GroupResource struct {
	Group, Resource string
}

var (
	// writeVerbs are the verbs that change objects.
	writeVerbs = []string{"create", "update", "patch", "delete", "deletecollection"}
	// privilege: R1 when written.
	privilege = []GroupResource{
		{"rbac.authorization.k8s.io", "roles"}, {"rbac.authorization.k8s.io", "rolebindings"},
		{"rbac.authorization.k8s.io", "clusterroles"}, {"rbac.authorization.k8s.io", "clusterrolebindings"},
		{"admissionregistration.k8s.io", "validatingwebhookconfigurations"},
		{"admissionregistration.k8s.io", "mutatingwebhookconfigurations"},
		{"admissionregistration.k8s.io", "validatingadmissionpolicies"},
		{"admissionregistration.k8s.io", "validatingadmissionpolicybindings"},
		{"admissionregistration.k8s.io", "mutatingadmissionpolicies"},
		{"admissionregistration.k8s.io", "mutatingadmissionpolicybindings"},
		{"apiextensions.k8s.io", "customresourcedefinitions"}, {"apiregistration.k8s.io", "apiservices"},
		{"", "namespaces"}, // their labels set the Pod Security level
	}
	// sensitive: R2, any verb.
	sensitive = []GroupResource{
		{"", "secrets"}, {"", "configmaps"}, {"", "serviceaccounts/token"},
		{"authentication.k8s.io", "tokenreviews"},
		{"certificates.k8s.io", "certificatesigningrequests"}, {"certificates.k8s.io", "certificatesigningrequests/approval"},
		{"certificates.k8s.io", "certificatesigningrequests/status"}, {"certificates.k8s.io", "podcertificaterequests"},
	}
	// interactive: R3, any verb (over WebSocket an exec or port-forward is a get).
	interactive = []GroupResource{
		{"", "pods/exec"}, {"", "pods/attach"}, {"", "pods/portforward"}, {"", "pods/ephemeralcontainers"},
	}
	// workloads: R5 requires Request for their writes.
	workloads = []GroupResource{
		{"", "pods"}, {"", "replicationcontrollers"}, {"apps", "deployments"}, {"apps", "deployments/scale"},
		{"apps", "daemonsets"}, {"apps", "statefulsets"}, {"apps", "replicasets"}, {"batch", "jobs"}, {"batch", "cronjobs"},
	}
)

// WriteVerbs returns the verbs that change objects.
func WriteVerbs() []string { return slices.Clone(writeVerbs) }

// Privilege returns the resources whose writes are R1.
func Privilege() []GroupResource { return slices.Clone(privilege) }

// Sensitive returns the resources of R2.
func Sensitive() []GroupResource { return slices.Clone(sensitive) }

// Interactive returns the resources of R3.
func Interactive() []GroupResource { return slices.Clone(interactive) }

// Workloads returns the resources whose writes by non-components R5 wants at Request.
func Workloads() []GroupResource { return slices.Clone(workloads) }

const (
	rbacGroup = "rbac.authorization.k8s.io"
	masters   = "system:masters"
	apiserver = "system:apiserver"
	scheduler = "system:kube-scheduler"
	nodes     = "system:nodes"
)

// Classify applies R1-R6 to a request, from what an investigator has: the authenticated user,
// the verb and the object (or path).
func Classify(r policy.Request) Requirement {
	asMasters := slices.Contains(r.Groups, masters) && r.User != apiserver
	if !r.ResourceRequest {
		if asMasters {
			return Requirement{Rule: R4, Level: auditv1.LevelRequestResponse}
		}
		return Requirement{}
	}
	gr := GroupResource{r.APIGroup, r.Resource}
	if r.Subresource != "" {
		gr.Resource += "/" + r.Subresource
	}
	write := slices.Contains(writeVerbs, r.Verb)
	switch {
	case slices.Contains(sensitive, gr):
		return Requirement{Rule: R2, Level: auditv1.LevelMetadata, Exact: true}
	case slices.Contains(interactive, gr):
		return Requirement{Rule: R3, Level: auditv1.LevelMetadata}
	case asMasters && (r.Verb == "list" || r.Verb == "watch"):
		// A collection's content is rebuilt from the writes that made it, which are kept.
		return Requirement{Rule: R4, Level: auditv1.LevelMetadata}
	case asMasters:
		return Requirement{Rule: R4, Level: auditv1.LevelRequestResponse}
	case write && r.User == apiserver && gr.Group == rbacGroup:
		// kube-apiserver's bootstrap reconciliation: the bodies are its compiled-in roles.
		return Requirement{Rule: R1, Level: auditv1.LevelMetadata}
	case write && slices.Contains(privilege, gr):
		return Requirement{Rule: R1, Level: auditv1.LevelRequestResponse}
	case r.Verb == "create" && gr == GroupResource{"", "pods/binding"} && r.User == scheduler:
		return Requirement{Rule: R6, Level: auditv1.LevelRequest}
	case write && !IsComponent(r.User, r.Groups) && slices.Contains(workloads, gr):
		return Requirement{Rule: R5, Level: auditv1.LevelRequest}
	case write && !IsComponent(r.User, r.Groups):
		return Requirement{Rule: R5, Level: auditv1.LevelMetadata}
	}
	return Requirement{}
}

// IsComponent tells whether a user is one of the control plane's components: kube-apiserver's
// loopback client, kube-controller-manager and its controllers' service accounts, the
// scheduler, kubelets (group system:nodes) and kube-proxy. Any other identity is not, even one
// that only looks like a component.
func IsComponent(user string, groups []string) bool {
	return components[user] || slices.Contains(groups, nodes)
}

// components are the users of the components.
var components = func() map[string]bool {
	m := map[string]bool{}
	for _, u := range append(ControllerAccounts(), apiserver, "system:kube-controller-manager", scheduler, "system:kube-proxy", "system:serviceaccount:kube-system:kube-proxy") {
		m[u] = true
	}
	return m
}()

// controllers are kube-controller-manager's per-controller service accounts in kube-system
// (--use-service-account-credentials): the system:controller:* roles of Kubernetes 1.37, plus
// bootstrap-signer and token-cleaner. The baseline module noise-kube-controller-manager lists
// the same accounts; a test keeps the two equal.
var controllers = []string{
	"attachdetach-controller", "bootstrap-signer", "certificate-controller", "clusterrole-aggregation-controller",
	"cronjob-controller", "daemon-set-controller", "deployment-controller", "device-taint-eviction-controller",
	"disruption-controller", "endpoint-controller", "endpointslice-controller", "endpointslicemirroring-controller",
	"ephemeral-volume-controller", "expand-controller", "generic-garbage-collector", "horizontal-pod-autoscaler",
	"job-controller", "kube-apiserver-serving-clustertrustbundle-publisher", "legacy-service-account-token-cleaner",
	"namespace-controller", "node-controller", "persistent-volume-binder", "pod-garbage-collector",
	"podcertificaterequestcleaner", "podgroup-protection-controller", "pv-protection-controller",
	"pvc-protection-controller", "replicaset-controller", "replication-controller", "resource-claim-controller",
	"resourcepoolstatusrequest-controller", "resourcequota-controller", "root-ca-cert-publisher", "route-controller",
	"selinux-warning-controller", "service-account-controller", "service-cidrs-controller", "service-controller",
	"statefulset-controller", "storage-version-garbage-collector", "storage-version-migrator-controller",
	"token-cleaner", "ttl-after-finished-controller", "ttl-controller", "validatingadmissionpolicy-status-controller",
	"volumeattributesclass-protection-controller",
}

// ControllerAccounts returns the user names of kube-controller-manager's per-controller service
// accounts.
func ControllerAccounts() []string {
	out := make([]string, len(controllers))
	for i, c := range controllers {
		out[i] = "system:serviceaccount:kube-system:" + c
	}
	return out
}

// Categories names the rule that makes r security-relevant, R1 to R6, or nothing: the
// categories of the security-relevant events the agent's metrics and kaudit top count.
func Categories(r policy.Request) []string {
	if req := Classify(r); req.Relevant() {
		return categoryLabels[req.Rule]
	}
	return nil
}

// categoryLabels are the answers of Categories, shared by every request.
var categoryLabels = func() map[Rule][]string {
	m := map[Rule][]string{}
	for _, r := range Rules {
		m[r] = []string{string(r)}
	}
	return m
}()
