package controllers

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/inforce"
)

// validateSettings checks the singleton's settings that the schema cannot: the policy-level
// ones with kube-apiserver's loader, the custom guardrails' scopes likewise.
func validateSettings(s inforce.Settings) error { return s.Validate() }

// decide runs inforce.Decide on the modules, the latest trusted revision and the settings, or
// returns the last decision when none of them changed since: a module's spec is known by its
// UID and generation, the policy in force by its revision's digest. A steady state then
// searches nothing, however many modules there are.
func (r *PolicyReconciler) decide(modules []liveModule, latest *storedRevision, spec v1alpha1.AuditPolicySpec, settings inforce.Settings) (*inforce.Result, error) {
	from := fingerprint(modules, latest, spec)
	if r.decided != nil && from == r.decidedFrom {
		return r.decided, nil
	}
	// Let the last decision, and the revision encoded from it, go before the next is made:
	// with 5,000 modules they hold tens of megabytes, which would otherwise count twice
	// towards the peak.
	r.decided, r.decidedFrom, r.encoded = nil, "", nil
	in := inforce.Input{Modules: r.verdicts.judge(modules), Settings: settings}
	if latest != nil {
		in.InForce = latest.Modules
	}
	decision, err := inforce.Decide(in, r.memo)
	if err != nil {
		return nil, err
	}
	r.decided, r.decidedFrom = decision, from
	return decision, nil
}

func fingerprint(modules []liveModule, latest *storedRevision, spec v1alpha1.AuditPolicySpec) string {
	type identity struct {
		ID         string    `json:"id"`
		UID        types.UID `json:"uid"`
		Generation int64     `json:"generation"`
	}
	ids := make([]identity, len(modules))
	for i, m := range modules {
		ids[i] = identity{m.Module.ID(), m.UID, m.Generation}
	}
	slices.SortFunc(ids, func(a, b identity) int { return cmp.Compare(a.ID, b.ID) })
	var inForce string
	if latest != nil {
		inForce = latest.Digest
	}
	b, err := json.Marshal(struct {
		Modules           []identity
		InForce           string
		OmitStages        []v1alpha1.Stage
		DefaultLevel      v1alpha1.Level
		Guardrails        v1alpha1.GuardrailsSpec
		NamespacedModules v1alpha1.NamespacedModulesSpec
	}{ids, inForce, spec.OmitStages, spec.DefaultLevel, spec.Guardrails, spec.NamespacedModules})
	if err != nil {
		panic(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func outcomesByKey(decision *inforce.Result, modules []liveModule) map[client.ObjectKey]inforce.Outcome {
	out := make(map[client.ObjectKey]inforce.Outcome, len(modules))
	for _, m := range modules {
		if o, ok := decision.Outcomes[m.Module.ID()]; ok {
			out[client.ObjectKey{Namespace: m.Module.Namespace, Name: m.Module.Name}] = o
		}
	}
	return out
}

// reportInvalidOnly reports the modules kube-apiserver's loader rejects when no decision can be
// made (invalid settings, a failed merge): they are invalid whatever else holds. The others
// wait for a decision.
func (r *PolicyReconciler) reportInvalidOnly(modules []liveModule) {
	outcomes := map[client.ObjectKey]inforce.Outcome{}
	for _, m := range r.verdicts.judge(modules) {
		if m.Invalid != nil {
			outcomes[client.ObjectKey{Namespace: m.Namespace, Name: m.Name}] = inforce.InvalidOutcome(m)
		}
	}
	r.decisions.update(outcomes)
}

// reportFindings puts on the singleton what the decision found about guardrails: deleted
// modules kept in force, and guardrails the policy breaks already. Each finding is a Warning
// event once, and the singleton is Degraded while any remains.
func (r *PolicyReconciler) reportFindings(ctx context.Context, ap *v1alpha1.AuditPolicy, decision *inforce.Result, st *statusBuilder) {
	type finding struct{ reason, message string }
	var found []finding
	for _, k := range decision.Kept {
		found = append(found, finding{v1alpha1.EventDeletedModuleKept, k.Message()})
	}
	for _, s := range decision.Standing {
		found = append(found, finding{v1alpha1.ReasonGuardrailViolation, s.Message()})
	}
	present := make(map[string]bool, len(found))
	messages := make([]string, 0, len(found))
	for _, f := range found {
		present[f.message] = true
		messages = append(messages, f.message)
		if r.findings[f.message] {
			continue
		}
		r.findings[f.message] = true
		log.FromContext(ctx).Info("guardrail finding", "reason", f.reason, "message", f.message)
		r.event(ap, corev1.EventTypeWarning, f.reason, f.message)
	}
	for m := range r.findings {
		if !present[m] {
			delete(r.findings, m)
		}
	}
	st.guardrails = strings.Join(messages, " ")
}
