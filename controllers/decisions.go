package controllers

import (
	"context"
	"sync"

	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/kaudit/kaudit/api/v1alpha1"
	"github.com/kaudit/kaudit/internal/inforce"
)

// decisionStore hands the PolicyReconciler's verdict on each module to the reconcilers that
// write the modules' status. Whether a module's change is put in force depends on every other
// module and on the guardrails, so only the PolicyReconciler, which decides for all of them
// at once, can tell (see docs/design.md, "Guardrails"). A module reconciler reports a
// generation only once a decision about it exists; when a verdict changes, the store wakes the
// module's reconciler.
type decisionStore struct {
	mu       sync.Mutex
	outcomes map[string]inforce.Outcome
	// dirty holds, per kind (namespaced or not), the modules whose verdict changed since their
	// reconciler last drained it.
	dirty map[bool]map[client.ObjectKey]bool
	// wake holds, per kind, one pending event that makes the kind's reconciler drain dirty.
	wake map[bool]chan event.GenericEvent
}

func newDecisionStore() *decisionStore {
	return &decisionStore{
		outcomes: map[string]inforce.Outcome{},
		dirty:    map[bool]map[client.ObjectKey]bool{false: {}, true: {}},
		wake:     map[bool]chan event.GenericEvent{false: make(chan event.GenericEvent, 1), true: make(chan event.GenericEvent, 1)},
	}
}

// get returns the verdict on the module with the given ID (policy.Module.ID).
func (s *decisionStore) get(id string) (inforce.Outcome, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.outcomes[id]
	return o, ok
}

// record stores the verdicts of one decision, keyed by the modules' object keys, and wakes the
// reconcilers of the modules whose verdict changed. Modules that are not in it are forgotten.
func (s *decisionStore) record(outcomes map[client.ObjectKey]inforce.Outcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[string]bool, len(outcomes))
	for key, o := range outcomes {
		seen[moduleID(key)] = true
		s.set(key, o)
	}
	for id := range s.outcomes {
		if !seen[id] {
			delete(s.outcomes, id)
		}
	}
}

// update stores verdicts on some modules and wakes their reconcilers, keeping every other
// verdict.
func (s *decisionStore) update(outcomes map[client.ObjectKey]inforce.Outcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, o := range outcomes {
		s.set(key, o)
	}
}

// set stores one verdict and wakes the module's reconciler if it changed; the caller holds mu.
func (s *decisionStore) set(key client.ObjectKey, o inforce.Outcome) {
	id := moduleID(key)
	if old, ok := s.outcomes[id]; ok && old == o {
		return
	}
	s.outcomes[id] = o
	namespaced := key.Namespace != ""
	s.dirty[namespaced][key] = true
	select {
	case s.wake[namespaced] <- event.GenericEvent{Object: wakeObject(namespaced)}:
	default: // a wake-up is pending already, and it drains every dirty module
	}
}

// drain returns the modules of one kind whose verdict changed since the last drain.
func (s *decisionStore) drain(namespaced bool) []reconcile.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	reqs := make([]reconcile.Request, 0, len(s.dirty[namespaced]))
	for key := range s.dirty[namespaced] {
		reqs = append(reqs, reconcile.Request{NamespacedName: key})
	}
	s.dirty[namespaced] = map[client.ObjectKey]bool{}
	return reqs
}

// wakeHandler enqueues the modules of one kind that drain returns.
func (s *decisionStore) wakeHandler(namespaced bool) handler.EventHandler {
	return handler.Funcs{GenericFunc: func(_ context.Context, _ event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		for _, r := range s.drain(namespaced) {
			q.Add(r)
		}
	}}
}

// wakeObject is the object of a wake-up event: any module of the kind, since the handler
// enqueues the dirty ones.
func wakeObject(namespaced bool) client.Object {
	if namespaced {
		return &v1alpha1.NamespacedAuditPolicyModule{}
	}
	return &v1alpha1.AuditPolicyModule{}
}

func moduleID(key client.ObjectKey) string {
	if key.Namespace == "" {
		return key.Name
	}
	return key.Namespace + "/" + key.Name
}
