package controllers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

func TestStripUnusedFieldsDropsManagedFieldsAndKubectlsCopy(t *testing.T) {
	managed := []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}}
	annotations := func() map[string]string { return map[string]string{lastApplied: `{"spec":{}}`, "team": "a"} }
	module := &v1alpha1.AuditPolicyModule{ObjectMeta: metav1.ObjectMeta{Name: "m", ManagedFields: managed, Annotations: annotations()}}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "r", ManagedFields: managed, Annotations: annotations()}}
	for _, obj := range []any{module, cm} {
		if _, err := StripUnusedFields(obj); err != nil {
			t.Fatalf("%T: %v", obj, err)
		}
	}
	if module.ManagedFields != nil || cm.ManagedFields != nil {
		t.Errorf("managedFields kept: module %v, ConfigMap %v", module.ManagedFields, cm.ManagedFields)
	}
	if _, ok := module.Annotations[lastApplied]; ok || module.Annotations["team"] != "a" {
		t.Errorf("module annotations %v: want only kubectl's copy dropped", module.Annotations)
	}
	// A ConfigMap's annotations are not the manager's to trim.
	if cm.Annotations[lastApplied] == "" {
		t.Errorf("ConfigMap annotations %v: want them kept", cm.Annotations)
	}
	if got, err := StripUnusedFields("tombstone"); err != nil || got != "tombstone" {
		t.Errorf("a non-object: got %v, %v; want it back unchanged", got, err)
	}
}
