// Package v1alpha1 contains the kaudit API: AuditPolicyModule and the AuditPolicy singleton.
// +kubebuilder:object:generate=true
// +groupName=audit.kaudit.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every kaudit kind.
	GroupVersion = schema.GroupVersion{Group: "audit.kaudit.io", Version: "v1alpha1"}

	// SchemeBuilder registers the kaudit kinds with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the kaudit kinds to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
