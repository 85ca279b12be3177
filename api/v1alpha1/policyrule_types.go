package v1alpha1

// Level is how much of a request the audit log records, exactly as in audit.k8s.io/v1.
// +kubebuilder:validation:Enum=None;Metadata;Request;RequestResponse
type Level string

// The audit levels, lowest first.
const (
	LevelNone            Level = "None"
	LevelMetadata        Level = "Metadata"
	LevelRequest         Level = "Request"
	LevelRequestResponse Level = "RequestResponse"
)

// Stage is a stage of request handling at which an audit event can be written.
// +kubebuilder:validation:Enum=RequestReceived;ResponseStarted;ResponseComplete;Panic
type Stage string

// The audit stages.
const (
	StageRequestReceived  Stage = "RequestReceived"
	StageResponseStarted  Stage = "ResponseStarted"
	StageResponseComplete Stage = "ResponseComplete"
	StagePanic            Stage = "Panic"
)

// PolicyRule mirrors audit.k8s.io/v1 PolicyRule field for field, so a rule copied from any
// audit policy works unchanged. It is declared here (not imported) only so that it can carry
// validation markers; a parity test fails when upstream adds a field.
// A request matches the rule when it matches every non-empty field.
// +kubebuilder:validation:XValidation:rule="!has(self.nonResourceURLs) || size(self.nonResourceURLs) == 0 || ((!has(self.resources) || size(self.resources) == 0) && (!has(self.namespaces) || size(self.namespaces) == 0))",message="nonResourceURLs cannot be combined with resources or namespaces: a rule applies either to resource requests or to non-resource URLs"
type PolicyRule struct {
	// Level at which matching requests are recorded.
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

	// Verbs that match this rule (get, list, watch, create, update, patch, delete, deletecollection,
	// or a custom verb such as escalate, bind, impersonate). Empty matches every verb.
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

	// Namespaces that this rule matches. The empty string "" matches cluster-scoped resources.
	// Empty matches every namespace and cluster-scoped resources.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=63
	Namespaces []string `json:"namespaces,omitempty"`

	// NonResourceURLs is a set of URL paths that should be audited. "*" matches every path; a
	// trailing "*" matches a prefix ("/healthz*"). A rule with nonResourceURLs applies to
	// non-resource requests only and cannot also list resources or namespaces.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=1024
	// +kubebuilder:validation:items:Pattern=`^(\*|/[^*]*\*?)$`
	NonResourceURLs []string `json:"nonResourceURLs,omitempty"`

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

// GroupResources mirrors audit.k8s.io/v1 GroupResources: resources of one API group.
// +kubebuilder:validation:XValidation:rule="!has(self.resourceNames) || size(self.resourceNames) == 0 || (has(self.resources) && size(self.resources) > 0)",message="resourceNames requires at least one entry in resources"
type GroupResources struct {
	// Group is the API group ("" for the core group, "*" for every group).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Group string `json:"group,omitempty"`

	// Resources is a list of resources this rule applies to: "pods", "pods/log" for a
	// subresource, "pods/*" for all subresources of pods, "*/scale" for the scale subresource
	// of every resource, "*" for every resource. Empty matches every resource of the group.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^(\*|\*/[^*/]+|[^*/]+(/(\*|[^*/]+))?)$`
	Resources []string `json:"resources,omitempty"`

	// ResourceNames is a list of object names this rule applies to. Empty matches every name.
	// Requires resources.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=253
	ResourceNames []string `json:"resourceNames,omitempty"`
}
