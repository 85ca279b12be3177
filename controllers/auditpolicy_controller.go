package controllers

import (
	"context"
	"fmt"
	"slices"
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
	"k8s.io/utils/ptr"
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
	"github.com/kaudit/kaudit/internal/inforce"
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
	// MaxPolicyRules and MaxPolicyBytes cap the merged policy: kube-apiserver checks its rules
	// one by one on every request, and the agent refuses a policy over 128 MiB. Over a cap no
	// revision is made.
	MaxPolicyRules int
	MaxPolicyBytes int

	revisions *revisionStore
	verdicts  *verdictCache
	decisions *decisionStore
	memo      *inforce.Memo
	// One worker reconciles the singleton, so the fields below need no lock.
	// decided is the last decision and the fingerprint of its input (see decide).
	decided     *inforce.Result
	decidedFrom string
	// encoded is the next revision, encoded from the last decision while the debounce runs.
	encoded *encodedRevision
	// findings holds the guardrail findings last reported in an event.
	findings map[string]bool
	// The debounce state: the desired policy hash not yet written to a revision, when it was
	// first seen and when it last changed.
	pendingHash  string
	pendingSince time.Time
	lastChange   time.Time
	// warned holds, per untrusted ConfigMap, the reason last reported in an event.
	warned map[types.UID]string
	// nameTaken is the highest revision number whose name another object was found to hold;
	// numbering continues above it.
	nameTaken int64
	// rollouts turns the node entries into kaudit_node_rollout_duration_seconds.
	rollouts nodeRollouts
}

// maxNameTries bounds the revision numbers one reconcile tries when names are taken.
const maxNameTries = 5

// +kubebuilder:rbac:groups=audit.kaudit.io,resources=auditpolicies,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=audit.kaudit.io,resources=auditpolicies/status,verbs=get;patch
// +kubebuilder:rbac:groups=audit.kaudit.io,resources=auditpolicymodules,verbs=get;list;watch
// +kubebuilder:rbac:groups=audit.kaudit.io,resources=namespacedauditpolicymodules,verbs=get;list;watch
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

	modules, err := r.listModules(ctx)
	if err != nil {
		return ctrl.Result{}, err
	}
	set, err := r.revisions.list(ctx, ap.Status.Revisions)
	if err != nil {
		return ctrl.Result{}, err
	}
	st := statusBuilder{old: ap.Status, now: r.Clock.Now(), generation: ap.Generation, records: set.records}
	revs, untrusted := set.trusted, set.untrusted

	result, err := r.makeRevision(ctx, &ap, modules, set, &st)
	if err != nil {
		return ctrl.Result{}, err
	}
	if st.created != nil {
		revs = append(revs, *st.created)
		// An adopted revision was untrusted until now.
		untrusted = slices.DeleteFunc(untrusted, func(u untrustedRevision) bool { return u.ConfigMap.Name == st.created.ConfigMap.Name })
	}
	r.reportUntrusted(ctx, &ap, untrusted, &st)
	if len(revs) > 0 {
		n := revs[len(revs)-1].Number
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
	r.rollouts.observe(ap.Status.Nodes, ap.Status.DesiredRevision, st.now)

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

// listModules reads the modules of both kinds. Their specs are the cache's own objects, not
// copies (the decision keeps them, and nothing writes into a spec): with 5,000 modules a copy
// on every reconcile would allocate tens of megabytes.
func (r *PolicyReconciler) listModules(ctx context.Context) ([]liveModule, error) {
	var modules v1alpha1.AuditPolicyModuleList
	if err := r.List(ctx, &modules, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	var namespaced v1alpha1.NamespacedAuditPolicyModuleList
	if err := r.List(ctx, &namespaced, client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	out := make([]liveModule, 0, len(modules.Items)+len(namespaced.Items))
	for i := range modules.Items {
		out = append(out, clusterModule(&modules.Items[i]))
	}
	for i := range namespaced.Items {
		out = append(out, r.verdicts.namespaced(&namespaced.Items[i]))
	}
	return out, nil
}

// makeRevision decides which spec of each module is in force, and writes a new revision when
// the merged policy differs from the latest trusted one, is within the caps and the debounce
// allows it.
func (r *PolicyReconciler) makeRevision(ctx context.Context, ap *v1alpha1.AuditPolicy, modules []liveModule, set revisionSet, st *statusBuilder) (ctrl.Result, error) {
	settings := inforce.SettingsFrom(ap.Spec)
	if err := validateSettings(settings); err != nil {
		st.degraded(v1alpha1.ReasonInvalidSettings, err.Error()+". No new revision is made until this is fixed; the current one stays in force.")
		r.event(ap, corev1.EventTypeWarning, v1alpha1.ReasonInvalidSettings, err.Error())
		r.reportInvalidOnly(modules)
		return ctrl.Result{}, nil
	}
	var latest *storedRevision
	if len(set.trusted) > 0 {
		latest = &set.trusted[len(set.trusted)-1]
	}
	next := r.nextNumber(ap, set)
	decision, err := r.decide(modules, latest, ap.Spec, settings)
	if err != nil {
		st.degraded(v1alpha1.ReasonMergeFailed, err.Error())
		r.event(ap, corev1.EventTypeWarning, v1alpha1.ReasonMergeFailed, err.Error())
		r.reportInvalidOnly(modules)
		return ctrl.Result{}, nil
	}
	r.decisions.record(outcomesByKey(decision, modules))
	r.reportFindings(ctx, ap, decision, st)
	if !decision.AnyInForce() && latest == nil {
		st.progressing(metav1.ConditionFalse, v1alpha1.ReasonNoModules, "No accepted AuditPolicyModule yet: no revision is made, and nodes keep the policy they have.")
		r.resetPending()
		return ctrl.Result{}, nil
	}
	merged := decision.Merged
	hash := merged.Hash()
	if latest != nil && latest.Hash == hash {
		r.resetPending()
		return ctrl.Result{}, nil
	}
	// The revision is encoded before the wait, so that the wait overlaps the encoding too; the
	// reconcile after the wait finds it encoded when nothing changed meanwhile. A decision that
	// passed the caps once passes them again.
	enc := r.encoded
	if enc == nil || enc.from != r.decidedFrom || enc.rev.Number != next {
		rendered := merged.Render()
		if msg := r.overCaps(len(merged.Policy.Rules), len(rendered)); msg != "" {
			st.degraded(v1alpha1.ReasonPolicyTooLarge, msg+". No new revision is made; the current one stays in force.")
			r.event(ap, corev1.EventTypeWarning, v1alpha1.ReasonPolicyTooLarge, msg)
			r.resetPending()
			return ctrl.Result{}, nil
		}
		enc = r.encode(next, hash, rendered, decision)
	}

	// A change counts from when this reconcile read the modules, not from when the decision
	// about them was made: the decision's work overlaps the debounce instead of adding to it.
	now := st.now
	if hash != r.pendingHash {
		r.pendingHash, r.lastChange = hash, now
		if r.pendingSince.IsZero() {
			r.pendingSince = now
		}
	}
	// The wait is what is left of it once the revision is ready: the time deciding and encoding
	// took counts towards it.
	ready := r.Clock.Now()
	wait := min(ap.Spec.Rollout.DebounceOrDefault()-ready.Sub(r.lastChange), ap.Spec.Rollout.MaxWaitOrDefault()-ready.Sub(r.pendingSince))
	if wait > 0 {
		st.progressing(metav1.ConditionTrue, v1alpha1.ReasonDebouncing, fmt.Sprintf("Modules changed; waiting for %s without changes before making revision %d.", ap.Spec.Rollout.DebounceOrDefault(), next))
		return ctrl.Result{RequeueAfter: wait}, nil
	}

	for n := next; n < next+maxNameTries; n++ {
		if n != next {
			enc = r.encode(n, hash, merged.Render(), decision)
		}
		if enc.err != nil {
			st.degraded(v1alpha1.ReasonMergeFailed, enc.err.Error())
			r.event(ap, corev1.EventTypeWarning, v1alpha1.ReasonMergeFailed, enc.err.Error())
			return ctrl.Result{}, nil
		}
		stored, err := r.publish(ctx, ap, enc)
		if err != nil {
			return ctrl.Result{}, err
		}
		if stored == nil {
			continue // the name is taken
		}
		revisionMade(r.Clock.Now().Sub(r.pendingSince))
		r.resetPending()
		st.created = stored
		st.records[n] = stored.Digest
		log.FromContext(ctx).Info("created revision", "revision", n, "policyHash", policy.ShortHash(hash), "modules", len(merged.Modules), "rules", len(merged.Policy.Rules))
		r.event(ap, corev1.EventTypeNormal, v1alpha1.EventRevisionCreated, fmt.Sprintf("Revision %d (policy %s) from %d modules, %d rules", n, policy.ShortHash(hash), len(merged.Modules), len(merged.Policy.Rules)))
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, fmt.Errorf("the names of revisions %d to %d are all taken by ConfigMaps the manager did not make; trying higher numbers", next, next+maxNameTries-1)
}

// nextNumber is one more than every recorded revision number, status.latestRevision and any
// number whose name was found taken. Numbers of untrusted ConfigMaps never count: a forged
// label near the int64 limit must not exhaust the numbers (see docs/design.md, "Revisions").
func (r *PolicyReconciler) nextNumber(ap *v1alpha1.AuditPolicy, set revisionSet) int64 {
	n := max(r.nameTaken, ptr.Deref(ap.Status.LatestRevision, 0))
	for recorded := range set.records {
		n = max(n, recorded)
	}
	return n + 1
}

// encodedRevision is a revision ready to publish, made from the decision whose input has the
// fingerprint from: its ConfigMap and digest, or why it cannot be encoded. rev holds no policy
// (the ConfigMap does), as a storedRevision.
type encodedRevision struct {
	from   string
	rev    revision.Revision
	cm     *corev1.ConfigMap
	digest string
	err    error
}

// encode makes revision n of the last decision, whose merged policy has the given hash and
// rendering, and keeps it as r.encoded.
func (r *PolicyReconciler) encode(n int64, hash string, rendered []byte, decision *inforce.Result) *encodedRevision {
	r.encoded = nil // let the previous one go first
	// The records name the revision that first held each module, so they depend on n.
	rev := revision.Revision{Number: n, Hash: hash, Policy: rendered, Modules: decision.Records(n)}
	enc := &encodedRevision{from: r.decidedFrom}
	enc.cm, enc.digest, enc.err = revision.Encode(r.Namespace, rev)
	rev.Policy = nil
	enc.rev = rev
	r.encoded = enc
	return enc
}

// publish records and creates the encoded revision. When the name is taken by a ConfigMap that
// is exactly that revision (this manager's own create, whose status write was lost in a
// crash), it adopts it. When it is taken by anything else it returns nil and moves numbering
// past it.
func (r *PolicyReconciler) publish(ctx context.Context, ap *v1alpha1.AuditPolicy, enc *encodedRevision) (*storedRevision, error) {
	// The create fills in the object it is given; the encoded one stays as encoded.
	rev, cm, digest := enc.rev, enc.cm.DeepCopy(), enc.digest
	r.revisions.record(rev.Number, digest)
	err := r.Create(ctx, cm)
	if err == nil {
		r.revisions.created(&rev, cm)
		return &storedRevision{Revision: &rev, ConfigMap: cm, Digest: digest}, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		r.revisions.forget(rev.Number)
		return nil, fmt.Errorf("creating revision %d: %w", rev.Number, err)
	}
	existing := &corev1.ConfigMap{}
	if err := r.revisions.live.Get(ctx, client.ObjectKeyFromObject(cm), existing); err != nil {
		r.revisions.forget(rev.Number)
		return nil, fmt.Errorf("reading ConfigMap %s/%s, which holds the name of revision %d: %w", cm.Namespace, cm.Name, rev.Number, err)
	}
	if _, err := revision.Verify(existing, digest); err != nil {
		r.revisions.forget(rev.Number)
		r.nameTaken = max(r.nameTaken, rev.Number)
		r.event(ap, corev1.EventTypeWarning, v1alpha1.EventRevisionNameTaken, fmt.Sprintf("Skipping revision number %d: ConfigMap %s/%s already exists and is not the revision the manager would write (%v)", rev.Number, cm.Namespace, cm.Name, err))
		return nil, nil
	}
	r.revisions.created(&rev, existing)
	log.FromContext(ctx).Info("adopted revision", "revision", rev.Number, "configMap", existing.Name)
	r.event(ap, corev1.EventTypeNormal, v1alpha1.EventRevisionAdopted, fmt.Sprintf("Revision %d already existed with exactly the content to write (a create whose status write was lost); recorded it", rev.Number))
	return &storedRevision{Revision: &rev, ConfigMap: existing, Digest: digest}, nil
}

// overCaps says how the merged policy exceeds MaxPolicyRules or MaxPolicyBytes, or "".
func (r *PolicyReconciler) overCaps(rules, bytes int) string {
	switch {
	case rules > r.MaxPolicyRules:
		return fmt.Sprintf("the merged policy has %d rules, over the limit of %d (--max-policy-rules)", rules, r.MaxPolicyRules)
	case bytes > r.MaxPolicyBytes:
		return fmt.Sprintf("the merged policy renders to %d bytes, over the limit of %d (--max-policy-bytes)", bytes, r.MaxPolicyBytes)
	}
	return ""
}

// reportUntrusted records a Warning event once per untrusted ConfigMap and reason, and keeps
// the singleton Degraded while any exists (see docs/design.md, "Revisions"). The manager never
// deletes them: they are evidence for whoever investigates.
func (r *PolicyReconciler) reportUntrusted(ctx context.Context, ap *v1alpha1.AuditPolicy, untrusted []untrustedRevision, st *statusBuilder) {
	present := make(map[types.UID]bool, len(untrusted))
	reasons := make([]string, 0, len(untrusted))
	for _, u := range untrusted {
		present[u.ConfigMap.UID] = true
		reasons = append(reasons, u.Reason)
		if r.warned[u.ConfigMap.UID] == u.Reason {
			continue
		}
		r.warned[u.ConfigMap.UID] = u.Reason
		log.FromContext(ctx).Info("ignoring an untrusted revision ConfigMap", "configMap", u.ConfigMap.Name, "reason", u.Reason)
		r.event(ap, corev1.EventTypeWarning, v1alpha1.ReasonUntrustedRevision, "Ignored: "+u.Reason)
	}
	for uid := range r.warned {
		if !present[uid] {
			delete(r.warned, uid)
		}
	}
	if len(reasons) > 0 {
		st.degraded(v1alpha1.ReasonUntrustedRevision, "ConfigMaps with the label "+revision.LabelRevision+" that the manager did not make, or that changed since, are ignored: "+
			strings.Join(reasons, "; ")+". Find out who wrote them, then delete them.")
	}
}

func (r *PolicyReconciler) resetPending() {
	r.pendingHash, r.pendingSince, r.lastChange = "", time.Time{}, time.Time{}
	r.encoded = nil
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

// SetupWithManager watches the singleton, modules of both kinds (spec changes only), revisions
// and control-plane nodes (metadata only), and triggers one reconcile at start so the
// singleton is created even when nothing else happens.
func (r *PolicyReconciler) SetupWithManager(mgr ctrl.Manager, revisions *revisionStore, verdicts *verdictCache, decisions *decisionStore) error {
	r.revisions, r.verdicts, r.decisions = revisions, verdicts, decisions
	r.memo, r.warned, r.findings = inforce.NewMemo(), map[types.UID]string{}, map[string]bool{}
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
		Watches(&v1alpha1.NamespacedAuditPolicyModule{}, toSingleton, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
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
	// MaxPolicyRules and MaxPolicyBytes cap the merged policy.
	MaxPolicyRules int
	MaxPolicyBytes int
}

// The default caps of the merged policy leave room for 5,000 modules of 3 rules, which render
// to about 4 MiB, and stay well under the agent's 128 MiB limit and the revision format's
// decompression cap (revision.MaxPolicyBytes).
const (
	DefaultMaxPolicyRules = 20000
	DefaultMaxPolicyBytes = 16 << 20
)

// Setup registers the kaudit controllers with a manager.
func Setup(mgr ctrl.Manager, opts Options) error {
	if err := registerStateMetrics(mgr.GetClient()); err != nil {
		return fmt.Errorf("registering the metrics of modules and nodes: %w", err)
	}
	revisions := newRevisionStore(mgr.GetClient(), mgr.GetAPIReader(), opts.Namespace)
	decisions := newDecisionStore()
	reporter := &moduleReporter{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("kaudit-manager"), revisions: revisions, decisions: decisions}
	if err := (&ModuleReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr, reporter); err != nil {
		return err
	}
	if err := (&NamespacedModuleReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr, reporter); err != nil {
		return err
	}
	return (&PolicyReconciler{
		Client:         mgr.GetClient(),
		Recorder:       mgr.GetEventRecorder("kaudit-manager"),
		Clock:          clock.RealClock{},
		Namespace:      opts.Namespace,
		HistoryLimit:   opts.HistoryLimit,
		MaxPolicyRules: opts.MaxPolicyRules,
		MaxPolicyBytes: opts.MaxPolicyBytes,
	}).SetupWithManager(mgr, revisions, newVerdictCache(), decisions)
}
