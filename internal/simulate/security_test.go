package simulate

import (
	"fmt"
	"strings"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/internal/policy"
)

// event writes one audit event line about validatingadmissionpolicies (sub: a subresource).
func event(id, stage, received, user, groups, verb, sub string) string {
	return fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":%q,"stage":%q,"requestURI":"/x","verb":%q,"user":{"username":%q,"groups":[%s]},"objectRef":{"resource":"validatingadmissionpolicies","subresource":%q,"namespace":"shop","apiGroup":"admissionregistration.k8s.io"},"requestReceivedTimestamp":%q,"stageTimestamp":%q}`,
		id, stage, verb, user, groups, sub, received, received)
}

// The security section applies docs/modules.md's definition: kube-apiserver's loopback client
// is no system:masters requester (R4 excludes it), a component's status write of an admission
// policy is no admission change, and each request counts once: a long-running one still open
// when the log ends, or begun before it, counts too.
func TestSecuritySectionCountsEachRelevantRequestOnce(t *testing.T) {
	masters := `"system:masters","system:authenticated"`
	lines := []string{
		event("a1", "RequestReceived", "2026-11-25T10:00:01.000000Z", "system:apiserver", masters, "get", ""),
		event("a1", "ResponseComplete", "2026-11-25T10:00:01.000000Z", "system:apiserver", masters, "get", ""),
		event("s1", "ResponseComplete", "2026-11-25T10:00:02.000000Z", "system:serviceaccount:kube-system:validatingadmissionpolicy-status-controller", `"system:authenticated"`, "update", "status"),
		// An admin's policy change, at both stages: one R1 request (and R4 first: system:masters).
		event("p1", "RequestReceived", "2026-11-25T10:00:03.000000Z", "alice", `"system:authenticated"`, "create", ""),
		event("p1", "ResponseComplete", "2026-11-25T10:00:03.000000Z", "alice", `"system:authenticated"`, "create", ""),
		// A watch of system:masters that began before the log: only its end is here.
		event("w0", "ResponseComplete", "2026-11-25T09:00:00.000000Z", "admin", masters, "watch", ""),
		// A watch of system:masters still open when the log ends.
		event("w1", "RequestReceived", "2026-11-25T10:00:04.000000Z", "admin", masters, "watch", ""),
		event("w1", "ResponseStarted", "2026-11-25T10:00:04.000000Z", "admin", masters, "watch", ""),
		// A watch of system:masters that began and ended in the log.
		event("w2", "RequestReceived", "2026-11-25T10:00:05.000000Z", "admin", masters, "watch", ""),
		event("w2", "ResponseStarted", "2026-11-25T10:00:05.000000Z", "admin", masters, "watch", ""),
		event("w2", "ResponseComplete", "2026-11-25T10:00:05.000000Z", "admin", masters, "watch", ""),
	}
	log := []byte(strings.Join(lines, "\n") + "\n")
	for _, engine := range []Engine{EngineFast, EngineNaive} {
		r := run(t, []Input{bytesInput("log", log)}, Options{Policy: target(t, "policy.yaml"), Engine: engine, Workers: 1})
		got := map[string]int64{}
		for _, s := range r.Security {
			got[s.Rule] = s.Requests
		}
		if want := map[string]int64{"R1": 1, "R2": 0, "R3": 0, "R4": 3, "R5": 0, "R6": 0}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: security-relevant requests per rule %v, want %v", engine, got, want)
		}
	}
}

func TestASecurityRelevantRequestIsKeptOnlyAtTheRequiredLevel(t *testing.T) {
	for _, tc := range []struct {
		level  auditv1.Level
		omit   uint8
		stages uint8
		want   bool
	}{
		{auditv1.LevelRequestResponse, 0, stageRequestReceived | stageResponseComplete, true},
		{auditv1.LevelRequestResponse, stageRequestReceived, stageRequestReceived | stageResponseComplete, true},
		{auditv1.LevelRequestResponse, stageRequestReceived | stageResponseComplete, stageRequestReceived | stageResponseComplete, false},
		{auditv1.LevelRequest, 0, stageRequestReceived | stageResponseComplete, false},
		{auditv1.LevelNone, 0, stageRequestReceived | stageResponseComplete, false},
	} {
		r4 := describe(requestOfUser("admin", "system:masters")).need
		if got := recordsRequest(r4, tc.level, tc.omit, tc.stages); got != tc.want {
			t.Errorf("%s omitting %b of %b: %v", tc.level, tc.omit, tc.stages, got)
		}
	}
}

func requestOfUser(user string, groups ...string) policy.Request {
	return policy.Request{User: user, Groups: groups, Verb: "get", ResourceRequest: true, Resource: "pods"}
}
