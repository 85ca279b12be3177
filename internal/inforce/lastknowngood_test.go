package inforce

import (
	"errors"
	"testing"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/revision"
)

func specWith(level v1alpha1.Level, disabled bool) v1alpha1.AuditPolicyModuleSpec {
	return v1alpha1.AuditPolicyModuleSpec{Order: 1, Disabled: disabled, Rules: []v1alpha1.PolicyRule{{Level: level}}}
}

func moduleAt(name string, generation int64, spec v1alpha1.AuditPolicyModuleSpec) Module {
	return Module{Module: policy.Module{Name: name, Spec: spec}, Generation: generation}
}

// moduleVerdict is a module and the loader's verdict on it.
type moduleVerdict struct {
	Module Module
	Err    error
}

// TestModulesInForce is last known good without guardrails (see docs/design.md, "Last known
// good"): which spec of each module the next revision holds, and its record.
func TestModulesInForce(t *testing.T) {
	invalid := errors.New("rejected by the loader")
	previous := &revision.Revision{Number: 4, Modules: []revision.ModuleRecord{
		{Name: "secrets", Generation: 3, FirstRevision: 2, Spec: specWith(v1alpha1.LevelMetadata, false)},
		{Name: "kept", Generation: 1, FirstRevision: 1, Spec: specWith(v1alpha1.LevelRequest, false)},
		{Name: "changed", Generation: 1, FirstRevision: 1, Spec: specWith(v1alpha1.LevelRequest, false)},
		{Name: "turned-off", Generation: 1, FirstRevision: 1, Spec: specWith(v1alpha1.LevelRequest, false)},
	}}
	tests := []struct {
		name      string
		verdict   moduleVerdict
		wantIn    bool
		wantGen   int64
		wantFirst int64
	}{
		{"an invalid edit keeps the last accepted spec", moduleVerdict{moduleAt("secrets", 4, specWith("Bogus", false)), invalid}, true, 3, 2},
		{"an invalid edit that also disables keeps the last accepted spec", moduleVerdict{moduleAt("secrets", 5, specWith("Bogus", true)), invalid}, true, 3, 2},
		{"a valid disable drops the module", moduleVerdict{moduleAt("turned-off", 2, specWith(v1alpha1.LevelRequest, true)), nil}, false, 0, 0},
		{"a never accepted module contributes nothing", moduleVerdict{moduleAt("new-bad", 1, specWith("Bogus", false)), invalid}, false, 0, 0},
		{"a description edit keeps the first revision", moduleVerdict{moduleAt("kept", 2, specWith(v1alpha1.LevelRequest, false)), nil}, true, 2, 1},
		{"a rule change starts at the next revision", moduleVerdict{moduleAt("changed", 2, specWith(v1alpha1.LevelNone, false)), nil}, true, 2, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Only the module under test exists: the other records are of deleted modules,
			// which drop out, since no guardrail holds them.
			m := tt.verdict.Module
			m.Invalid = tt.verdict.Err
			r, err := Decide(Input{Modules: []Module{m}, InForce: previous.Modules}, nil)
			if err != nil {
				t.Fatal(err)
			}
			mods, recs := r.Modules(), r.Records(5)
			if len(mods) != len(recs) || (len(mods) == 1) != tt.wantIn {
				t.Fatalf("in force: %v, want %v", recs, tt.wantIn)
			}
			if tt.wantIn && (recs[0].Generation != tt.wantGen || recs[0].FirstRevision != tt.wantFirst) {
				t.Errorf("record = generation %d, first revision %d; want %d, %d", recs[0].Generation, recs[0].FirstRevision, tt.wantGen, tt.wantFirst)
			}
		})
	}
}
