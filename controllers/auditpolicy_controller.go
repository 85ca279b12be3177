package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/revision"
)

// PolicyReconciler merges the modules into revisions and reports the rollout on the
// AuditPolicy singleton. It creates the singleton when it is missing.
type PolicyReconciler struct {
	client.Client
	Recorder events.EventRecorder
	Clock    clock.PassiveClock
	// Namespace holds the revision ConfigMaps.
	Namespace string
	// HistoryLimit is how many revisions are kept; the desired, pinned and node-applied ones
	// are never deleted, even beyond it.
	HistoryLimit int

	revisions *revisionStore
	verdicts  *verdictCache
	// The debounce state: the desired policy hash not yet written to a revision, when it was
	// first seen and when it last changed. One worker reconciles the singleton, so no lock.
	pendingHash  string
	pendingSince time.Time
	lastChange   time.Time
}

// +kubebuilder:rbac:groups=audit.kaudit.io,resources=auditpolicies,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=audit.kaudit.io,resources=auditpolicies/status,verbs=get;patch
// +kubebuilder:rbac:groups=audit.kaudit.io,resources=auditpolicymodules,verbs=get;list;watch
// +kubebuilder:rbac:groups="",namespace=kaudit-system,resources=configmaps,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile makes a new revision when the merged modules changed, prunes old revisions and
// writes the singleton's status.
func (r *PolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if req.Name != v1alpha1.SingletonName {
		return ctrl.Result{}, nil
	}
	logger := log.FromContext(ctx)
	var ap v1alpha1.AuditPolicy
	if err := r.Get(ctx, types.NamespacedName{Name: v1alpha1.SingletonName}, &ap); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, r.createSingleton(ctx)
	}

	var modules v1alpha1.AuditPolicyModuleList
	if err := r.List(ctx, &modules); err != nil {
		return ctrl.Result{}, err
	}
	revs, err := r.revisions.list(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	var latest *revision.Revision
	if len(revs) > 0 {
		latest = revs[len(revs)-1].Revision
	}
	st := statusBuilder{old: ap.Status, now: r.Clock.Now(), generation: ap.Generation}

	result, err := r.makeRevision(ctx, &ap, modules.Items, latest, &st)
	if err != nil {
		return ctrl.Result{}, err
	}
	if st.created != nil {
		revs = append(revs, *st.created)
		latest = st.created.Revision
	}
	if latest != nil {
		n := latest.Number
		st.latest = &n
	}
	desired := r.desiredRevision(&ap, revs, &st)

	var nodes metav1.PartialObjectMetadataList
	nodes.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NodeList"))
	if err := r.List(ctx, &nodes); err != nil {
		return ctrl.Result{}, err
	}
	var controlPlane []metav1.PartialObjectMetadata
	for _, n := range nodes.Items {
		if _, ok := n.Labels[v1alpha1.ControlPlaneLabel]; ok {
			controlPlane = append(controlPlane, n)
		}
	}
	st.rollout(desired, controlPlane, ap.Status.Nodes)

	if err := r.prune(ctx, &ap, revs, desired); err != nil {
		logger.Error(err, "pruning revisions")
	}
	if err := r.dropGoneNodes(ctx, &ap, controlPlane); err != nil {
		return ctrl.Result{}, err
	}
	if err := applyStatus(ctx, r.Client, &v1alpha1.AuditPolicy{ObjectMeta: metav1.ObjectMeta{Name: ap.Name}, Status: st.build()}); err != nil {
		return ctrl.Result{}, err
	}
	return result, nil
}

func (r *PolicyReconciler) createSingleton(ctx context.Context) error {
	ap := &v1alpha1.AuditPolicy{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.SingletonName}}
	if err := r.Create(ctx, ap); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating AuditPolicy %s: %w", v1alpha1.SingletonName, err)
	}
	log.FromContext(ctx).Info("created the AuditPolicy singleton", "name", v1alpha1.SingletonName)
	r.Recorder.Eventf(ap, nil, corev1.EventTypeNormal, v1alpha1.EventCreated, "Create", "Created the AuditPolicy singleton with default settings")
	return nil
}

// makeRevision writes a new revision when the merged policy differs from the latest one and
// the debounce allows it.
func (r *PolicyReconciler) makeRevision(ctx context.Context, ap *v1alpha1.AuditPolicy, modules []v1alpha1.AuditPolicyModule, latest *revision.Revision, st *statusBuilder) (ctrl.Result, error) {
	settings := policy.SettingsFrom(ap.Spec)
	if err := policy.ValidateSettings(settings); err != nil {
		st.degraded(v1alpha1.ReasonInvalidSettings, err.Error()+". No new revision is made until this is fixed; the current one stays in force.")
		r.event(ap, corev1.EventTypeWarning, v1alpha1.ReasonInvalidSettings, err.Error())
		return ctrl.Result{}, nil
	}
	next := int64(1)
	if latest != nil {
		next = latest.Number + 1
	}
	if old := ap.Status.LatestRevision; old != nil && *old >= next {
		// Revisions deleted by hand must not make numbers be reused.
		next = *old + 1
	}
	inForce, records := modulesInForce(r.verdicts.judge(modules), latest, next)
	if len(inForce) == 0 && latest == nil {
		st.progressing(metav1.ConditionFalse, v1alpha1.ReasonNoModules, "No accepted AuditPolicyModule yet: no revision is made, and nodes keep the policy they have.")
		r.resetPending()
		return ctrl.Result{}, nil
	}
	merged, err := policy.Merge(inForce, settings)
	if err != nil {
		st.degraded(v1alpha1.ReasonMergeFailed, err.Error())
		r.event(ap, corev1.EventTypeWarning, v1alpha1.ReasonMergeFailed, err.Error())
		return ctrl.Result{}, nil
	}
	hash := merged.Hash()
	if latest != nil && latest.Hash == hash {
		r.resetPending()
		return ctrl.Result{}, nil
	}

	now := r.Clock.Now()
	if hash != r.pendingHash {
		r.pendingHash, r.lastChange = hash, now
		if r.pendingSince.IsZero() {
			r.pendingSince = now
		}
	}
	wait := min(ap.Spec.Rollout.DebounceOrDefault()-now.Sub(r.lastChange), ap.Spec.Rollout.MaxWaitOrDefault()-now.Sub(r.pendingSince))
	if wait > 0 {
		st.progressing(metav1.ConditionTrue, v1alpha1.ReasonDebouncing, fmt.Sprintf("Modules changed; waiting for %s without changes before making revision %d.", ap.Spec.Rollout.DebounceOrDefault(), next))
		return ctrl.Result{RequeueAfter: wait}, nil
	}

	rev := revision.Revision{Number: next, Hash: hash, Policy: merged.Render(), Modules: records}
	cm, err := revision.ToConfigMap(r.Namespace, rev)
	if err != nil {
		st.degraded(v1alpha1.ReasonMergeFailed, err.Error())
		r.event(ap, corev1.EventTypeWarning, v1alpha1.ReasonMergeFailed, err.Error())
		return ctrl.Result{}, nil
	}
	if err := r.Create(ctx, cm); err != nil {
		return ctrl.Result{}, fmt.Errorf("creating revision %d: %w", next, err)
	}
	r.revisions.created(next)
	r.resetPending()
	st.created = &storedRevision{Revision: &rev, ConfigMap: cm}
	log.FromContext(ctx).Info("created revision", "revision", next, "policyHash", policy.ShortHash(hash), "modules", len(inForce), "rules", len(merged.Policy.Rules))
	r.event(ap, corev1.EventTypeNormal, v1alpha1.EventRevisionCreated, fmt.Sprintf("Revision %d (policy %s) from %d modules, %d rules", next, policy.ShortHash(hash), len(merged.Modules), len(merged.Policy.Rules)))
	return ctrl.Result{}, nil
}

func (r *PolicyReconciler) resetPending() {
	r.pendingHash, r.pendingSince, r.lastChange = "", time.Time{}, time.Time{}
}

// desiredRevision is the pinned revision if set and present, else the latest. A pinned revision
// that does not exist is reported, and the previous desired revision stays desired.
func (r *PolicyReconciler) desiredRevision(ap *v1alpha1.AuditPolicy, revs []storedRevision, st *statusBuilder) *revision.Revision {
	find := func(n int64) *revision.Revision {
		for _, rv := range revs {
			if rv.Number == n {
				return rv.Revision
			}
		}
		return nil
	}
	if pin := ap.Spec.PinnedRevision; pin != nil {
		if rv := find(*pin); rv != nil {
			return rv
		}
		st.degraded(v1alpha1.ReasonPinnedNotFound, fmt.Sprintf("spec.pinnedRevision: revision %d does not exist (ConfigMap %s/%s); nodes stay on the revision they run", *pin, r.Namespace, revision.Name(*pin)))
		if old := ap.Status.DesiredRevision; old != nil {
			return find(*old)
		}
		return nil
	}
	if len(revs) == 0 {
		return nil
	}
	return revs[len(revs)-1].Revision
}

// prune deletes the oldest revisions beyond HistoryLimit; never the latest, the desired, the
// pinned one or one that a node still runs.
func (r *PolicyReconciler) prune(ctx context.Context, ap *v1alpha1.AuditPolicy, revs []storedRevision, desired *revision.Revision) error {
	keep := map[int64]bool{}
	if desired != nil {
		keep[desired.Number] = true
	}
	if ap.Spec.PinnedRevision != nil {
		keep[*ap.Spec.PinnedRevision] = true
	}
	if ap.Status.DesiredRevision != nil {
		keep[*ap.Status.DesiredRevision] = true
	}
	for _, n := range ap.Status.Nodes {
		if n.AppliedRevision != nil {
			keep[*n.AppliedRevision] = true
		}
	}
	excess := len(revs) - max(r.HistoryLimit, 1)
	var pruned []string
	for _, rv := range revs {
		if excess <= 0 {
			break
		}
		if keep[rv.Number] || rv.Number == revs[len(revs)-1].Number {
			continue
		}
		if err := r.Delete(ctx, rv.ConfigMap, client.Preconditions{UID: &rv.ConfigMap.UID}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		pruned = append(pruned, fmt.Sprint(rv.Number))
		excess--
	}
	if len(pruned) > 0 {
		r.event(ap, corev1.EventTypeNormal, v1alpha1.EventRevisionsPruned, fmt.Sprintf("Deleted revisions %s (history limit %d)", strings.Join(pruned, ", "), r.HistoryLimit))
	}
	return nil
}

// dropGoneNodes removes the status entries of nodes that no longer exist or are no longer
// control-plane nodes (no agent runs there to update them, and a stale Failed entry would halt
// every agent). The entries belong to the agents' field managers, so they are removed with a
// JSON patch guarded by a test of the entry's name.
func (r *PolicyReconciler) dropGoneNodes(ctx context.Context, ap *v1alpha1.AuditPolicy, controlPlane []metav1.PartialObjectMetadata) error {
	present := map[string]bool{}
	for _, n := range controlPlane {
		present[n.Name] = true
	}
	for i := len(ap.Status.Nodes) - 1; i >= 0; i-- {
		name := ap.Status.Nodes[i].Name
		if present[name] {
			continue
		}
		patch := fmt.Sprintf(`[{"op":"test","path":"/status/nodes/%d/name","value":%q},{"op":"remove","path":"/status/nodes/%d"}]`, i, name, i)
		if err := r.Status().Patch(ctx, ap, client.RawPatch(types.JSONPatchType, []byte(patch))); err != nil {
			return fmt.Errorf("removing the status entry of gone node %s: %w", name, err)
		}
		r.event(ap, corev1.EventTypeNormal, v1alpha1.EventNodeRemoved, fmt.Sprintf("Node %s is gone or no longer a control-plane node; its rollout entry was removed", name))
	}
	return nil
}

func (r *PolicyReconciler) event(ap *v1alpha1.AuditPolicy, eventType, reason, note string) {
	r.Recorder.Eventf(ap, nil, eventType, reason, "Reconcile", "%s", note)
}

// isRevision selects the revision ConfigMaps.
var isRevision = predicate.NewPredicateFuncs(func(o client.Object) bool {
	return revision.Selector().Matches(labels.Set(o.GetLabels()))
})

// specOrNodesChanged skips the singleton's updates that only the manager's own status write
// made: a reconcile is needed when the spec or an agent's node entry changes.
var specOrNodesChanged = predicate.Or(predicate.GenerationChangedPredicate{}, predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		old, okOld := e.ObjectOld.(*v1alpha1.AuditPolicy)
		cur, okNew := e.ObjectNew.(*v1alpha1.AuditPolicy)
		return !okOld || !okNew || !equality.Semantic.DeepEqual(old.Status.Nodes, cur.Status.Nodes)
	},
	CreateFunc:  func(event.CreateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
})

// SetupWithManager watches the singleton, modules (spec changes only), revisions and
// control-plane nodes (metadata only), and triggers one reconcile at start so the singleton
// is created even when nothing else happens.
func (r *PolicyReconciler) SetupWithManager(mgr ctrl.Manager, revisions *revisionStore, verdicts *verdictCache) error {
	r.revisions, r.verdicts = revisions, verdicts
	toSingleton := handler.EnqueueRequestsFromMapFunc(func(context.Context, client.Object) []reconcile.Request {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: v1alpha1.SingletonName}}}
	})
	start := make(chan event.GenericEvent, 1)
	start <- event.GenericEvent{Object: &v1alpha1.AuditPolicy{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.SingletonName}}}
	return ctrl.NewControllerManagedBy(mgr).
		Named("auditpolicy").
		WithOptions(controllerOptions()).
		For(&v1alpha1.AuditPolicy{}, builder.WithPredicates(specOrNodesChanged)).
		Watches(&v1alpha1.AuditPolicyModule{}, toSingleton, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.ConfigMap{}, toSingleton, builder.WithPredicates(isRevision)).
		Watches(&corev1.Node{}, toSingleton, builder.OnlyMetadata, builder.WithPredicates(predicate.LabelChangedPredicate{})).
		WatchesRawSource(source.Channel(start, &handler.EnqueueRequestForObject{})).
		Complete(r)
}

// Options configures the manager's controllers.
type Options struct {
	// Namespace holds the revision ConfigMaps.
	Namespace string
	// HistoryLimit is how many revisions are kept.
	HistoryLimit int
}

// Setup registers the kaudit controllers with a manager.
func Setup(mgr ctrl.Manager, opts Options) error {
	revisions := newRevisionStore(mgr.GetClient(), mgr.GetAPIReader(), opts.Namespace)
	verdicts := newVerdictCache()
	if err := (&ModuleReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("kaudit-manager")}).SetupWithManager(mgr, revisions, verdicts); err != nil {
		return err
	}
	return (&PolicyReconciler{
		Client:       mgr.GetClient(),
		Recorder:     mgr.GetEventRecorder("kaudit-manager"),
		Clock:        clock.RealClock{},
		Namespace:    opts.Namespace,
		HistoryLimit: opts.HistoryLimit,
	}).SetupWithManager(mgr, revisions, verdicts)
}
