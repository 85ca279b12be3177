package inforce

import (
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/guardrail"
)

// Breaches gives, as data, what the GuardrailViolation outcomes say; accepted modules have none.
func TestBreachesAreThoseOfTheModulesTakenBack(t *testing.T) {
	r, err := Decide(Input{
		Modules:  []Module{live("", "leak", spec(10, secretsBodies)), live("", "secrets", spec(20, secretsMetadata))},
		Settings: builtins(),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	breaches := r.Breaches()
	b, ok := breaches["leak"]
	if len(breaches) != 1 || !ok {
		t.Fatalf("breaches %+v, want one, of leak", breaches)
	}
	if o := r.Outcomes["leak"]; o.Reason != v1alpha1.ReasonGuardrailViolation {
		t.Errorf("leak's outcome %+v", o)
	}
	if b.Guardrail.Name != guardrail.NoCredentialBodies || !b.Decides || b.After.Level != auditv1.LevelRequestResponse || b.Request.Resource != "secrets" {
		t.Errorf("breach %+v", b)
	}
}
