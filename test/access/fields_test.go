package access

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

// The agent status policy lists the manager-owned status fields one by one (CEL cannot iterate
// over an object's fields). A status field added to the API must be added there too, or an
// agent's token could write it.
func TestAgentStatusPolicyCoversEveryManagerOwnedField(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(configDir, "admission", "agent_status.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var validations strings.Builder
	for _, doc := range strings.Split(string(data), "\n---\n") {
		var policy struct {
			Kind string
			Spec struct {
				Validations []struct{ Expression string }
			}
		}
		if err := yaml.Unmarshal([]byte(doc), &policy); err != nil {
			t.Fatal(err)
		}
		if policy.Kind == "ValidatingAdmissionPolicy" {
			for _, v := range policy.Spec.Validations {
				validations.WriteString(v.Expression + "\n")
			}
		}
	}
	if validations.Len() == 0 {
		t.Fatal("no ValidatingAdmissionPolicy validations in agent_status.yaml")
	}
	status := reflect.TypeFor[v1alpha1.AuditPolicyStatus]()
	for i := range status.NumField() {
		field, _, _ := strings.Cut(status.Field(i).Tag.Get("json"), ",")
		if field == "nodes" {
			continue // the agents' own: checked entry by entry
		}
		want := "object.?status.?" + field + " == oldObject.?status.?" + field
		if !strings.Contains(validations.String(), want) {
			t.Errorf("status.%s is manager-owned, but no validation of agent_status.yaml holds %q", field, want)
		}
	}
}
