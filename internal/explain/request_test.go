package explain

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kaudit/kaudit/internal/policy"
)

// The request explained is the one kube-apiserver's evaluator would see, and likely mistakes in
// the flags are corrected (as kubectl would read them) or named. The groups the apiserver adds
// need no note: the explanation shows them.
func TestRequestIsWhatTheAPIServerEvaluates(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    Input
		want  policy.Request
		notes []string // a word of each note, in order
	}{
		{"an authenticated user is in system:authenticated",
			Input{User: "alice", Groups: []string{"dev"}, Verb: "get", Resource: "pods", Namespace: "shop"},
			policy.Request{User: "alice", Groups: []string{"dev", "system:authenticated"}, Verb: "get", ResourceRequest: true, Resource: "pods", Namespace: "shop"},
			nil},
		{"system:anonymous is in system:unauthenticated",
			Input{User: "system:anonymous", Verb: "get", URL: "/healthz"},
			policy.Request{User: "system:anonymous", Groups: []string{"system:unauthenticated"}, Verb: "get", Path: "/healthz"},
			nil},
		{"groups already given are kept",
			Input{User: "admin", Groups: []string{"system:masters", "system:authenticated"}, Verb: "get", Resource: "secrets"},
			policy.Request{User: "admin", Groups: []string{"system:masters", "system:authenticated"}, Verb: "get", ResourceRequest: true, Resource: "secrets"},
			nil},
		{"a create has no name yet",
			Input{User: "alice", Groups: []string{"system:authenticated"}, Verb: "create", Resource: "configmaps", Namespace: "shop", Name: "cfg"},
			policy.Request{User: "alice", Groups: []string{"system:authenticated"}, Verb: "create", ResourceRequest: true, Resource: "configmaps", Namespace: "shop"},
			[]string{"empty name"}},
		{"a create of a subresource keeps the object's name",
			Input{User: "system:kube-scheduler", Groups: []string{"system:authenticated"}, Verb: "create", Resource: "pods/binding", Namespace: "shop", Name: "web-0"},
			policy.Request{User: "system:kube-scheduler", Groups: []string{"system:authenticated"}, Verb: "create", ResourceRequest: true, Resource: "pods", Subresource: "binding", Namespace: "shop", Name: "web-0"},
			nil},
		{"resource.group as kubectl writes it",
			Input{User: "alice", Groups: []string{"system:authenticated"}, Verb: "get", Resource: "deployments.apps/scale"},
			policy.Request{User: "alice", Groups: []string{"system:authenticated"}, Verb: "get", ResourceRequest: true, APIGroup: "apps", Resource: "deployments", Subresource: "scale"},
			nil},
		{"resource.version.group",
			Input{User: "alice", Groups: []string{"system:authenticated"}, Verb: "get", Resource: "cronjobs.v1.batch"},
			policy.Request{User: "alice", Groups: []string{"system:authenticated"}, Verb: "get", ResourceRequest: true, APIGroup: "batch", APIVersion: "v1", Resource: "cronjobs"},
			nil},
		{"a resource of another group, without --api-group",
			Input{User: "alice", Groups: []string{"system:authenticated"}, Verb: "get", Resource: "deployments"},
			policy.Request{User: "alice", Groups: []string{"system:authenticated"}, Verb: "get", ResourceRequest: true, Resource: "deployments"},
			[]string{"--api-group apps"}},
		{"an upper-case verb",
			Input{User: "alice", Groups: []string{"system:authenticated"}, Verb: "GET", Resource: "pods"},
			policy.Request{User: "alice", Groups: []string{"system:authenticated"}, Verb: "get", ResourceRequest: true, Resource: "pods"},
			[]string{`"get"`}},
		{"an HTTP method for a resource request",
			Input{User: "alice", Groups: []string{"system:authenticated"}, Verb: "POST", Resource: "pods"},
			policy.Request{User: "alice", Groups: []string{"system:authenticated"}, Verb: "create", ResourceRequest: true, Resource: "pods"},
			[]string{`"create"`}},
		{"a URL without its leading slash",
			Input{User: "alice", Groups: []string{"system:authenticated"}, Verb: "get", URL: "healthz"},
			policy.Request{User: "alice", Groups: []string{"system:authenticated"}, Verb: "get", Path: "/healthz"},
			[]string{"/healthz"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, notes, err := Request(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got.Groups, tc.want.Groups) {
				t.Errorf("groups %q, want %q", got.Groups, tc.want.Groups)
			}
			got.Groups, tc.want.Groups = nil, nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("request %+v\nwant %+v", got, tc.want)
			}
			if len(notes) != len(tc.notes) {
				t.Fatalf("notes %q, want one saying each of %q", notes, tc.notes)
			}
			for i, n := range notes {
				if !strings.Contains(n, tc.notes[i]) {
					t.Errorf("note %q does not say %q", n, tc.notes[i])
				}
			}
		})
	}
}

func TestRequestRefusesWhatCannotBeARequest(t *testing.T) {
	for _, in := range []Input{
		{Verb: "get"}, // neither --resource nor --url
		{Verb: "get", Resource: "pods", URL: "/healthz"},
		{Verb: "get", URL: "/healthz", Namespace: "shop"},
		{Verb: "get", Resource: "pods/exec/x"},
		{Verb: "get", Resource: "deployments.apps", APIGroup: "extensions"},
	} {
		if _, _, err := Request(in); err == nil {
			t.Errorf("%+v: no error", in)
		}
	}
}
