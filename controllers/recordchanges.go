package controllers

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/inforce"
	"github.com/kaudit/kaudit/internal/policy"
	"github.com/kaudit/kaudit/internal/revision"
)

// recordChanges enqueues, on each event of a revision ConfigMap, the modules of one kind whose
// record differs between the latest trusted revision it saw last and the one now: a module's
// includedInRevision depends on the revisions only through its record in the latest one
// (includedIn), so no other module's status can change. At 5,000 modules, reconciling every
// module after each revision, and again after each pruned one, was about a third of the
// manager's CPU per change (see docs/design.md, "At scale").
//
// Until it knows the latest revision it last saw (at start, and after it failed to read
// the revisions) it enqueues every module of its kind, and a module reconcile that fails is
// retried by its controller.
type recordChanges struct {
	client.Client
	revisions  *revisionStore
	namespaced bool
	newList    func() client.ObjectList

	mu sync.Mutex
	// known is whether seen is the latest revision the modules were last enqueued for.
	known bool
	seen  *latestRevision
}

func newRecordChanges(c client.Client, revisions *revisionStore, namespaced bool, newList func() client.ObjectList) handler.EventHandler {
	rc := &recordChanges{Client: c, revisions: revisions, namespaced: namespaced, newList: newList}
	return handler.EnqueueRequestsFromMapFunc(rc.requests)
}

func (rc *recordChanges) requests(ctx context.Context, _ client.Object) []reconcile.Request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	latest, err := rc.latest(ctx)
	if err != nil || !rc.known {
		rc.known, rc.seen = err == nil, latest
		return rc.every(ctx)
	}
	prev := rc.seen
	rc.seen = latest
	return changedRecords(prev, latest, rc.namespaced)
}

// latest is the latest trusted revision as the module reconcilers read it (moduleReporter.report).
func (rc *recordChanges) latest(ctx context.Context) (*latestRevision, error) {
	var ap v1alpha1.AuditPolicy
	if err := rc.Get(ctx, types.NamespacedName{Name: v1alpha1.SingletonName}, &ap); client.IgnoreNotFound(err) != nil {
		return nil, err
	}
	return rc.revisions.latest(ctx, ap.Status.Revisions)
}

// every is a request for every module of the kind.
func (rc *recordChanges) every(ctx context.Context) []reconcile.Request {
	list := rc.newList()
	if err := rc.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	_ = meta.EachListItem(list, func(o runtime.Object) error {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(o.(client.Object))})
		return nil
	})
	return reqs
}

// changedRecords is a request for each module of the kind (namespaced or not) whose record in
// latest gives it another includedInRevision than its record in prev could: one of them has no
// record, or their first revisions or contents (inforce.SameContent, an equivalence) differ.
// Either revision may be nil.
func changedRecords(prev, latest *latestRevision, namespaced bool) []reconcile.Request {
	if prev == latest {
		return nil
	}
	var reqs []reconcile.Request
	add := func(rec *revision.ModuleRecord) {
		if (rec.Namespace != "") == namespaced {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: rec.Namespace, Name: rec.Name}})
		}
	}
	if latest != nil {
		for i := range latest.Modules {
			rec := &latest.Modules[i]
			old := prev.record(policy.ModuleID(rec.Namespace, rec.Name))
			if old == nil || old.FirstRevision != rec.FirstRevision || !inforce.SameContent(old.Spec, rec.Spec) {
				add(rec)
			}
		}
	}
	if prev != nil {
		for i := range prev.Modules {
			rec := &prev.Modules[i]
			if latest.record(policy.ModuleID(rec.Namespace, rec.Name)) == nil {
				add(rec)
			}
		}
	}
	return reqs
}
