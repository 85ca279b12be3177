package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SingletonName is the only accepted name of the AuditPolicy object.
const SingletonName = "cluster"

// AuditPolicySpec holds the cluster-wide settings of the merged policy and of its rollout.
// Every field has a schema default, so an empty spec is complete.
// +kubebuilder:validation:XValidation:rule="!has(self.shutdownDelayDuration) || (has(self.manageAPIServerFlags) && self.manageAPIServerFlags)",message="shutdownDelayDuration is set only when manageAPIServerFlags is true; without it the agent does not touch kube-apiserver's flags"
type AuditPolicySpec struct {
	// OmitStages is the policy-level omitStages: no rule writes events at these stages.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=4
	OmitStages []Stage `json:"omitStages,omitempty"`

	// DefaultLevel is the level of the final catch-all rule, which decides every request that no
	// module matches. None drops those requests from the audit log.
	// +kubebuilder:default=Metadata
	// +optional
	DefaultLevel Level `json:"defaultLevel,omitempty"`

	// PinnedRevision, when set, rolls the cluster to this revision instead of the latest one
	// (rollback). The pinned revision is never pruned.
	// +kubebuilder:validation:Minimum=1
	// +optional
	PinnedRevision *int64 `json:"pinnedRevision,omitempty"`

	// Rollout controls how revisions are made and rolled out to control-plane nodes.
	// +kubebuilder:default={}
	// +optional
	Rollout RolloutSpec `json:"rollout,omitempty"`

	// ManageAPIServerFlags lets the node agent add --audit-policy-file, --audit-log-* flags and the
	// volumes they need to the kube-apiserver manifest. When false the agent uses the flags it finds.
	// +kubebuilder:default=false
	// +optional
	ManageAPIServerFlags bool `json:"manageAPIServerFlags,omitempty"`

	// ShutdownDelayDuration sets kube-apiserver's --shutdown-delay-duration when
	// manageAPIServerFlags is true: after SIGTERM the apiserver answers /readyz with an error but
	// keeps serving for this long, so that a load balancer checking /readyz stops sending it new
	// connections before it closes its listener. Unset leaves the flag as the manifest has it;
	// 0s is the apiserver's default. Keep it below the static pod's termination grace period
	// (30s unless the manifest sets terminationGracePeriodSeconds): the agent refuses a delay
	// the grace period cannot hold. At most 10m.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('10m')",message="must be at most 10m"
	// +optional
	ShutdownDelayDuration *metav1.Duration `json:"shutdownDelayDuration,omitempty"`

	// AuditLog sets the --audit-log-* flags when manageAPIServerFlags is true.
	// +kubebuilder:default={}
	// +optional
	AuditLog AuditLogSpec `json:"auditLog,omitempty"`

	// Guardrails bound what the merged policy may decide for security-relevant requests,
	// whatever the modules say. The built-in guardrails hold unless disabled here; custom ones
	// are added. A module change that would make a guarded request fall outside its bounds is
	// not put in force.
	// +optional
	Guardrails GuardrailsSpec `json:"guardrails,omitempty"`

	// NamespacedModules sets what NamespacedAuditPolicyModules, the modules teams own in their
	// namespaces, may do.
	// +kubebuilder:default={}
	// +optional
	NamespacedModules NamespacedModulesSpec `json:"namespacedModules,omitempty"`
}

// BuiltInGuardrail is the name of a built-in guardrail.
// +kubebuilder:validation:Enum=no-credential-bodies;system-masters-logged;rbac-writes-logged;admission-writes-logged;pod-interactive-access-logged
type BuiltInGuardrail string

// GuardrailsSpec selects the guardrails the merged policy must keep.
type GuardrailsSpec struct {
	// DisabledBuiltIns names built-in guardrails that do not hold in this cluster:
	// no-credential-bodies (Secrets, ConfigMaps, service account tokens, TokenReviews, CSRs and
	// PodCertificateRequests never above Metadata), system-masters-logged (requests by members
	// of system:masters never None, except the apiserver's own system:apiserver),
	// rbac-writes-logged, admission-writes-logged (webhooks, admission policies and bindings,
	// CRDs, APIServices, Namespaces) and pod-interactive-access-logged (exec, attach,
	// portforward, ephemeralcontainers), each never None.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=5
	DisabledBuiltIns []BuiltInGuardrail `json:"disabledBuiltIns,omitempty"`

	// Custom guardrails hold in addition to the built-in ones.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=32
	Custom []CustomGuardrail `json:"custom,omitempty"`
}

// CustomGuardrail bounds the level at which the merged policy may log the requests in a scope.
// +kubebuilder:validation:XValidation:rule="has(self.minLevel) || has(self.maxLevel) || (has(self.requiredStages) && size(self.requiredStages) > 0)",message="a guardrail needs a bound: minLevel, maxLevel or requiredStages"
// +kubebuilder:validation:XValidation:rule="!has(self.minLevel) || !has(self.maxLevel) || {'None': 0, 'Metadata': 1, 'Request': 2, 'RequestResponse': 3}[self.minLevel] <= {'None': 0, 'Metadata': 1, 'Request': 2, 'RequestResponse': 3}[self.maxLevel]",message="minLevel must not be above maxLevel"
type CustomGuardrail struct {
	// Name identifies the guardrail in module conditions and events: lowercase letters, digits
	// and '-', and not the name of a built-in guardrail.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="!(self in ['no-credential-bodies', 'system-masters-logged', 'rbac-writes-logged', 'admission-writes-logged', 'pod-interactive-access-logged'])",message="is the name of a built-in guardrail"
	Name string `json:"name"`

	// Description says in one line what the guardrail keeps and why; rejections quote it.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Description string `json:"description,omitempty"`

	// Scope is the requests the guardrail is about, written like the matching fields of a
	// policy rule. An empty scope is every request.
	// +required
	Scope GuardrailScope `json:"scope"`

	// Except takes requests out of the scope: a request matching any of these scopes is not
	// bounded by this guardrail.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=20
	Except []GuardrailScope `json:"except,omitempty"`

	// MinLevel is the lowest level a request of the scope may be logged at.
	// +optional
	MinLevel Level `json:"minLevel,omitempty"`

	// MaxLevel is the highest level a request of the scope may be logged at.
	// +optional
	MaxLevel Level `json:"maxLevel,omitempty"`

	// RequiredStages are stages whose events must be written for every request of the scope:
	// the deciding rule may not omit them (the policy's omitStages count), and level None,
	// which writes no event, breaks the guardrail.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=4
	RequiredStages []Stage `json:"requiredStages,omitempty"`
}

// GuardrailScope is a set of requests, given as the matching fields of an audit policy rule
// with the same meaning: a request is in the scope when it matches every non-empty field.
// +kubebuilder:validation:XValidation:rule="!has(self.nonResourceURLs) || size(self.nonResourceURLs) == 0 || ((!has(self.resources) || size(self.resources) == 0) && (!has(self.namespaces) || size(self.namespaces) == 0))",message="nonResourceURLs cannot be combined with resources or namespaces: a scope holds either resource requests or non-resource URLs"
type GuardrailScope struct {
	// Users (by authenticated user name) in the scope. Empty is every user.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=253
	Users []string `json:"users,omitempty"`

	// UserGroups in the scope: a user is in it when it is a member of any of them. Empty is
	// every group.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=253
	UserGroups []string `json:"userGroups,omitempty"`

	// Verbs in the scope. Empty is every verb.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:items:MaxLength=63
	Verbs []string `json:"verbs,omitempty"`

	// Resources in the scope, as in a policy rule ("pods/*", "*/scale", group "*"). Empty is
	// every resource of every group.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=50
	Resources []GroupResources `json:"resources,omitempty"`

	// Namespaces in the scope; "" is cluster-scoped resources. Empty is every namespace and
	// cluster-scoped resources.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=63
	Namespaces []string `json:"namespaces,omitempty"`

	// NonResourceURLs in the scope: "*" is every path, a trailing "*" a prefix. A scope with
	// nonResourceURLs holds non-resource requests only.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=1024
	// +kubebuilder:validation:items:Pattern=`^(\*|/[^*]*\*?)$`
	NonResourceURLs []string `json:"nonResourceURLs,omitempty"`
}

// NamespacedModulesSpec sets what NamespacedAuditPolicyModules may do.
type NamespacedModulesSpec struct {
	// Enabled lets NamespacedAuditPolicyModules contribute rules. When false, none is in force
	// and each says so in its Accepted condition (reason NamespacedModulesDisabled).
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// MaxLevel is the highest level a rule of a NamespacedAuditPolicyModule may have: a module
	// with a rule above it is not put in force (reason AboveCap).
	// +kubebuilder:default=RequestResponse
	// +optional
	MaxLevel Level `json:"maxLevel,omitempty"`
}

// RolloutSpec controls revision creation and the node-by-node rollout. Every duration has an
// upper bound, so that no value overflows what is computed from it (the rollout Lease lasts
// 2 x healthTimeout + 30s).
type RolloutSpec struct {
	// HealthTimeout is how long a node's kube-apiserver may take to come back ready with a new
	// policy before the agent rolls the node back. A real restart takes 30-60 s, so the minimum
	// is 30s; the maximum is 1h.
	// +kubebuilder:default="2m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('30s')",message="must be at least 30s: a kube-apiserver restart takes 30-60 s, and a shorter timeout rolls every rollout back"
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('1h')",message="must be at most 1h"
	// +optional
	HealthTimeout *metav1.Duration `json:"healthTimeout,omitempty"`

	// MinRestartInterval is the least time between two restarts of the same node's apiserver, at
	// most 24h. It bounds how often module editors can restart the control plane: changes that
	// arrive faster are rolled out together, once the interval has passed, as one restart for
	// the latest revision. "0s" restarts for every revision.
	// +kubebuilder:default="5m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('24h')",message="must be at most 24h"
	// +optional
	MinRestartInterval *metav1.Duration `json:"minRestartInterval,omitempty"`

	// Debounce is the quiet period after the last module change before a revision is made, so a
	// burst of changes (a GitOps sync) makes one revision. At most 10m.
	// +kubebuilder:default="2s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('10m')",message="must be at most 10m"
	// +optional
	Debounce *metav1.Duration `json:"debounce,omitempty"`

	// MaxWait bounds the debounce: a revision is made at the latest this long after the first
	// pending change, even if changes keep coming. At most 1h.
	// +kubebuilder:default="30s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('1h')",message="must be at most 1h"
	// +optional
	MaxWait *metav1.Duration `json:"maxWait,omitempty"`

	// MinReadyTime is how long the next node waits, after a node's apiserver is ready again,
	// before it restarts its own: load balancers and clients see the node healthy first. Each
	// rollout takes this much longer per node after the first. At most 1h.
	// +kubebuilder:default="10s"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('1h')",message="must be at most 1h"
	// +optional
	MinReadyTime *metav1.Duration `json:"minReadyTime,omitempty"`
}

// AuditLogSpec sets kube-apiserver's log backend flags when kaudit manages them.
type AuditLogSpec struct {
	// Path is --audit-log-path on the node: an absolute path under /var/log/, without "..". The
	// agent mounts its directory read-write into kube-apiserver, so it must be a log directory,
	// never a host path such as / or /var/lib/etcd.
	// +kubebuilder:default="/var/log/kubernetes/audit/audit.log"
	// +kubebuilder:validation:Pattern=`^/var/log/.+`
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:XValidation:rule="!self.matches('(^|/)[.][.](/|$)')",message="must not contain a '..' segment"
	// +optional
	Path string `json:"path,omitempty"`

	// MaxAge is --audit-log-maxage, in days.
	// +kubebuilder:default=7
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxAge *int32 `json:"maxAge,omitempty"`

	// MaxBackup is --audit-log-maxbackup, the number of rotated files kept.
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxBackup *int32 `json:"maxBackup,omitempty"`

	// MaxSize is --audit-log-maxsize, in megabytes.
	// +kubebuilder:default=100
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxSize *int32 `json:"maxSize,omitempty"`
}

// NodePhase is where one control-plane node stands in a rollout.
// +kubebuilder:validation:Enum=Pending;RollingOut;Applied;Failed;RolledBack;Drifted
type NodePhase string

// The node phases.
const (
	NodePending    NodePhase = "Pending"
	NodeRollingOut NodePhase = "RollingOut"
	NodeApplied    NodePhase = "Applied"
	NodeFailed     NodePhase = "Failed"
	NodeRolledBack NodePhase = "RolledBack"
	// NodeDrifted: the node's files differ from the revision it applied (edited on the node);
	// the agent restores them (see docs/design.md, "Drift").
	NodeDrifted NodePhase = "Drifted"
)

// NodeStatus is one control-plane node's rollout state, written by that node's agent.
type NodeStatus struct {
	// Name of the node.
	Name string `json:"name"`
	// AppliedRevision is the revision whose policy the node's apiserver runs.
	// +optional
	AppliedRevision *int64 `json:"appliedRevision,omitempty"`
	// PolicyHash is the hash of the policy the node's apiserver runs.
	// +optional
	PolicyHash string `json:"policyHash,omitempty"`
	// Phase of the node's rollout.
	// +optional
	Phase NodePhase `json:"phase,omitempty"`
	// Message explains the phase, including the reason of a failure.
	// +optional
	Message string `json:"message,omitempty"`
	// LastRestartTime is when the agent last restarted the node's apiserver.
	// +optional
	LastRestartTime *metav1.Time `json:"lastRestartTime,omitempty"`
	// LastRolloutSeconds is how long the last rollout on this node took.
	// +optional
	LastRolloutSeconds *int64 `json:"lastRolloutSeconds,omitempty"`
}

// RevisionRecord is the manager's record of one revision it made.
type RevisionRecord struct {
	// Number of the revision, whose ConfigMap is kaudit-policy-<number>.
	// +kubebuilder:validation:Minimum=1
	Number int64 `json:"number"`
	// SHA256 is the hex sha256 of the revision's whole content: number, policy hash, policy and
	// module records.
	// +kubebuilder:validation:Pattern=`^[0-9a-f]{64}$`
	SHA256 string `json:"sha256"`
}

// AuditPolicyStatus is the observed state of the merged policy and its rollout.
type AuditPolicyStatus struct {
	// ObservedGeneration is the spec generation the manager last acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// LatestRevision is the newest revision made from the modules.
	// +optional
	LatestRevision *int64 `json:"latestRevision,omitempty"`
	// DesiredRevision is the revision nodes should run: the pinned one, or else the latest.
	// +optional
	DesiredRevision *int64 `json:"desiredRevision,omitempty"`
	// DesiredPolicyHash is the policy hash of DesiredRevision.
	// +optional
	DesiredPolicyHash string `json:"desiredPolicyHash,omitempty"`
	// Revisions records each revision the manager made that still exists, with the sha256 of
	// its content. The manager uses a revision ConfigMap only when it is recorded here and its
	// content still matches, so only such a revision becomes desired; any other ConfigMap with
	// the revision label is ignored and reported.
	// +optional
	// +listType=map
	// +listMapKey=number
	Revisions []RevisionRecord `json:"revisions,omitempty"`
	// UpdatedNodes is "x/y": control-plane nodes that applied the desired revision, of all.
	// +optional
	UpdatedNodes string `json:"updatedNodes,omitempty"`
	// Conditions: Available, Progressing and Degraded.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Nodes holds one entry per control-plane node, each written by that node's agent.
	// +optional
	// +listType=map
	// +listMapKey=name
	Nodes []NodeStatus `json:"nodes,omitempty"`
}

// AuditPolicy is the cluster's single audit policy (named "cluster"): global settings, the
// revision in force and the rollout state of every control-plane node.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=auditpol,categories=kaudit
// +kubebuilder:validation:XValidation:rule="self.metadata.name == 'cluster'",message="the AuditPolicy is a singleton and must be named cluster"
// +kubebuilder:printcolumn:name="Desired",type=integer,JSONPath=`.status.desiredRevision`
// +kubebuilder:printcolumn:name="Updated",type=string,JSONPath=`.status.updatedNodes`
// +kubebuilder:printcolumn:name="Available",type=string,JSONPath=`.status.conditions[?(@.type=="Available")].status`
// +kubebuilder:printcolumn:name="Degraded",type=string,JSONPath=`.status.conditions[?(@.type=="Degraded")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Latest",type=integer,priority=1,JSONPath=`.status.latestRevision`
// +kubebuilder:printcolumn:name="Pinned",type=integer,priority=1,JSONPath=`.spec.pinnedRevision`
type AuditPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Spec holds the global settings. The manager creates the object with an empty spec and never
	// writes it afterwards.
	// +optional
	Spec AuditPolicySpec `json:"spec,omitempty"`
	// Status is written by the manager and, for their own node entries, by the node agents.
	// +optional
	Status AuditPolicyStatus `json:"status,omitempty"`
}

// AuditPolicyList is a list of AuditPolicy.
// +kubebuilder:object:root=true
type AuditPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AuditPolicy `json:"items"`
}

// The rollout defaults, also declared in the schema. The getters fall back to them so that an
// object built in Go without the apiserver's defaulting still behaves sanely.
const (
	DefaultHealthTimeout      = 2 * time.Minute
	DefaultMinRestartInterval = 5 * time.Minute
	DefaultDebounce           = 2 * time.Second
	DefaultMaxWait            = 30 * time.Second
)

// DefaultNamespacedMaxLevel is the default of spec.namespacedModules.maxLevel.
const DefaultNamespacedMaxLevel = LevelRequestResponse

// The audit log defaults, also declared in the schema (AuditLogSpec).
const (
	DefaultAuditLogPath      = "/var/log/kubernetes/audit/audit.log"
	DefaultAuditLogMaxAge    = 7
	DefaultAuditLogMaxBackup = 10
	DefaultAuditLogMaxSize   = 100
)

func durationOr(d *metav1.Duration, fallback time.Duration) time.Duration {
	if d == nil {
		return fallback
	}
	return d.Duration
}

// Node is the entry of the node called name in Nodes, or nil.
func (s *AuditPolicyStatus) Node(name string) *NodeStatus {
	for i := range s.Nodes {
		if s.Nodes[i].Name == name {
			return &s.Nodes[i]
		}
	}
	return nil
}

// HealthTimeoutOrDefault is HealthTimeout, or its default when unset.
func (r RolloutSpec) HealthTimeoutOrDefault() time.Duration {
	return durationOr(r.HealthTimeout, DefaultHealthTimeout)
}

// MinRestartIntervalOrDefault is MinRestartInterval, or its default when unset.
func (r RolloutSpec) MinRestartIntervalOrDefault() time.Duration {
	return durationOr(r.MinRestartInterval, DefaultMinRestartInterval)
}

// DebounceOrDefault is Debounce, or its default when unset.
func (r RolloutSpec) DebounceOrDefault() time.Duration {
	return durationOr(r.Debounce, DefaultDebounce)
}

// MaxWaitOrDefault is MaxWait, or its default when unset.
func (r RolloutSpec) MaxWaitOrDefault() time.Duration { return durationOr(r.MaxWait, DefaultMaxWait) }

// DefaultMinReadyTime is rollout.minReadyTime's default, also declared in the schema.
const DefaultMinReadyTime = 10 * time.Second

// MinReadyTimeOrDefault is MinReadyTime, or its default when unset.
func (r RolloutSpec) MinReadyTimeOrDefault() time.Duration {
	return durationOr(r.MinReadyTime, DefaultMinReadyTime)
}

// PathOrDefault is Path, or its default when unset.
func (l AuditLogSpec) PathOrDefault() string {
	if l.Path == "" {
		return DefaultAuditLogPath
	}
	return l.Path
}

// MaxAgeOrDefault is MaxAge, or its default when unset.
func (l AuditLogSpec) MaxAgeOrDefault() int32 { return int32Or(l.MaxAge, DefaultAuditLogMaxAge) }

// MaxBackupOrDefault is MaxBackup, or its default when unset.
func (l AuditLogSpec) MaxBackupOrDefault() int32 {
	return int32Or(l.MaxBackup, DefaultAuditLogMaxBackup)
}

// MaxSizeOrDefault is MaxSize, or its default when unset.
func (l AuditLogSpec) MaxSizeOrDefault() int32 { return int32Or(l.MaxSize, DefaultAuditLogMaxSize) }

func int32Or(v *int32, fallback int32) int32 {
	if v == nil {
		return fallback
	}
	return *v
}

// EnabledOrDefault is Enabled, or its default (true) when unset.
func (n NamespacedModulesSpec) EnabledOrDefault() bool {
	return n.Enabled == nil || *n.Enabled
}

// MaxLevelOrDefault is MaxLevel, or its default when unset.
func (n NamespacedModulesSpec) MaxLevelOrDefault() Level {
	if n.MaxLevel == "" {
		return DefaultNamespacedMaxLevel
	}
	return n.MaxLevel
}
