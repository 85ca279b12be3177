package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NamespacedAuditPolicyModuleSpec is a team's part of the audit policy for its own namespace.
type NamespacedAuditPolicyModuleSpec struct {
	// Order places this module's rules among the namespace's other NamespacedAuditPolicyModules:
	// lower runs first, ties are broken by name. Every namespaced module's rules come before
	// every AuditPolicyModule's, so they can only make logging stricter.
	// +kubebuilder:default=100
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100000
	// +optional
	Order int32 `json:"order"`

	// Description says what the module keeps and why. It is not part of the policy: editing it
	// never creates a revision or restarts an apiserver.
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

	// Rules are audit.k8s.io/v1 policy rules without nonResourceURLs, evaluated in order. Each
	// applies only to requests in the module's own namespace: a rule listing any other
	// namespace is rejected.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=200
	// +listType=atomic
	Rules []NamespacedPolicyRule `json:"rules"`
}

// NamespacedPolicyRule is an audit.k8s.io/v1 PolicyRule without nonResourceURLs, which belong
// to no namespace. A parity test keeps it equal to upstream's other fields.
// A request matches the rule when it matches every non-empty field.
type NamespacedPolicyRule struct {
	// Level at which matching requests are recorded. It must be at least the level the
	// cluster's AuditPolicyModules give the same requests, and at most
	// spec.namespacedModules.maxLevel of the AuditPolicy cluster.
	// +required
	Level Level `json:"level"`

	// Users (by authenticated user name) this rule applies to. Empty matches every user.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=253
	Users []string `json:"users,omitempty"`

	// UserGroups this rule applies to. A user matches if it is a member of any of them.
	// Empty matches every group.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=253
	UserGroups []string `json:"userGroups,omitempty"`

	// Verbs that match this rule (get, list, watch, create, update, patch, delete,
	// deletecollection, or a custom verb). Empty matches every verb.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=63
	Verbs []string `json:"verbs,omitempty"`

	// Resources that this rule matches. Empty matches every resource in every group.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=50
	Resources []GroupResources `json:"resources,omitempty"`

	// Namespaces may only list the module's own namespace, which is what every rule matches
	// anyway: the manager confines each rule to it.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=1
	// +kubebuilder:validation:items:MaxLength=63
	Namespaces []string `json:"namespaces,omitempty"`

	// OmitStages is a list of stages for which no events are created. It is combined with the
	// module's and the policy's omitStages.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=4
	OmitStages []Stage `json:"omitStages,omitempty"`

	// OmitManagedFields, when set, overrides the module's and the policy's choice of dropping
	// managedFields from request and response bodies written to the audit log.
	// +optional
	OmitManagedFields *bool `json:"omitManagedFields,omitempty"`
}

// NamespacedAuditPolicyModule is a named, ordered group of audit policy rules that a team owns
// in its namespace. Its rules apply only to requests in that namespace, come before every
// AuditPolicyModule's, and may only make logging stricter there.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=napm,categories=kaudit
// +kubebuilder:printcolumn:name="Order",type=integer,JSONPath=`.spec.order`
// +kubebuilder:printcolumn:name="Rules",type=integer,JSONPath=`.status.ruleCount`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Revision",type=integer,JSONPath=`.status.includedInRevision`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Reason",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Accepted")].reason`
// +kubebuilder:printcolumn:name="Description",type=string,priority=1,JSONPath=`.spec.description`
type NamespacedAuditPolicyModule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec is the module's rules and settings.
	Spec NamespacedAuditPolicyModuleSpec `json:"spec"`
	// Status is what the controller observed.
	// +optional
	Status AuditPolicyModuleStatus `json:"status,omitempty"`
}

// NamespacedAuditPolicyModuleList is a list of NamespacedAuditPolicyModule.
// +kubebuilder:object:root=true
type NamespacedAuditPolicyModuleList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NamespacedAuditPolicyModule `json:"items"`
}
