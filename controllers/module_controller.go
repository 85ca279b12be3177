package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/inforce"
)

// ModuleReconciler reports on each AuditPolicyModule: the PolicyReconciler's verdict on its
// current generation (validity, guardrails) and the revision that holds it.
type ModuleReconciler struct {
	client.Client
	reporter *moduleReporter
}

// +kubebuilder:rbac:groups=audit.kaudit.io,resources=auditpolicymodules,verbs=get;list;watch
// +kubebuilder:rbac:groups=audit.kaudit.io,resources=auditpolicymodules/status,verbs=get;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile writes Accepted, ruleCount and includedInRevision of one module.
func (r *ModuleReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var m v1alpha1.AuditPolicyModule
	if err := r.Get(ctx, req.NamespacedName, &m); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	return ctrl.Result{}, r.reporter.report(ctx, &m, clusterModule(&m), m.Status, len(m.Spec.Rules),
		func(st v1alpha1.AuditPolicyModuleStatus) client.Object {
			return &v1alpha1.AuditPolicyModule{ObjectMeta: metav1.ObjectMeta{Name: m.Name}, Status: st}
		})
}

// SetupWithManager watches modules (spec changes only), revisions, which change
// includedInRevision of the modules whose record in the latest one changed, and the verdicts
// of the PolicyReconciler.
func (r *ModuleReconciler) SetupWithManager(mgr ctrl.Manager, reporter *moduleReporter) error {
	r.reporter = reporter
	return ctrl.NewControllerManagedBy(mgr).
		Named("auditpolicymodule").
		WithOptions(controllerOptions()).
		For(&v1alpha1.AuditPolicyModule{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.ConfigMap{}, newRecordChanges(r.Client, reporter.revisions, false, func() client.ObjectList { return &v1alpha1.AuditPolicyModuleList{} }),
			builder.WithPredicates(isRevision)).
		WatchesRawSource(source.Channel(reporter.decisions.wake[false], reporter.decisions.wakeHandler(false))).
		Complete(r)
}

// moduleReporter writes the status of modules of either kind from the PolicyReconciler's
// verdicts.
type moduleReporter struct {
	client.Client
	Recorder  events.EventRecorder
	revisions *revisionStore
	decisions *decisionStore
}

// report writes the status of module obj, whose status is now old: its verdict (once the
// PolicyReconciler made one about the current generation), ruleCount and includedInRevision,
// and records an event when the verdict changes. withStatus makes the object to apply.
func (r *moduleReporter) report(ctx context.Context, obj client.Object, m liveModule, old v1alpha1.AuditPolicyModuleStatus, rules int,
	withStatus func(v1alpha1.AuditPolicyModuleStatus) client.Object) error {
	outcome, ok := r.decisions.get(m.Module.ID())
	if !ok || outcome.Generation != m.Generation {
		return nil // the PolicyReconciler has not decided on this generation yet; it wakes us
	}
	// The records of status.revisions decide which revision is the latest trusted one.
	var ap v1alpha1.AuditPolicy
	if err := r.Get(ctx, types.NamespacedName{Name: v1alpha1.SingletonName}, &ap); client.IgnoreNotFound(err) != nil {
		return err
	}
	latest, err := r.revisions.latest(ctx, ap.Status.Revisions)
	if err != nil {
		return err
	}
	accepted := acceptedCondition(outcome)
	status := v1alpha1.AuditPolicyModuleStatus{
		ObservedGeneration: m.Generation,
		Conditions:         append([]metav1.Condition(nil), old.Conditions...),
		RuleCount:          int32(rules),
		IncludedInRevision: includedIn(m, outcome.Reason == v1alpha1.ReasonValid, latest),
	}
	previous := meta.FindStatusCondition(old.Conditions, v1alpha1.ConditionAccepted)
	meta.SetStatusCondition(&status.Conditions, accepted)
	if equality.Semantic.DeepEqual(status, old) {
		return nil
	}
	if err := applyStatus(ctx, r.Client, withStatus(status)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	if previous == nil || previous.Status != accepted.Status || previous.Message != accepted.Message {
		if accepted.Status == metav1.ConditionFalse {
			r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, v1alpha1.EventModuleRejected, "Validate", "%s", accepted.Message)
		} else {
			r.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, v1alpha1.EventModuleAccepted, "Validate", "%s", accepted.Message)
		}
	}
	return nil
}

func acceptedCondition(o inforce.Outcome) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionAccepted, ObservedGeneration: o.Generation, Status: metav1.ConditionFalse, Reason: o.Reason, Message: o.Message}
	if o.Accepted {
		c.Status = metav1.ConditionTrue
	}
	return c
}

// includedIn is the revision that first held the module's current content, or nil when latest
// does not hold it (pending, rejected, disabled).
func includedIn(m liveModule, valid bool, latest *latestRevision) *int64 {
	if latest == nil || !valid || m.Module.Spec.Disabled {
		return nil
	}
	if rec := latest.record(m.Module.ID()); rec != nil && inforce.SameContent(rec.Spec, m.Module.Spec) {
		n := rec.FirstRevision
		return &n
	}
	return nil
}
