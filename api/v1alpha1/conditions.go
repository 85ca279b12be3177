package v1alpha1

// The vocabulary of the two kinds' status and events: condition types, their reasons and the
// event reasons. It lives next to the types so that the manager, the agent, the CLI and the
// tests read one list (see docs/design.md, "Status ownership").

// Condition types. Both module kinds have Accepted; the AuditPolicy singleton has Available,
// Progressing and Degraded.
const (
	// ConditionAccepted tells whether a module's current generation is valid and in force.
	ConditionAccepted = "Accepted"
	// ConditionAvailable is true when every control-plane node runs the desired revision.
	ConditionAvailable = "Available"
	// ConditionProgressing is true while a revision is being made or rolled out.
	ConditionProgressing = "Progressing"
	// ConditionDegraded is true when a ConfigMap with the revision label is not trusted, the
	// settings are invalid, the merged policy is over a cap, a pinned revision is missing, the
	// merge failed, a node failed, or the policy in force breaks a guardrail or keeps a
	// deleted module's rules for one.
	ConditionDegraded = "Degraded"
)

// Reasons of a module's Accepted condition. GuardrailViolation is also a reason of the
// singleton's Degraded condition.
const (
	ReasonValid    = "Valid"
	ReasonDisabled = "Disabled"
	ReasonInvalid  = "Invalid"
	// ReasonGuardrailViolation: the merged policy would break a guardrail if this change were
	// in force (module), or the policy in force breaks one (singleton).
	ReasonGuardrailViolation = "GuardrailViolation"
	// ReasonNamespacedModulesDisabled: spec.namespacedModules.enabled of the singleton is false.
	ReasonNamespacedModulesDisabled = "NamespacedModulesDisabled"
	// ReasonAboveCap: a rule of a namespaced module is above spec.namespacedModules.maxLevel.
	ReasonAboveCap = "AboveCap"
	// ReasonLowersLogging: a namespaced module would log a request of its namespace less than
	// the cluster's modules do.
	ReasonLowersLogging = "LowersLogging"
)

// Reasons of the singleton's conditions.
const (
	ReasonNoModules           = "NoModules"
	ReasonDebouncing          = "Debouncing"
	ReasonRollingOut          = "RollingOut"
	ReasonRolloutComplete     = "RolloutComplete"
	ReasonRolloutHalted       = "RolloutHalted"
	ReasonNoControlPlaneNodes = "NoControlPlaneNodes"
	ReasonAsExpected          = "AsExpected"
	ReasonInvalidSettings     = "InvalidSettings"
	ReasonMergeFailed         = "MergeFailed"
	ReasonPinnedNotFound      = "PinnedRevisionNotFound"
	ReasonNodeFailed          = "NodeFailed"
	ReasonUntrustedRevision   = "UntrustedRevision"
	ReasonPolicyTooLarge      = "PolicyTooLarge"
	// ReasonNodeDrifted: a node's files differ from the revision it applied (phase Drifted).
	ReasonNodeDrifted = "NodeDrifted"
)

// Event reasons that are not also condition reasons. The manager's events: on the singleton
// Created, RevisionCreated, RevisionAdopted, RevisionNameTaken, RevisionsPruned, NodeRemoved and
// DeletedModuleKept (plus UntrustedRevision, InvalidSettings, PolicyTooLarge, MergeFailed and
// GuardrailViolation); on a module of either kind Accepted and Rejected. The agents' events, on the singleton:
// RolloutStarted, NodeUpdated, RolledBack, RolloutFailed, RolloutRecovered, RolloutHalted,
// DriftDetected and DriftRepaired.
const (
	EventCreated           = "Created"
	EventRevisionCreated   = "RevisionCreated"
	EventRevisionAdopted   = "RevisionAdopted"
	EventRevisionNameTaken = "RevisionNameTaken"
	EventRevisionsPruned   = "RevisionsPruned"
	EventNodeRemoved       = "NodeRemoved"
	// EventDeletedModuleKept: a deleted module's last accepted rules stay in force because
	// removing them would break a guardrail.
	EventDeletedModuleKept = "DeletedModuleKept"
	EventModuleAccepted    = "Accepted"
	EventModuleRejected    = "Rejected"
	EventRolloutStarted    = "RolloutStarted"
	EventNodeUpdated       = "NodeUpdated"
	EventRolledBack        = "RolledBack"
	EventRolloutFailed     = "RolloutFailed"
	EventRolloutRecovered  = "RolloutRecovered"
	// EventDriftDetected: a node's files differ from the revision it applied; the message names
	// each file and what differs.
	EventDriftDetected = "DriftDetected"
	// EventDriftRepaired: the node's files match the revision it applied again.
	EventDriftRepaired = "DriftRepaired"
)

// ControlPlaneLabel marks the nodes whose kube-apiserver the agents restart; the manager counts
// them to decide Available.
const ControlPlaneLabel = "node-role.kubernetes.io/control-plane"
