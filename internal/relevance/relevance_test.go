package relevance

import (
	"slices"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/internal/policy"
)

func TestClassifyAppliesR1ToR6(t *testing.T) {
	admin := []string{"system:masters", "system:authenticated"}
	people := []string{"system:authenticated"}
	res := func(user string, groups []string, verb, group, resource, sub string) policy.Request {
		return policy.Request{User: user, Groups: groups, Verb: verb, ResourceRequest: true, APIGroup: group, Resource: resource, Subresource: sub, Namespace: "shop"}
	}
	kcmAccount := "system:serviceaccount:kube-system:validatingadmissionpolicy-status-controller"
	for _, tc := range []struct {
		name string
		req  policy.Request
		want Requirement
	}{
		{"an RBAC write by a component", res("system:kube-controller-manager", people, "update", "rbac.authorization.k8s.io", "clusterroles", ""), Requirement{R1, auditv1.LevelRequestResponse, false}},
		{"kube-apiserver's bootstrap RBAC reconciliation", res("system:apiserver", admin, "create", "rbac.authorization.k8s.io", "clusterrolebindings", ""), Requirement{R1, auditv1.LevelMetadata, false}},
		{"an admission change by kube-apiserver", res("system:apiserver", admin, "create", "", "namespaces", ""), Requirement{R1, auditv1.LevelRequestResponse, false}},
		{"a Secret read by a kubelet", res("system:node:n1", []string{"system:nodes", "system:authenticated"}, "get", "", "secrets", ""), Requirement{R2, auditv1.LevelMetadata, true}},
		{"an exec over WebSocket", res("alice", people, "get", "", "pods", "exec"), Requirement{R3, auditv1.LevelMetadata, false}},
		{"a read by system:masters", res("admin", admin, "get", "", "pods", ""), Requirement{R4, auditv1.LevelRequestResponse, false}},
		{"a list by system:masters", res("admin", admin, "list", "", "pods", ""), Requirement{R4, auditv1.LevelMetadata, false}},
		{"a watch by system:masters", res("admin", admin, "watch", "apps", "deployments", ""), Requirement{R4, auditv1.LevelMetadata, false}},
		{"an RBAC write by system:masters", res("admin", admin, "create", "rbac.authorization.k8s.io", "rolebindings", ""), Requirement{R4, auditv1.LevelRequestResponse, false}},
		{"a health check by system:masters", policy.Request{User: "admin", Groups: admin, Verb: "get", Path: "/healthz"}, Requirement{R4, auditv1.LevelRequestResponse, false}},
		{"a workload write by a person", res("alice", people, "patch", "apps", "deployments", ""), Requirement{R5, auditv1.LevelRequest, false}},
		{"another write by a person", res("alice", people, "create", "", "services", ""), Requirement{R5, auditv1.LevelMetadata, false}},
		{"a write by an account that only looks like a controller", res("system:serviceaccount:prod:replicaset-controller", people, "create", "", "pods", ""), Requirement{R5, auditv1.LevelRequest, false}},
		{"the scheduler's binding", res("system:kube-scheduler", people, "create", "", "pods", "binding"), Requirement{R6, auditv1.LevelRequest, false}},
		// Not security-relevant.
		{"the apiserver's loopback client, although in system:masters", res("system:apiserver", admin, "get", "", "endpoints", ""), Requirement{}},
		{"the apiserver's loopback client reading discovery", policy.Request{User: "system:apiserver", Groups: admin, Verb: "get", Path: "/openapi/v3"}, Requirement{}},
		{"a component's status write of an admission policy", res(kcmAccount, people, "update", "admissionregistration.k8s.io", "validatingadmissionpolicies", "status"), Requirement{}},
		{"a component's pod create", res("system:serviceaccount:kube-system:replicaset-controller", people, "create", "", "pods", ""), Requirement{}},
		{"a read by a person", res("alice", people, "get", "", "pods", ""), Requirement{}},
	} {
		if got := Classify(tc.req); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
		// The metrics' category is the rule, and none for a request that is not relevant.
		var category []string
		if tc.want.Rule != "" {
			category = []string{string(tc.want.Rule)}
		}
		if got := Categories(tc.req); !slices.Equal(got, category) {
			t.Errorf("%s: categories %q, want %q", tc.name, got, category)
		}
	}
}

func TestMetBy(t *testing.T) {
	r2 := Requirement{R2, auditv1.LevelMetadata, true}
	r5 := Requirement{R5, auditv1.LevelRequest, false}
	for _, tc := range []struct {
		req   Requirement
		level auditv1.Level
		want  bool
	}{
		{r2, auditv1.LevelMetadata, true}, {r2, auditv1.LevelRequest, false}, {r2, auditv1.LevelNone, false},
		{r5, auditv1.LevelRequestResponse, true}, {r5, auditv1.LevelMetadata, false},
		{Requirement{}, auditv1.LevelNone, true},
	} {
		if got := tc.req.MetBy(tc.level); got != tc.want {
			t.Errorf("%+v at %s: %v", tc.req, tc.level, got)
		}
	}
}
