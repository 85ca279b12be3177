package controllers

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

// NamespacedModuleReconciler reports on each NamespacedAuditPolicyModule, as ModuleReconciler
// does on AuditPolicyModules.
type NamespacedModuleReconciler struct {
	client.Client
	reporter *moduleReporter
}

// +kubebuilder:rbac:groups=audit.kaudit.io,resources=namespacedauditpolicymodules,verbs=get;list;watch
// +kubebuilder:rbac:groups=audit.kaudit.io,resources=namespacedauditpolicymodules/status,verbs=get;patch

// Reconcile writes Accepted, ruleCount and includedInRevision of one namespaced module.
func (r *NamespacedModuleReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var m v1alpha1.NamespacedAuditPolicyModule
	if err := r.Get(ctx, req.NamespacedName, &m); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	return ctrl.Result{}, r.reporter.report(ctx, &m, namespacedModule(&m), m.Status, len(m.Spec.Rules),
		func(st v1alpha1.AuditPolicyModuleStatus) client.Object {
			return &v1alpha1.NamespacedAuditPolicyModule{ObjectMeta: metav1.ObjectMeta{Namespace: m.Namespace, Name: m.Name}, Status: st}
		})
}

// SetupWithManager watches namespaced modules (spec changes only), revisions and the verdicts
// of the PolicyReconciler.
func (r *NamespacedModuleReconciler) SetupWithManager(mgr ctrl.Manager, reporter *moduleReporter) error {
	r.reporter = reporter
	return ctrl.NewControllerManagedBy(mgr).
		Named("namespacedauditpolicymodule").
		WithOptions(controllerOptions()).
		For(&v1alpha1.NamespacedAuditPolicyModule{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.ConfigMap{}, newRecordChanges(r.Client, reporter.revisions, true, func() client.ObjectList { return &v1alpha1.NamespacedAuditPolicyModuleList{} }),
			builder.WithPredicates(isRevision)).
		WatchesRawSource(source.Channel(reporter.decisions.wake[true], reporter.decisions.wakeHandler(true))).
		Complete(r)
}
