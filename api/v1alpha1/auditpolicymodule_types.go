package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AuditPolicyModuleSpec is one team's part of the cluster's audit policy.
type AuditPolicyModuleSpec struct {
	// Order places this module's rules in the merged policy: lower runs first, ties are broken by
	// name. The first rule that matches a request decides its level, so a module that must win
	// (for example "secrets never above Metadata") needs a lower order than modules that log bodies.
	// +kubebuilder:default=100
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100000
	// +optional
	Order int32 `json:"order"`

	// Description says what the module keeps or drops and why. It is not part of the policy:
	// editing it never creates a revision or restarts an apiserver.
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	Description string `json:"description,omitempty"`

	// Disabled removes the module from the merged policy without deleting it.
	// +optional
	Disabled bool `json:"disabled,omitempty"`

	// OmitStages is added to the omitStages of every rule of this module.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=4
	OmitStages []Stage `json:"omitStages,omitempty"`

	// OmitManagedFields is applied to every rule of this module that does not set its own.
	// +optional
	OmitManagedFields *bool `json:"omitManagedFields,omitempty"`

	// Rules are audit.k8s.io/v1 policy rules, evaluated in order.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=200
	// +listType=atomic
	Rules []PolicyRule `json:"rules"`
}

// AuditPolicyModuleStatus is what the controller observed about a module, of either kind.
type AuditPolicyModuleStatus struct {
	// ObservedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Accepted tells whether the module's current generation is in force: True
	// with reason Valid or Disabled; False with Invalid (kube-apiserver would reject it; the
	// message names the rule and field), GuardrailViolation (the merged policy would break a
	// guardrail; the message names it and a request), and for namespaced modules
	// NamespacedModulesDisabled, AboveCap or LowersLogging. When False, the module's last
	// accepted version, if any, stays in force.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// RuleCount is the number of rules the module contributes when enabled.
	// +optional
	RuleCount int32 `json:"ruleCount,omitempty"`

	// IncludedInRevision is the policy revision that first holds the module's current
	// generation. Empty while the current generation is not in force (pending, invalid or disabled).
	// +optional
	IncludedInRevision *int64 `json:"includedInRevision,omitempty"`
}

// AuditPolicyModule is a named, ordered group of audit policy rules. The controller merges all
// enabled modules into one audit.k8s.io/v1 Policy.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=apm;auditmodule,categories=kaudit
// +kubebuilder:printcolumn:name="Order",type=integer,JSONPath=`.spec.order`
// +kubebuilder:printcolumn:name="Rules",type=integer,JSONPath=`.status.ruleCount`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Revision",type=integer,JSONPath=`.status.includedInRevision`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Reason",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Accepted")].reason`
// +kubebuilder:printcolumn:name="Description",type=string,priority=1,JSONPath=`.spec.description`
type AuditPolicyModule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the module's rules and settings.
	Spec AuditPolicyModuleSpec `json:"spec"`
	// Status is what the controller observed.
	// +optional
	Status AuditPolicyModuleStatus `json:"status,omitempty"`
}

// AuditPolicyModuleList is a list of AuditPolicyModule.
// +kubebuilder:object:root=true
type AuditPolicyModuleList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AuditPolicyModule `json:"items"`
}
