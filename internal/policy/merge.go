package policy

import (
	"cmp"
	"slices"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

// Module is one module as the merge sees it: an AuditPolicyModule, or a
// NamespacedAuditPolicyModule converted by NamespacedModule.
type Module struct {
	// Namespace is the namespace of a NamespacedAuditPolicyModule; empty for an
	// AuditPolicyModule, which is cluster-scoped.
	Namespace string
	Name      string
	Spec      v1alpha1.AuditPolicyModuleSpec
}

// ID names the module in errors, rendered comments and records: its name, or namespace/name for
// a namespaced module.
func (m Module) ID() string { return ModuleID(m.Namespace, m.Name) }

// ModuleID is the ID of the module called name in namespace ("" for a cluster-scoped one).
func ModuleID(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// Rules are the module's rules as the merged policy holds them: the module's omitStages and
// omitManagedFields pushed down (ModuleRules), and each rule of a namespaced module confined to
// its namespace.
func (m Module) Rules() []auditv1.PolicyRule {
	rules := ModuleRules(m.Spec)
	if m.Namespace != "" {
		for i := range rules {
			rules[i].Namespaces = []string{m.Namespace}
		}
	}
	return rules
}

// Settings are the policy-level settings of the AuditPolicy singleton.
type Settings struct {
	// OmitStages becomes the policy's omitStages.
	OmitStages []v1alpha1.Stage
	// DefaultLevel is the level of the final catch-all rule; empty means Metadata.
	DefaultLevel v1alpha1.Level
}

// SettingsFrom takes the policy-level settings from the singleton's spec.
func SettingsFrom(spec v1alpha1.AuditPolicySpec) Settings {
	return Settings{OmitStages: spec.OmitStages, DefaultLevel: spec.DefaultLevel}
}

// RuleSource says where a rule of a merged policy came from.
type RuleSource struct {
	// Module is the module's name; empty for the catch-all rule made from the default level.
	Module string
	// Rule is the index of the rule in the module's spec.rules.
	Rule int
	// Namespace is the namespace of a NamespacedAuditPolicyModule; empty otherwise.
	Namespace string
}

// ModuleID is the ID of the module the rule came from (see Module.ID).
func (s RuleSource) ModuleID() string { return ModuleID(s.Namespace, s.Module) }

// IsDefault tells whether the rule is the catch-all made from the default level.
func (s RuleSource) IsDefault() bool { return s.Module == "" }

// Merged is a merged policy together with the origin of each of its rules.
type Merged struct {
	// Policy is what kube-apiserver reads.
	Policy auditv1.Policy
	// Sources[i] is where Policy.Rules[i] came from.
	Sources []RuleSource
	// Modules are the IDs of the modules that contributed rules, in merge order.
	Modules []string

	// rendered caches Render: parsing it back is Merge's final check, and callers store it.
	rendered []byte
	// parts, when set, are the pieces Render joins (a Merger's): the top, each module's
	// rules, the catch-all.
	parts [][]byte
	// sorted are the modules in merge order until the loader accepted the merge.
	sorted []Module
	// hash is Hash, computed once: a Merged is not changed after the merge.
	hash string
}

// Sort orders modules as the merge does: namespaced modules first, by spec.order, namespace and
// name, then the cluster-scoped ones by spec.order and name. Namespaced modules come first so
// that they can only make logging stricter: the first matching rule decides, and each of their
// rules is confined to its namespace (see docs/design.md, "Namespaced modules").
func Sort(modules []Module) {
	slices.SortStableFunc(modules, func(a, b Module) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)),
			cmp.Compare(a.Spec.Order, b.Spec.Order), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
}

// rank puts namespaced modules before cluster-scoped ones.
func rank(m Module) int {
	if m.Namespace != "" {
		return 0
	}
	return 1
}

// Merge builds the policy from modules: enabled modules in order (see Sort), each module's
// omitStages and omitManagedFields pushed down into its rules and each namespaced module's rules
// confined to its namespace, the policy-level settings, and a final catch-all rule at the
// default level. It validates the result with kube-apiserver's loader, so a Merged is always a
// policy the apiserver accepts; when the loader rejects it, the error names the first module in
// merge order that it rejects on its own. A namespaced module with a rule naming another
// namespace is an error too.
// The same modules and settings always give the same Merged, whatever the input order.
func Merge(modules []Module, settings Settings) (*Merged, error) {
	m, _, err := compose(modules, settings, Module.Rules)
	if err != nil {
		return nil, err
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	m.hash = hashOf(m.Policy, nil)
	return m, nil
}

// span is the rules of one module in a merged policy: Policy.Rules[from:to].
type span struct {
	module   Module
	from, to int
}

// compose is Merge without the loader: the merged policy, with the span of each module that
// contributed rules, in merge order. rulesOf is Module.Rules, or a cache of it.
func compose(modules []Module, settings Settings, rulesOf func(Module) []auditv1.PolicyRule) (*Merged, []span, error) {
	if err := ValidateSettings(settings); err != nil {
		return nil, nil, err
	}
	sorted := slices.Clone(modules)
	Sort(sorted)

	m := &Merged{Policy: auditv1.Policy{OmitStages: normalizeStages(settings.OmitStages)}}
	m.Policy.APIVersion = auditv1.SchemeGroupVersion.String()
	m.Policy.Kind = "Policy"
	// Sized once: with 5,000 modules, growing them by doubling allocated several times the
	// policy on every merge.
	rules := 1 // the catch-all
	for _, mod := range sorted {
		if !mod.Spec.Disabled {
			rules += len(mod.Spec.Rules)
		}
	}
	m.Policy.Rules = make([]auditv1.PolicyRule, 0, rules)
	m.Sources = make([]RuleSource, 0, rules)
	seen := make(map[string]bool, len(sorted))
	spans := make([]span, 0, len(sorted))
	for _, mod := range sorted {
		if seen[mod.ID()] {
			return nil, nil, &ModuleError{Module: mod.ID(), Problems: []Problem{{Rule: -1, Field: "metadata.name", Detail: "Duplicate value: module name appears more than once"}}}
		}
		seen[mod.ID()] = true
		if mod.Spec.Disabled {
			continue
		}
		if len(mod.Spec.Rules) == 0 {
			return nil, nil, errNoRules(mod.ID())
		}
		if err := validateConfinement(mod); err != nil {
			return nil, nil, err
		}
		from := len(m.Policy.Rules)
		for j, rule := range rulesOf(mod) {
			m.Policy.Rules = append(m.Policy.Rules, rule)
			m.Sources = append(m.Sources, RuleSource{Namespace: mod.Namespace, Module: mod.Name, Rule: j})
		}
		spans = append(spans, span{module: mod, from: from, to: len(m.Policy.Rules)})
		m.Modules = append(m.Modules, mod.ID())
	}
	m.Policy.Rules = append(m.Policy.Rules, auditv1.PolicyRule{Level: auditv1.Level(defaultLevel(settings))})
	m.Sources = append(m.Sources, RuleSource{})
	m.sorted = sorted
	return m, spans, nil
}

// check renders the composed policy and loads it: the loader is the final gate, since what it
// rejects would stop kube-apiserver from starting. Modules are validated one by one only when
// it fails, to name the guilty one precisely: loading each module on every merge would parse
// every rule twice. It reads the canonical JSON (what the hash covers): parsing the rendered
// YAML took many times the memory and time of the policy itself. The rendering loads to the
// same policy (FuzzMergeNeverMakesAPolicyTheLoaderRejects), and the agent loads the rendered
// bytes again before writing them.
func (m *Merged) check() error {
	m.rendered = m.render()
	if _, err := Load(encode(m.Policy)); err != nil {
		for _, mod := range m.sorted {
			if !mod.Spec.Disabled {
				if modErr := ValidateModule(mod); modErr != nil {
					return modErr
				}
			}
		}
		return m.blame(err)
	}
	m.sorted = nil
	return nil
}

func defaultLevel(s Settings) v1alpha1.Level {
	if s.DefaultLevel == "" {
		return v1alpha1.LevelMetadata
	}
	return s.DefaultLevel
}

// ModuleRules converts a module's rules to upstream rules with the module's omitStages and
// omitManagedFields pushed down into each of them.
func ModuleRules(spec v1alpha1.AuditPolicyModuleSpec) []auditv1.PolicyRule {
	rules := make([]auditv1.PolicyRule, 0, len(spec.Rules))
	for _, r := range spec.Rules {
		out := ToUpstream(r)
		out.OmitStages = normalizeStages(append(slices.Clone(r.OmitStages), spec.OmitStages...))
		if out.OmitManagedFields == nil && spec.OmitManagedFields != nil {
			v := *spec.OmitManagedFields
			out.OmitManagedFields = &v
		}
		rules = append(rules, out)
	}
	return rules
}

// stageOrder is the order in which stages happen; omitStages are rendered in it.
var stageOrder = []v1alpha1.Stage{
	v1alpha1.StageRequestReceived, v1alpha1.StageResponseStarted,
	v1alpha1.StageResponseComplete, v1alpha1.StagePanic,
}

// normalizeStages removes duplicates and sorts known stages in the order they happen, so that
// equal sets render and hash alike. Unknown stages are kept (sorted, after the known ones) for
// the loader to reject with its own message.
func normalizeStages(stages []v1alpha1.Stage) []auditv1.Stage {
	if len(stages) == 0 {
		return nil
	}
	rank := func(s v1alpha1.Stage) int {
		if i := slices.Index(stageOrder, s); i >= 0 {
			return i
		}
		return len(stageOrder)
	}
	sorted := slices.Clone(stages)
	slices.SortFunc(sorted, func(a, b v1alpha1.Stage) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(a, b))
	})
	sorted = slices.Compact(sorted)
	out := make([]auditv1.Stage, len(sorted))
	for i, s := range sorted {
		out[i] = auditv1.Stage(s)
	}
	return out
}
