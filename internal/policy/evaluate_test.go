package policy

import (
	"slices"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

func evalPolicy(t *testing.T, rules ...auditv1.PolicyRule) *Evaluator {
	t.Helper()
	p := auditv1.Policy{OmitStages: []auditv1.Stage{auditv1.StageRequestReceived}, Rules: rules}
	e, err := NewEvaluator(p)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestDecideNamesTheFirstMatchingRule(t *testing.T) {
	e := evalPolicy(t,
		auditv1.PolicyRule{Level: auditv1.LevelNone, Users: []string{"system:kube-proxy"}, Verbs: []string{"watch"}},
		auditv1.PolicyRule{Level: auditv1.LevelMetadata, Resources: []auditv1.GroupResources{{Resources: []string{"secrets"}}}},
		auditv1.PolicyRule{Level: auditv1.LevelRequestResponse, Resources: []auditv1.GroupResources{{Group: "apps", Resources: []string{"deployments/*"}}}, OmitStages: []auditv1.Stage{auditv1.StagePanic}},
		auditv1.PolicyRule{Level: auditv1.LevelNone, NonResourceURLs: []string{"/healthz*"}},
		auditv1.PolicyRule{Level: auditv1.LevelRequest, Namespaces: []string{"team-a"}},
	)
	for _, tc := range []struct {
		name   string
		req    Request
		rule   int
		level  auditv1.Level
		stages []auditv1.Stage
	}{
		{"a None rule decides (and is told apart from no match)", Request{User: "system:kube-proxy", Verb: "watch", ResourceRequest: true, Resource: "endpoints"}, 0, auditv1.LevelNone, []auditv1.Stage{auditv1.StageRequestReceived}},
		{"secrets", Request{User: "alice", Verb: "get", ResourceRequest: true, Resource: "secrets", Namespace: "team-a"}, 1, auditv1.LevelMetadata, []auditv1.Stage{auditv1.StageRequestReceived}},
		{"subresource pattern, stages in stage order", Request{User: "alice", Verb: "update", ResourceRequest: true, APIGroup: "apps", Resource: "deployments", Subresource: "scale"}, 2, auditv1.LevelRequestResponse, []auditv1.Stage{auditv1.StageRequestReceived, auditv1.StagePanic}},
		{"resource/* also matches the resource itself, as upstream does", Request{User: "alice", Verb: "update", ResourceRequest: true, APIGroup: "apps", Resource: "deployments", Namespace: "x"}, 2, auditv1.LevelRequestResponse, []auditv1.Stage{auditv1.StageRequestReceived, auditv1.StagePanic}},
		{"no rule matches", Request{User: "alice", Verb: "update", ResourceRequest: true, APIGroup: "apps", Resource: "statefulsets", Namespace: "x"}, -1, auditv1.LevelNone, []auditv1.Stage{auditv1.StageRequestReceived}},
		{"non-resource prefix", Request{User: "alice", Verb: "get", Path: "/healthz/etcd"}, 3, auditv1.LevelNone, []auditv1.Stage{auditv1.StageRequestReceived}},
		{"namespaces never match non-resource requests", Request{User: "alice", Verb: "get", Path: "/metrics"}, -1, auditv1.LevelNone, []auditv1.Stage{auditv1.StageRequestReceived}},
		{"namespace", Request{User: "alice", Verb: "get", ResourceRequest: true, Resource: "pods", Namespace: "team-a"}, 4, auditv1.LevelRequest, []auditv1.Stage{auditv1.StageRequestReceived}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := e.Decide(tc.req)
			if d.Rule != tc.rule || d.Level != tc.level || !slices.Equal(d.OmitStages, tc.stages) {
				t.Errorf("got rule %d level %s stages %v; want rule %d level %s stages %v", d.Rule, d.Level, d.OmitStages, tc.rule, tc.level, tc.stages)
			}
		})
	}
}

func TestMatchingListsShadowedRules(t *testing.T) {
	e := evalPolicy(t,
		auditv1.PolicyRule{Level: auditv1.LevelMetadata, Resources: []auditv1.GroupResources{{Resources: []string{"secrets"}}}},
		auditv1.PolicyRule{Level: auditv1.LevelRequest, Verbs: []string{"get"}},
		auditv1.PolicyRule{Level: auditv1.LevelNone, Verbs: []string{"list"}},
		auditv1.PolicyRule{Level: auditv1.LevelMetadata},
	)
	got := e.Matching(Request{Verb: "get", ResourceRequest: true, Resource: "secrets"})
	if !slices.Equal(got, []int{0, 1, 3}) {
		t.Errorf("matching %v, want [0 1 3]", got)
	}
}

func TestRequestFromFieldsUndoesWhatTheAuditLogAdds(t *testing.T) {
	ref := &ObjectRef{Resource: "configmaps", Namespace: "kube-system", Name: "coredns", APIVersion: "v1"}
	if r := RequestFromFields("u", nil, "create", "/api/v1/namespaces/kube-system/configmaps", ref); r.Name != "" {
		t.Errorf("create: name %q, want empty (the name is filled in after the policy ran)", r.Name)
	}
	if r := RequestFromFields("u", nil, "update", "/api/v1/namespaces/kube-system/configmaps/coredns", ref); r.Name != "coredns" {
		t.Errorf("update: name %q, want coredns", r.Name)
	}
	sub := &ObjectRef{Resource: "pods", Subresource: "eviction", Namespace: "a", Name: "web"}
	if r := RequestFromFields("u", nil, "create", "/api/v1/namespaces/a/pods/web/eviction", sub); r.Name != "web" {
		t.Errorf("create of a subresource: name %q, want web (it is in the path)", r.Name)
	}
	r := RequestFromFields("u", nil, "get", "/healthz%2Fetcd?verbose=1&x=y", nil)
	if r.ResourceRequest || r.Path != "/healthz/etcd" {
		t.Errorf("non-resource: %+v, want path /healthz/etcd", r)
	}
}
