package controllers

import (
	"bytes"
	"encoding/json"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/revision"
)

// moduleVerdict is what validation says about one module's current generation.
type moduleVerdict struct {
	Module v1alpha1.AuditPolicyModule
	// Err is nil when the current generation is valid.
	Err error
}

// modulesInForce decides which spec of each module the next revision holds (see
// docs/design.md, "Last known good"): an enabled module's current spec when it is valid; for a
// module whose current spec is invalid (even if it also disables the module), the spec the
// previous revision held for it (last known good, so a typo never lets bodies through); nothing
// for a module never accepted. Validly disabled and deleted modules drop out.
// next is the number the revision will get; it becomes FirstRevision of changed modules.
func modulesInForce(verdicts []moduleVerdict, previous *revision.Revision, next int64) ([]policy.Module, []revision.ModuleRecord) {
	prev := map[string]revision.ModuleRecord{}
	if previous != nil {
		for _, rec := range previous.Modules {
			prev[rec.Name] = rec
		}
	}
	var mods []policy.Module
	var recs []revision.ModuleRecord
	for _, v := range verdicts {
		m := v.Module
		old, hadOld := prev[m.Name]
		var rec revision.ModuleRecord
		switch {
		case v.Err != nil && hadOld:
			// Checked before disabled: an invalid edit that also disables the module must not
			// drop its last accepted rules.
			rec = old
		case v.Err != nil, m.Spec.Disabled:
			continue
		default:
			rec = revision.ModuleRecord{Name: m.Name, Generation: m.Generation, FirstRevision: next, Spec: m.Spec}
			if hadOld && sameContent(old.Spec, m.Spec) {
				rec.FirstRevision = old.FirstRevision
			}
		}
		mods = append(mods, policy.Module{Name: rec.Name, Spec: rec.Spec})
		recs = append(recs, rec)
	}
	return mods, recs
}

// includedIn is the revision that first held the module's current content, or nil when latest
// does not hold it (pending, invalid, disabled).
func includedIn(m v1alpha1.AuditPolicyModule, valid bool, latest *revision.Revision) *int64 {
	if latest == nil || !valid || m.Spec.Disabled {
		return nil
	}
	for _, rec := range latest.Modules {
		if rec.Name == m.Name && sameContent(rec.Spec, m.Spec) {
			n := rec.FirstRevision
			return &n
		}
	}
	return nil
}

// sameContent tells whether two specs put the same rules at the same place in the policy;
// descriptions do not count.
func sameContent(a, b v1alpha1.AuditPolicyModuleSpec) bool {
	return a.Order == b.Order && a.Disabled == b.Disabled &&
		bytes.Equal(mustJSON(policy.ModuleRules(a)), mustJSON(policy.ModuleRules(b)))
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
