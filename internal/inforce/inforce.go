package inforce

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/guardrail"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/revision"
)

// Module is a module of either kind as the decision sees it.
type Module struct {
	policy.Module
	// Generation is the object's metadata.generation, which the records keep.
	Generation int64
	// Invalid is why the current spec is invalid (policy.ValidateModule); nil when it is valid.
	Invalid error
}

// Input is everything the decision depends on.
type Input struct {
	// Modules are the modules that exist, of both kinds.
	Modules []Module
	// InForce are the module records of the latest revision: what is in force, and the last
	// accepted spec of each module. Empty before the first revision.
	InForce  []revision.ModuleRecord
	Settings Settings
}

// Outcome is the verdict on a module's current generation, for its Accepted condition.
type Outcome struct {
	Generation int64
	// Accepted tells whether the current spec is what is in force: valid, or validly disabled.
	Accepted bool
	Reason   string
	Message  string
}

// Result is the decision.
type Result struct {
	// Outcomes holds the verdict on every module of the input, by policy.Module.ID.
	Outcomes map[string]Outcome
	// Kept are deleted modules whose last accepted spec stays in force, because the merged
	// policy would break a guardrail without it.
	Kept []Kept
	// Standing are guardrails the merged policy breaks that the policy in force broke already
	// (a guardrail just added or enabled, a changed default level): they block nothing.
	Standing []Standing
	// Merged is the policy of the specs in force.
	Merged *policy.Merged

	entries []*entry
}

// Modules are the specs in force, of both kinds.
func (r *Result) Modules() []policy.Module {
	var out []policy.Module
	for _, e := range r.entries {
		if m := e.inForce(); m != nil {
			out = append(out, *m)
		}
	}
	return out
}

// AnyInForce tells whether Modules would return any module, without making the list.
func (r *Result) AnyInForce() bool {
	return slices.ContainsFunc(r.entries, func(e *entry) bool { return e.use != useNothing })
}

// Records are the module records of a revision numbered next made from the result: a module
// whose current spec is in force gets its generation, and next as FirstRevision unless the
// record in force holds the same content; a module whose last accepted spec stays keeps its
// record.
func (r *Result) Records(next int64) []revision.ModuleRecord {
	var out []revision.ModuleRecord
	for _, e := range r.entries {
		switch e.use {
		case useRecord:
			out = append(out, *e.record)
		case useCurrent:
			rec := revision.ModuleRecord{Name: e.mod.Name, Namespace: e.mod.Namespace, Generation: e.mod.Generation, FirstRevision: next, Spec: e.mod.Spec}
			if e.record != nil && SameContent(e.record.Spec, e.mod.Spec) {
				rec.FirstRevision = e.record.FirstRevision
			}
			out = append(out, rec)
		}
	}
	return out
}

// Breaches are the breaches for which live modules' changes were taken back, by
// policy.Module.ID: what their GuardrailViolation outcomes say, as data.
func (r *Result) Breaches() map[string]Breach {
	out := map[string]Breach{}
	for _, e := range r.entries {
		if e.mod != nil && e.pinned != nil {
			out[e.id] = *e.pinned
		}
	}
	return out
}

// use says which spec of a module is in force.
type use int

const (
	useNothing use = iota
	useCurrent
	useRecord
)

// entry is one module, live or deleted, in the decision.
type entry struct {
	id string
	// mod is the module, nil when it was deleted.
	mod *Module
	// record is its last accepted spec, nil when it has none.
	record *revision.ModuleRecord
	use    use
	// outcome is the verdict before guardrails; pinned replaces it.
	outcome Outcome
	// why says why a namespaced module's current spec is not in force, before guardrails;
	// empty when it is, or when the module is disabled.
	why string
	// pinned is set when the module's change is taken back for a guardrail: its record stays
	// in force (or nothing, without one).
	pinned *Breach
}

func (e *entry) namespaced() bool {
	if e.mod != nil {
		return e.mod.Namespace != ""
	}
	return e.record.Namespace != ""
}

func (e *entry) inForce() *policy.Module {
	switch e.use {
	case useCurrent:
		return &e.mod.Module
	case useRecord:
		m := e.record.Module()
		return &m
	}
	return nil
}

// changed tells whether what the entry puts in force differs from its record in force.
func (e *entry) changed() bool {
	switch e.use {
	case useCurrent:
		return e.record == nil || !SameContent(e.record.Spec, e.mod.Spec)
	case useRecord:
		return false
	}
	return e.record != nil
}

// pin takes the entry's change back: its record, if any, stays in force.
func (e *entry) pin(b Breach) {
	e.pinned = &b
	if e.record != nil {
		e.use = useRecord
	} else {
		e.use = useNothing
	}
}

// SameContent tells whether two specs put the same rules at the same place in the policy;
// descriptions do not count. Equal rules and module settings are the same content, which
// spares encoding them in the usual case (a module and its record, unchanged).
func SameContent(a, b v1alpha1.AuditPolicyModuleSpec) bool {
	if a.Order != b.Order || a.Disabled != b.Disabled {
		return false
	}
	if reflect.DeepEqual(a.Rules, b.Rules) && reflect.DeepEqual(a.OmitStages, b.OmitStages) && reflect.DeepEqual(a.OmitManagedFields, b.OmitManagedFields) {
		return true
	}
	return bytes.Equal(mustJSON(policy.ModuleRules(a)), mustJSON(policy.ModuleRules(b)))
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("encoding module rules cannot fail: %v", err))
	}
	return b
}

// decider holds one decision's state.
type decider struct {
	in      Input
	memo    *Memo
	entries []*entry
	byID    map[string]*entry
	base    *policy.Merged
	// baseEval decides witnesses in the policy in force; made when first needed.
	baseEval *policy.Evaluator
}

// Decide decides which spec of each module is in force (see the package documentation and
// docs/design.md, "Guardrails"). memo may be nil. An error means no decision: the settings'
// guardrails are invalid, the specs in force do not merge, or a search disagreed with
// kube-apiserver's evaluator.
func Decide(in Input, memo *Memo) (*Result, error) {
	if memo == nil {
		memo = NewMemo()
	}
	memo.begin()
	defer memo.end()
	d := &decider{in: in, memo: memo, byID: map[string]*entry{}}
	d.collect()
	var err error
	d.base, err = memo.merge(recordModules(in.InForce), in.Settings.Policy)
	if err != nil {
		return nil, fmt.Errorf("the policy in force: %w", err)
	}
	broken, err := memo.check(d.base, in.Settings.Guardrails)
	if err != nil {
		return nil, err
	}
	active := withoutBroken(in.Settings.Guardrails, broken)
	for _, e := range d.entries {
		if !e.namespaced() {
			d.proposeCluster(e)
		}
	}
	// Each round takes back one changed module, which is unchanged from then on.
	for {
		merged, err := d.round()
		if err != nil {
			return nil, err
		}
		var violations []guardrail.Violation
		if slices.ContainsFunc(d.entries, (*entry).changed) {
			if violations, err = memo.check(merged, active); err != nil {
				return nil, err
			}
		}
		if len(violations) == 0 {
			return d.result(merged, broken)
		}
		if err := d.blame(merged, violations[0], active); err != nil {
			return nil, err
		}
	}
}

// collect makes one entry per live module and per record of a deleted one, ordered by
// namespace and name.
func (d *decider) collect() {
	for i := range d.in.Modules {
		m := &d.in.Modules[i]
		e := &entry{id: m.ID(), mod: m}
		d.entries = append(d.entries, e)
		d.byID[e.id] = e
	}
	for i := range d.in.InForce {
		rec := &d.in.InForce[i]
		id := policy.ModuleID(rec.Namespace, rec.Name)
		if e, ok := d.byID[id]; ok {
			e.record = rec
			continue
		}
		e := &entry{id: id, record: rec}
		d.entries = append(d.entries, e)
		d.byID[id] = e
	}
	slices.SortFunc(d.entries, func(a, b *entry) int {
		return cmp.Or(cmp.Compare(a.namespace(), b.namespace()), cmp.Compare(a.name(), b.name()))
	})
}

func (e *entry) namespace() string {
	if e.mod != nil {
		return e.mod.Namespace
	}
	return e.record.Namespace
}

func (e *entry) name() string {
	if e.mod != nil {
		return e.mod.Name
	}
	return e.record.Name
}

func recordModules(records []revision.ModuleRecord) []policy.Module {
	out := make([]policy.Module, 0, len(records))
	for _, r := range records {
		out = append(out, r.Module())
	}
	return out
}

func withoutBroken(all []guardrail.Guardrail, broken []guardrail.Violation) []guardrail.Guardrail {
	var out []guardrail.Guardrail
	for _, g := range all {
		if !slices.ContainsFunc(broken, func(v guardrail.Violation) bool { return v.Guardrail == g.Name }) {
			out = append(out, g)
		}
	}
	return out
}

// proposeCluster decides what an AuditPolicyModule puts in force before guardrails: its
// current spec when valid and enabled; when invalid, its last accepted spec (checked before
// disabled, so an invalid edit that also disables keeps the last accepted rules); nothing when
// validly disabled, deleted or never accepted.
func (d *decider) proposeCluster(e *entry) {
	switch {
	case e.mod == nil:
		e.use = useNothing
	case e.mod.Invalid != nil:
		e.outcome = InvalidOutcome(*e.mod)
		e.use = useNothing
		if e.record != nil {
			e.use = useRecord
		}
	case e.mod.Spec.Disabled:
		e.use, e.outcome = useNothing, disabledOutcome(e.mod.Generation)
	default:
		e.use, e.outcome = useCurrent, validOutcome(e.mod.Generation)
	}
}

// round merges the cluster-scoped modules in force, decides the namespaced ones against them,
// and merges everything.
func (d *decider) round() (*policy.Merged, error) {
	var cluster []policy.Module
	for _, e := range d.entries {
		if m := e.inForce(); m != nil && !e.namespaced() {
			cluster = append(cluster, *m)
		}
	}
	clusterMerged, err := d.memo.merge(cluster, d.in.Settings.Policy)
	if err != nil {
		return nil, err
	}
	clusterHash := clusterMerged.Hash()
	for _, e := range d.entries {
		if e.namespaced() && e.pinned == nil {
			if err := d.proposeNamespaced(e, clusterMerged, clusterHash); err != nil {
				return nil, err
			}
		}
	}
	return d.memo.merge(d.inForceModules(), d.in.Settings.Policy)
}

func (d *decider) inForceModules() []policy.Module {
	var out []policy.Module
	for _, e := range d.entries {
		if m := e.inForce(); m != nil {
			out = append(out, *m)
		}
	}
	return out
}

// proposeNamespaced decides what a NamespacedAuditPolicyModule puts in force before
// guardrails: nothing while the singleton switches namespaced modules off; else its current
// spec if it is valid, enabled, under the cap and logs no request of its namespace less than
// the cluster's modules in force do (cluster); else its last accepted spec if that still
// passes the same checks.
func (d *decider) proposeNamespaced(e *entry, cluster *policy.Merged, clusterHash string) error {
	s := d.in.Settings
	e.use, e.why = useNothing, ""
	switch {
	case e.mod == nil:
		return nil
	case !s.NamespacedEnabled:
		e.why = "Namespaced modules are switched off (spec.namespacedModules.enabled of AuditPolicy cluster is false)."
		e.outcome = Outcome{Generation: e.mod.Generation, Reason: v1alpha1.ReasonNamespacedModulesDisabled, Message: e.why + " Nothing of this module is in force."}
		return nil
	case e.mod.Invalid != nil:
		e.outcome = InvalidOutcome(*e.mod)
		e.why = e.outcome.Message
	case e.mod.Spec.Disabled:
		e.outcome = disabledOutcome(e.mod.Generation)
		return nil
	default:
		p, err := d.teamCheck(e.mod.Module, cluster, clusterHash)
		if err != nil {
			return err
		}
		if p == nil {
			e.use, e.outcome = useCurrent, validOutcome(e.mod.Generation)
			return nil
		}
		e.why = p.message
		e.outcome = Outcome{Generation: e.mod.Generation, Reason: p.reason, Message: p.message}
	}
	if e.record == nil {
		e.outcome.Message += " Nothing of this module is in force."
		return nil
	}
	p, err := d.teamCheck(e.record.Module(), cluster, clusterHash)
	if err != nil {
		return err
	}
	if p != nil {
		e.outcome.Message += " Its last accepted version does not pass either (" + p.message + "): nothing of this module is in force."
		return nil
	}
	e.use = useRecord
	e.outcome.Message += " The last accepted version stays in force."
	return nil
}

// problem is why a namespaced module's spec cannot be in force.
type problem struct {
	reason, message string
}

// teamCheck checks a namespaced module's spec against the cap and against the cluster's
// modules in force: no request of its namespace may be logged less than they log it. Checking
// each namespaced module alone suffices: their rules come first, and each applies only in its
// namespace, so the first one matching a request is one that alone logs it no less than the
// cluster's modules (see docs/design.md, "Namespaced modules").
func (d *decider) teamCheck(m policy.Module, cluster *policy.Merged, clusterHash string) (*problem, error) {
	maxLevel := d.in.Settings.NamespacedMaxLevel
	for i, r := range m.Spec.Rules {
		if policy.LevelRank(levelOf(r.Level)) > policy.LevelRank(levelOf(maxLevel)) {
			return &problem{v1alpha1.ReasonAboveCap, fmt.Sprintf("Rule %d has level %s, above %s, the highest level spec.namespacedModules.maxLevel of AuditPolicy cluster allows namespaced modules.", i, r.Level, maxLevel)}, nil
		}
	}
	return d.memo.weakening(m, cluster, clusterHash)
}

// blame takes back the change that makes the merged policy break a guardrail for the
// violation's request: the module whose rule decides it, if that module changed; else the
// module whose rule in force decided it before, which must have changed (deleted, disabled,
// edited), since an unchanged rule that decides it now would have decided it before.
func (d *decider) blame(merged *policy.Merged, v guardrail.Violation, active []guardrail.Guardrail) error {
	g := findGuardrail(active, v.Guardrail)
	after := describeRule(merged, v.Decision.Rule)
	if v.Decision.Rule >= 0 && !merged.Sources[v.Decision.Rule].IsDefault() {
		if e := d.byID[merged.Sources[v.Decision.Rule].ModuleID()]; e != nil && e.changed() {
			e.pin(Breach{Guardrail: g, Request: v.Request, After: v.Decision, AfterBy: after, Decides: true})
			return nil
		}
	}
	if d.baseEval == nil {
		var err error
		if d.baseEval, err = policy.NewEvaluator(d.base.Policy); err != nil {
			return fmt.Errorf("the policy in force: %w", err)
		}
	}
	before := d.baseEval.Decide(v.Request)
	if before.Rule >= 0 && !d.base.Sources[before.Rule].IsDefault() {
		if e := d.byID[d.base.Sources[before.Rule].ModuleID()]; e != nil && e.changed() {
			e.pin(Breach{Guardrail: g, Request: v.Request, After: v.Decision, AfterBy: after, Before: &before, BeforeBy: describeRule(d.base, before.Rule)})
			return nil
		}
	}
	return errors.New("bug in internal/inforce: no changed module explains guardrail " + v.Guardrail + " for " + describeRequest(v.Request))
}

func findGuardrail(all []guardrail.Guardrail, name string) guardrail.Guardrail {
	for _, g := range all {
		if g.Name == name {
			return g
		}
	}
	return guardrail.Guardrail{Name: name}
}

// result assembles the decision once the merged policy keeps every active guardrail.
func (d *decider) result(merged *policy.Merged, broken []guardrail.Violation) (*Result, error) {
	r := &Result{Outcomes: map[string]Outcome{}, Merged: merged, entries: d.entries}
	for _, e := range d.entries {
		switch {
		case e.mod != nil && e.pinned != nil:
			r.Outcomes[e.id] = pinnedOutcome(e)
		case e.mod != nil:
			r.Outcomes[e.id] = e.outcome
		case e.pinned != nil:
			r.Kept = append(r.Kept, Kept{Module: e.record.Module(), Breach: *e.pinned})
		}
	}
	if len(broken) == 0 {
		return r, nil
	}
	var still []guardrail.Guardrail
	for _, v := range broken {
		still = append(still, findGuardrail(d.in.Settings.Guardrails, v.Guardrail))
	}
	standing, err := d.memo.check(merged, still)
	if err != nil {
		return nil, err
	}
	for _, v := range standing {
		r.Standing = append(r.Standing, Standing{Guardrail: findGuardrail(still, v.Guardrail), Request: v.Request, Decision: v.Decision, By: describeRule(merged, v.Decision.Rule)})
	}
	return r, nil
}
