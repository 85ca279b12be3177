package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/kaudit/kaudit/api/v1alpha1"
)

// FieldManager is the server-side apply field manager of the agent on node: it owns exactly
// that node's entry in the singleton's status.nodes.
func FieldManager(node string) string {
	m := "kaudit-agent-" + node
	if len(m) > 128 { // the apiserver's limit on manager names
		sum := sha256.Sum256([]byte(node))
		m = m[:128-17] + "-" + hex.EncodeToString(sum[:8])
	}
	return m
}

// StatusWriter writes one node's entry of the AuditPolicy singleton's status with server-side
// apply, so that agents of several nodes and the manager never overwrite each other.
type StatusWriter struct {
	Client client.Client
	// NodeName is the node whose entry this writer owns.
	NodeName string
}

// Apply makes the node's entry equal to e. Fields left empty in e are removed from the entry:
// pass the whole entry each time.
func (w *StatusWriter) Apply(ctx context.Context, e v1alpha1.NodeStatus) error {
	e.Name = w.NodeName
	raw, err := json.Marshal(e)
	if err != nil {
		return err
	}
	var entry map[string]any
	if err := json.Unmarshal(raw, &entry); err != nil {
		return err
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       "AuditPolicy",
		"metadata":   map[string]any{"name": v1alpha1.SingletonName},
		"status":     map[string]any{"nodes": []any{entry}},
	}}
	err = w.Client.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldManager(w.NodeName)), client.ForceOwnership)
	if err != nil {
		return fmt.Errorf("writing status.nodes[%s] of AuditPolicy %s: %w", w.NodeName, v1alpha1.SingletonName, err)
	}
	return nil
}
