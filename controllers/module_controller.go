package controllers

import (
	"context"
	"errors"

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
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/policy"
)

// ModuleReconciler validates each AuditPolicyModule with kube-apiserver's loader and reports
// the verdict and the revision that holds the module in its status.
type ModuleReconciler struct {
	client.Client
	Recorder  events.EventRecorder
	revisions *revisionStore
	verdicts  *verdictCache
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
	// The records of status.revisions decide which revision is the latest trusted one.
	var ap v1alpha1.AuditPolicy
	if err := r.Get(ctx, types.NamespacedName{Name: v1alpha1.SingletonName}, &ap); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, err
	}
	latest, err := r.revisions.latest(ctx, ap.Status.Revisions)
	if err != nil {
		return ctrl.Result{}, err
	}

	verdict := r.verdicts.validate(&m)
	accepted := acceptedCondition(m, verdict)
	status := v1alpha1.AuditPolicyModuleStatus{
		ObservedGeneration: m.Generation,
		Conditions:         append([]metav1.Condition(nil), m.Status.Conditions...),
		RuleCount:          int32(len(m.Spec.Rules)),
		IncludedInRevision: includedIn(m, verdict == nil, latest),
	}
	previous := meta.FindStatusCondition(m.Status.Conditions, v1alpha1.ConditionAccepted)
	meta.SetStatusCondition(&status.Conditions, accepted)
	if equality.Semantic.DeepEqual(status, m.Status) {
		return ctrl.Result{}, nil
	}

	out := &v1alpha1.AuditPolicyModule{ObjectMeta: metav1.ObjectMeta{Name: m.Name}, Status: status}
	if err := applyStatus(ctx, r.Client, out); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	if previous == nil || previous.Status != accepted.Status || previous.Message != accepted.Message {
		if accepted.Status == metav1.ConditionFalse {
			r.Recorder.Eventf(&m, nil, corev1.EventTypeWarning, v1alpha1.EventModuleRejected, "Validate", "%s", accepted.Message)
		} else {
			r.Recorder.Eventf(&m, nil, corev1.EventTypeNormal, v1alpha1.EventModuleAccepted, "Validate", "%s", accepted.Message)
		}
	}
	return ctrl.Result{}, nil
}

func acceptedCondition(m v1alpha1.AuditPolicyModule, verdict error) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionAccepted, ObservedGeneration: m.Generation}
	var modErr *policy.ModuleError
	switch {
	case verdict != nil && errors.As(verdict, &modErr):
		c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonInvalid
		c.Message = "kube-apiserver would reject this module: " + modErr.Summary() + ". The last accepted version, if any, stays in force."
	case verdict != nil:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, v1alpha1.ReasonInvalid, verdict.Error()
	case m.Spec.Disabled:
		c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonDisabled
		c.Message = "The module is valid and disabled: it contributes no rules."
	default:
		c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonValid
		c.Message = "The module is valid and part of the merged policy."
	}
	return c
}

// SetupWithManager watches modules (spec changes only) and revisions, which change
// includedInRevision of every module.
func (r *ModuleReconciler) SetupWithManager(mgr ctrl.Manager, revisions *revisionStore, verdicts *verdictCache) error {
	r.revisions, r.verdicts = revisions, verdicts
	allModules := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		var list v1alpha1.AuditPolicyModuleList
		if err := r.List(ctx, &list); err != nil {
			return nil
		}
		reqs := make([]reconcile.Request, len(list.Items))
		for i, m := range list.Items {
			reqs[i] = reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&m)}
		}
		return reqs
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("auditpolicymodule").
		WithOptions(controllerOptions()).
		For(&v1alpha1.AuditPolicyModule{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.ConfigMap{}, allModules, builder.WithPredicates(isRevision)).
		Complete(r)
}
