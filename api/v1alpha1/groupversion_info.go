// Package v1alpha1 contains the kaudit API: AuditPolicyModule, NamespacedAuditPolicyModule and
// the AuditPolicy singleton.
// +kubebuilder:object:generate=true
// +groupName=audit.kaudit.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of every kaudit kind.
	GroupVersion = schema.GroupVersion{Group: "audit.kaudit.io", Version: "v1alpha1"}

	// SchemeBuilder registers the kaudit kinds with a runtime.Scheme. It is apimachinery's
	// builder, not controller-runtime's, so the API package depends on apimachinery only.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the kaudit kinds to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&AuditPolicy{}, &AuditPolicyList{},
		&AuditPolicyModule{}, &AuditPolicyModuleList{},
		&NamespacedAuditPolicyModule{}, &NamespacedAuditPolicyModuleList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
