package policy

import (
	"slices"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

// ToUpstream converts a module's rule to the upstream type, unchanged.
func ToUpstream(r v1alpha1.PolicyRule) auditv1.PolicyRule {
	out := auditv1.PolicyRule{
		Level:           auditv1.Level(r.Level),
		Users:           slices.Clone(r.Users),
		UserGroups:      slices.Clone(r.UserGroups),
		Verbs:           slices.Clone(r.Verbs),
		Namespaces:      slices.Clone(r.Namespaces),
		NonResourceURLs: slices.Clone(r.NonResourceURLs),
	}
	for _, gr := range r.Resources {
		out.Resources = append(out.Resources, auditv1.GroupResources{
			Group:         gr.Group,
			Resources:     slices.Clone(gr.Resources),
			ResourceNames: slices.Clone(gr.ResourceNames),
		})
	}
	for _, s := range r.OmitStages {
		out.OmitStages = append(out.OmitStages, auditv1.Stage(s))
	}
	if r.OmitManagedFields != nil {
		v := *r.OmitManagedFields
		out.OmitManagedFields = &v
	}
	return out
}

// FromUpstream converts an upstream rule to a module's rule, unchanged.
func FromUpstream(r auditv1.PolicyRule) v1alpha1.PolicyRule {
	out := v1alpha1.PolicyRule{
		Level:           v1alpha1.Level(r.Level),
		Users:           slices.Clone(r.Users),
		UserGroups:      slices.Clone(r.UserGroups),
		Verbs:           slices.Clone(r.Verbs),
		Namespaces:      slices.Clone(r.Namespaces),
		NonResourceURLs: slices.Clone(r.NonResourceURLs),
	}
	for _, gr := range r.Resources {
		out.Resources = append(out.Resources, v1alpha1.GroupResources{
			Group:         gr.Group,
			Resources:     slices.Clone(gr.Resources),
			ResourceNames: slices.Clone(gr.ResourceNames),
		})
	}
	for _, s := range r.OmitStages {
		out.OmitStages = append(out.OmitStages, v1alpha1.Stage(s))
	}
	if r.OmitManagedFields != nil {
		v := *r.OmitManagedFields
		out.OmitManagedFields = &v
	}
	return out
}

// NamespacedModule is a NamespacedAuditPolicyModule as the merge sees it: its rules converted,
// unchanged, to the cluster-scoped module's rule type. Merge confines them to namespace.
func NamespacedModule(namespace, name string, spec v1alpha1.NamespacedAuditPolicyModuleSpec) Module {
	out := v1alpha1.AuditPolicyModuleSpec{
		Order: spec.Order, Description: spec.Description, Disabled: spec.Disabled,
		OmitStages: slices.Clone(spec.OmitStages),
	}
	if spec.OmitManagedFields != nil {
		v := *spec.OmitManagedFields
		out.OmitManagedFields = &v
	}
	for _, r := range spec.Rules {
		out.Rules = append(out.Rules, FromNamespacedRule(r))
	}
	return Module{Namespace: namespace, Name: name, Spec: out}
}

// FromNamespacedRule converts a namespaced module's rule to a module's rule, unchanged.
func FromNamespacedRule(r v1alpha1.NamespacedPolicyRule) v1alpha1.PolicyRule {
	out := v1alpha1.PolicyRule{
		Level:      r.Level,
		Users:      slices.Clone(r.Users),
		UserGroups: slices.Clone(r.UserGroups),
		Verbs:      slices.Clone(r.Verbs),
		Namespaces: slices.Clone(r.Namespaces),
		OmitStages: slices.Clone(r.OmitStages),
	}
	for _, gr := range r.Resources {
		out.Resources = append(out.Resources, v1alpha1.GroupResources{
			Group:         gr.Group,
			Resources:     slices.Clone(gr.Resources),
			ResourceNames: slices.Clone(gr.ResourceNames),
		})
	}
	if r.OmitManagedFields != nil {
		v := *r.OmitManagedFields
		out.OmitManagedFields = &v
	}
	return out
}
