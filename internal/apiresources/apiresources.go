// Package apiresources lists what kube-apiserver serves: the built-in API groups and their
// resources, and the verbs of request attributes. lint checks names against it; explain and the
// shell completion offer it.
package apiresources

import (
	"maps"
	"slices"
)

// builtin are the resources that kube-apiserver v1.37 serves, by API group, with the
// subresources that audit policies commonly name. Custom resources come from discovery
// (kaudit lint --kubeconfig) or are reported as unchecked.
var builtin = map[string][]string{
	"": {
		"bindings", "componentstatuses", "configmaps", "endpoints", "events", "limitranges", "namespaces",
		"namespaces/finalize", "namespaces/status", "nodes", "nodes/proxy", "nodes/status",
		"persistentvolumeclaims", "persistentvolumeclaims/status", "persistentvolumes", "persistentvolumes/status",
		"pods", "pods/attach", "pods/binding", "pods/ephemeralcontainers", "pods/eviction", "pods/exec", "pods/log",
		"pods/portforward", "pods/proxy", "pods/resize", "pods/status", "podtemplates", "replicationcontrollers",
		"replicationcontrollers/scale", "replicationcontrollers/status", "resourcequotas", "resourcequotas/status",
		"secrets", "serviceaccounts", "serviceaccounts/token", "services", "services/proxy", "services/status",
	},
	"admissionregistration.k8s.io": {
		"mutatingwebhookconfigurations", "validatingwebhookconfigurations", "validatingadmissionpolicies",
		"validatingadmissionpolicies/status", "validatingadmissionpolicybindings", "mutatingadmissionpolicies",
		"mutatingadmissionpolicybindings",
	},
	"apiextensions.k8s.io":   {"customresourcedefinitions", "customresourcedefinitions/status"},
	"apiregistration.k8s.io": {"apiservices", "apiservices/status"},
	"apps": {
		"controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale", "deployments/status",
		"replicasets", "replicasets/scale", "replicasets/status", "statefulsets", "statefulsets/scale", "statefulsets/status",
	},
	"authentication.k8s.io": {"selfsubjectreviews", "tokenreviews"},
	"authorization.k8s.io":  {"localsubjectaccessreviews", "selfsubjectaccessreviews", "selfsubjectrulesreviews", "subjectaccessreviews"},
	"autoscaling":           {"horizontalpodautoscalers", "horizontalpodautoscalers/status"},
	"batch":                 {"cronjobs", "cronjobs/status", "jobs", "jobs/status"},
	"certificates.k8s.io": {
		"certificatesigningrequests", "certificatesigningrequests/approval", "certificatesigningrequests/status",
		"clustertrustbundles", "podcertificaterequests", "podcertificaterequests/status",
	},
	"coordination.k8s.io":          {"leases", "leasecandidates"},
	"discovery.k8s.io":             {"endpointslices"},
	"events.k8s.io":                {"events"},
	"flowcontrol.apiserver.k8s.io": {"flowschemas", "flowschemas/status", "prioritylevelconfigurations", "prioritylevelconfigurations/status"},
	"internal.apiserver.k8s.io":    {"storageversions", "storageversions/status"},
	"networking.k8s.io":            {"ingressclasses", "ingresses", "ingresses/status", "networkpolicies", "ipaddresses", "servicecidrs", "servicecidrs/status"},
	"node.k8s.io":                  {"runtimeclasses"},
	"policy":                       {"poddisruptionbudgets", "poddisruptionbudgets/status"},
	"rbac.authorization.k8s.io":    {"clusterrolebindings", "clusterroles", "rolebindings", "roles"},
	"resource.k8s.io": {
		"deviceclasses", "devicetaintrules", "resourceclaims", "resourceclaims/status", "resourceclaimtemplates", "resourceslices",
	},
	"scheduling.k8s.io":       {"priorityclasses"},
	"storage.k8s.io":          {"csidrivers", "csinodes", "csistoragecapacities", "storageclasses", "volumeattachments", "volumeattachments/status", "volumeattributesclasses"},
	"storagemigration.k8s.io": {"storageversionmigrations", "storageversionmigrations/status"},
	"metrics.k8s.io":          {"nodes", "pods"},
}

// verbs are the verbs kube-apiserver puts in the attributes of resource requests (and in audit
// events).
var verbs = []string{
	"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection",
	"proxy", "impersonate", "bind", "escalate", "approve", "sign", "use", "attest", "userextras",
}

// Groups returns the built-in API groups, sorted; "" is the core group.
func Groups() []string {
	return slices.Sorted(maps.Keys(builtin))
}

// Resources returns the resources of a built-in API group (with "resource/subresource"
// entries), or nil for a group kube-apiserver does not serve itself.
func Resources(group string) []string {
	return slices.Clone(builtin[group])
}

// GroupsServing returns the built-in API groups that serve a resource (or
// "resource/subresource"), sorted.
func GroupsServing(resource string) []string {
	var out []string
	for _, g := range Groups() {
		if slices.Contains(builtin[g], resource) {
			out = append(out, g)
		}
	}
	return out
}

// Verbs returns the verbs of resource requests, the common ones first.
func Verbs() []string {
	return slices.Clone(verbs)
}
