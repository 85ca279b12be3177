package controllers

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// FieldManager is the server-side apply field manager of everything the manager writes.
const FieldManager = "kaudit-manager"

// applyStatus server-side applies the status of obj, and nothing else, as FieldManager. Fields
// that other managers own (the agents' node entries) are left alone; fields this manager owned
// before and no longer sends are removed.
func applyStatus(ctx context.Context, c client.Client, obj client.Object) error {
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return fmt.Errorf("converting %s status: %w", obj.GetName(), err)
	}
	gvk, err := c.GroupVersionKindFor(obj)
	if err != nil {
		return err
	}
	u := &unstructured.Unstructured{Object: map[string]any{"status": content["status"]}}
	u.SetGroupVersionKind(gvk)
	u.SetName(obj.GetName())
	if ns := obj.GetNamespace(); ns != "" {
		u.SetNamespace(ns)
	}
	return c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldManager), client.ForceOwnership)
}
