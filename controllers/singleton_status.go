package controllers

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/revision"
)

// statusBuilder collects what one reconcile observed and turns it into the singleton's status.
// Node entries are the agents'; it only reads them.
type statusBuilder struct {
	old        v1alpha1.AuditPolicyStatus
	now        time.Time
	generation int64

	// records are status.revisions: number to digest of every recorded revision that exists.
	records map[int64]string
	created *storedRevision
	latest  *int64
	desired *revision.Revision
	updated string
	// guardrails describes deleted modules kept in force and guardrails the policy breaks: the
	// singleton is Degraded with GuardrailViolation while it is set, unless a node failed.
	guardrails string

	conditions []metav1.Condition
}

func (b *statusBuilder) set(c metav1.Condition) {
	if meta.FindStatusCondition(b.conditions, c.Type) != nil {
		return // the first verdict of a reconcile wins: it is the more specific one
	}
	c.ObservedGeneration = b.generation
	b.conditions = append(b.conditions, c)
}

func (b *statusBuilder) degraded(reason, message string) {
	b.set(metav1.Condition{Type: v1alpha1.ConditionDegraded, Status: metav1.ConditionTrue, Reason: reason, Message: message})
}

func (b *statusBuilder) progressing(status metav1.ConditionStatus, reason, message string) {
	b.set(metav1.Condition{Type: v1alpha1.ConditionProgressing, Status: status, Reason: reason, Message: message})
}

// rollout summarises the agents' node entries against the desired revision.
func (b *statusBuilder) rollout(desired *revision.Revision, nodes []metav1.PartialObjectMetadata, entries []v1alpha1.NodeStatus) {
	b.desired = desired
	if desired == nil {
		b.set(metav1.Condition{Type: v1alpha1.ConditionAvailable, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonNoModules, Message: "There is no revision to roll out yet."})
		b.progressing(metav1.ConditionFalse, v1alpha1.ReasonNoModules, "There is no revision to roll out yet.")
		b.guardrailFindings()
		b.set(metav1.Condition{Type: v1alpha1.ConditionDegraded, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonAsExpected})
		return
	}
	byName := map[string]v1alpha1.NodeStatus{}
	for _, e := range entries {
		byName[e.Name] = e
	}
	var updated int
	var failed, drifted, waiting []string
	for _, n := range nodes {
		e, ok := byName[n.Name]
		switch {
		case ok && e.AppliedRevision != nil && *e.AppliedRevision == desired.Number && e.Phase == v1alpha1.NodeApplied:
			updated++
		case ok && (e.Phase == v1alpha1.NodeFailed || e.Phase == v1alpha1.NodeRolledBack):
			failed = append(failed, fmt.Sprintf("node %s %s: %s", n.Name, e.Phase, e.Message))
		case ok && e.Phase == v1alpha1.NodeDrifted:
			// Its agent restores the files, restarting kube-apiserver if need be: that is progress.
			drifted = append(drifted, fmt.Sprintf("node %s %s: %s", n.Name, e.Phase, e.Message))
			waiting = append(waiting, n.Name)
		default:
			waiting = append(waiting, n.Name)
		}
	}
	slices.Sort(failed)
	slices.Sort(drifted)
	slices.Sort(waiting)
	total := len(nodes)
	b.updated = fmt.Sprintf("%d/%d", updated, total)

	switch {
	case total == 0:
		b.set(metav1.Condition{Type: v1alpha1.ConditionAvailable, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonNoControlPlaneNodes,
			Message: fmt.Sprintf("No node has the label %s, so no kube-apiserver runs revision %d.", v1alpha1.ControlPlaneLabel, desired.Number)})
	case updated == total:
		b.set(metav1.Condition{Type: v1alpha1.ConditionAvailable, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonRolloutComplete,
			Message: fmt.Sprintf("Every control-plane node (%d) runs revision %d.", total, desired.Number)})
	default:
		b.set(metav1.Condition{Type: v1alpha1.ConditionAvailable, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonRollingOut,
			Message: fmt.Sprintf("%d of %d control-plane nodes run revision %d.", updated, total, desired.Number)})
	}
	switch {
	case len(failed) > 0:
		b.degraded(v1alpha1.ReasonNodeFailed, strings.Join(failed, "; ")+". The rollout is halted until the desired revision changes.")
		b.progressing(metav1.ConditionFalse, v1alpha1.ReasonRolloutHalted, "A node failed; other nodes wait.")
	case total > 0 && updated < total:
		b.progressing(metav1.ConditionTrue, v1alpha1.ReasonRollingOut, fmt.Sprintf("Rolling out revision %d; waiting for %s.", desired.Number, strings.Join(waiting, ", ")))
	default:
		b.progressing(metav1.ConditionFalse, v1alpha1.ReasonRolloutComplete, fmt.Sprintf("Revision %d is the desired revision.", desired.Number))
	}
	// After a failure, which halts the rollout; before the guardrail findings, which last while
	// drift is repaired in seconds and would hide it.
	if len(drifted) > 0 {
		b.degraded(v1alpha1.ReasonNodeDrifted, strings.Join(drifted, "; ")+".")
	}
	b.guardrailFindings()
	b.set(metav1.Condition{Type: v1alpha1.ConditionDegraded, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonAsExpected})
}

// guardrailFindings makes the singleton Degraded for the guardrail findings, if any. It comes
// after a node's failure, which halts the rollout and so matters more.
func (b *statusBuilder) guardrailFindings() {
	if b.guardrails != "" {
		b.degraded(v1alpha1.ReasonGuardrailViolation, b.guardrails)
	}
}

// build returns the status to apply, keeping lastTransitionTime of unchanged conditions.
func (b *statusBuilder) build() v1alpha1.AuditPolicyStatus {
	st := v1alpha1.AuditPolicyStatus{
		ObservedGeneration: b.generation,
		LatestRevision:     b.latest,
		UpdatedNodes:       b.updated,
		Conditions:         slices.Clone(b.old.Conditions),
	}
	if b.desired != nil {
		n := b.desired.Number
		st.DesiredRevision, st.DesiredPolicyHash = &n, b.desired.Hash
	}
	for n, digest := range b.records {
		st.Revisions = append(st.Revisions, v1alpha1.RevisionRecord{Number: n, SHA256: digest})
	}
	slices.SortFunc(st.Revisions, func(a, b v1alpha1.RevisionRecord) int { return cmp.Compare(a.Number, b.Number) })
	for _, c := range b.conditions {
		c.LastTransitionTime = metav1.NewTime(b.now)
		meta.SetStatusCondition(&st.Conditions, c)
	}
	return st
}
