package spelling

import "testing"

func TestClosest(t *testing.T) {
	for _, tc := range []struct {
		s, want string
		ok      bool
	}{
		{"verb", "verbs", true},
		{"Verbs", "verbs", true},
		{"usergroups", "userGroups", true},
		{"deploymnets", "deployments", true},
		{"level", "level", true},
		{"colour", "", false},
	} {
		got, ok := Closest(tc.s, []string{"verbs", "userGroups", "deployments", "level", "users"})
		if got != tc.want || ok != tc.ok {
			t.Errorf("Closest(%q) = %q, %v; want %q, %v", tc.s, got, ok, tc.want, tc.ok)
		}
	}
}
