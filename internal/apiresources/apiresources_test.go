package apiresources

import (
	"slices"
	"testing"
)

func TestLookups(t *testing.T) {
	if got := GroupsServing("deployments"); !slices.Equal(got, []string{"apps"}) {
		t.Errorf("deployments are served by %v, want apps", got)
	}
	if got := GroupsServing("pods/exec"); !slices.Equal(got, []string{""}) {
		t.Errorf("pods/exec is served by %v, want the core group", got)
	}
	if groups := Groups(); groups[0] != "" || !slices.IsSorted(groups) || !slices.Contains(groups, "rbac.authorization.k8s.io") {
		t.Errorf("groups %v: want the core group first, sorted", groups)
	}
	r := Resources("apps")
	r[0] = "changed"
	if Resources("apps")[0] == "changed" {
		t.Error("Resources returns the table itself")
	}
	if v := Verbs(); v[0] != "get" || !slices.Contains(v, "deletecollection") {
		t.Errorf("verbs %v", v)
	}
}
