package presets

import (
	"slices"
	"testing"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"

	"github.com/kaudit/kaudit/internal/policy"
)

// baselineCase is one request and what the baseline must decide for it: the level, and the
// module whose rule decides (defaultSource for the singleton's defaultLevel). Every case is
// also checked for the omitted stages (the singleton's RequestReceived) and, where a body is
// logged, for omitted managedFields.
type baselineCase struct {
	name  string
	req   request
	level auditinternal.Level
	by    string
}

// baselineCases is grouped by the module that must decide. Cases that a module must NOT catch
// sit with the module that catches them instead, and say so in their name.
var baselineCases = []baselineCase{
	// secrets-metadata-only: first, so it wins over everything, components and admins included.
	{"admin reading a secret gets Metadata, not system-masters' RequestResponse", res(admin, "get", "", "secrets", "prod"), Metadata, "secrets-metadata-only"},
	{"admin writing a secret gets Metadata", res(admin, "create", "", "secrets", "prod"), Metadata, "secrets-metadata-only"},
	{"user listing secrets", res(alice, "list", "", "secrets", "prod"), Metadata, "secrets-metadata-only"},
	{"user watching secrets cluster-wide", res(alice, "watch", "", "secrets", ""), Metadata, "secrets-metadata-only"},
	{"user patching a configmap", res(alice, "patch", "", "configmaps", "prod"), Metadata, "secrets-metadata-only"},
	{"user minting a token for a controller's service account", res(alice, "create", "", "serviceaccounts/token", "kube-system"), Metadata, "secrets-metadata-only"},
	{"kubelet reading a secret for its pod is kept though kubelet reads are noise", res(kubelet, "get", "", "secrets", "prod"), Metadata, "secrets-metadata-only"},
	{"kubelet watching a pod's configmap is kept", res(kubelet, "watch", "", "configmaps", "prod"), Metadata, "secrets-metadata-only"},
	{"kubelet requesting a pod's service account token", res(kubelet, "create", "", "serviceaccounts/token", "prod"), Metadata, "secrets-metadata-only"},
	{"kubelet creating a client certificate request", res(kubelet, "create", "certificates.k8s.io", "certificatesigningrequests", ""), Metadata, "secrets-metadata-only"},
	{"bootstrap token creating a node certificate request", res(bootstrapper, "create", "certificates.k8s.io", "certificatesigningrequests", ""), Metadata, "secrets-metadata-only"},
	{"controller approving a certificate request", res(ctrl("certificate-controller"), "update", "certificates.k8s.io", "certificatesigningrequests/approval", ""), Metadata, "secrets-metadata-only"},
	{"controller signing a certificate request is not dropped as status noise", res(ctrl("certificate-controller"), "update", "certificates.k8s.io", "certificatesigningrequests/status", ""), Metadata, "secrets-metadata-only"},
	{"user approving a certificate request", res(alice, "update", "certificates.k8s.io", "certificatesigningrequests/approval", ""), Metadata, "secrets-metadata-only"},
	{"aggregated API server reviewing a token", res(sa("kube-system", "metrics-server"), "create", "authentication.k8s.io", "tokenreviews", ""), Metadata, "secrets-metadata-only"},
	{"apiserver reading a secret is kept though its reads are noise", res(apiserver, "list", "", "secrets", ""), Metadata, "secrets-metadata-only"},
	{"token cleaner deleting a bootstrap token", res(ctrl("token-cleaner"), "delete", "", "secrets", "kube-system"), Metadata, "secrets-metadata-only"},
	{"root CA publisher writing kube-root-ca.crt", res(ctrl("root-ca-cert-publisher"), "create", "", "configmaps", "prod"), Metadata, "secrets-metadata-only"},

	// rbac-changes: every RBAC write by anyone at RequestResponse, but kube-apiserver's own
	// (its bootstrap reconciliation) at Metadata.
	{"user creating a rolebinding", res(alice, "create", "rbac.authorization.k8s.io", "rolebindings", "prod"), RequestResponse, "rbac-changes"},
	{"user deleting a clusterrolebinding", res(alice, "delete", "rbac.authorization.k8s.io", "clusterrolebindings", ""), RequestResponse, "rbac-changes"},
	{"admin patching a clusterrole", res(admin, "patch", "rbac.authorization.k8s.io", "clusterroles", ""), RequestResponse, "rbac-changes"},
	{"clusterrole-aggregation controller updating an aggregated clusterrole", res(ctrl("clusterrole-aggregation-controller"), "update", "rbac.authorization.k8s.io", "clusterroles", ""), RequestResponse, "rbac-changes"},
	{"apiserver bootstrap reconciling a clusterrole", res(apiserver, "update", "rbac.authorization.k8s.io", "clusterroles", ""), Metadata, "rbac-changes"},
	{"apiserver bootstrap creating a clusterrolebinding", res(apiserver, "create", "rbac.authorization.k8s.io", "clusterrolebindings", ""), Metadata, "rbac-changes"},
	{"apiserver reading RBAC is not a change: dropped as its noise", res(apiserver, "list", "rbac.authorization.k8s.io", "clusterroles", ""), None, "noise-kube-apiserver"},
	{"a certificate minted as system:apiserver without system:masters still records its RBAC writes", res(who{"system:apiserver", []string{"system:authenticated"}}, "create", "rbac.authorization.k8s.io", "clusterrolebindings", ""), Metadata, "rbac-changes"},
	{"operator service account creating a role", res(sa("argocd", "argocd-application-controller"), "create", "rbac.authorization.k8s.io", "roles", "team-a"), RequestResponse, "rbac-changes"},
	{"kubelet creating a rolebinding (would be refused, still recorded)", res(kubelet, "create", "rbac.authorization.k8s.io", "rolebindings", "kube-system"), RequestResponse, "rbac-changes"},
	// RBAC reads are not changes: rbac-changes must not catch them.
	{"user reading a clusterrole is not an RBAC change", res(alice, "get", "rbac.authorization.k8s.io", "clusterroles", ""), Metadata, defaultSource},
	{"controller manager watching roles is not an RBAC change", res(kcm, "watch", "rbac.authorization.k8s.io", "roles", ""), None, "noise-kube-controller-manager"},
	{"apiserver listing clusterroles for its authorizer is not an RBAC change", res(apiserver, "list", "rbac.authorization.k8s.io", "clusterroles", ""), None, "noise-kube-apiserver"},

	// admission-changes: what decides admission and routing, by anyone, at RequestResponse.
	{"user creating a validating webhook", res(alice, "create", "admissionregistration.k8s.io", "validatingwebhookconfigurations", ""), RequestResponse, "admission-changes"},
	{"cainjector patching a mutating webhook's caBundle", res(sa("cert-manager", "cert-manager-cainjector"), "patch", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", ""), RequestResponse, "admission-changes"},
	{"user deleting a validating admission policy binding", res(alice, "delete", "admissionregistration.k8s.io", "validatingadmissionpolicybindings", ""), RequestResponse, "admission-changes"},
	{"user creating a mutating admission policy", res(alice, "create", "admissionregistration.k8s.io", "mutatingadmissionpolicies", ""), RequestResponse, "admission-changes"},
	{"operator updating a CRD", res(sa("monitoring", "prometheus-operator"), "update", "apiextensions.k8s.io", "customresourcedefinitions", ""), RequestResponse, "admission-changes"},
	{"user registering an aggregated APIService", res(alice, "create", "apiregistration.k8s.io", "apiservices", ""), RequestResponse, "admission-changes"},
	{"user relabelling a namespace's Pod Security level", res(alice, "patch", "", "namespaces", ""), RequestResponse, "admission-changes"},
	{"namespace controller deleting a namespace", res(ctrl("namespace-controller"), "delete", "", "namespaces", ""), RequestResponse, "admission-changes"},
	// Status bookkeeping and reads are not admission changes.
	{"apiserver setting a CRD's established condition is noise", res(apiserver, "update", "apiextensions.k8s.io", "customresourcedefinitions/status", ""), None, "noise-kube-apiserver"},
	{"VAP status controller reporting type checks is noise", res(ctrl("validatingadmissionpolicy-status-controller"), "update", "admissionregistration.k8s.io", "validatingadmissionpolicies/status", ""), None, "noise-kube-controller-manager"},
	{"user listing webhook configurations is not an admission change", res(alice, "list", "admissionregistration.k8s.io", "validatingwebhookconfigurations", ""), Metadata, defaultSource},

	// pod-interactive-access: before the noise modules, so a component credential is no blind spot.
	{"user exec into a pod", res(alice, "create", "", "pods/exec", "prod"), Metadata, "pod-interactive-access"},
	{"user exec into a pod over WebSocket (verb get)", res(alice, "get", "", "pods/exec", "prod"), Metadata, "pod-interactive-access"},
	{"user attaching to a pod", res(alice, "create", "", "pods/attach", "prod"), Metadata, "pod-interactive-access"},
	{"user port-forwarding to a pod", res(alice, "get", "", "pods/portforward", "prod"), Metadata, "pod-interactive-access"},
	{"user adding an ephemeral debug container", res(alice, "patch", "", "pods/ephemeralcontainers", "prod"), Metadata, "pod-interactive-access"},
	{"controller manager exec over WebSocket is kept, not dropped as a component read", res(ctrl("job-controller"), "get", "", "pods/exec", "prod"), Metadata, "pod-interactive-access"},
	{"kubelet credential port-forwarding is kept", res(kubelet, "get", "", "pods/portforward", "prod"), Metadata, "pod-interactive-access"},
	{"apiserver credential attaching is kept", res(apiserver, "get", "", "pods/attach", "prod"), Metadata, "pod-interactive-access"},

	// noise-kube-apiserver
	{"apiserver reading pods is dropped although it is in system:masters", res(apiserver, "get", "", "pods", "prod"), None, "noise-kube-apiserver"},
	{"apiserver discovery is dropped", url(apiserver, "get", "/apis"), None, "noise-kube-apiserver"},
	{"apiserver renewing its identity lease", res(apiserver, "update", "coordination.k8s.io", "leases", "kube-system"), None, "noise-kube-apiserver"},
	{"apiserver updating APIService availability", res(apiserver, "update", "apiregistration.k8s.io", "apiservices/status", ""), None, "noise-kube-apiserver"},
	{"apiserver updating flow-control status", res(apiserver, "patch", "flowcontrol.apiserver.k8s.io", "flowschemas/status", ""), None, "noise-kube-apiserver"},
	{"apiserver writing an unusual object is kept at Metadata, not system-masters' RequestResponse", res(apiserver, "create", "", "pods", "prod"), Metadata, "noise-kube-apiserver"},
	{"apiserver writing a lease outside kube-system is kept", res(apiserver, "update", "coordination.k8s.io", "leases", "prod"), Metadata, "noise-kube-apiserver"},
	{"apiserver ensuring a system namespace", res(apiserver, "create", "", "namespaces", ""), RequestResponse, "admission-changes"},
	{"someone else renewing a kube-system lease is not apiserver noise", res(alice, "update", "coordination.k8s.io", "leases", "kube-system"), Metadata, defaultSource},

	// noise-kube-controller-manager
	{"controller manager renewing its leader-election lease", res(kcm, "update", "coordination.k8s.io", "leases", "kube-system"), None, "noise-kube-controller-manager"},
	{"controller manager shared informers listing pods", res(kcm, "list", "", "pods", ""), None, "noise-kube-controller-manager"},
	{"garbage collector discovery", url(ctrl("generic-garbage-collector"), "get", "/apis/apps/v1"), None, "noise-kube-controller-manager"},
	{"endpointslice controller updating a slice", res(ctrl("endpointslice-controller"), "update", "discovery.k8s.io", "endpointslices", "prod"), None, "noise-kube-controller-manager"},
	{"deployment controller updating deployment status", res(ctrl("deployment-controller"), "update", "apps", "deployments/status", "prod"), None, "noise-kube-controller-manager"},
	{"resourcequota controller updating quota status", res(ctrl("resourcequota-controller"), "update", "", "resourcequotas/status", "prod"), None, "noise-kube-controller-manager"},
	{"node lifecycle controller marking a node unknown", res(ctrl("node-controller"), "patch", "", "nodes/status", ""), None, "noise-kube-controller-manager"},
	{"job controller emitting an event", res(ctrl("job-controller"), "create", "events.k8s.io", "events", "prod"), None, "noise-kube-controller-manager"},
	{"replicaset controller creating a pod is kept at Metadata, without the body", res(ctrl("replicaset-controller"), "create", "", "pods", "prod"), Metadata, "noise-kube-controller-manager"},
	{"deployment controller scaling a replicaset is kept at Metadata", res(ctrl("deployment-controller"), "patch", "apps", "replicasets", "prod"), Metadata, "noise-kube-controller-manager"},
	{"garbage collector deleting a pod is kept at Metadata", res(ctrl("generic-garbage-collector"), "delete", "", "pods", "prod"), Metadata, "noise-kube-controller-manager"},
	{"node controller tainting a node is kept at Metadata", res(ctrl("node-controller"), "patch", "", "nodes", ""), Metadata, "noise-kube-controller-manager"},
	{"namespace controller finalizing a namespace is kept at Metadata", res(ctrl("namespace-controller"), "update", "", "namespaces/finalize", ""), Metadata, "noise-kube-controller-manager"},
	{"a user-made service account in kube-system is not a controller", res(sa("kube-system", "my-tool"), "create", "", "pods", "kube-system"), Request, "workloads"},
	{"a same-named service account in another namespace is not a controller", res(sa("prod", "replicaset-controller"), "list", "", "pods", "prod"), Metadata, defaultSource},

	// noise-kube-scheduler
	{"scheduler renewing its leader-election lease", res(scheduler, "update", "coordination.k8s.io", "leases", "kube-system"), None, "noise-kube-scheduler"},
	{"scheduler watching pods", res(scheduler, "watch", "", "pods", ""), None, "noise-kube-scheduler"},
	{"scheduler marking a pod unschedulable", res(scheduler, "patch", "", "pods/status", "prod"), None, "noise-kube-scheduler"},
	{"scheduler binding a pod to a node is security-relevant and kept with its body", res(scheduler, "create", "", "pods/binding", "prod"), Request, "noise-kube-scheduler"},
	{"scheduler preempting a pod is kept at Metadata", res(scheduler, "delete", "", "pods", "prod"), Metadata, "noise-kube-scheduler"},
	{"a user binding a pod to a node outside the scheduler", res(alice, "create", "", "pods/binding", "prod"), Request, "workloads"},

	// noise-nodes
	{"kubelet renewing its node lease (heartbeat)", res(kubelet, "update", "coordination.k8s.io", "leases", "kube-node-lease"), None, "noise-nodes"},
	{"kubelet patching node status (heartbeat)", res(kubelet, "patch", "", "nodes/status", ""), None, "noise-nodes"},
	{"kubelet patching its pod's status", res(kubelet, "patch", "", "pods/status", "prod"), None, "noise-nodes"},
	{"kubelet watching its pods", res(kubelet, "watch", "", "pods", ""), None, "noise-nodes"},
	{"kubelet getting its node", res(kubelet, "get", "", "nodes", ""), None, "noise-nodes"},
	{"kubelet emitting an event", res(kubelet, "create", "", "events", "prod"), None, "noise-nodes"},
	{"kubelet registering its node is kept", res(kubelet, "create", "", "nodes", ""), Metadata, "noise-nodes"},
	{"kubelet creating a mirror pod is kept at Metadata, not workloads' Request", res(kubelet, "create", "", "pods", "kube-system"), Metadata, "noise-nodes"},
	{"kubelet deleting a pod is kept", res(kubelet, "delete", "", "pods", "prod"), Metadata, "noise-nodes"},
	{"kubelet reviewing a caller's access to its API is kept", res(kubelet, "create", "authorization.k8s.io", "subjectaccessreviews", ""), Metadata, "noise-nodes"},
	{"a user renewing a node lease is not a heartbeat", res(alice, "update", "coordination.k8s.io", "leases", "kube-node-lease"), Metadata, defaultSource},
	{"a user patching node status is not a heartbeat", res(alice, "patch", "", "nodes/status", ""), Metadata, defaultSource},

	// noise-kube-proxy
	{"kube-proxy watching endpointslices", res(kubeProxy, "watch", "discovery.k8s.io", "endpointslices", ""), None, "noise-kube-proxy"},
	{"legacy kube-proxy user watching services", res(who{"system:kube-proxy", []string{"system:authenticated"}}, "watch", "", "services", ""), None, "noise-kube-proxy"},
	{"kube-proxy emitting an event", res(kubeProxy, "create", "events.k8s.io", "events", "default"), None, "noise-kube-proxy"},
	{"kube-proxy writing a service is kept", res(kubeProxy, "update", "", "services", "prod"), Metadata, "noise-kube-proxy"},

	// system-masters: everything else a system:masters member does.
	{"admin listing pods: the collection without its body", res(admin, "list", "", "pods", "prod"), Metadata, "system-masters"},
	{"admin watching pods", res(admin, "watch", "", "pods", "prod"), Metadata, "system-masters"},
	{"admin reading one pod, with its body", res(admin, "get", "", "pods", "prod"), RequestResponse, "system-masters"},
	{"admin creating a deployment", res(admin, "create", "apps", "deployments", "prod"), RequestResponse, "system-masters"},
	{"admin exec into a pod is pod-interactive-access's (no body either way)", res(admin, "create", "", "pods/exec", "prod"), Metadata, "pod-interactive-access"},
	{"admin health check is kept, not dropped as noise", url(admin, "get", "/healthz"), RequestResponse, "system-masters"},
	{"admin reading events is kept, not dropped as noise", res(admin, "list", "", "events", "prod"), Metadata, "system-masters"},
	{"admin reading one event is kept with its body", res(admin, "get", "", "events", "prod"), RequestResponse, "system-masters"},
	{"kubeadm 1.29+ admin (kubeadm:cluster-admins) is not system:masters", res(kubeadmAdmin, "list", "", "pods", "prod"), Metadata, defaultSource},

	// noise-nonresource-reads
	{"anonymous load-balancer probe of /readyz", url(anonymous, "get", "/readyz"), None, "noise-nonresource-reads"},
	{"kubelet liveness probe of /livez (anonymous)", url(anonymous, "get", "/livez"), None, "noise-nonresource-reads"},
	{"health check of one component", url(alice, "get", "/healthz/etcd"), None, "noise-nonresource-reads"},
	{"prometheus scraping /metrics", url(sa("monitoring", "prometheus"), "get", "/metrics"), None, "noise-nonresource-reads"},
	{"HEAD /version", url(anonymous, "head", "/version"), None, "noise-nonresource-reads"},
	{"kubectl fetching OpenAPI v3", url(alice, "get", "/openapi/v3/apis/apps/v1"), None, "noise-nonresource-reads"},
	{"kubectl discovery", url(alice, "get", "/apis"), None, "noise-nonresource-reads"},
	{"core discovery", url(alice, "get", "/api/v1"), None, "noise-nonresource-reads"},
	{"reading pprof is not a health check", url(alice, "get", "/debug/pprof/profile"), Metadata, defaultSource},
	{"changing log verbosity is not a read", url(alice, "put", "/debug/flags/v"), Metadata, defaultSource},
	{"a POST to a health path is not a read", url(alice, "post", "/healthz"), Metadata, defaultSource},

	// noise-event-reads
	{"user listing events", res(alice, "list", "", "events", "prod"), None, "noise-event-reads"},
	{"event exporter watching events.k8s.io events", res(sa("monitoring", "event-exporter"), "watch", "events.k8s.io", "events", ""), None, "noise-event-reads"},
	{"an operator emitting an event is a write by a non-component and kept", res(sa("cert-manager", "cert-manager"), "create", "", "events", "prod"), Metadata, defaultSource},

	// workloads
	{"user creating a pod", res(alice, "create", "", "pods", "prod"), Request, "workloads"},
	{"user deleting all pods of a namespace", res(alice, "deletecollection", "", "pods", "prod"), Request, "workloads"},
	{"GitOps controller applying a deployment", res(sa("argocd", "argocd-application-controller"), "patch", "apps", "deployments", "prod"), Request, "workloads"},
	{"user scaling a deployment", res(alice, "patch", "apps", "deployments/scale", "prod"), Request, "workloads"},
	{"user creating a daemonset", res(alice, "create", "apps", "daemonsets", "kube-system"), Request, "workloads"},
	{"user updating a statefulset", res(alice, "update", "apps", "statefulsets", "prod"), Request, "workloads"},
	{"user creating a cronjob", res(alice, "create", "batch", "cronjobs", "prod"), Request, "workloads"},
	{"user creating a job", res(alice, "create", "batch", "jobs", "prod"), Request, "workloads"},
	{"user reading pods is not a workload write", res(alice, "get", "", "pods", "prod"), Metadata, defaultSource},
	{"user reading pod logs is not a workload write", res(alice, "get", "", "pods/log", "prod"), Metadata, defaultSource},
	{"operator updating deployment status is not a workload write", res(sa("argocd", "argocd-application-controller"), "update", "apps", "deployments/status", "prod"), Metadata, defaultSource},
	{"user evicting a pod (drain)", res(alice, "create", "", "pods/eviction", "prod"), Metadata, defaultSource},

	// Everything else: the singleton's defaultLevel.
	{"user creating a service", res(alice, "create", "", "services", "prod"), Metadata, defaultSource},
	{"operator writing a custom resource", res(sa("cert-manager", "cert-manager"), "update", "cert-manager.io", "certificates", "prod"), Metadata, defaultSource},
	{"user creating a service account", res(alice, "create", "", "serviceaccounts", "prod"), Metadata, defaultSource},
	{"user proxying to a node's kubelet", res(alice, "get", "", "nodes/proxy", ""), Metadata, defaultSource},
	{"user asking what it may do", res(alice, "create", "authorization.k8s.io", "selfsubjectrulesreviews", ""), Metadata, defaultSource},
	{"anonymous request for a resource", res(anonymous, "list", "", "pods", ""), Metadata, defaultSource},
	{"anonymous request for the OIDC discovery document", url(anonymous, "get", "/.well-known/openid-configuration"), Metadata, defaultSource},
}

func TestBaselineDecidesRepresentativeRequests(t *testing.T) {
	e := baseline(t)
	wantStages := []auditinternal.Stage{auditinternal.StageRequestReceived}
	for _, c := range baselineCases {
		t.Run(c.by+"/"+c.name, func(t *testing.T) {
			got := e.decide(c.req)
			if got.level != c.level || got.source != c.by {
				t.Errorf("%s: got %s by %s (rule %d), want %s by %s", c.req, got.level, got.source, got.rule, c.level, c.by)
			}
			if !slices.Equal(got.omitStages, wantStages) {
				t.Errorf("%s: omitStages %v, want %v", c.req, got.omitStages, wantStages)
			}
			if got.level.GreaterOrEqual(Request) && !got.omitManagedFields {
				t.Errorf("%s: %s logs a body with managedFields; every body-logging baseline module omits them", c.req, got.level)
			}
		})
	}
}

// Each module of the baseline has its own cases, and each of its rules decides at least one of
// them: a rule no case reaches is either shadowed or untested.
func TestEveryBaselineRuleIsExercised(t *testing.T) {
	e := baseline(t)
	decided := map[string]bool{}
	rules := map[policy.RuleSource]bool{}
	for _, c := range baselineCases {
		decided[c.by] = true
		d := e.decide(c.req)
		if d.source != defaultSource {
			rules[policy.RuleSource{Module: d.source, Rule: d.rule}] = true
		}
	}
	for _, src := range e.merged.Sources {
		if !src.IsDefault() && !rules[src] {
			t.Errorf("no case is decided by module %s rule %d", src.Module, src.Rule)
		}
	}
	for _, m := range append(slices.Clone(e.merged.Modules), defaultSource) {
		if !decided[m] {
			t.Errorf("no case is decided by %s", m)
		}
	}
	for m := range decided {
		if m != defaultSource && !slices.Contains(e.merged.Modules, m) {
			t.Errorf("cases name module %q, which the baseline does not have", m)
		}
	}
}
