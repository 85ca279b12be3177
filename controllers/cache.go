package controllers

import (
	"k8s.io/apimachinery/pkg/api/meta"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

// lastApplied is the annotation where `kubectl apply` (client-side) keeps a copy of the whole
// object as last applied.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

// StripUnusedFields is the manager's cache transform: it drops from every object its
// managedFields, and from modules and the singleton kubectl's copy of the last applied object,
// which no controller reads. With 5,000 modules they would be most of the cache (each module's
// spec once or twice more, as field paths and as JSON).
func StripUnusedFields(in any) (any, error) {
	obj, err := meta.Accessor(in)
	if err != nil {
		return in, nil //nolint:nilerr // not an object (a tombstone): nothing to strip
	}
	if obj.GetManagedFields() != nil {
		obj.SetManagedFields(nil)
	}
	switch in.(type) {
	case *v1alpha1.AuditPolicyModule, *v1alpha1.NamespacedAuditPolicyModule, *v1alpha1.AuditPolicy:
		if a := obj.GetAnnotations(); a[lastApplied] != "" {
			delete(a, lastApplied)
			obj.SetAnnotations(a)
		}
	}
	return in, nil
}
