package presets

import (
	"slices"
	"testing"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"
)

// The managed-cloud-like example is not part of the baseline; these cases pin down the intent it
// was written from, and show where it differs from the baseline.
func TestManagedCloudExampleDecidesRepresentativeRequests(t *testing.T) {
	merged, _, err := loadSet(managedCloudDir)
	if err != nil {
		t.Fatal(err)
	}
	e, err := evaluate(merged)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []baselineCase{
		{"kube-proxy watching endpointslices", res(kubeProxy, "watch", "discovery.k8s.io", "endpointslices", ""), None, "managed-component-noise"},
		{"kube-proxy listing services is not in the list", res(kubeProxy, "list", "", "services", ""), Request, "managed-known-groups"},
		{"controller manager renewing its lease", res(kcm, "update", "coordination.k8s.io", "leases", "kube-system"), None, "managed-component-noise"},
		{"kubelet reading its node", res(kubelet, "get", "", "nodes", ""), None, "managed-component-noise"},
		{"events are dropped, written or read", res(alice, "create", "", "events", "prod"), None, "managed-component-noise"},
		{"anonymous readiness probe", url(anonymous, "get", "/readyz"), None, "managed-component-noise"},
		{"kubelet heartbeat kept with its body", res(kubelet, "patch", "", "nodes/status", ""), Request, "managed-status-updates"},
		{"kubelet lease renewal is a write to a built-in group", res(kubelet, "update", "coordination.k8s.io", "leases", "kube-node-lease"), RequestResponse, "managed-known-groups"},
		{"namespace controller bulk deletion", res(ctrl("namespace-controller"), "deletecollection", "", "pods", "old"), Request, "managed-status-updates"},
		{"admin reading a secret", res(admin, "get", "", "secrets", "prod"), Metadata, "managed-sensitive-metadata"},
		{"kubelet requesting a token", res(kubelet, "create", "", "serviceaccounts/token", "prod"), Metadata, "managed-sensitive-metadata"},
		{"user reading pods", res(alice, "list", "", "pods", "prod"), Request, "managed-known-groups"},
		{"user creating a deployment", res(alice, "create", "apps", "deployments", "prod"), RequestResponse, "managed-known-groups"},
		{"user creating a rolebinding", res(alice, "create", "rbac.authorization.k8s.io", "rolebindings", "prod"), RequestResponse, "managed-known-groups"},
		{"replicaset controller creating a pod (bodies for components too)", res(ctrl("replicaset-controller"), "create", "", "pods", "prod"), RequestResponse, "managed-known-groups"},
		{"custom resource write", res(alice, "update", "cert-manager.io", "certificates", "prod"), Metadata, defaultSource},
		{"pprof", url(alice, "get", "/debug/pprof/"), Metadata, defaultSource},
	} {
		t.Run(c.by+"/"+c.name, func(t *testing.T) {
			got := e.decide(c.req)
			if got.level != c.level || got.source != c.by {
				t.Errorf("%s: got %s by %s (rule %d), want %s by %s", c.req, got.level, got.source, got.rule, c.level, c.by)
			}
			if !slices.Equal(got.omitStages, []auditinternal.Stage{auditinternal.StageRequestReceived}) {
				t.Errorf("%s: omitStages %v, want [RequestReceived]", c.req, got.omitStages)
			}
		})
	}
	// Same guarantee as the baseline: no secret body, whoever asks.
	each(everyone, allVerbs, []groupResource{{"", "secrets"}, {"", "serviceaccounts/token"}, {"authentication.k8s.io", "tokenreviews"}}, func(r request) {
		if got := e.decide(r); Metadata.Less(got.level) {
			t.Errorf("%s: %s by %s logs a secret body", r, got.level, got.source)
		}
	})
}
