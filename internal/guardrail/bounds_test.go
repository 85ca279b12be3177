package guardrail

import (
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/internal/policy"
)

func TestContainsAndAllows(t *testing.T) {
	masters := Builtins()[1]
	staged := Guardrail{Name: "staged", Scope: Scope{Verbs: []string{"delete"}}, RequiredStages: []auditv1.Stage{auditv1.StageResponseComplete}}
	admin := policy.Request{User: "admin", Groups: []string{"system:masters"}, Verb: "get", ResourceRequest: true, Resource: "pods", Namespace: "shop"}
	loopback := admin
	loopback.User = "system:apiserver"
	deletion := policy.Request{User: "alice", Verb: "delete", ResourceRequest: true, Resource: "pods", Namespace: "shop", Name: "web"}
	for _, tc := range []struct {
		name     string
		g        Guardrail
		req      policy.Request
		in       bool
		decision policy.Decision
		allows   bool
	}{
		{"in the scope, logged", masters, admin, true, policy.Decision{Level: auditv1.LevelMetadata}, true},
		{"in the scope, dropped", masters, admin, true, policy.Decision{Level: auditv1.LevelNone}, false},
		{"in an exception", masters, loopback, false, policy.Decision{Level: auditv1.LevelNone}, false},
		{"outside the scope", masters, deletion, false, policy.Decision{Level: auditv1.LevelNone}, false},
		{"a required stage written", staged, deletion, true, policy.Decision{Level: auditv1.LevelMetadata, OmitStages: []auditv1.Stage{auditv1.StageRequestReceived}}, true},
		{"a required stage omitted", staged, deletion, true, policy.Decision{Level: auditv1.LevelMetadata, OmitStages: []auditv1.Stage{auditv1.StageResponseComplete}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := tc.g.Contains(tc.req)
			if err != nil || in != tc.in {
				t.Errorf("Contains = %v, %v; want %v", in, err, tc.in)
			}
			if tc.in && tc.g.Allows(tc.decision) != tc.allows {
				t.Errorf("Allows(%+v) = %v, want %v", tc.decision, !tc.allows, tc.allows)
			}
		})
	}
	bad := Guardrail{Name: "typo", Scope: Scope{Resources: []auditv1.GroupResources{{Group: "Apps/v1"}}}, MinLevel: auditv1.LevelMetadata}
	if _, err := bad.Contains(admin); err == nil {
		t.Error("a scope the loader rejects is an error")
	}
}
